"""Carry out a plan: the writes, in dependency order, under the environment's lock.

Nothing is written when every change is a no-op (not even the lock). Otherwise the folder
is made first (the lock file lives in it), the lock is taken, the workspace is observed
and planned again under the lock (another apply may have finished meanwhile), and the
fresh plan is executed and recorded in the state file.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from provision.errors import ConflictError, DbtwfError, UsageError
from provision.plan import (
    MANAGED_JOB_FIELDS,
    Action,
    Change,
    Desired,
    desired_state,
    has_changes,
    is_owned,
    observe,
    plan,
    sha256_text,
)
from provision.state import StateRecord, environment_lock, save_state

if TYPE_CHECKING:
    from provision.databricks import Workspace
    from provision.model import Environment


def apply_changes(
    ws: Workspace,
    env: Environment,
    changes: list[Change],
    token: str | None,
    *,
    break_lock: bool = False,
    adopt: bool = False,
) -> list[Change]:
    """Executes ``changes`` (as planned by plan_environment); returns what was done."""
    if not has_changes(changes):
        return changes
    # Re-plan as widely as the caller planned: add-task plans without the workflow.
    include_workflow = any(change.resource == "workflow" for change in changes)
    folder = next((c for c in changes if c.resource == "folder"), None)
    if folder is not None and folder.action is Action.CREATE:
        ws.mkdirs(env.notebook_folder)  # idempotent, so safe before the lock
    with environment_lock(ws, env, break_lock=break_lock):
        observed = observe(ws, env, include_workflow=include_workflow)
        desired = desired_state(env, token)
        fresh = plan(desired, observed, adopt=adopt, include_workflow=include_workflow)
        if not has_changes(fresh):
            return fresh
        record = observed.state or StateRecord(environment=env.name)
        workflow_settings = observed.workflow.get("settings") if observed.workflow else None
        for change in list(fresh):
            if change.action is not Action.NOOP:
                warning = _execute(ws, env, desired, change, record, workflow_settings)
                if warning is not None:
                    fresh.append(warning)
            elif change.resource == "workflow":
                record.workflow_job_id = change.job_id  # found by its tags after the state was lost
        record.notebook_sha256 = sha256_text(desired.notebook_source)
        save_state(ws, env, record)
    return fresh


def _execute(
    ws: Workspace,
    env: Environment,
    desired: Desired,
    change: Change,
    record: StateRecord,
    workflow_settings: dict[str, Any] | None,
) -> Change | None:
    """Carries out one change; returns a warning the user must hear about what was done."""
    from provision.location import (
        NOTEBOOK_ACL,
        WARNING,
        all_users_scope_warning,
        grant_read,
        notebook_acl_principal,
    )
    from provision.token import new_salt, token_fingerprint

    if change.resource == "scope":
        try:
            manager = ws.create_scope(env.secret_scope)
            record.scope_created = True
        except ConflictError:
            return None  # created by someone else meanwhile: it is theirs, not ours to delete later
        if manager == "users":  # a workspace without Premium allows nothing else
            return Change(
                WARNING, env.secret_scope, Action.NOOP, all_users_scope_warning(env.secret_scope, "MANAGE")
            )
    elif change.resource == "scope-acl":
        principal = change.name.split(":", 1)[1]
        if change.action is Action.DELETE:
            ws.delete_acl(env.secret_scope, principal)
            record.granted_readers = [p for p in record.granted_readers if p != principal]
        else:
            ws.put_acl(env.secret_scope, principal, "READ")
            if principal not in record.granted_readers:
                record.granted_readers.append(principal)
    elif change.resource == NOTEBOOK_ACL:
        grant_read(ws, env.notebook_path, notebook_acl_principal(change.name, env.notebook_path))
    elif change.resource == "secret":
        if desired.token is None:
            raise UsageError(
                "the secret needs the dbt Cloud token, and none was given",
                "set DBT_CLOUD_API_TOKEN or run `dbtwf token set`",
            )
        salt = record.token_salt or new_salt()
        ws.put_secret(env.secret_scope, env.secret_key, desired.token)
        record.token_salt = salt
        record.token_fingerprint = token_fingerprint(desired.token, salt)
    elif change.resource == "folder":
        ws.mkdirs(env.notebook_folder)
    elif change.resource == "notebook":
        ws.import_notebook(env.notebook_path, desired.notebook_source, overwrite=True)
    elif change.resource == "workflow":
        if change.action is Action.CREATE:
            record.workflow_job_id = create_workflow(ws, env, desired.workflow)
        else:
            assert change.job_id is not None
            ws.reset_job(change.job_id, merged_settings(desired.workflow, workflow_settings or {}))
            record.workflow_job_id = change.job_id
    # "state" is written once by the caller after every other change.
    return None


def merged_settings(desired: dict[str, Any], observed: dict[str, Any]) -> dict[str, Any]:
    """What jobs/reset sends for an owned workflow: dbtwf's fields as desired, every other
    field (and any extra tag) as the user left it, so a reset only changes what dbtwf manages."""
    kept = {key: value for key, value in observed.items() if key not in MANAGED_JOB_FIELDS}
    tags = {**(observed.get("tags") or {}), **desired.get("tags", {})}
    return {**kept, **desired, "tags": tags}


def _owned_ids(ws: Workspace, env: Environment) -> list[int]:
    return sorted(int(job["job_id"]) for job in ws.list_jobs(name=env.workflow_name) if is_owned(job, env))


def create_workflow(ws: Workspace, env: Environment, settings: dict[str, Any]) -> int:
    """jobs/create, safe against a create that landed although its answer was lost.

    The SDK re-sends a POST after a dropped connection or a timeout, so one call may create
    two jobs, or fail after creating one. Look after every create: keep exactly one.
    """
    try:
        job_id = ws.create_job(settings)
    except DbtwfError:
        landed = _owned_ids(ws, env)
        if len(landed) == 1:
            return landed[0]
        raise
    for extra in _owned_ids(ws, env):
        if extra != job_id:
            ws.delete_job(extra)  # a duplicate of the create we just did; nobody else knows it
    return job_id


# -- every environment at once -------------------------------------------------------------


@dataclass
class EnvironmentResult:
    """One environment's plan (then what apply did), or the error that stopped it."""

    environment: Environment
    workspace: Workspace | None = None
    changes: list[Change] = field(default_factory=list)
    error: DbtwfError | None = None

    @property
    def pending(self) -> bool:
        return self.error is None and has_changes(self.changes)


