"""Desired state vs what the workspace holds, as data.

``plan(desired, observed)`` is pure: frozen dataclasses in, a list of ``Change`` out, so
every decision (create, update in place, leave alone, refuse) is tested without a server.
``observe`` does the reads through the gateway; ``plan_environment`` chains the two.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from provision.errors import ConflictError
from provision.location import (
    LocationFacts,
    check_same_deployment,
    observe_location,
    observe_scope_acls,
    security_changes,
)
from provision.model import ENVIRONMENT_TAG, MANAGED_BY_TAG, MANAGED_BY_VALUE, Environment
from provision.state import StateRecord, load_state

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
    # "scope" | "scope-acl" | "secret" | "folder" | "notebook" | "notebook-acl" | "workflow" | "state",
    # or "warning": shown with the plan, never carried out (always a no-op)
    resource: str
    name: str
    action: Action
    reason: str
    #: The job id an UPDATE/NOOP of the workflow applies to.
    job_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "resource": self.resource,
            "name": self.name,
            "action": self.action.value,
            "reason": self.reason,
        }
        if self.job_id is not None:
            data["job_id"] = self.job_id
        return data


def has_changes(changes: list[Change]) -> bool:
    return any(change.action is not Action.NOOP for change in changes)


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


@dataclass(frozen=True)
class Desired:
    env: Environment
    notebook_source: str
    workflow: dict[str, Any]
    #: Only compared against the state record's salted fingerprint; never shown or stored.
    token: str | None = field(default=None, repr=False)


def desired_state(env: Environment, token: str | None) -> Desired:
    return Desired(
        env=env, notebook_source=render_runner_notebook(env), workflow=workflow_settings(env), token=token
    )


# -- observed state ------------------------------------------------------------------------


@dataclass(frozen=True)
class Observed:
    scope_exists: bool
    #: principal -> permission on the scope
    scope_acls: Mapping[str, str]
    secret_exists: bool
    folder_exists: bool
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
    #: The identity applying, and who can edit/read the notebook (see provision.location).
    deployer: str | None = None
    location: LocationFacts | None = None


def find_owned_workflow(
    ws: Workspace, env: Environment, state: StateRecord | None
) -> tuple[dict[str, Any] | None, str | None, int | None, tuple[int, ...], tuple[int, ...]]:
    """(workflow, found_by, stale_job_id, foreign_same_name, duplicate_owned)."""
    stale: int | None = None
    if state is not None and state.workflow_job_id is not None:
        job = ws.get_job(state.workflow_job_id)
        if job is not None and is_owned(job, env):
            return job, "state", None, (), ()
        if job is None:
            stale = state.workflow_job_id
    named = ws.list_jobs(name=env.workflow_name)
    owned = sorted(int(job["job_id"]) for job in named if is_owned(job, env))
    foreign = tuple(sorted(int(job["job_id"]) for job in named if not is_owned(job, env)))
    if len(owned) > 1:
        return None, None, stale, foreign, tuple(owned)
    if owned:
        job = ws.get_job(owned[0])
        if job is not None:
            check_same_deployment(env, job)  # deployed from another notebook: another identity's
        return job, "tags", stale, foreign, ()
    return None, None, stale, foreign, ()


def observe(ws: Workspace, env: Environment, *, include_workflow: bool = True) -> Observed:
    state = load_state(ws, env)
    # First the workflow: deployed by another identity, it is their scope and notebook too.
    workflow, found_by, stale, foreign, duplicates = (
        find_owned_workflow(ws, env, state) if include_workflow else (None, None, None, (), ())
    )
    scope_exists = ws.has_scope(env.secret_scope)
    acls: dict[str, str] = {}
    secret_exists = False
    if scope_exists:
        required = bool(env.scope_readers or (state is not None and state.granted_readers))
        acls = observe_scope_acls(ws, env, required=required)
        secret_exists = any(s.get("key") == env.secret_key for s in ws.list_secrets(env.secret_scope))
    folder_exists = ws.get_status(env.notebook_folder) is not None
    notebook = ws.export_source(env.notebook_path) if folder_exists else None
    return Observed(
        scope_exists=scope_exists,
        scope_acls=acls,
        secret_exists=secret_exists,
        folder_exists=folder_exists,
        notebook_source=notebook,
        state=state,
        workflow=workflow,
        found_by=found_by,
        stale_job_id=stale,
        foreign_same_name=foreign,
        duplicate_owned=duplicates,
        deployer=ws.current_user_name(),
        location=observe_location(ws, env),
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


def plan(
    desired: Desired, observed: Observed, *, adopt: bool = False, include_workflow: bool = True
) -> list[Change]:
    """The changes that converge the environment. Raises ConflictError where it must not guess."""
    from provision.token import token_fingerprint

    env = desired.env
    changes: list[Change] = []
    scope = env.secret_scope

    if observed.scope_exists:
        changes.append(Change("scope", scope, Action.NOOP, "exists"))
    else:
        changes.append(Change("scope", scope, Action.CREATE, "missing"))

    for principal in env.scope_readers:
        have = observed.scope_acls.get(principal)
        if have is not None and _PERMISSION_RANK.get(have, 0) >= _PERMISSION_RANK["READ"]:
            changes.append(Change("scope-acl", f"{scope}:{principal}", Action.NOOP, f"has {have}"))
        else:
            action = Action.CREATE if have is None else Action.UPDATE
            changes.append(Change("scope-acl", f"{scope}:{principal}", action, "needs READ"))

    secret_name = f"{scope}/{env.secret_key}"
    state = observed.state
    if not observed.secret_exists:
        changes.append(Change("secret", secret_name, Action.CREATE, "missing"))
    elif desired.token is None:
        changes.append(Change("secret", secret_name, Action.NOOP, "exists (token not available to compare)"))
    elif state is None or not state.token_fingerprint:
        changes.append(
            Change("secret", secret_name, Action.UPDATE, "no fingerprint recorded; re-storing the token")
        )
    elif token_fingerprint(desired.token, state.token_salt) != state.token_fingerprint:
        changes.append(Change("secret", secret_name, Action.UPDATE, "the token changed"))
    else:
        changes.append(Change("secret", secret_name, Action.NOOP, "token unchanged"))

    folder = env.notebook_folder
    changes.append(
        Change("folder", folder, Action.NOOP, "exists")
        if observed.folder_exists
        else Change("folder", folder, Action.CREATE, "missing")
    )

    if observed.notebook_source is None:
        changes.append(Change("notebook", env.notebook_path, Action.CREATE, "missing"))
    elif not same_notebook(observed.notebook_source, desired.notebook_source):
        changes.append(
            Change("notebook", env.notebook_path, Action.UPDATE, "differs from the runner version")
        )
    else:
        changes.append(Change("notebook", env.notebook_path, Action.NOOP, "current"))

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
    elif has_changes(changes) or recorded != workflow_id:
        changes.append(Change("state", env.state_path, Action.UPDATE, "records the changes above"))
    else:
        changes.append(Change("state", env.state_path, Action.NOOP, "current"))
    return changes


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
        differences = workflow_differences(desired.workflow, observed.workflow.get("settings") or {})
        how = "found by its tags" if observed.found_by == "tags" else "owned"
        if differences:
            return Change(
                "workflow", name, Action.UPDATE, f"{how}; differs in {', '.join(differences)}", job_id
            )
        return Change("workflow", name, Action.NOOP, f"{how}; in sync", job_id)
    if observed.foreign_same_name:
        ids = ", ".join(str(i) for i in observed.foreign_same_name)
        if adopt and len(observed.foreign_same_name) == 1:
            job_id = observed.foreign_same_name[0]
            return Change(
                "workflow",
                name,
                Action.UPDATE,
                "adopting the existing job; its settings are replaced",
                job_id,
            )
        raise ConflictError(
            f"a workflow named {name!r} already exists (job {ids}) and dbtwf did not create it",
            "set another workflow_name for the environment in dbtwf.toml, or re-run with --adopt "
            "to take over that job (its settings will be replaced)",
        )
    if observed.stale_job_id is not None:
        return Change(
            "workflow", name, Action.CREATE, f"job {observed.stale_job_id} in the state was deleted"
        )
    return Change("workflow", name, Action.CREATE, "missing")


def plan_environment(
    ws: Workspace, env: Environment, token: str | None, *, include_workflow: bool = True, adopt: bool = False
) -> list[Change]:
    """Observe the workspace and plan. ``include_workflow=False`` leaves the workflow out
    (add-task only needs the scope, secret and notebook)."""
    observed = observe(ws, env, include_workflow=include_workflow)
    return plan(desired_state(env, token), observed, adopt=adopt, include_workflow=include_workflow)
