"""Desired state vs what the workspace holds, as data: the plan that apply carries out.

``plan(desired, observed)`` is pure: frozen dataclasses in, a list of ``Change`` out, so
every decision (create, update in place, leave alone, refuse) is tested without a server.
Each change is executable on its own: ``payload`` holds what carrying it out needs (the
notebook source, the job settings to send, the principal, the token's fingerprint, never
the token) and ``expect`` what the planner saw of the object (``probe``'s answer). The
executor (``provision.apply.execute``) re-probes under the lock and refuses when the
workspace moved since the plan, so what runs is what was confirmed.

``Reader`` does the reads (each once per plan), ``observe`` turns them into ``Observed``,
``plan_environment`` chains it all. ``Plan`` adds what a saved plan (``plan --out``) must
match before it may run: the workspace host and identity, the config digest, the token.

A new kind of resource is a planner branch here, a ``PROBES`` entry and an executor entry
in ``provision.apply``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import TYPE_CHECKING, Any

from provision.errors import ConflictError, UsageError
from provision.location import (
    LocationFacts,
    check_same_deployment,
    observe_location,
    observe_scope_acls,
    security_changes,
)
from provision.model import ENVIRONMENT_TAG, MANAGED_BY_TAG, MANAGED_BY_VALUE, Environment, same_scope
from provision.state import StateRecord

if TYPE_CHECKING:
    from provision.databricks import Workspace

#: Seconds the task may run past the runner's own timeout, so the runner can cancel the
#: dbt run and report it before Databricks kills the task.
TASK_TIMEOUT_MARGIN_SECONDS = 600
#: Top-level job settings dbtwf decides; any other field of an owned workflow is left as found.
MANAGED_JOB_FIELDS = (
    "name",
    "tags",
    "max_concurrent_runs",
    "queue",
    "tasks",
    "parameters",
    "schedule",
    "job_clusters",
    "email_notifications",
)
_PERMISSION_RANK = {"READ": 1, "WRITE": 2, "MANAGE": 3}


class Action(str, Enum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    NOOP = "no-op"


@dataclass(frozen=True)
class Change:
    # "scope" | "scope-acl" | "secret" | "folder" | "notebook" | "notebook-acl" | "workflow" | "task"
    # | "state", or "warning": shown with the plan, never carried out (always a no-op)
    resource: str
    name: str
    action: Action
    reason: str
    #: The job id an UPDATE/NOOP/DELETE of a workflow or task applies to.
    job_id: int | None = None
    #: What carrying the change out needs (JSON-able; never a secret).
    payload: Mapping[str, Any] = field(default_factory=dict, compare=False)
    #: What the planner saw of the object (a probe's answer); None: not checked.
    expect: Mapping[str, Any] | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """What a person or script is shown (table row, --json)."""
        data: dict[str, Any] = {
            "resource": self.resource,
            "name": self.name,
            "action": self.action.value,
            "reason": self.reason,
        }
        if self.job_id is not None:
            data["job_id"] = self.job_id
        return data

    def to_saved(self) -> dict[str, Any]:
        """Everything, for a saved plan."""
        return {**self.to_dict(), "payload": dict(self.payload), "expect": self.expect}

    @classmethod
    def from_saved(cls, data: Mapping[str, Any]) -> Change:
        job_id = data.get("job_id")
        return cls(
            resource=str(data["resource"]),
            name=str(data["name"]),
            action=Action(data["action"]),
            reason=str(data.get("reason", "")),
            job_id=int(job_id) if job_id is not None else None,
            payload=dict(data.get("payload") or {}),
            expect=data.get("expect"),
        )

    @property
    def writes(self) -> bool:
        return self.action is not Action.NOOP


def has_changes(changes: Sequence[Change]) -> bool:
    return any(change.action is not Action.NOOP for change in changes)


def writes_secret(changes: Sequence[Change]) -> bool:
    """Whether carrying the changes out stores the token (so it must be checked first)."""
    return any(c.resource == "secret" and c.action in (Action.CREATE, Action.UPDATE) for c in changes)


def digest(value: Any) -> str:
    """SHA-256 of a JSON value in canonical form (sorted keys)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# -- desired state -------------------------------------------------------------------------