def _concurrently(work: Callable[[EnvironmentResult], None], results: list[EnvironmentResult]) -> None:
    """Runs ``work`` on each result in its own thread; a project error stays with its environment."""

    def guarded(result: EnvironmentResult) -> None:
        try:
            work(result)
        except DbtwfError as error:
            result.error = error

    with ThreadPoolExecutor(max_workers=max(1, min(8, len(results))), thread_name_prefix="dbtwf") as pool:
        list(pool.map(guarded, results))


def plan_all(
    environments: list[Environment], token: str | None, connect: Callable[[Environment], Workspace]
) -> list[EnvironmentResult]:
    """Plans every environment concurrently (each its own workspace and lock)."""
    from provision.plan import plan_environment

    results = [EnvironmentResult(environment) for environment in environments]

    def plan_one(result: EnvironmentResult) -> None:
        from provision.location import resolve_location

        result.workspace = connect(result.environment)
        result.environment = resolve_location(result.workspace, result.environment)
        result.changes = plan_environment(result.workspace, result.environment, token)

    _concurrently(plan_one, results)
    return results


def apply_all(results: list[EnvironmentResult], token: str | None, *, break_lock: bool) -> None:
    """Applies the pending plans concurrently; each result then holds what was done or its error."""

    def apply_one(result: EnvironmentResult) -> None:
        assert result.workspace is not None
        result.changes = apply_changes(
            result.workspace, result.environment, result.changes, token, break_lock=break_lock
        )

    _concurrently(apply_one, [result for result in results if result.pending])
