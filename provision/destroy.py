"""Remove what dbtwf created for one environment, and nothing else.

Owned: the workflow carrying dbtwf's tags for the environment, the tasks recorded as added
to foreign workflows, the notebook, the stored secret, the state record, and the scope only
when the state says dbtwf created it and it holds no other secret. The folder stays: other
things may live in it.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

from provision.errors import ConflictError
from provision.plan import Action, Change, find_owned_workflow
from provision.state import delete_state, environment_lock, load_state

if TYPE_CHECKING:
    from provision.databricks import Workspace
    from provision.model import Environment


def plan_destroy(ws: Workspace, env: Environment) -> list[Change]:
    """What destroy would delete, read-only. Empty when dbtwf owns nothing here."""
    state = load_state(ws, env)
    changes: list[Change] = []
    workflow, found_by, _stale, _foreign, duplicates = find_owned_workflow(ws, env, state)
    owned_ids = [int(workflow["job_id"])] if workflow is not None else list(duplicates)
    for job_id in owned_ids:
        how = "recorded in the state" if found_by == "state" else "carries dbtwf's tags"
        changes.append(Change("workflow", env.workflow_name, Action.DELETE, how, job_id))
    removing: dict[int, tuple[dict[str, Any], set[str]]] = {}
    for added in state.added_tasks if state is not None else []:
        job = ws.get_job(added.job_id)
        keys = {task.get("task_key") for task in ((job or {}).get("settings") or {}).get("tasks") or []}
        if job is None or added.task_key not in keys:
            continue
        if added.replaced is not None:
            why = f"put back: the task dbtwf replaced in job {added.job_id}"
            changes.append(Change("task", added.task_key, Action.UPDATE, why, added.job_id))
            continue
        removing.setdefault(added.job_id, (job, set()))[1].add(added.task_key)
        changes.append(
            Change(
                "task", added.task_key, Action.DELETE, f"added by dbtwf to job {added.job_id}", added.job_id
            )
        )
    for job_id, (job, keys) in removing.items():
        _refuse_to_orphan_dependents(job_id, job, keys)
    if ws.get_status(env.notebook_path) is not None:
        changes.append(Change("notebook", env.notebook_path, Action.DELETE, "uploaded by dbtwf"))
    if state is not None and (state.scope_created or state.token_fingerprint):
        changes += _plan_secret_removal(ws, env, scope_created=state.scope_created)
    if state is not None and state.granted_readers and not any(c.resource == "scope" for c in changes):
        changes += _plan_grant_removal(ws, env, state.granted_readers)
    if state is not None:
        changes.append(Change("state", env.state_path, Action.DELETE, "dbtwf's record"))
    return changes


def _refuse_to_orphan_dependents(job_id: int, job: dict[str, Any], removed: set[str]) -> None:
    """Databricks refuses to remove a task another task depends on; say so before any write,
    with what to do, instead of failing halfway with the API's message."""
    for task in (job.get("settings") or {}).get("tasks") or []:
        needs = {d.get("task_key") for d in task.get("depends_on") or []} & removed
        if needs and task.get("task_key") not in removed:
            raise ConflictError(
                f"task {task.get('task_key')!r} of workflow {job_id} depends on "
                f"{', '.join(repr(k) for k in sorted(needs))}, which dbtwf added and destroy would remove",
                hint="remove that dependency in the workflow (Tasks tab), then run destroy again",
            )


def _plan_secret_removal(ws: Workspace, env: Environment, *, scope_created: bool) -> list[Change]:
    """The scope when dbtwf created it and it holds nothing else; otherwise only dbtwf's secret.
    Others may have put their own secrets in a scope dbtwf made: deleting it would lose them."""
    if not ws.has_scope(env.secret_scope):
        return []
    keys = {s.get("key") for s in ws.list_secrets(env.secret_scope)}
    others = keys - {env.secret_key}
    if scope_created and not others:
        return [Change("scope", env.secret_scope, Action.DELETE, "created by dbtwf")]
    if env.secret_key not in keys:
        return []
    if scope_created:
        why = f"stored by dbtwf; the scope stays: it holds {len(others)} secret(s) dbtwf did not store"
    else:
        why = "stored by dbtwf; the scope is not dbtwf's"
    return [Change("secret", f"{env.secret_scope}/{env.secret_key}", Action.DELETE, why)]


def _plan_grant_removal(ws: Workspace, env: Environment, granted: list[str]) -> list[Change]:
    """The READ dbtwf granted on a scope that stays (not dbtwf's, or holding others' secrets)."""
    if not ws.has_scope(env.secret_scope):
        return []
    acls = {str(a.get("principal")): str(a.get("permission")) for a in ws.list_acls(env.secret_scope)}
    return [
        Change("scope-acl", f"{env.secret_scope}:{principal}", Action.DELETE, "READ granted by dbtwf")
        for principal in sorted(set(granted))
        if acls.get(principal) == "READ"
    ]


def destroy_changes(
    ws: Workspace, env: Environment, changes: list[Change], *, break_lock: bool = False
) -> list[Change]:
    """Deletes what ``plan_destroy`` listed, under the environment's lock."""
    if not changes:
        return changes
    has_folder = ws.get_status(env.notebook_folder) is not None
    if not has_folder:  # nothing of ours can live there; remove the jobs alone
        _delete(ws, env, changes)
        return changes
    with environment_lock(ws, env, break_lock=break_lock):
        _delete(ws, env, changes)
    return changes


def _delete(ws: Workspace, env: Environment, changes: list[Change]) -> None:
    # One jobs/update per foreign workflow removes every task dbtwf added to it and puts
    # back the user's tasks that --replace overwrote.
    state = load_state(ws, env)
    originals = {(t.job_id, t.task_key): t.replaced for t in state.added_tasks} if state else {}
    removed: dict[int, list[str]] = defaultdict(list)
    restored: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for change in changes:
        if change.resource != "task" or change.job_id is None:
            continue
        original = originals.get((change.job_id, change.name))
        if change.action is Action.UPDATE and original is not None:
            restored[change.job_id].append(original)
        else:
            removed[change.job_id].append(change.name)
    for job_id in {**removed, **restored}:
        ws.update_job(
            job_id,
            {"tasks": restored[job_id]} if restored.get(job_id) else {},
            fields_to_remove=[f"tasks/{key}" for key in removed.get(job_id, [])] or None,
        )
    for change in changes:
        if change.resource == "workflow" and change.job_id is not None:
            ws.delete_job(change.job_id)
        elif change.resource == "notebook":
            ws.delete(env.notebook_path)
        elif change.resource == "secret":
            ws.delete_secret(env.secret_scope, env.secret_key)
        elif change.resource == "scope":
            ws.delete_scope(env.secret_scope)
        elif change.resource == "scope-acl":
            ws.delete_acl(env.secret_scope, change.name.split(":", 1)[1])
    if any(change.resource == "state" for change in changes):
        delete_state(ws, env)