def render_runner_notebook(env: Environment) -> str:
    """The notebook apply uploads: exactly what `runner.notebook` renders for the environment."""
    from runner.notebook import NotebookDefaults, render_notebook

    return render_notebook(
        NotebookDefaults(
            dbt_cloud_host=env.dbt_cloud_host,
            dbt_cloud_account_id=env.dbt_cloud_account_id,
            secret_scope=env.secret_scope,
            secret_key=env.secret_key,
            timeout_seconds=env.run_timeout_seconds,
        )
    )


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def workflow_tags(env: Environment) -> dict[str, str]:
    return {MANAGED_BY_TAG: MANAGED_BY_VALUE, ENVIRONMENT_TAG: env.name}


def is_owned(job: Mapping[str, Any], env: Environment) -> bool:
    tags = (job.get("settings") or {}).get("tags") or {}
    return bool(tags.get(MANAGED_BY_TAG) == MANAGED_BY_VALUE and tags.get(ENVIRONMENT_TAG) == env.name)


def runner_task(
    env: Environment, task_key: str, dbt_job_id: int | None, depends_on: tuple[str, ...]
) -> dict[str, Any]:
    """One notebook task running the runner; ``dbt_job_id`` None reads the job-level parameter."""
    notebook_task: dict[str, Any] = {"notebook_path": env.notebook_path, "source": "WORKSPACE"}
    if dbt_job_id is not None:
        notebook_task["base_parameters"] = {"job_id": str(dbt_job_id)}
    task: dict[str, Any] = {
        "task_key": task_key,
        "notebook_task": notebook_task,
        "timeout_seconds": env.run_timeout_seconds + TASK_TIMEOUT_MARGIN_SECONDS,
    }
    if depends_on:
        task["depends_on"] = [{"task_key": key} for key in depends_on]
    # Serverless needs no compute field at all: a notebook task without one runs there.
    if env.compute.kind == "existing_cluster":
        task["existing_cluster_id"] = env.compute.existing_cluster_id
    elif env.compute.kind == "job_cluster":
        task["job_cluster_key"] = env.compute.job_cluster_key
    return task


def workflow_settings(env: Environment) -> dict[str, Any]:
    """The whole settings of the workflow dbtwf owns for the environment (jobs/create shape).

    One dbt job: a job-level parameter ``job_id`` that Databricks pushes down to the notebook
    widget, so "Run now with different parameters" can point it elsewhere. Several: each task
    carries its own ``base_parameters.job_id`` and there is no job-level one, because a job
    parameter overrides every task parameter of the same name.
    """
    single = len(env.dbt_jobs) == 1
    settings: dict[str, Any] = {
        "name": env.workflow_name,
        "tags": workflow_tags(env),
        "max_concurrent_runs": 1,
        "queue": {"enabled": True},  # a run over the limit waits instead of being skipped
        "tasks": [
            runner_task(env, job.task_key, None if single else job.job_id, job.depends_on)
            for job in env.dbt_jobs
        ],
    }
    if single:
        settings["parameters"] = [{"name": "job_id", "default": str(env.dbt_jobs[0].job_id)}]
    if env.schedule is not None:
        settings["schedule"] = {
            "quartz_cron_expression": env.schedule.quartz_cron,
            "timezone_id": env.schedule.timezone,
            "pause_status": "PAUSED" if env.schedule.paused else "UNPAUSED",
        }
    if env.compute.kind == "job_cluster":
        settings["job_clusters"] = [
            {
                "job_cluster_key": env.compute.job_cluster_key,
                "new_cluster": dict(env.compute.new_cluster or {}),
            }
        ]
    if env.failure_emails:
        settings["email_notifications"] = {"on_failure": list(env.failure_emails)}
    return settings


def merged_settings(desired: Mapping[str, Any], observed: Mapping[str, Any]) -> dict[str, Any]:
    """What jobs/reset sends for an owned workflow: dbtwf's fields as desired, every other
    field (and any extra tag) as the user left it, so a reset only changes what dbtwf manages."""
    kept = {key: value for key, value in observed.items() if key not in MANAGED_JOB_FIELDS}
    tags = {**(observed.get("tags") or {}), **desired.get("tags", {})}
    return {**kept, **desired, "tags": tags}


@dataclass(frozen=True)
class Desired:
    env: Environment
    notebook_source: str
    workflow: dict[str, Any]
    #: Only compared against the state record's salted fingerprint; never shown or stored.
    token: str | None = field(default=None, repr=False)
    #: The salt a first fingerprint is made with (the record's own salt wins when it has one).
    fresh_salt: str = field(default_factory=lambda: _new_salt())


def _new_salt() -> str:
    from provision.token import new_salt

    return new_salt()


