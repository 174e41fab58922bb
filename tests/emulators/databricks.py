"""A local Databricks workspace on 127.0.0.1: secrets, workspace files, clusters, jobs and runs.

Wire shapes follow databricks-sdk's dataclasses (requests are parsed with ``from_dict`` to reject
what the SDK would not send, but stored as the raw JSON, so unknown fields survive). Error bodies,
codes and messages follow what the real service returns where it is known (see the test module
for the sources). Job runs really execute notebook tasks: see ``databricks_notebook.py``.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from databricks.sdk.service import iam, jobs

from tests.emulators.base import Emulator, HttpError, Request, Response
from tests.emulators.databricks_dbt_platform import DbtPlatformEmulation
from tests.emulators.databricks_permissions import WorkspacePermissions

NOTEBOOK_SCRIPT = Path(__file__).with_name("databricks_notebook.py")
WORKSPACE_ID = "6051921418418893"
NAME_PATTERN = re.compile(r"[A-Za-z0-9_.\-]{1,128}")  # secret keys
# Scope names may also hold "@", and are compared case-insensitively (docs.databricks.com,
# security/secrets/workspace-secret-scopes: "consist of alphanumeric characters, dashes,
# underscores, @, and periods ... Secret scope names are case insensitive").
SCOPE_NAME_PATTERN = re.compile(r"[A-Za-z0-9_.@\-]{1,128}")
# task_key: "[ 1 .. 100 ] characters ^[\w\-\_]+$" (docs.databricks.com/api/workspace/jobs/getrun), an
# OpenAPI (ECMA-262) pattern whose \w is ASCII; Python's \w would also take "é".
TASK_KEY_PATTERN = re.compile(r"[\w\-]{1,100}", re.ASCII)
SECRET_VALUE_MAX_BYTES = 128 * 1024
ARRAY_PAGE_SIZE = 100  # jobs/get and runs/get (API 2.2) page their arrays at 100 elements
PAGED_JOB_ARRAYS = ("tasks", "job_clusters", "parameters", "environments")
PERMISSION_RANK = {"READ": 1, "WRITE": 2, "MANAGE": 3}
TASK_FAILED_MESSAGE = "Workload failed, see run output for details"  # measured on a real workspace
# A queued run's state_message; the wording is the emulator's own (unverified), the code
# MAX_CONCURRENT_RUNS_REACHED in status.queue_details is the SDK's QueueDetailsCodeCode.
QUEUED_MESSAGE = "Queued: the job already has {limit} active run(s), its limit of maximum concurrent runs."
NOTEBOOK_HEADER = "# Databricks notebook source"
FILE_EXTENSIONS = {".py": "PYTHON", ".sql": "SQL", ".scala": "SCALA", ".r": "R"}
SOURCE_EXTENSIONS = {"PYTHON": "py", "SQL": "sql", "SCALA": "scala", "R": "r"}
COMMENT_PREFIX = {"PYTHON": "#", "R": "#", "SQL": "--", "SCALA": "//"}


_clock_lock = threading.Lock()
_last_ms = 0


def _now_ms() -> int:
    """Wall-clock milliseconds, strictly increasing: two writes never share a timestamp here,
    as two writes by people or runs seconds apart never do on a real workspace (secrets/list's
    last_updated_timestamp and get-status's modified_at are what tell them apart)."""
    global _last_ms
    with _clock_lock:
        _last_ms = max(int(time.time() * 1000), _last_ms + 1)
        return _last_ms


def _invalid(message: str) -> HttpError:
    return HttpError(400, "INVALID_PARAMETER_VALUE", message)


def _not_found(message: str, status: int = 404) -> HttpError:
    return HttpError(status, "RESOURCE_DOES_NOT_EXIST", message)


def _parse(dataclass_type: Any, body: dict[str, Any]) -> Any:
    """Reject a body the SDK's own dataclass cannot read (a malformed request)."""
    try:
        return dataclass_type.from_dict(body)
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        raise HttpError(400, "MALFORMED_REQUEST", f"Could not parse request object: {exc}") from None


def _required(body: dict[str, Any], name: str) -> Any:
    value = body.get(name)
    if value is None or value == "":
        raise _invalid(f"Missing required field: {name}")
    return value


def _int_arg(value: Any, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _invalid(f"Invalid value for {name}: {value!r}") from None


def _truthy(value: str | None) -> bool:
    return (value or "").lower() == "true"


# -- workspace -----------------------------------------------------------------------


@dataclass
class WorkspaceObject:
    object_type: str  # DIRECTORY / NOTEBOOK / FILE
    object_id: int
    created_at: int
    modified_at: int
    language: str | None = None
    content: bytes = b""

    def info(self, path: str) -> dict[str, Any]:
        info: dict[str, Any] = {
            "object_type": self.object_type,
            "path": path,
            "object_id": self.object_id,
            "resource_id": str(self.object_id),
        }
        if self.object_type != "DIRECTORY":
            info.update(created_at=self.created_at, modified_at=self.modified_at, size=len(self.content))
        if self.language:
            info["language"] = self.language
        return info


def normalize_workspace_path(path: str) -> str:
    """`/Workspace/Shared/x` and `/Shared/x` name the same object, as on a real workspace."""
    if not path.startswith("/"):
        raise _invalid(f"Path ({path}) must be absolute.")
    parts = [part for part in path.split("/") if part]
    if parts and parts[0] == "Workspace":
        parts = parts[1:]
    return "/" + "/".join(parts)


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0] or "/"


# -- runs ------------------------------------------------------------------------------


@dataclass
class TaskRun:
    task_key: str
    run_id: int
    settings: dict[str, Any]
    attempt_number: int = 0
    life_cycle_state: str = "PENDING"
    result_state: str | None = None
    state_message: str = ""
    start_time: int = 0
    end_time: int = 0
    output: list[bytes] = field(default_factory=list)  # captured stdout + stderr, as raw chunks
    output_grew: threading.Condition = field(default_factory=threading.Condition)
    exit_value: str | None = None
    error: str | None = None
    error_trace: str | None = None
    values: dict[str, str] = field(default_factory=dict)  # dbutils.jobs.taskValues, JSON-encoded
    parameters: dict[str, str] = field(default_factory=dict)
    secrets_read: set[str] = field(default_factory=set)  # redacted from output, as Databricks does
    process: subprocess.Popen[bytes] | None = None

    @property
    def is_terminal(self) -> bool:
        return self.life_cycle_state in ("TERMINATED", "INTERNAL_ERROR", "SKIPPED")


@dataclass
class JobRun:
    run_id: int
    job_id: int
    number_in_job: int
    creator_user_name: str
    run_as: str
    settings: dict[str, Any]  # a snapshot of the job when the run started
    job_parameters: dict[str, str]
    overriding_parameters: dict[str, Any]
    tasks: list[TaskRun]
    start_time: int
    life_cycle_state: str = "PENDING"
    result_state: str | None = None
    state_message: str = ""
    end_time: int = 0
    cancel_requested: bool = False
    done: threading.Event = field(default_factory=threading.Event)
    #: When the run entered and left the queue (ms); 0 when it never queued / is still queued.
    queued_at: int = 0
    dequeued_at: int = 0

    @property
    def is_terminal(self) -> bool:
        return self.life_cycle_state in ("TERMINATED", "INTERNAL_ERROR", "SKIPPED")


RUN_IF_CONDITIONS: dict[str, Callable[[list[str]], bool]] = {
    "ALL_SUCCESS": lambda results: all(r == "SUCCESS" for r in results),
    "AT_LEAST_ONE_SUCCESS": lambda results: any(r == "SUCCESS" for r in results),
    "NONE_FAILED": lambda results: not any(r in ("FAILED", "UPSTREAM_FAILED") for r in results),
    "ALL_DONE": lambda results: True,
    "AT_LEAST_ONE_FAILED": lambda results: any(r in ("FAILED", "UPSTREAM_FAILED") for r in results),
    "ALL_FAILED": lambda results: all(r in ("FAILED", "UPSTREAM_FAILED") for r in results),
}


class DatabricksEmulator(Emulator, WorkspacePermissions, DbtPlatformEmulation):
    public_paths = (r"/\.well-known/databricks-config", r"/oidc/\.well-known/oauth-authorization-server")

    #: Seconds between SIGINT and SIGKILL when a run is cancelled.
    cancel_grace_seconds: float = 5.0

    def __init__(
        self,
        port: int = 0,
        token: str = "dapi-emulator-token",  # noqa: S107 - a test credential
        seed: int = 0,
        python_executable: str | None = None,
        user_name: str = "emulator-user@example.com",
        host_metadata: bool = True,
        latency_ms: float = 0.0,
    ) -> None:
        super().__init__(port=port, seed=seed, latency_ms=latency_ms)
        self.seed = seed
        #: Whether `/.well-known/databricks-config` answers (some real hosts answer 404);
        #: reset() restores this constructor's choice.
        self.host_metadata_default = host_metadata
        self.token = token
        self.user_name = user_name
        self.python_executable = python_executable or sys.executable
        self._define_routes()
        self._clear_state()

    # -- test-facing API ----------------------------------------------------------------
    def reset(self) -> None:
        """Forget everything: state, tokens added by tests, faults and the request log."""
        self._kill_all_runs()
        with self.state_lock:
            self._clear_state()
        self.faults.clear()
        self.faults.seed(self.seed)
        self.reset_latency()
        self.reset_log()

    def stop(self) -> None:
        self._kill_all_runs()
        super().stop()

    def add_user(self, token: str, user_name: str, admin: bool = False) -> None:
        """Another principal with its own PAT (for ACL tests)."""
        with self.state_lock:
            self._users[token] = user_name
            if admin:
                self._admins.add(user_name)
            self._make_home(user_name)

    def add_cluster(self, cluster_id: str, state: str = "RUNNING", name: str | None = None) -> None:
        with self.state_lock:
            self._clusters[cluster_id] = {
                "cluster_id": cluster_id,
                "cluster_name": name or f"cluster-{cluster_id}",
                "state": state,
                "spark_version": "15.4.x-scala2.12",
                "node_type_id": "i3.xlarge",
                "num_workers": 1,
                "creator_user_name": self.user_name,
                "cluster_source": "UI",
                "state_message": "",
            }

    def secret_value(self, scope: str, key: str) -> str | None:
        with self.state_lock:
            stored = self._secrets.get(scope.casefold(), {}).get(key)
            return None if stored is None else stored[0].decode("utf-8", errors="replace")

    def workspace_file(self, path: str) -> bytes | None:
        with self.state_lock:
            found = self._workspace.get(normalize_workspace_path(path))
            return None if found is None or found.object_type == "DIRECTORY" else found.content

    @property
    def jobs(self) -> dict[int, dict[str, Any]]:
        with self.state_lock:
            return {job_id: copy.deepcopy(job) for job_id, job in self._jobs.items()}

    def task_output(self, run_id: int, task_key: str) -> str:
        """What the task's notebook printed (stdout and stderr)."""
        with self.state_lock:
            task = self._task(run_id, task_key)
            return self._redact(task, b"".join(task.output).decode("utf-8", errors="replace"))

    def wait_for_output(self, run_id: int, task_key: str, text: str, timeout: float = 10) -> None:
        """Block until the task's notebook has printed `text` (woken by each chunk it prints)."""
        task = self.task_run(run_id, task_key)

        def printed() -> bool:
            return text in self._redact(task, b"".join(task.output).decode("utf-8", errors="replace"))

        with task.output_grew:
            if not task.output_grew.wait_for(printed, timeout):
                raise TimeoutError(f"Task {task_key} of run {run_id} did not print {text!r} in {timeout} s")

    @staticmethod
    def _redact(task: TaskRun, text: str) -> str:
        for value in sorted(task.secrets_read, key=len, reverse=True):
            text = text.replace(value, "[REDACTED]")
        return text

    def task_run(self, run_id: int, task_key: str) -> TaskRun:
        with self.state_lock:
            return self._task(run_id, task_key)

    def wait_for_run(self, run_id: int, timeout: float = 60) -> dict[str, Any]:
        with self.state_lock:
            run = self._runs.get(run_id)
        if run is None:
            raise KeyError(f"Run {run_id} does not exist")
        if not run.done.wait(timeout):
            raise TimeoutError(f"Run {run_id} did not finish in {timeout} s")
        with self.state_lock:
            return self._run_json(run, api_version="2.1")

    def wait_for_all_runs(self, timeout: float = 60) -> None:
        """Block until every run started so far has finished: a poll loop's sleep that costs only
        the runs' own time."""
        with self.state_lock:
            runs = list(self._runs.values())
        for run in runs:
            if not run.done.wait(timeout):
                raise TimeoutError(f"Run {run.run_id} did not finish in {timeout} s")

    # -- state ----------------------------------------------------------------------------
    def _clear_state(self) -> None:
        self.serverless_enabled = True
        self.host_metadata = self.host_metadata_default
        self.premium_tier = True
        self._users: dict[str, str] = {self.token: self.user_name}
        self._admins: set[str] = set()
        self._user_ids: dict[str, int] = {}
        self._scopes: dict[str, dict[str, Any]] = {}
        self._secrets: dict[str, dict[str, tuple[bytes, int]]] = {}
        self._acls: dict[str, dict[str, str]] = {}
        self._clusters: dict[str, dict[str, Any]] = {}
        self._jobs: dict[int, dict[str, Any]] = {}
        self._runs: dict[int, JobRun] = {}
        self._idempotency: dict[str, int] = {}
        self._next_id = 1000
        self._next_job_id = 100
        self._workspace: dict[str, WorkspaceObject] = {}
        for path in ("/", "/Shared", "/Users", f"/Users/{self.user_name}", "/Repos"):
            self._mkdir(path)
        self._clear_permissions(self.user_name)
        self._clear_connections()

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _kill_all_runs(self) -> None:
        with self.state_lock:
            runs = list(self._runs.values())
            for run in runs:
                if run.life_cycle_state == "QUEUED":
                    self._cancel_queued(run)
                run.cancel_requested = True
            processes = [t.process for run in runs for t in run.tasks if t.process is not None]
        for process in processes:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        for run in runs:
            run.done.wait(10)

    # -- auth and errors --------------------------------------------------------------
    def authenticate(self, request: Request) -> None:
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer ") or not header[7:].strip():
            # Observed bodies carry a numeric error_code and a request id.
            raise HttpError(
                401,
                "401",
                "Credential was not sent or was of an unsupported type for this API. "
                f"[ReqId: {uuid.uuid4()}]",
            )
        if header[7:].strip() not in self._users:
            raise HttpError(403, "403", "Invalid access token.")

    def error_response(self, error: HttpError) -> Response:
        code: int | str = int(error.code) if error.code.isdigit() else error.code
        return Response(error.status, {"error_code": code, "message": error.message}, error.headers)

    def _caller(self, request: Request) -> str:
        header = request.headers.get("authorization", "")
        return self._users.get(header[7:].strip(), self.user_name)

    # -- routes ----------------------------------------------------------------------------
    def _define_routes(self) -> None:
        route = self.route
        route("GET", r"/\.well-known/databricks-config", self._host_metadata)
        route("GET", r"/oidc/\.well-known/oauth-authorization-server", self._oidc_metadata)
        route("GET", r"/api/2\.0/preview/scim/v2/Me", self._me)
        route("GET", r"/api/2\.[01]/clusters/get", self._clusters_get)
        route("GET", r"/api/2\.[01]/clusters/list", self._clusters_list)
        secrets = r"/api/2\.0/secrets"
        route("POST", secrets + "/scopes/create", self._scope_create)
        route("GET", secrets + "/scopes/list", self._scope_list)
        route("POST", secrets + "/scopes/delete", self._scope_delete)
        route("POST", secrets + "/put", self._secret_put)
        route("GET", secrets + "/list", self._secret_list)
        route("POST", secrets + "/delete", self._secret_delete)
        route("GET", secrets + "/get", self._secret_get)
        route("POST", secrets + "/acls/put", self._acl_put)
        route("GET", secrets + "/acls/get", self._acl_get)
        route("GET", secrets + "/acls/list", self._acl_list)
        route("POST", secrets + "/acls/delete", self._acl_delete)
        ws = r"/api/2\.0/workspace"
        route("POST", ws + "/mkdirs", self._ws_mkdirs)
        route("POST", ws + "/import", self._ws_import)
        route("GET", ws + "/export", self._ws_export)
        route("GET", ws + "/get-status", self._ws_get_status)
        route("GET", ws + "/list", self._ws_list)
        route("POST", ws + "/delete", self._ws_delete)
        self._define_permission_routes()
        self._define_connection_routes()
        j = r"/api/(?P<version>2\.[12])/jobs"
        route("POST", j + "/create", self._job_create)
        route("GET", j + "/get", self._job_get)
        route("GET", j + "/list", self._job_list)
        route("POST", j + "/update", self._job_update)
        route("POST", j + "/reset", self._job_reset)
        route("POST", j + "/delete", self._job_delete)
        route("POST", j + "/run-now", self._run_now)
        route("GET", j + "/runs/get", self._run_get)
        route("GET", j + "/runs/list", self._run_list)
        route("POST", j + "/runs/cancel", self._run_cancel)
        route("GET", j + "/runs/get-output", self._run_get_output)

    # -- identity, clusters -----------------------------------------------------------------
    def _host_metadata(self, request: Request) -> dict[str, Any]:
        # What a workspace host answers (the SDK reads it at start-up); PAT auth ignores the OIDC part.
        if not self.host_metadata:
            # Some hosts have no such endpoint; the SDK then warns and falls back (unverified body).
            raise HttpError(404, "ENDPOINT_NOT_FOUND", f"No API found for '{request.path}'")
        return {"oidc_endpoint": f"{self.url}/oidc", "workspace_id": WORKSPACE_ID}

    def _oidc_metadata(self, request: Request) -> dict[str, Any]:
        return {
            "authorization_endpoint": f"{self.url}/oidc/v1/authorize",
            "token_endpoint": f"{self.url}/oidc/v1/token",
        }

    def _user_id(self, user_name: str) -> int:
        return self._user_ids.setdefault(user_name, 7000000000000000 + len(self._user_ids) + 1)

    def _me(self, request: Request) -> dict[str, Any]:
        user_name = self._caller(request)
        groups = [{"display": "users", "type": "direct", "value": "1000"}]
        if user_name in self._admins:
            groups.append({"display": "admins", "type": "direct", "value": "1001"})
        body = {
            "id": str(self._user_id(user_name)),
            "userName": user_name,
            "displayName": user_name.split("@")[0],
            "active": True,
            "emails": [{"value": user_name, "type": "work", "primary": True}],
            "groups": groups,
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        }
        _parse(iam.User, body)
        return body

    def _clusters_get(self, request: Request) -> dict[str, Any]:
        cluster_id = request.arg("cluster_id") or ""
        cluster = self._clusters.get(cluster_id)
        if cluster is None:
            raise _invalid(f"Cluster {cluster_id} does not exist")
        return copy.deepcopy(cluster)

    def _clusters_list(self, request: Request) -> dict[str, Any]:
        return {"clusters": [copy.deepcopy(c) for c in self._clusters.values()]} if self._clusters else {}

    # -- secrets -----------------------------------------------------------------------------
    def _check_name(self, kind: str, name: Any) -> str:
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            raise _invalid(
                f"{kind} name can only contain alphanumeric characters, dashes, underscores, and periods, "
                "and may not exceed 128 characters."
            )
        return name

    @staticmethod
    def _check_scope_name(name: Any) -> str:
        if not isinstance(name, str) or not SCOPE_NAME_PATTERN.fullmatch(name):
            raise _invalid(
                "Scope name can only contain alphanumeric characters, dashes, underscores, @, and periods, "
                "and may not exceed 128 characters."
            )
        return name

    def _scope(self, scope: Any) -> str:
        """The stored key of an existing scope (its name case-folded: names are case-insensitive)."""
        if not isinstance(scope, str) or scope.casefold() not in self._scopes:
            raise _not_found(f"Scope {scope} does not exist!")
        return scope.casefold()

    def _permission(self, scope: str, principal: str) -> int:
        if principal in self._admins:
            return PERMISSION_RANK["MANAGE"]
        acls = self._acls.get(scope, {})
        return max(
            PERMISSION_RANK.get(acls.get(principal, ""), 0), PERMISSION_RANK.get(acls.get("users", ""), 0)
        )

    def _require(self, scope: str, principal: str, permission: str) -> None:
        if self._permission(scope, principal) < PERMISSION_RANK[permission]:
            raise HttpError(
                403,
                "PERMISSION_DENIED",
                f"User {principal} does not have {permission} permission on scope "
                f"{self._scopes.get(scope, {}).get('name', scope)}",
            )

    def _scope_create(self, request: Request) -> None:
        body = request.json()
        name = self._check_scope_name(_required(body, "scope"))
        principal = body.get("initial_manage_principal")
        if principal not in (None, "", "users") and not isinstance(principal, str):
            raise _invalid("initial_manage_principal must be a string")
        if not self.premium_tier and principal != "users":
            raise _invalid(
                "Premium Tier is disabled in this workspace. Secret scopes can only be created with "
                'initial_manage_principal "users".'
            )
        backend = body.get("scope_backend_type") or "DATABRICKS"
        if backend != "DATABRICKS":
            raise _invalid("Only DATABRICKS-backed scopes can be created in this workspace emulator.")
        stored = name.casefold()  # "Dev" and "dev" are one scope; it keeps the name it was created with
        if stored in self._scopes:
            raise HttpError(400, "RESOURCE_ALREADY_EXISTS", f"Scope {name} already exists!")
        self._scopes[stored] = {"name": name, "backend_type": backend}
        self._secrets[stored] = {}
        owner = principal or self._caller(request)
        self._acls[stored] = {owner: "MANAGE"}

    def _scope_list(self, request: Request) -> dict[str, Any]:
        scopes = [dict(s) for s in sorted(self._scopes.values(), key=lambda s: s["name"])]
        return {"scopes": scopes} if scopes else {}

    def _scope_delete(self, request: Request) -> None:
        body = request.json()
        scope = self._scope(_required(body, "scope"))
        self._require(scope, self._caller(request), "MANAGE")
        del self._scopes[scope], self._secrets[scope], self._acls[scope]

    def _secret_put(self, request: Request) -> None:
        body = request.json()
        scope = self._scope(_required(body, "scope"))
        key = self._check_name("Secret key", _required(body, "key"))
        string_value, bytes_value = body.get("string_value"), body.get("bytes_value")
        if (string_value is None) == (bytes_value is None):
            raise _invalid("Exactly one of string_value or bytes_value must be specified.")
        if string_value is not None:
            value = str(string_value).encode()
        else:
            try:
                value = base64.b64decode(str(bytes_value), validate=True)
            except ValueError:
                raise _invalid("bytes_value must be base64-encoded") from None
        if len(value) > SECRET_VALUE_MAX_BYTES:
            raise _invalid(f"Size of secret value exceeds the limit of {SECRET_VALUE_MAX_BYTES} bytes.")
        self._require(scope, self._caller(request), "WRITE")
        self._secrets[scope][key] = (value, _now_ms())

    def _secret_list(self, request: Request) -> dict[str, Any]:
        scope = self._scope(request.arg("scope"))
        self._require(scope, self._caller(request), "READ")
        items = sorted(self._secrets[scope].items())
        secrets = [{"key": key, "last_updated_timestamp": stamp} for key, (_, stamp) in items]
        return {"secrets": secrets} if secrets else {}

    def _secret_delete(self, request: Request) -> None:
        body = request.json()
        scope = self._scope(_required(body, "scope"))
        key = _required(body, "key")
        self._require(scope, self._caller(request), "WRITE")
        if key not in self._secrets[scope]:
            raise _not_found(f"Secret {key} does not exist in scope {scope}!")
        del self._secrets[scope][key]

    def _read_secret(self, scope_name: str, key: str, principal: str) -> bytes:
        scope = self._scope(scope_name)
        self._require(scope, principal, "READ")
        stored = self._secrets[scope].get(key)
        if stored is None:
            raise _not_found(f"Failed to get secret {key} for scope {scope}.")
        return stored[0]

    def _secret_get(self, request: Request) -> dict[str, Any]:
        key = request.arg("key") or ""
        value = self._read_secret(request.arg("scope") or "", key, self._caller(request))
        return {"key": key, "value": base64.b64encode(value).decode()}

    def _acl_put(self, request: Request) -> None:
        body = request.json()
        scope = self._scope(_required(body, "scope"))
        principal = _required(body, "principal")
        permission = _required(body, "permission")
        if permission not in PERMISSION_RANK:
            raise _invalid(f"Invalid permission {permission}. Valid values: READ, WRITE, MANAGE.")
        self._require(scope, self._caller(request), "MANAGE")
        self._acls[scope][principal] = permission

    def _acl_get(self, request: Request) -> dict[str, Any]:
        scope = self._scope(request.arg("scope"))
        self._require(scope, self._caller(request), "MANAGE")
        principal = request.arg("principal") or ""
        permission = self._acls[scope].get(principal)
        if permission is None:
            raise _not_found(f"Failed to get secret ACL for principal {principal} for scope {scope}.")
        return {"principal": principal, "permission": permission}

    def _acl_list(self, request: Request) -> dict[str, Any]:
        scope = self._scope(request.arg("scope"))
        self._require(scope, self._caller(request), "MANAGE")
        items = [{"principal": p, "permission": perm} for p, perm in sorted(self._acls[scope].items())]
        return {"items": items} if items else {}

    def _acl_delete(self, request: Request) -> None:
        body = request.json()
        scope = self._scope(_required(body, "scope"))
        principal = _required(body, "principal")
        self._require(scope, self._caller(request), "MANAGE")
        if principal not in self._acls[scope]:
            raise _not_found(f"Failed to delete secret ACL for principal {principal} for scope {scope}.")
        del self._acls[scope][principal]

    # -- workspace ---------------------------------------------------------------------------
    def _mkdir(self, path: str) -> None:
        now = _now_ms()
        self._workspace[path] = WorkspaceObject("DIRECTORY", self._new_id(), now, now)

    def _ws_object(self, path: str) -> WorkspaceObject:
        found = self._workspace.get(path)
        if found is None:
            raise _not_found(f"Path ({path}) doesn't exist.")
        return found

    def _ws_mkdirs(self, request: Request) -> None:
        path = normalize_workspace_path(_required(request.json(), "path"))
        parts = [part for part in path.split("/") if part]
        for depth in range(1, len(parts) + 1):
            prefix = "/" + "/".join(parts[:depth])
            existing = self._workspace.get(prefix)
            if existing is None:
                self._check_create(prefix, self._caller(request))
                self._mkdir(prefix)
                self._created(prefix, self._caller(request))
            elif existing.object_type != "DIRECTORY":
                raise HttpError(
                    400,
                    "RESOURCE_ALREADY_EXISTS",
                    f"Cannot create directory {path}: {prefix} is not a directory.",
                )

    def _ws_import(self, request: Request) -> None:
        body = request.json()
        path = normalize_workspace_path(_required(body, "path"))
        fmt = body.get("format") or "SOURCE"
        language = body.get("language")
        try:
            content = base64.b64decode(body.get("content") or "", validate=True)
        except ValueError:
            raise HttpError(400, "MALFORMED_REQUEST", "content must be base64-encoded") from None
        suffix = Path(path).suffix.lower()
        if fmt == "AUTO":
            if suffix in FILE_EXTENSIONS and content.lstrip().startswith(
                (NOTEBOOK_HEADER.encode(), b"-- Databricks notebook source", b"// Databricks notebook source")
            ):
                object_type, language, path = "NOTEBOOK", FILE_EXTENSIONS[suffix], path[: -len(suffix)]
            else:
                object_type, language = "FILE", None
        elif fmt == "RAW":
            object_type, language = "FILE", None
        elif fmt == "SOURCE":
            if not language:
                if suffix not in FILE_EXTENSIONS:
                    raise _invalid("The language must be specified for format SOURCE.")
                language, path = FILE_EXTENSIONS[suffix], path[: -len(suffix)]
            object_type = "NOTEBOOK"
        else:
            raise _invalid(f"Import format {fmt} is not supported by the emulator (use SOURCE, AUTO or RAW).")
        if object_type == "NOTEBOOK" and language not in SOURCE_EXTENSIONS:
            raise _invalid(f"Invalid language {language}.")
        parent = self._workspace.get(_parent(path))
        if parent is None:
            raise _not_found(f"The parent folder ({_parent(path)}) does not exist.")
        if parent.object_type != "DIRECTORY":
            raise _invalid(f"The parent ({_parent(path)}) is not a directory.")
        existing = self._workspace.get(path)
        if existing is not None and (existing.object_type == "DIRECTORY" or not body.get("overwrite")):
            raise HttpError(400, "RESOURCE_ALREADY_EXISTS", f"Path ({path}) already exists.")
        if existing is None:
            self._check_create(path, self._caller(request))
        else:
            self._require_level(path, self._caller(request), "CAN_EDIT")
        if object_type == "NOTEBOOK" and language:
            header = f"{COMMENT_PREFIX[language]} Databricks notebook source"
            text = content.decode("utf-8", errors="replace")
            if not text.startswith(header):
                content = (header + "\n" + text).encode()
        now = _now_ms()
        object_id = existing.object_id if existing is not None else self._new_id()
        created = existing.created_at if existing is not None else now
        self._workspace[path] = WorkspaceObject(object_type, object_id, created, now, language, content)
        if existing is None:
            self._created(path, self._caller(request))

    def _ws_export(self, request: Request) -> Response | dict[str, Any]:
        path = normalize_workspace_path(request.arg("path") or "")
        found = self._ws_object(path)
        self._require_level(path, self._caller(request), "CAN_READ")
        fmt = request.arg("format") or "SOURCE"
        if found.object_type == "DIRECTORY":
            raise _invalid(f"Cannot export a directory ({path}) in {fmt} format; use DBC or AUTO.")
        if fmt not in ("SOURCE", "AUTO", "RAW"):
            raise _invalid(f"Export format {fmt} is not supported by the emulator.")
        if _truthy(request.arg("direct_download")):
            return Response(200, found.content, {"Content-Type": "application/octet-stream"})
        file_type = SOURCE_EXTENSIONS.get(found.language or "", "") or Path(path).suffix.lstrip(".")
        return {"content": base64.b64encode(found.content).decode(), "file_type": file_type}

    def _ws_get_status(self, request: Request) -> dict[str, Any]:
        path = normalize_workspace_path(request.arg("path") or "")
        return self._ws_object(path).info(path)

    def _children(self, path: str) -> list[str]:
        prefix = path.rstrip("/") + "/"
        return sorted(
            p for p in self._workspace if p != path and p.startswith(prefix) and "/" not in p[len(prefix) :]
        )

    def _ws_list(self, request: Request) -> dict[str, Any]:
        path = normalize_workspace_path(request.arg("path") or "")
        found = self._ws_object(path)
        if found.object_type != "DIRECTORY":
            return {"objects": [found.info(path)]}
        objects = [self._workspace[child].info(child) for child in self._children(path)]
        return {"objects": objects} if objects else {}

    def _ws_delete(self, request: Request) -> None:
        body = request.json()
        path = normalize_workspace_path(_required(body, "path"))
        found = self._ws_object(path)
        if found.object_type == "DIRECTORY" and self._children(path) and not body.get("recursive"):
            raise HttpError(400, "DIRECTORY_NOT_EMPTY", f"Folder ({path}) is not empty.")
        if path == "/":
            raise _invalid("Cannot delete the root folder.")
        self._require_level(path, self._caller(request), "CAN_EDIT")
        self._forget(path)
        prefix = path.rstrip("/") + "/"
        for candidate in [p for p in self._workspace if p == path or p.startswith(prefix)]:
            del self._workspace[candidate]

    # -- jobs ----------------------------------------------------------------------------
    def _job(self, job_id: Any) -> dict[str, Any]:
        job = self._jobs.get(_int_arg(job_id, "job_id")) if job_id is not None else None
        if job is None:
            # The real Jobs API answers 400 INVALID_PARAMETER_VALUE here; the SDK maps it to NotFound.
            raise _invalid(f"Job {job_id} does not exist.")
        return job

    def _with_defaults(self, settings: dict[str, Any]) -> dict[str, Any]:
        """The defaults a real workspace fills in and returns from jobs/get."""
        settings = copy.deepcopy(settings)
        settings.setdefault("name", "Untitled")
        settings.setdefault("email_notifications", {})
        settings.setdefault("webhook_notifications", {})
        settings.setdefault("timeout_seconds", 0)
        settings.setdefault("max_concurrent_runs", 1)
        settings.setdefault("format", "MULTI_TASK")
        for task in settings.get("tasks") or []:
            task.setdefault("email_notifications", {})
            task.setdefault("timeout_seconds", 0)
            task.setdefault("run_if", "ALL_SUCCESS")
            if "notebook_task" in task:
                task["notebook_task"].setdefault("source", "WORKSPACE")
        return settings

    def _validate_settings(self, settings: dict[str, Any]) -> None:
        _parse(jobs.JobSettings, settings)
        tasks = settings.get("tasks") or []
        keys: set[str] = set()
        cluster_keys = {c.get("job_cluster_key") for c in settings.get("job_clusters") or []}
        for task in tasks:
            key = task.get("task_key")
            if not key:
                raise _invalid("Missing required field: task_key")
            if not isinstance(key, str) or not TASK_KEY_PATTERN.fullmatch(key):
                raise _invalid(f"Invalid task_key {key!r}: at most 100 letters, digits, '-' and '_'.")
            if key in keys:
                raise _invalid(f"Task key '{key}' is not unique. Task keys must be unique within a job.")
            keys.add(key)
        for task in tasks:
            for dependency in task.get("depends_on") or []:
                if dependency.get("task_key") not in keys:
                    raise _invalid(
                        f"Invalid dependency graph, task '{task['task_key']}' depends on "
                        f"'{dependency.get('task_key')}', which was not found."
                    )
            notebook = task.get("notebook_task")
            if notebook is not None:
                path = notebook.get("notebook_path")
                if not path:
                    raise _invalid("Missing required field: notebook_path")
                if notebook.get("source", "WORKSPACE") == "WORKSPACE" and not str(path).startswith("/"):
                    raise _invalid(
                        f"Invalid notebook_path: {path}. Only absolute paths are currently supported. "
                        "Paths must begin with '/'."
                    )
            cluster_key = task.get("job_cluster_key")
            if cluster_key is not None and cluster_key not in cluster_keys:
                raise _invalid(
                    f"Task {task['task_key']} uses job_cluster_key {cluster_key}, which is not defined."
                )
            self._validate_platform_task(task)
            if (
                not self.serverless_enabled
                and not self._has_compute(task)
                and "dbt_platform_task" not in task
            ):
                raise _invalid(
                    "One of job_cluster_key, new_cluster, or existing_cluster_id must be specified."
                )
        self._topological_order(tasks)

    @staticmethod
    def _has_compute(task: dict[str, Any]) -> bool:
        return any(task.get(k) for k in ("existing_cluster_id", "job_cluster_key", "new_cluster"))

    @staticmethod
    def _topological_order(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        remaining = {t["task_key"]: t for t in tasks}
        done: set[str] = set()
        order: list[dict[str, Any]] = []
        while remaining:
            ready = [
                t
                for t in remaining.values()
                if all(d.get("task_key") in done for d in t.get("depends_on") or [])
            ]
            if not ready:
                raise _invalid(f"Invalid dependency graph: a cycle among tasks {sorted(remaining)}.")
            for task in ready:  # keeps the declared order among tasks that are ready together
                order.append(task)
                done.add(task["task_key"])
                del remaining[task["task_key"]]
        return order

    def _job_create(self, request: Request) -> dict[str, Any]:
        body = request.json()
        settings = {k: v for k, v in body.items() if k != "access_control_list"}
        self._validate_settings(settings)
        self._next_job_id += 1
        job_id = self._next_job_id * 1000 + 7  # real ids are large and not consecutive
        creator = self._caller(request)
        run_as = settings.get("run_as") or {}
        if request.params["version"] == "2.2" and settings.get("queue") is None:
            # "For jobs created with the Jobs API 2.2, queueing is enabled by default"
            # (docs.databricks.com/jobs/jobs-api-updates, "Jobs are queued by default").
            settings["queue"] = {"enabled": True}
        self._jobs[job_id] = {
            "job_id": job_id,
            "creator_user_name": creator,
            "run_as_user_name": run_as.get("user_name") or run_as.get("service_principal_name") or creator,
            "created_time": _now_ms(),
            "settings": self._with_defaults(settings),
        }
        return {"job_id": job_id}

    @staticmethod
    def _run_as_name(job: dict[str, Any]) -> str:
        """Who the job runs as: settings.run_as (changed by update/reset too), else its creator."""
        run_as = job["settings"].get("run_as") or {}
        return str(
            run_as.get("user_name")
            or run_as.get("service_principal_name")
            or run_as.get("group_name")
            or job["creator_user_name"]
        )

    def _paged_arrays(
        self, source: dict[str, Any], names: tuple[str, ...], offset: int
    ) -> tuple[dict[str, Any], int | None]:
        """Cut `source`'s arrays to one page; returns the next offset when any array has more."""
        paged = dict(source)
        more = False
        for name in names:
            items = source.get(name) or []
            if len(items) > ARRAY_PAGE_SIZE or offset:
                paged[name] = items[offset : offset + ARRAY_PAGE_SIZE]
            more = more or len(items) > offset + ARRAY_PAGE_SIZE
        return paged, (offset + ARRAY_PAGE_SIZE if more else None)

    def _offset_token(self, token: str | None) -> int:
        if not token:
            return 0
        try:
            offset = int(base64.urlsafe_b64decode(token.encode()).decode().removeprefix("offset:"))
        except ValueError:
            raise _invalid(f"Invalid page_token: {token}") from None
        return offset

    @staticmethod
    def _make_token(offset: int) -> str:
        return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()

    def _page_window(self, request: Request, default_limit: int, max_limit: int) -> tuple[int, int]:
        """(offset, limit) of a list call; a page_token wins over an offset."""
        limit = _int_arg(request.arg("limit") or default_limit, "limit")
        if not 1 <= limit <= max_limit:
            raise _invalid(f"The limit must be between 1 and {max_limit}.")
        offset = self._offset_token(request.arg("page_token")) or _int_arg(
            request.arg("offset") or 0, "offset"
        )
        return offset, limit

    def _list_page(
        self, name: str, page: list[dict[str, Any]], total: int, offset: int, limit: int
    ) -> dict[str, Any]:
        """A list answer: has_more always, the array only when not empty, a token to the next page."""
        result: dict[str, Any] = {"has_more": total > offset + limit}
        if page:
            result[name] = page
        if result["has_more"]:
            result["next_page_token"] = self._make_token(offset + limit)
        return result

    def _job_get(self, request: Request) -> dict[str, Any]:
        job = copy.deepcopy(self._job(request.arg("job_id")))
        if request.params["version"] == "2.1":
            return job  # API 2.1 returns whole arrays
        offset = self._offset_token(request.arg("page_token"))
        job["settings"], next_offset = self._paged_arrays(job["settings"], PAGED_JOB_ARRAYS, offset)
        if next_offset is not None:
            job["next_page_token"] = self._make_token(next_offset)
        return job

    def _job_list(self, request: Request) -> dict[str, Any]:
        name = request.arg("name")
        expand = _truthy(request.arg("expand_tasks"))
        offset, limit = self._page_window(request, default_limit=20, max_limit=100)
        matching = [
            job
            for job_id, job in sorted(self._jobs.items())
            if name is None or job["settings"].get("name", "").lower() == name.lower()
        ]
        page = []
        for job in matching[offset : offset + limit]:
            listed = copy.deepcopy(job)
            listed.pop("run_as_user_name")  # jobs/get has it, jobs/list (BaseJob) does not
            settings = listed["settings"]
            if not expand:
                for array in ("tasks", "job_clusters"):
                    settings.pop(array, None)
            elif request.params["version"] == "2.2":
                settings, more = self._paged_arrays(settings, PAGED_JOB_ARRAYS, 0)
                listed["settings"] = settings
                listed["has_more"] = more is not None
            page.append(listed)
        result = self._list_page("jobs", page, len(matching), offset, limit)
        if offset:
            result["prev_page_token"] = self._make_token(max(0, offset - limit))
        return result

    def _job_update(self, request: Request) -> None:
        body = request.json()
        job = self._job(_required(body, "job_id"))
        settings = copy.deepcopy(job["settings"])
        for name in body.get("fields_to_remove") or []:
            array, _, key = name.partition("/")
            if key and array in ("tasks", "job_clusters"):
                key_field = "task_key" if array == "tasks" else "job_cluster_key"
                before = settings.get(array) or []
                settings[array] = [item for item in before if item.get(key_field) != key]
                if len(settings[array]) == len(before):
                    raise _invalid(f"Cannot remove {name}: no such element.")
            else:
                settings.pop(name, None)
        for name, value in (body.get("new_settings") or {}).items():
            if name in ("tasks", "job_clusters"):
                key_field = "task_key" if name == "tasks" else "job_cluster_key"
                merged = list(settings.get(name) or [])
                for item in value or []:
                    index = next(
                        (i for i, old in enumerate(merged) if old.get(key_field) == item.get(key_field)), None
                    )
                    if index is None:
                        merged.append(item)
                    else:
                        merged[index] = item  # an element given replaces the one with its key
                settings[name] = merged
            else:
                settings[name] = value
        self._validate_settings(settings)
        job["settings"] = self._with_defaults(settings)
        job["run_as_user_name"] = self._run_as_name(job)

    def _job_reset(self, request: Request) -> None:
        body = request.json()
        job = self._job(_required(body, "job_id"))
        settings = body.get("new_settings")
        if not isinstance(settings, dict):
            raise _invalid("Missing required field: new_settings")
        self._validate_settings(settings)
        job["settings"] = self._with_defaults(settings)
        job["run_as_user_name"] = self._run_as_name(job)

    def _job_delete(self, request: Request) -> None:
        body = request.json()
        job_id = self._job(_required(body, "job_id"))["job_id"]
        del self._jobs[job_id]

    # -- runs ----------------------------------------------------------------------------
    def _run(self, run_id: Any) -> JobRun:
        run = self._runs.get(_int_arg(run_id, "run_id")) if run_id is not None else None
        if run is None:
            raise _invalid(f"Run {run_id} does not exist.")
        return run

    def _task(self, run_id: int, task_key: str) -> TaskRun:
        run = self._runs[run_id]
        return next(t for t in run.tasks if t.task_key == task_key)

    def _run_now(self, request: Request) -> dict[str, Any]:
        body = request.json()
        job = self._job(_required(body, "job_id"))
        token = body.get("idempotency_token")
        if token and token in self._idempotency:
            run_id = self._idempotency[token]
            return {"run_id": run_id, "number_in_job": self._runs[run_id].number_in_job}
        settings = copy.deepcopy(job["settings"])
        active = [r for r in self._runs.values() if r.job_id == job["job_id"] and not r.is_terminal]
        limit = int(settings.get("max_concurrent_runs", 1))
        waiting = any(r.life_cycle_state == "QUEUED" for r in active)
        over = waiting or sum(r.life_cycle_state != "QUEUED" for r in active) >= limit
        # Over the limit a run is queued when the job's queue is enabled (it starts when an earlier
        # run ends, first in first out), else created and skipped at once; a limit of 0 skips every
        # run (JobSettings.max_concurrent_runs, QueueSettings in the SDK; docs "Jobs are queued").
        queued = over and limit > 0 and bool((settings.get("queue") or {}).get("enabled"))
        skipped = over and not queued
        job_parameters = {p["name"]: str(p.get("default", "")) for p in settings.get("parameters") or []}
        for name, value in (body.get("job_parameters") or {}).items():
            job_parameters[name] = str(value)
        overriding = {
            k: body[k]
            for k in ("notebook_params", "python_params", "jar_params", "sql_params")
            if body.get(k)
        }
        only = set(body.get("only") or [])
        selected = [t for t in settings.get("tasks") or [] if not only or t["task_key"] in only]
        run_id = self._new_id()
        tasks = [TaskRun(t["task_key"], self._new_id(), t) for t in self._topological_order(selected)]
        number = sum(1 for r in self._runs.values() if r.job_id == job["job_id"]) + 1
        run = JobRun(
            run_id=run_id,
            job_id=job["job_id"],
            number_in_job=number,
            creator_user_name=self._caller(request),
            run_as=job["run_as_user_name"],
            settings=settings,
            job_parameters=job_parameters,
            overriding_parameters=overriding,
            tasks=tasks,
            start_time=_now_ms(),
        )
        self._runs[run_id] = run
        if token:
            self._idempotency[token] = run_id
        if queued:
            run.life_cycle_state, run.queued_at = "QUEUED", run.start_time
            run.state_message = QUEUED_MESSAGE.format(limit=limit)
            for task in tasks:
                task.life_cycle_state = "QUEUED"
            return {"run_id": run_id, "number_in_job": number}
        if skipped:
            run.life_cycle_state = "SKIPPED"
            run.state_message = (
                f"Skipping this run because the limit of {limit} maximum concurrent runs has been reached."
            )
            for task in tasks:
                task.life_cycle_state = "SKIPPED"
            run.end_time = run.start_time
            run.done.set()
            return {"run_id": run_id, "number_in_job": number}
        self._start(run)
        return {"run_id": run_id, "number_in_job": number}

    def _start(self, run: JobRun) -> None:
        threading.Thread(
            target=self._execute, args=(run,), name=f"databricks-run-{run.run_id}", daemon=True
        ).start()

    def _start_queued(self, job_id: int) -> None:
        """Start the job's queued runs, oldest first, while the job is under its limit (state_lock held)."""
        runs = sorted((r for r in self._runs.values() if r.job_id == job_id), key=lambda r: r.run_id)
        running = sum(not r.is_terminal and r.life_cycle_state != "QUEUED" for r in runs)
        for run in runs:
            if run.life_cycle_state != "QUEUED":
                continue
            if run.cancel_requested:
                self._cancel_queued(run)
                continue
            settings = (self._jobs.get(job_id) or {}).get("settings") or run.settings
            if running >= int(settings.get("max_concurrent_runs", 1)):
                break
            run.life_cycle_state, run.state_message, run.dequeued_at = "PENDING", "", _now_ms()
            for task in run.tasks:
                task.life_cycle_state = "PENDING"
            running += 1
            self._start(run)

    def _cancel_queued(self, run: JobRun) -> None:
        """A queued run cancelled before it started: it ends at once, its tasks never run."""
        run.cancel_requested = True
        run.life_cycle_state, run.result_state, run.state_message = "TERMINATED", "CANCELED", "Run cancelled."
        for task in run.tasks:
            task.life_cycle_state, task.result_state = "TERMINATED", "CANCELED"
        run.end_time = run.dequeued_at = _now_ms()
        run.done.set()

    def _run_page_url(self, job_id: int, run_id: int) -> str:
        return f"{self.url}/?o={WORKSPACE_ID}#job/{job_id}/run/{run_id}"

    @staticmethod
    def _state(life_cycle: str, result: str | None, message: str, cancelled: bool) -> dict[str, Any]:
        state: dict[str, Any] = {"life_cycle_state": life_cycle, "state_message": message}
        if life_cycle == "QUEUED":
            state["queue_reason"] = message  # RunState.queue_reason
        if result is not None:
            state["result_state"] = result
        state["user_cancelled_or_timedout"] = cancelled
        return state

    @staticmethod
    def _status(life_cycle: str, result: str | None, message: str) -> dict[str, Any]:
        """The newer `status` block (RunStatus) next to the legacy `state`."""
        if life_cycle == "QUEUED":
            return {
                "state": "QUEUED",
                "queue_details": {"code": "MAX_CONCURRENT_RUNS_REACHED", "message": message},
            }
        if life_cycle in ("TERMINATED", "INTERNAL_ERROR", "SKIPPED"):
            code = {
                "SUCCESS": "SUCCESS",
                "CANCELED": "USER_CANCELED",
                "UPSTREAM_FAILED": "UPSTREAM_FAILED",
            }.get(result or "", "RUN_EXECUTION_ERROR" if life_cycle == "TERMINATED" else "INTERNAL_ERROR")
            kind = {"SUCCESS": "SUCCESS", "USER_CANCELED": "SUCCESS"}.get(code, "CLIENT_ERROR")
            return {
                "state": "TERMINATED",
                "termination_details": {"code": code, "type": kind, "message": message},
            }
        return {"state": life_cycle if life_cycle in ("PENDING", "RUNNING", "TERMINATING") else "PENDING"}

    def _task_json(self, run: JobRun, task: TaskRun) -> dict[str, Any]:
        body = {k: copy.deepcopy(v) for k, v in task.settings.items() if k not in ("email_notifications",)}
        if "notebook_task" in body:
            body["notebook_task"]["base_parameters"] = dict(task.parameters) or body["notebook_task"].get(
                "base_parameters", {}
            )
        body.update(
            run_id=task.run_id,
            task_key=task.task_key,
            attempt_number=task.attempt_number,
            state=self._state(
                task.life_cycle_state, task.result_state, task.state_message, run.cancel_requested
            ),
            status=self._status(task.life_cycle_state, task.result_state, task.state_message),
            run_page_url=self._run_page_url(run.job_id, task.run_id),
            start_time=task.start_time,
            end_time=task.end_time,
            setup_duration=0,
            cleanup_duration=0,
            execution_duration=max(0, task.end_time - task.start_time) if task.end_time else 0,
        )
        return body

    def _run_json(self, run: JobRun, api_version: str, page_token: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "job_id": run.job_id,
            "run_id": run.run_id,
            "number_in_job": run.number_in_job,
            "original_attempt_run_id": run.run_id,
            "creator_user_name": run.creator_user_name,
            "run_name": run.settings.get("name", "Untitled"),
            "run_page_url": self._run_page_url(run.job_id, run.run_id),
            "run_type": "JOB_RUN",
            "trigger": "ONE_TIME",
            "state": self._state(
                run.life_cycle_state, run.result_state, run.state_message, run.cancel_requested
            ),
            "status": self._status(run.life_cycle_state, run.result_state, run.state_message),
            "start_time": run.start_time,
            "end_time": run.end_time,
            "setup_duration": 0,
            "cleanup_duration": 0,
            "execution_duration": 0,
            "run_duration": max(0, (run.end_time or _now_ms()) - run.start_time),
            "queue_duration": max(0, (run.dequeued_at or _now_ms()) - run.queued_at) if run.queued_at else 0,
            "tasks": [self._task_json(run, t) for t in run.tasks],
            "job_clusters": copy.deepcopy(run.settings.get("job_clusters") or []),
            "job_parameters": [
                {
                    "name": name,
                    "default": next(
                        (
                            str(p.get("default", ""))
                            for p in run.settings.get("parameters") or []
                            if p["name"] == name
                        ),
                        None,
                    ),
                    "value": value,
                }
                for name, value in sorted(run.job_parameters.items())
            ],
        }
        for array in ("job_clusters", "job_parameters"):
            if not body[array]:
                del body[array]
        if run.overriding_parameters:
            body["overriding_parameters"] = copy.deepcopy(run.overriding_parameters)
        if api_version == "2.2":
            offset = self._offset_token(page_token)
            body, next_offset = self._paged_arrays(body, ("tasks", "job_clusters", "job_parameters"), offset)
            if next_offset is not None:
                body["next_page_token"] = self._make_token(next_offset)
        return body

    def _run_get(self, request: Request) -> dict[str, Any]:
        run = self._run(request.arg("run_id"))
        return self._run_json(run, request.params["version"], request.arg("page_token"))

    def _run_list(self, request: Request) -> dict[str, Any]:
        job_id = request.arg("job_id")
        offset, limit = self._page_window(request, default_limit=25, max_limit=25)
        runs = sorted(self._runs.values(), key=lambda r: r.run_id, reverse=True)
        if job_id is not None:
            runs = [r for r in runs if r.job_id == _int_arg(job_id, "job_id")]
        if _truthy(request.arg("active_only")):
            runs = [r for r in runs if not r.is_terminal]
        if _truthy(request.arg("completed_only")):
            runs = [r for r in runs if r.is_terminal]
        page = []
        for run in runs[offset : offset + limit]:
            listed = self._run_json(run, "2.1")
            if not _truthy(request.arg("expand_tasks")):
                listed.pop("tasks")
            page.append(listed)
        return self._list_page("runs", page, len(runs), offset, limit)

    def _run_cancel(self, request: Request) -> None:
        body = request.json()
        run = self._run(_required(body, "run_id"))
        if run.is_terminal or run.cancel_requested:
            return
        if run.life_cycle_state == "QUEUED":
            self._cancel_queued(run)
            return
        run.cancel_requested = True
        if run.life_cycle_state == "RUNNING":
            run.life_cycle_state = "TERMINATING"
        for task in run.tasks:
            if task.process is not None and task.life_cycle_state == "RUNNING":
                self._interrupt(task.process)

    def _interrupt(self, process: subprocess.Popen[bytes]) -> None:
        """What Databricks does to a cancelled notebook: interrupt the REPL, then kill it."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGINT)

        def kill() -> None:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)

        timer = threading.Timer(self.cancel_grace_seconds, kill)
        timer.daemon = True
        timer.start()

    def _run_get_output(self, request: Request) -> dict[str, Any]:
        run_id = _int_arg(request.arg("run_id"), "run_id")
        for run in self._runs.values():
            if run.run_id == run_id:
                if len(run.tasks) == 1:
                    return self._task_output_json(run, run.tasks[0])
                raise _invalid(
                    "Retrieving the output of runs with multiple tasks is not supported. "
                    "Please retrieve the output of each individual task run instead."
                )
            for task in run.tasks:
                if task.run_id == run_id:
                    return self._task_output_json(run, task)
        raise _invalid(f"Run {run_id} does not exist.")

    def _task_output_json(self, run: JobRun, task: TaskRun) -> dict[str, Any]:
        metadata = self._run_json(run, "2.1")
        metadata.pop("tasks")
        metadata.update(run_id=task.run_id, state=self._task_json(run, task)["state"])
        body: dict[str, Any] = {"metadata": metadata}
        if task.exit_value is not None or (
            task.result_state == "SUCCESS" and "notebook_task" in task.settings
        ):
            body["notebook_output"] = {"result": task.exit_value or "", "truncated": False}
        body.update(self._platform_output(task))
        if task.error is not None:
            body["error"] = task.error
        if task.error_trace is not None:
            body["error_trace"] = task.error_trace
        return body

    # -- executing a run --------------------------------------------------------------
    def _execute(self, run: JobRun) -> None:
        try:
            self._execute_tasks(run)
        except Exception as exc:  # noqa: BLE001 - a bug here must end the run, not hang its waiters
            with self.state_lock:
                run.life_cycle_state, run.result_state = "INTERNAL_ERROR", "FAILED"
                run.state_message = f"Emulator error: {exc!r}"
        finally:
            with self.state_lock:
                run.end_time = _now_ms()
                self._start_queued(run.job_id)  # the next queued run starts as this one ends
            run.done.set()

    def _execute_tasks(self, run: JobRun) -> None:
        with self.state_lock:
            run.life_cycle_state = "RUNNING"
        results: dict[str, str] = {}
        for task in run.tasks:
            with self.state_lock:
                if run.cancel_requested:
                    task.life_cycle_state, task.result_state = "TERMINATED", "CANCELED"
                    results[task.task_key] = "CANCELED"
                    continue
                upstream = [
                    results.get(d["task_key"], "SUCCESS") for d in task.settings.get("depends_on") or []
                ]
                condition = RUN_IF_CONDITIONS.get(
                    task.settings.get("run_if") or "ALL_SUCCESS", RUN_IF_CONDITIONS["ALL_SUCCESS"]
                )
                if upstream and not condition(upstream):
                    blocked_by_failure = any(r in ("FAILED", "UPSTREAM_FAILED") for r in upstream)
                    task.life_cycle_state = "TERMINATED" if blocked_by_failure else "SKIPPED"
                    task.result_state = "UPSTREAM_FAILED" if blocked_by_failure else "EXCLUDED"
                    task.state_message = (
                        "Upstream task(s) failed." if blocked_by_failure else "Run condition not met."
                    )
                    results[task.task_key] = task.result_state
                    continue
                task.life_cycle_state = "RUNNING"
                task.start_time = _now_ms()
            self._execute_task(run, task)
            with self.state_lock:
                task.end_time = _now_ms()
                if run.cancel_requested:  # cancelled while it ran, whatever the notebook did then
                    task.life_cycle_state, task.result_state = "TERMINATED", "CANCELED"
                results[task.task_key] = task.result_state or "FAILED"
        with self.state_lock:
            self._finish(run)

    def _finish(self, run: JobRun) -> None:
        failed = [t for t in run.tasks if t.result_state in ("FAILED", "UPSTREAM_FAILED")]
        internal = [t for t in run.tasks if t.life_cycle_state == "INTERNAL_ERROR"]
        if run.cancel_requested:
            run.life_cycle_state, run.result_state, run.state_message = (
                "TERMINATED",
                "CANCELED",
                "Run cancelled.",
            )
        elif internal:
            task = internal[0]
            run.life_cycle_state, run.result_state = "INTERNAL_ERROR", "FAILED"
            run.state_message = f"Task {task.task_key} failed with message: {task.state_message}"
        elif failed:
            task = next((t for t in failed if t.result_state == "FAILED"), failed[0])
            run.life_cycle_state, run.result_state = "TERMINATED", "FAILED"
            run.state_message = f"Task {task.task_key} failed with message: {TASK_FAILED_MESSAGE}."
        else:
            run.life_cycle_state, run.result_state, run.state_message = "TERMINATED", "SUCCESS", ""

    def _fail_to_start(self, task: TaskRun, message: str) -> None:
        with self.state_lock:
            task.life_cycle_state, task.result_state, task.state_message = "INTERNAL_ERROR", "FAILED", message

    def _execute_task(self, run: JobRun, task: TaskRun) -> None:
        settings = task.settings
        if "dbt_platform_task" in settings:  # no compute: Databricks calls dbt itself
            return self._run_dbt_platform_task(run, task)
        with self.state_lock:
            cluster_id = settings.get("existing_cluster_id")
            if cluster_id and cluster_id not in self._clusters:
                return self._fail_to_start(task, f"Cluster {cluster_id} does not exist")
            if not self._has_compute(settings) and not self.serverless_enabled:
                return self._fail_to_start(
                    task, "One of job_cluster_key, new_cluster, or existing_cluster_id must be specified."
                )
            notebook_task = settings.get("notebook_task")
            if notebook_task is None:
                # Only notebook tasks execute here; anything else succeeds without running.
                task.life_cycle_state, task.result_state = "TERMINATED", "SUCCESS"
                return None
            notebook_path = normalize_workspace_path(notebook_task["notebook_path"])
            notebook = self._workspace.get(notebook_path)
            if notebook is None or notebook.object_type != "NOTEBOOK":
                return self._fail_to_start(task, f"Notebook not found: {notebook_task['notebook_path']}")
            if not self._can_read_notebook(notebook_path, run.run_as):
                return self._fail_to_start(
                    task,
                    f'Unable to access the notebook "{notebook_task["notebook_path"]}". Either it does '
                    f"not exist, or the identity used to run this job, {run.run_as}, lacks the required "
                    "permissions.",
                )
            if notebook.language != "PYTHON":
                return self._fail_to_start(
                    task, f"The emulator runs Python notebooks only, not {notebook.language}"
                )
            task.parameters = self._task_parameters(run, task)
            context = {
                "source": notebook.content.decode("utf-8", errors="replace"),
                "parameters": task.parameters,
                "notebook_context": {
                    "tags": {
                        "jobId": str(run.job_id),
                        "multitaskParentRunId": str(run.run_id),
                        "runId": str(task.run_id),
                        "taskKey": task.task_key,
                        "jobName": run.settings.get("name", ""),
                        "user": run.run_as,
                        "browserHostName": self.url.split("//", 1)[1],
                        "orgId": WORKSPACE_ID,
                    },
                    "extraContext": {"notebook_path": notebook_path, "api_url": self.url},
                },
            }
        self._run_notebook(run, task, context)
        return None

    def _task_parameters(self, run: JobRun, task: TaskRun) -> dict[str, str]:
        """Widget values: task base_parameters < job parameters < run-now notebook_params."""
        parameters = {
            k: str(v) for k, v in (task.settings["notebook_task"].get("base_parameters") or {}).items()
        }
        parameters.update(run.job_parameters)  # job parameters override task parameters of the same name
        parameters.update(
            {k: str(v) for k, v in (run.overriding_parameters.get("notebook_params") or {}).items()}
        )
        references = {
            "job.id": str(run.job_id),
            "job.run_id": str(run.run_id),
            "job.name": str(run.settings.get("name", "")),
            "task.name": task.task_key,
            "task.run_id": str(task.run_id),
            "workspace.id": WORKSPACE_ID,
            "workspace.url": self.url,
            **{f"job.parameters.{k}": v for k, v in run.job_parameters.items()},
        }

        def resolve(match: re.Match[str]) -> str:
            return references.get(match.group(1).strip(), match.group(0))

        return {k: re.sub(r"\{\{([^}]+)\}\}", resolve, v) for k, v in parameters.items()}

    def _run_notebook(self, run: JobRun, task: TaskRun, context: dict[str, Any]) -> None:
        parent_end, child_end = socket.socketpair()
        with tempfile.TemporaryDirectory(prefix="dbtwf-notebook-") as workdir:
            context_path = Path(workdir, "context.json")
            context_path.write_text(json.dumps(context), encoding="utf-8")
            env = {
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("DATABRICKS_", "DBT_CLOUD_", "DBTWF_"))
            }
            env["DBTWF_EMULATOR_CHANNEL_FD"] = str(child_end.fileno())
            env["PYTHONUNBUFFERED"] = "1"
            with self.state_lock:
                if run.cancel_requested:
                    child_end.close()
                    parent_end.close()
                    return
                process = subprocess.Popen(
                    [self.python_executable, "-B", str(NOTEBOOK_SCRIPT), str(context_path)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    cwd=workdir,
                    env=env,
                    pass_fds=(child_end.fileno(),),
                    start_new_session=True,  # its own process group, so cancel reaches its children too
                )
                task.process = process
            child_end.close()
            reader = threading.Thread(target=self._capture_output, args=(task, process), daemon=True)
            reader.start()
            outcome = self._serve_channel(run, task, parent_end)
            process.wait()
            reader.join(5)
        with self.state_lock:
            task.process = None
            status = (outcome or {}).get("status")
            task.life_cycle_state = "TERMINATED"
            if status in ("success", "exit"):
                task.result_state = "SUCCESS"
                task.exit_value = outcome.get("exit_value") if outcome else None
            else:
                task.result_state = "FAILED"
                task.state_message = TASK_FAILED_MESSAGE
                if outcome and status == "error":
                    task.error = self._redact(task, str(outcome.get("error")))
                    task.error_trace = self._redact(task, str(outcome.get("error_trace")))
                else:
                    code = process.returncode
                    task.error = f"The notebook process ended without a result (exit code {code})."
                    task.error_trace = self._redact(
                        task, b"".join(task.output).decode("utf-8", errors="replace")
                    )

    @staticmethod
    def _capture_output(task: TaskRun, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        descriptor = process.stdout.fileno()
        for chunk in iter(lambda: os.read(descriptor, 65536), b""):
            with task.output_grew:
                task.output.append(chunk)
                task.output_grew.notify_all()

    def _serve_channel(self, run: JobRun, task: TaskRun, channel: socket.socket) -> dict[str, Any] | None:
        """Answers the notebook's dbutils calls until it reports its outcome or goes away."""
        outcome = None
        with (
            channel,
            channel.makefile("r", encoding="utf-8") as reader,
            channel.makefile("w", encoding="utf-8") as writer,
        ):
            for line in reader:
                message = json.loads(line)
                if message.get("op") == "outcome":
                    outcome = message
                    continue
                try:
                    reply = {"ok": True, "value": self._dbutils_call(run, task, message)}
                except HttpError as error:
                    exception = (
                        "IllegalArgumentException" if error.code == "RESOURCE_DOES_NOT_EXIST" else "Exception"
                    )
                    reply = {"ok": False, "error": exception, "message": f"{error.code}: {error.message}"}
                except (ValueError, TypeError) as error:
                    reply = {"ok": False, "error": type(error).__name__, "message": str(error)}
                try:
                    writer.write(json.dumps(reply) + "\n")
                    writer.flush()
                except OSError:
                    break
        return outcome

    def _dbutils_call(self, run: JobRun, task: TaskRun, message: dict[str, Any]) -> Any:
        op = message.get("op")
        with self.state_lock:
            if op == "secrets.get":
                scope, key = str(message.get("scope")), str(message.get("key"))
                if scope.casefold() not in self._scopes or key not in self._secrets[scope.casefold()]:
                    raise _not_found(f"Secret does not exist with scope: {scope} and key: {key}")
                value = self._read_secret(scope, key, run.run_as).decode("utf-8", errors="replace")
                if value:
                    task.secrets_read.add(value)
                return value
            if op == "secrets.list":
                scope = self._scope(str(message.get("scope")))
                self._require(scope, run.run_as, "READ")
                return sorted(self._secrets[scope])
            if op == "secrets.listScopes":
                return sorted(s["name"] for s in self._scopes.values())
            if op == "taskValues.set":
                task.values[str(message["key"])] = str(message["value"])
                return None
            if op == "taskValues.get":
                source = next((t for t in run.tasks if t.task_key == message.get("task_key")), None)
                if source is None:
                    raise ValueError(f"Task {message.get('task_key')} is not part of this run")
                return source.values.get(str(message.get("key")))
        raise ValueError(f"dbutils call {op} is not offered by the emulator")
