"""Unity Catalog connections and the dbt platform task (Beta) for the Databricks emulator.

What a real workspace does, and where that comes from:
- `POST /api/2.1/unity-catalog/connections`, `GET|DELETE /api/2.1/unity-catalog/connections/{name}`:
  the SDK's ``ConnectionsAPI.create`` / ``get`` / ``delete`` (databricks-sdk 0.162,
  ``service/catalog.py``), wire shapes ``CreateConnection`` in and ``ConnectionInfo`` out. A
  missing connection is a 404 (the SDK maps it to ``NotFound``; the error code
  ``CONNECTION_DOES_NOT_EXIST`` is unverified). Option values that are credentials are never
  returned by GET (Unity Catalog hides them; how exactly is unverified: here they are left out).
- A job task ``dbt_platform_task {connection_resource_name, dbt_platform_job_id}`` (the SDK's
  ``jobs.DbtPlatformTask``; the job id is a string) "connects to the dbt platform API and
  triggers a run there" (https://docs.databricks.com/aws/en/jobs/dbt-platform, Beta). Its run
  output is ``dbt_platform_output {dbt_platform_job_run_id, dbt_platform_job_run_url,
  dbt_platform_job_run_output[]}`` (``jobs.DbtPlatformTaskOutput``).

The emulator's assumptions (not documented anywhere found):
- what a dbt platform connection holds: here ``connection_type`` "HTTP" (the SDK's
  ``ConnectionType`` has no dbt member) with options ``host`` (the dbt host or URL, as dbtwf's
  ``dbt_cloud_host``), ``account_id`` and the credential ``token`` (the dbt API token);
- that the task needs no compute (it is accepted on a workspace without serverless);
- that the task triggers ``POST /api/v2/accounts/{a}/jobs/{j}/run/`` with a ``cause``, polls the
  run until it is complete, and fails the task unless the run succeeded (a cancelled Databricks run
  cancels the dbt run); the message of a failed task and the run output's fields beyond the SDK's
  names.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from databricks.sdk.service import catalog

from tests.emulators.base import HttpError, Request

if TYPE_CHECKING:
    from tests.emulators.databricks import JobRun, TaskRun

#: Options of a connection that are credentials: stored, never answered.
SECRET_OPTIONS = ("token", "bearer_token", "password", "client_secret")
#: Seconds between two polls of the dbt run (the dbt emulator's runs end on a poll).
POLL_SECONDS = 0.02


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


class DbtPlatformEmulation:
    """Mixed into ``DatabricksEmulator``: connections, and running dbt platform tasks."""

    if TYPE_CHECKING:
        state_lock: threading.RLock

        def route(self, method: str, pattern: str, handler: Callable[[Request], Any]) -> None: ...
        def _caller(self, request: Request) -> str: ...

    # -- test-facing API -------------------------------------------------------------------
    def add_dbt_platform_connection(
        self, name: str, *, dbt_url: str, account_id: int, token: str, owner: str | None = None
    ) -> dict[str, Any]:
        """Seed a connection as an admin would make it (the emulator's assumed shape); tests may
        also POST one through the SDK's ``ConnectionsAPI.create``."""
        with self.state_lock:
            return self._store_connection(
                {
                    "name": name,
                    "connection_type": "HTTP",
                    "options": {"host": dbt_url, "account_id": str(account_id), "token": token},
                    "comment": "dbt platform",
                },
                owner or "admin@example.com",
            )

    # -- state and routes --------------------------------------------------------------------
    def _clear_connections(self) -> None:
        self._connections: dict[str, dict[str, Any]] = {}
        self._connection_secrets: dict[str, dict[str, str]] = {}
        #: task run id -> its dbt_platform_output (runs/get-output)
        self._platform_outputs: dict[int, dict[str, Any]] = {}

    def _define_connection_routes(self) -> None:
        base = r"/api/2\.1/unity-catalog/connections"
        self.route("POST", base, self._connection_create)
        self.route("GET", base + r"/(?P<name>[^/]+)", self._connection_get)
        self.route("DELETE", base + r"/(?P<name>[^/]+)", self._connection_delete)

    def _store_connection(self, body: dict[str, Any], owner: str) -> dict[str, Any]:
        name = str(body.get("name") or "")
        if not name:
            raise HttpError(400, "INVALID_PARAMETER_VALUE", "Missing required field: name")
        if name.lower() in self._connections:
            raise HttpError(409, "CONNECTION_ALREADY_EXISTS", f"Connection '{name}' already exists.")
        options = {str(k): str(v) for k, v in (body.get("options") or {}).items()}
        now = _now_ms()
        info = {
            "name": name,
            "full_name": name,
            "connection_id": f"conn-{len(self._connections) + 1:04d}",
            "connection_type": body.get("connection_type") or "HTTP",
            "credential_type": "BEARER_TOKEN",
            "options": {k: v for k, v in options.items() if k not in SECRET_OPTIONS},
            "comment": body.get("comment") or "",
            "owner": owner,
            "created_by": owner,
            "created_at": now,
            "updated_at": now,
            "read_only": bool(body.get("read_only", False)),
            "securable_type": "CONNECTION",
        }
        catalog.ConnectionInfo.from_dict(info)  # the SDK reads what is answered
        self._connections[name.lower()] = info
        self._connection_secrets[name.lower()] = {k: v for k, v in options.items() if k in SECRET_OPTIONS}
        return dict(info)

    def _connection_create(self, request: Request) -> dict[str, Any]:
        body = request.json()
        # The body ConnectionsAPI.create sends (the SDK has no request dataclass for it).
        try:
            catalog.ConnectionType(body.get("connection_type"))
        except ValueError:
            raise HttpError(
                400, "INVALID_PARAMETER_VALUE", f"Invalid connection_type: {body.get('connection_type')!r}"
            ) from None
        if not isinstance(body.get("options") or {}, dict):
            raise HttpError(400, "INVALID_PARAMETER_VALUE", "options must be a map of strings")
        return self._store_connection(body, self._caller(request))

    def _connection(self, name: str) -> dict[str, Any]:
        found = self._connections.get(name.lower())
        if found is None:
            raise HttpError(404, "CONNECTION_DOES_NOT_EXIST", f"Connection '{name}' does not exist.")
        return found

    def _connection_get(self, request: Request) -> dict[str, Any]:
        return dict(self._connection(request.params["name"]))

    def _connection_delete(self, request: Request) -> None:
        self._connection(request.params["name"])
        self._connections.pop(request.params["name"].lower())

    # -- jobs --------------------------------------------------------------------------------
    @staticmethod
    def _validate_platform_task(task: dict[str, Any]) -> None:
        platform = task.get("dbt_platform_task")
        if platform is None:
            return
        for name in ("connection_resource_name", "dbt_platform_job_id"):
            if not platform.get(name):
                raise HttpError(
                    400, "INVALID_PARAMETER_VALUE", f"Missing required field: dbt_platform_task.{name}"
                )
        if not isinstance(platform["dbt_platform_job_id"], str):
            raise HttpError(
                400, "INVALID_PARAMETER_VALUE", "dbt_platform_task.dbt_platform_job_id must be a string"
            )

    def _platform_output(self, task: TaskRun) -> dict[str, Any]:
        found = self._platform_outputs.get(task.run_id)
        return {"dbt_platform_output": found} if found else {}

    def _run_dbt_platform_task(self, run: JobRun, task: TaskRun) -> None:
        """Trigger the dbt job through the connection's host and token, follow the run to its end."""
        platform = task.settings["dbt_platform_task"]
        with self.state_lock:
            info = self._connections.get(str(platform["connection_resource_name"]).lower())
            secrets = self._connection_secrets.get(str(platform["connection_resource_name"]).lower(), {})
            if info is None:
                return self._platform_failed(
                    task,
                    f"Connection '{platform['connection_resource_name']}' does not exist.",
                    internal=True,
                )
        options = info["options"]
        base = str(options.get("host", "")).rstrip("/")
        account, job = options.get("account_id"), platform["dbt_platform_job_id"]
        headers = {"Authorization": f"Token {secrets.get('token', '')}", "Content-Type": "application/json"}
        cause = f"Triggered by Databricks job run {run.run_id} (task {task.task_key})"
        try:
            started = _call(f"{base}/api/v2/accounts/{account}/jobs/{job}/run/", headers, {"cause": cause})
            dbt_run_id = int(started["id"])
            dbt_run = started
            while not dbt_run.get("is_complete"):
                if run.cancel_requested:
                    _call(f"{base}/api/v2/accounts/{account}/runs/{dbt_run_id}/cancel/", headers, {})
                threading.Event().wait(POLL_SECONDS)
                dbt_run = _call(
                    f"{base}/api/v2/accounts/{account}/runs/{dbt_run_id}/?include_related=%5B%22run_steps%22%5D",
                    headers,
                )
        except (OSError, ValueError, KeyError) as error:
            return self._platform_failed(task, f"dbt platform request failed: {error}")
        steps = [
            {"index": i, "name": str(s.get("name") or ""), "logs": str(s.get("logs") or "")[-10000:]}
            for i, s in enumerate(dbt_run.get("run_steps") or [])
        ]
        with self.state_lock:
            self._platform_outputs[task.run_id] = {
                "dbt_platform_job_run_id": str(dbt_run_id),
                "dbt_platform_job_run_url": str(dbt_run.get("href") or ""),
                "dbt_platform_job_run_output": steps,
            }
            task.output.append(f"dbt platform run {dbt_run_id}: {dbt_run.get('status_humanized')}\n".encode())
            if dbt_run.get("is_success"):
                task.life_cycle_state, task.result_state = "TERMINATED", "SUCCESS"
                return None
        humanized = dbt_run.get("status_humanized") or "failed"
        return self._platform_failed(
            task,
            f"dbt platform job run {dbt_run_id} {humanized}: {dbt_run.get('status_message') or ''}".strip(),
        )

    def _platform_failed(self, task: TaskRun, message: str, *, internal: bool = False) -> None:
        with self.state_lock:
            task.life_cycle_state = "INTERNAL_ERROR" if internal else "TERMINATED"
            task.result_state = "FAILED"
            task.state_message = message
            task.error = message


def _call(url: str, headers: dict[str, str], body: dict[str, Any] | None = None) -> dict[str, Any]:
    """One dbt API call; the answer's `data`. Only to the loopback dbt emulator."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, headers=headers, method="GET" if body is None else "POST"
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        found: dict[str, Any] = json.loads(answer.read())["data"]
    return found