def desired_state(env: Environment, token: str | None) -> Desired:
    return Desired(
        env=env, notebook_source=render_runner_notebook(env), workflow=workflow_settings(env), token=token
    )


def config_digest(env: Environment) -> str:
    """A digest of the resolved environment: a saved plan runs only against the same config."""
    return digest(dataclasses.asdict(env))


# -- reading the workspace -----------------------------------------------------------------


class Reader:
    """The workspace reads of one plan or one check, each made once.

    The planner and the executor's re-check under the lock read through a Reader each and
    compute what they compare with the same ``PROBES``, so "changed since the plan" means a
    different answer from the workspace, never a different way of asking.
    """

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self._cache: dict[tuple[str, Any], Any] = {}

    def _once(self, key: tuple[str, Any], read: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = read()
        return self._cache[key]

    def scope_names(self) -> frozenset[str]:
        return frozenset(
            self._once(("scopes", None), lambda: [str(s.get("name")) for s in self.ws.list_scopes()])
        )

    def has_scope(self, name: str) -> bool:
        """Whether the scope exists, compared as Databricks does: case-insensitively."""
        return any(same_scope(existing, name) for existing in self.scope_names())

    def scope_acls(self, env: Environment, *, required: bool) -> dict[str, str]:
        """The scope's ACLs as ``location.observe_scope_acls`` reads them (a refusal to list
        them fails the plan only when it needs them), cached like ``acls``."""
        key = ("acls", env.secret_scope)
        if key not in self._cache:
            acls = observe_scope_acls(self.ws, env, required=required)
            self._cache[key] = [{"principal": p, "permission": level} for p, level in acls.items()]
        return self.acls(env.secret_scope)

    def acls(self, scope: str) -> dict[str, str]:
        items = self._once(("acls", scope), lambda: self.ws.list_acls(scope))
        return {str(a.get("principal")): str(a.get("permission")) for a in items}

    def secrets(self, scope: str) -> dict[str, int | None]:
        """Key -> last_updated_timestamp (ms); never a value."""
        items = self._once(("secrets", scope), lambda: self.ws.list_secrets(scope))
        return {
            str(s.get("key")): (
                int(s["last_updated_timestamp"]) if s.get("last_updated_timestamp") is not None else None
            )
            for s in items
        }

    def status(self, path: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self._once(("status", path), lambda: self.ws.get_status(path))
        return found

    def export(self, path: str) -> str | None:
        found: str | None = self._once(("export", path), lambda: self.ws.export_source(path))
        return found

    def file(self, path: str) -> bytes | None:
        found: bytes | None = self._once(("file", path), lambda: self.ws.read_file(path))
        return found

    def job(self, job_id: int) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self._once(("job", job_id), lambda: self.ws.get_job(job_id))
        return found

    def remember_job(self, job: dict[str, Any]) -> None:
        """A jobs/get answer read elsewhere in the same plan (add-task's workflow)."""
        self._cache[("job", int(job["job_id"]))] = job

    def jobs_named(self, name: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._once(
            ("named", name.lower()), lambda: self.ws.list_jobs(name=name)
        )
        return found

    def jobs_with_tasks(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._once(("all-jobs", None), self.ws.list_jobs_with_tasks)
        return found

    def state(self, env: Environment) -> StateRecord | None:
        data = self.file(env.state_path)
        return None if data is None else StateRecord.from_json(data, env.state_path)


# -- observed state ------------------------------------------------------------------------


@dataclass(frozen=True)
class Observed:
    scope_exists: bool
    #: principal -> permission on the scope
    scope_acls: Mapping[str, str]
    secret_exists: bool
    folder_exists: bool
    #: The notebook's exported source: read only when the record cannot tell freshness.
    notebook_source: str | None
    state: StateRecord | None
    #: The owned workflow (a jobs/get answer), found by the state's job id or by name and tags.
    workflow: Mapping[str, Any] | None = None
    #: How it was found: "state" or "tags" (state lost, or written by another machine).
    found_by: str | None = None
    #: A job id in the state record that no longer exists (deleted by hand).
    stale_job_id: int | None = None
    #: Jobs with the workflow's name but without dbtwf's tags for this environment.
    foreign_same_name: tuple[int, ...] = ()
    #: Several jobs carry our tags for this environment: which one is ours is ambiguous.
    duplicate_owned: tuple[int, ...] = ()
    #: The notebook's get-status answer (object_id, modified_at, ...), None when missing.
    notebook_status: Mapping[str, Any] | None = None
    #: The secret's last_updated_timestamp in secrets/list (ms).
    secret_updated_at: int | None = None
    #: The identity applying, and who can edit/read the notebook (see provision.location).
    deployer: str | None = None
    location: LocationFacts | None = None


def find_owned_workflow(
    reader: Reader, env: Environment, state: StateRecord | None
) -> tuple[dict[str, Any] | None, str | None, int | None, tuple[int, ...], tuple[int, ...]]:
    """(workflow, found_by, stale_job_id, foreign_same_name, duplicate_owned)."""
    stale: int | None = None
    if state is not None and state.workflow_job_id is not None:
        job = reader.job(state.workflow_job_id)
        if job is not None and is_owned(job, env):
            return job, "state", None, (), ()
        if job is None:
            stale = state.workflow_job_id
    owned, foreign = _named(reader, env)
    if len(owned) > 1:
        return None, None, stale, foreign, tuple(owned)
    if owned:
        job = reader.job(owned[0])
        if job is not None:
            check_same_deployment(env, job)  # deployed from another notebook: another identity's
        return job, "tags", stale, foreign, ()
    return None, None, stale, foreign, ()


def _named(reader: Reader, env: Environment) -> tuple[list[int], tuple[int, ...]]:
    named = reader.jobs_named(env.workflow_name)
    owned = sorted(int(job["job_id"]) for job in named if is_owned(job, env))
    foreign = tuple(sorted(int(job["job_id"]) for job in named if not is_owned(job, env)))
    return owned, foreign


def _recorded_upload(state: StateRecord | None) -> bool:
    return bool(
        state is not None
        and state.notebook_sha256
        and state.notebook_object_id is not None
        and state.notebook_modified_at is not None
    )


def _status_stamp(status: Mapping[str, Any] | None) -> tuple[Any, Any]:
    status = status or {}
    return status.get("object_id"), status.get("modified_at")


def observe(reader: Reader, env: Environment, *, include_workflow: bool = True) -> Observed:
    state = reader.state(env)
    # First the workflow: deployed by another identity, it is their scope and notebook too.
    workflow, found_by, stale, foreign, duplicates = (
        find_owned_workflow(reader, env, state) if include_workflow else (None, None, None, (), ())
    )
    scope_exists = reader.has_scope(env.secret_scope)
    acls: dict[str, str] = {}
    secrets: dict[str, int | None] = {}
    if scope_exists:
        required = bool(env.scope_readers or (state is not None and state.granted_readers))
        acls = reader.scope_acls(env, required=required)
        secrets = reader.secrets(env.secret_scope)
    status = reader.status(env.notebook_path)
    folder_exists = status is not None or reader.status(env.notebook_folder) is not None
    # The export is the fallback: only when the record cannot say whether the notebook is
    # still what dbtwf uploaded (an older record, or a workspace without modified_at).
    notebook = None
    if status is not None and not (_recorded_upload(state) and None not in _status_stamp(status)):
        notebook = reader.export(env.notebook_path)
    return Observed(
        scope_exists=scope_exists,
        scope_acls=acls,
        secret_exists=env.secret_key in secrets,
        folder_exists=folder_exists,
        notebook_source=notebook,
        state=state,
        workflow=workflow,
        found_by=found_by,
        stale_job_id=stale,
        foreign_same_name=foreign,
        duplicate_owned=duplicates,
        notebook_status=status,
        secret_updated_at=secrets.get(env.secret_key),
        deployer=reader.ws.current_user_name(),
        location=observe_location(reader.ws, env),
    )


# -- the pure plan ---------------------------------------------------------------------------


def same_notebook(uploaded: str, rendered: str) -> bool:
    """Whether the workspace's notebook is the rendered one: an export may differ from the
    upload only in line endings and trailing whitespace."""

    def normalized(source: str) -> str:
        return source.replace("\r\n", "\n").rstrip()

    return normalized(uploaded) == normalized(rendered)


def _subset_differences(desired: Any, observed: Any, path: str) -> list[str]:
    """Where ``observed`` differs from ``desired``, ignoring fields dbtwf does not set
    (server defaults such as ``run_if`` or ``format``). Task lists compare by task_key."""
    if isinstance(desired, dict):
        if not isinstance(observed, dict):
            return [path]
        found: list[str] = []
        for key, value in desired.items():
            found += _subset_differences(value, observed.get(key), f"{path}.{key}" if path else key)
        return found
    if isinstance(desired, list):
        if not isinstance(observed, list) or len(desired) != len(observed):
            return [path]
        if desired and all(isinstance(item, dict) and "task_key" in item for item in desired):
            by_key = {item.get("task_key"): item for item in observed if isinstance(item, dict)}
            found = []
            for item in desired:
                found += _subset_differences(
                    item, by_key.get(item["task_key"]), f"{path}[{item['task_key']}]"
                )
            return found
        found = []
        for index, (want, have) in enumerate(zip(desired, observed, strict=True)):
            found += _subset_differences(want, have, f"{path}[{index}]")
        return found
    return [] if desired == observed else [path]


def workflow_differences(desired: Mapping[str, Any], observed_settings: Mapping[str, Any]) -> list[str]:
    """The managed fields of an owned workflow that do not match the desired settings."""
    differences: list[str] = []
    for name in MANAGED_JOB_FIELDS:
        want = desired.get(name)
        have = observed_settings.get(name)
        if want is None:
            # Not wanted any more (a schedule removed, several dbt jobs now): must be absent.
            if have not in (None, [], {}) and not (
                name == "email_notifications" and not (have or {}).get("on_failure")
            ):
                differences.append(name)
            continue
        differences += _subset_differences(want, have, name)
    return differences


def format_ms(stamp: int | None) -> str:
    if stamp is None:
        return "an unknown time"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(stamp / 1000))


def plan(
    desired: Desired, observed: Observed, *, adopt: bool = False, include_workflow: bool = True
) -> list[Change]:
    """The changes that converge the environment. Raises ConflictError where it must not guess."""
    env = desired.env
    changes: list[Change] = []
    scope = env.secret_scope

    if observed.scope_exists:
        changes.append(Change("scope", scope, Action.NOOP, "exists"))
    else:
        changes.append(Change("scope", scope, Action.CREATE, "missing"))

    for principal in env.scope_readers:
        grant = {"principal": principal, "permission": "READ"}
        have = observed.scope_acls.get(principal)
        if have is not None and _PERMISSION_RANK.get(have, 0) >= _PERMISSION_RANK["READ"]:
            changes.append(
                Change("scope-acl", f"{scope}:{principal}", Action.NOOP, f"has {have}", None, grant)
            )
        else:
            action = Action.CREATE if have is None else Action.UPDATE
            changes.append(Change("scope-acl", f"{scope}:{principal}", action, "needs READ", None, grant))

    changes.append(_plan_secret(desired, observed))
    changes.append(
        Change("folder", env.notebook_folder, Action.NOOP, "exists")
        if observed.folder_exists
        else Change("folder", env.notebook_folder, Action.CREATE, "missing")
    )
    notebook, record_notebook = _plan_notebook(desired, observed)
    changes.append(notebook)

    state = observed.state
    recorded = state.workflow_job_id if state is not None else None
    workflow_id = recorded
    if include_workflow:
        changes.append(_plan_workflow(desired, observed, adopt=adopt))
        workflow_id = changes[-1].job_id
    changes += security_changes(
        env,
        deployer=observed.deployer,
        location=observed.location,
        workflow=observed.workflow,
        scope_exists=observed.scope_exists,
        scope_acls=observed.scope_acls,
        granted_readers=state.granted_readers if state is not None else (),
    )
    if state is None:
        changes.append(Change("state", env.state_path, Action.CREATE, "missing"))
    elif has_changes(changes):
        changes.append(Change("state", env.state_path, Action.UPDATE, "records the changes above"))
    elif recorded != workflow_id:
        changes.append(
            Change("state", env.state_path, Action.UPDATE, "records the workflow found by its tags")
        )
    elif record_notebook:
        changes.append(
            Change("state", env.state_path, Action.UPDATE, "records the notebook's id and modification time")
        )
    else:
        changes.append(Change("state", env.state_path, Action.NOOP, "current"))
    return changes


def _plan_secret(desired: Desired, observed: Observed) -> Change:
    from provision.token import token_fingerprint

    env = desired.env
    name = f"{env.secret_scope}/{env.secret_key}"
    state = observed.state
    payload: dict[str, Any] = {}
    if desired.token is not None:
        salt = (state.token_salt if state is not None else "") or desired.fresh_salt
        payload = {"salt": salt, "fingerprint": token_fingerprint(desired.token, salt)}
    if not observed.secret_exists:
        return Change("secret", name, Action.CREATE, "missing", None, payload)
    recorded_at = state.secret_updated_at if state is not None else None
    if recorded_at is not None and observed.secret_updated_at != recorded_at:
        # Someone stored another value since dbtwf did: what the runner reads is not known.
        why = (
            f"overwritten outside dbtwf at {format_ms(observed.secret_updated_at)} "
            f"(dbtwf stored it at {format_ms(recorded_at)}); storing the token again"
        )
        if desired.token is None:
            why += " needs the token"
        return Change("secret", name, Action.UPDATE, why, None, payload)
    if desired.token is None:
        return Change("secret", name, Action.NOOP, "exists (token not available to compare)")
    if state is None or not state.token_fingerprint:
        return Change(
            "secret", name, Action.UPDATE, "no fingerprint recorded; re-storing the token", None, payload
        )
    if payload["fingerprint"] != state.token_fingerprint:
        return Change("secret", name, Action.UPDATE, "the token changed", None, payload)
    if recorded_at is None:
        why = "no update time recorded; re-storing the token so changes made outside dbtwf show"
        return Change("secret", name, Action.UPDATE, why, None, payload)
    return Change("secret", name, Action.NOOP, "token unchanged")


def _plan_notebook(desired: Desired, observed: Observed) -> tuple[Change, bool]:
    """The notebook change, and whether the state should record the notebook's id and time
    (found current by the export fallback: the next plan then needs no export)."""
    env = desired.env
    path = env.notebook_path
    wanted = sha256_text(desired.notebook_source)
    upload = {"source": desired.notebook_source, "sha256": wanted}
    status, state = observed.notebook_status, observed.state
    if status is None and observed.notebook_source is None:
        return Change("notebook", path, Action.CREATE, "missing", None, upload), False
    stamp = _status_stamp(status)
    if state is not None and _recorded_upload(state) and None not in stamp:
        if stamp != (state.notebook_object_id, state.notebook_modified_at):
            why = "differs from what dbtwf uploaded: changed in the workspace since"
            return Change("notebook", path, Action.UPDATE, why, None, upload), False
        if state.notebook_sha256 != wanted:
            return Change(
                "notebook", path, Action.UPDATE, "differs from the runner version", None, upload
            ), False
        return Change("notebook", path, Action.NOOP, "current (unchanged since dbtwf uploaded it)"), False
    if not same_notebook(observed.notebook_source or "", desired.notebook_source):
        return Change("notebook", path, Action.UPDATE, "differs from the runner version", None, upload), False
    if None in stamp:
        return Change("notebook", path, Action.NOOP, "current (compared by export)"), False
    found = {"record": {"sha256": wanted, "object_id": stamp[0], "modified_at": stamp[1]}}
    return Change("notebook", path, Action.NOOP, "current (compared by export)", None, found), True


def _plan_workflow(desired: Desired, observed: Observed, *, adopt: bool) -> Change:
    env = desired.env
    name = env.workflow_name
    if observed.duplicate_owned:
        ids = ", ".join(str(i) for i in observed.duplicate_owned)
        raise ConflictError(
            f"several jobs named {name!r} carry dbtwf's tags for environment {env.name!r}: {ids}",
            "delete the extra ones in the Databricks UI, keeping the one you use, then re-run",
        )
    if observed.workflow is not None:
        job_id = int(observed.workflow["job_id"])
        settings = observed.workflow.get("settings") or {}
        differences = workflow_differences(desired.workflow, settings)
        how = "found by its tags" if observed.found_by == "tags" else "owned"
        if differences:
            reset = {"settings": merged_settings(desired.workflow, settings)}
            why = f"{how}; differs in {', '.join(differences)}"
            return Change("workflow", name, Action.UPDATE, why, job_id, reset)
        return Change("workflow", name, Action.NOOP, f"{how}; in sync", job_id)
    if observed.foreign_same_name:
        ids = ", ".join(str(i) for i in observed.foreign_same_name)
        if adopt and len(observed.foreign_same_name) == 1:
            job_id = observed.foreign_same_name[0]
            why = "adopting the existing job; its settings are replaced"
            return Change("workflow", name, Action.UPDATE, why, job_id, {"settings": desired.workflow})
        raise ConflictError(
            f"a workflow named {name!r} already exists (job {ids}) and dbtwf did not create it",
            "set another workflow_name for the environment in dbtwf.toml, or re-run with --adopt "
            "to take over that job (its settings will be replaced)",
        )
    create = {"settings": desired.workflow}
    if observed.stale_job_id is not None:
        why = f"job {observed.stale_job_id} in the state was deleted"
        return Change("workflow", name, Action.CREATE, why, None, create)
    return Change("workflow", name, Action.CREATE, "missing", None, create)


# -- what each change expects to find -----------------------------------------------------


def _probe_scope(reader: Reader, env: Environment, change: Change) -> dict[str, Any]:
    exists = reader.has_scope(change.name)
    if change.action is not Action.DELETE or not exists:
        return {"exists": exists}
    # Deleting a scope deletes what it holds: a secret stored meanwhile must stop it.
    return {"exists": True, "keys": sorted(reader.secrets(change.name))}


def _probe_scope_acl(reader: Reader, env: Environment, change: Change) -> dict[str, Any]:
    scope, _, principal = change.name.partition(":")
    principal = str(change.payload.get("principal") or principal)
    if not reader.has_scope(scope):
        return {"permission": None}
    return {"permission": reader.acls(scope).get(principal)}


def _probe_secret(reader: Reader, env: Environment, change: Change) -> dict[str, Any]:
    scope, _, key = change.name.partition("/")
    secrets = reader.secrets(scope) if reader.has_scope(scope) else {}
    return {"exists": key in secrets, "updated": secrets.get(key)}


def _probe_path(reader: Reader, env: Environment, change: Change) -> dict[str, Any]:
    status = reader.status(change.name)
    if status is None:
        return {"exists": False}
    object_id, modified_at = _status_stamp(status)
    return {"exists": True, "object_id": object_id, "modified_at": modified_at}


def _probe_workflow(reader: Reader, env: Environment, change: Change) -> dict[str, Any]:
    if change.job_id is not None:
        job = reader.job(change.job_id)
        return {"job": None if job is None else digest(job.get("settings") or {})}
    owned, _foreign = _named(reader, env)
    return {"owned": owned}


def _probe_task(reader: Reader, env: Environment, change: Change) -> dict[str, Any]:
    """A task of a foreign workflow: the whole workflow's settings, since add-task's checks
    (compute, parameters, dependencies) read all of it."""
    job = reader.job(change.job_id) if change.job_id is not None else None
    return {"job": None if job is None else digest(job.get("settings") or {})}


def _probe_state(reader: Reader, env: Environment, change: Change) -> dict[str, Any]:
    data = reader.file(change.name)
    return {"digest": None if data is None else hashlib.sha256(data).hexdigest()}


#: resource -> what the workspace holds of the object a change is about.
PROBES: dict[str, Callable[[Reader, Environment, Change], dict[str, Any]]] = {
    "scope": _probe_scope,
    "scope-acl": _probe_scope_acl,
    "secret": _probe_secret,
    "folder": lambda reader, env, change: {"exists": reader.status(change.name) is not None},
    "notebook": _probe_path,
    "workflow": _probe_workflow,
    "task": _probe_task,
    "state": _probe_state,
}


def with_expectations(changes: Sequence[Change], reader: Reader, env: Environment) -> list[Change]:
    """The changes, each with what the workspace holds of its object now (``expect``)."""
    return [
        replace(change, expect=PROBES[change.resource](reader, env, change))
        if change.resource in PROBES
        else change
        for change in changes
    ]


def moved_since_plan(changes: Sequence[Change], reader: Reader, env: Environment) -> list[str]:
    """What differs from what the plan saw, one phrase per object; empty when nothing moved.

    A folder the plan wanted created is not compared: the executor makes it itself (mkdirs
    is idempotent) before the lock, which lives in it.
    """
    moved: list[str] = []
    for change in changes:
        if change.expect is None or change.resource not in PROBES:
            continue
        if change.resource == "folder" and change.action is Action.CREATE:
            continue
        now = PROBES[change.resource](reader, env, change)
        if now != dict(change.expect):
            moved.append(_describe_move(change, dict(change.expect), now))
    return moved


def _describe_move(change: Change, before: dict[str, Any], now: dict[str, Any]) -> str:
    what = f"{change.resource} {change.name}" + (f" (job {change.job_id})" if change.job_id else "")
    for key in ("exists", "job", "digest"):
        if key in before and bool(before[key]) != bool(now.get(key)):
            return f"{what} was {'created' if now.get(key) else 'deleted'}"
    if "owned" in before:
        return f"{what} now exists as job {', '.join(str(i) for i in now.get('owned') or [])}"
    return f"{what} was changed"


def plan_environment(
    ws: Workspace, env: Environment, token: str | None, *, include_workflow: bool = True, adopt: bool = False
) -> list[Change]:
    """Observe the workspace and plan. ``include_workflow=False`` leaves the workflow out
    (add-task only needs the scope, secret and notebook)."""
    reader = Reader(ws)
    observed = observe(reader, env, include_workflow=include_workflow)
    changes = plan(desired_state(env, token), observed, adopt=adopt, include_workflow=include_workflow)
    return with_expectations(changes, reader, env)


# -- a plan to keep: plan --out, apply --plan ------------------------------------------------

PLAN_FORMAT = "dbtwf-plan"
PLAN_VERSION = 1


@dataclass(frozen=True)
class Plan:
    """One environment's changes and what they were planned against.

    Saved as versioned JSON by ``plan --out``; ``apply --plan`` carries out exactly these
    changes after checking that the workspace (host and identity), the config (a digest of
    the resolved environment) and the token (a salted fingerprint, never the token) match.
    """

    environment: str
    workspace_host: str
    identity: str
    config_digest: str
    changes: tuple[Change, ...]
    #: Salted fingerprint of the token the plan was made with; empty: made without one.
    token_salt: str = ""
    token_fingerprint: str = field(default="", repr=False)
    created_at: float = 0.0

    def header(self) -> dict[str, str]:
        return {
            "environment": self.environment,
            "workspace_host": self.workspace_host,
            "identity": self.identity,
        }

    def to_json(self) -> bytes:
        data = {
            "format": PLAN_FORMAT,
            "version": PLAN_VERSION,
            **self.header(),
            "config_digest": self.config_digest,
            "token": {"salt": self.token_salt, "fingerprint": self.token_fingerprint}
            if self.token_fingerprint
            else None,
            "created_at": self.created_at,
            "changes": [change.to_saved() for change in self.changes],
        }
        return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes, where: str) -> Plan:
        hint = "make it again with `dbtwf plan --out FILE`"
        try:
            raw: Any = json.loads(data)
        except ValueError as error:
            raise UsageError(f"{where} is not a dbtwf plan: {error}", hint) from None
        if not isinstance(raw, dict) or raw.get("format") != PLAN_FORMAT:
            raise UsageError(f'{where} is not a dbtwf plan (no "format": "{PLAN_FORMAT}")', hint)
        version = raw.get("version")
        if not isinstance(version, int) or version > PLAN_VERSION:
            raise UsageError(
                f"{where} was written by a newer dbtwf (plan version {version}; this one reads "
                f"{PLAN_VERSION})",
                "apply it with the dbtwf that wrote it, or " + hint,
            )
        try:
            token = raw.get("token") or {}
            return cls(
                environment=str(raw["environment"]),
                workspace_host=str(raw["workspace_host"]),
                identity=str(raw["identity"]),
                config_digest=str(raw["config_digest"]),
                changes=tuple(Change.from_saved(c) for c in raw["changes"]),
                token_salt=str(token.get("salt", "")),
                token_fingerprint=str(token.get("fingerprint", "")),
                created_at=float(raw.get("created_at") or 0.0),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise UsageError(f"{where} is not a readable dbtwf plan: {error!r}", hint) from None

    def mismatches(self, *, host: str, identity: str, env: Environment, token: str | None) -> list[str]:
        """What no longer matches what the plan saw; empty when it may run."""
        from provision.token import token_fingerprint

        found: list[str] = []
        if host.rstrip("/") != self.workspace_host.rstrip("/"):
            found.append(f"the workspace is {host}, the plan was made for {self.workspace_host}")
        if identity != self.identity:
            found.append(f"the identity is {identity}, the plan was made as {self.identity}")
        if env.name != self.environment:
            found.append(f"the environment is {env.name!r}, the plan is for {self.environment!r}")
        elif config_digest(env) != self.config_digest:
            found.append(f"the config of environment {env.name!r} changed since the plan")
        if self.token_fingerprint:
            if token is None or token_fingerprint(token, self.token_salt) != self.token_fingerprint:
                found.append("the dbt Cloud token is not the one the plan was made with")
        elif writes_secret(self.changes):
            found.append("the plan stores the dbt Cloud token but was made without one")
        return found


def make_plan(
    ws: Workspace, env: Environment, token: str | None, *, identity: str, adopt: bool = False
) -> Plan:
    from provision.token import new_salt, token_fingerprint

    changes = plan_environment(ws, env, token, adopt=adopt)
    salt = new_salt() if token is not None else ""
    return Plan(
        environment=env.name,
        workspace_host=ws.host,
        identity=identity,
        config_digest=config_digest(env),
        changes=tuple(changes),
        token_salt=salt,
        token_fingerprint=token_fingerprint(token, salt) if token is not None else "",
        created_at=time.time(),
    )
