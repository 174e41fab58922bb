"""Remove what dbtwf created for one environment, and nothing else.

Owned: the workflow carrying dbtwf's tags for the environment, the tasks dbtwf added to
foreign workflows, the notebook, the stored secret, the state record, the scope only
when the state says dbtwf created it and it holds no other secret, and the folders dbtwf
made for the notebook (named in the record) while they are empty: a folder that existed
before, or that holds anything else, stays.

The state record is not trusted on its own (anyone who can edit the folder can edit it):
every entry is checked against the workspace first. A job is deleted only while it carries
dbtwf's tags; a task is removed (or the user's original put back) only while it is still
the task dbtwf wrote; an entry that no longer matches is shown as left alone. Tasks dbtwf
added are also found by their mark (description and notebook path), so a lost record does
not leave them pointing at a deleted notebook. A workflow a Databricks Asset Bundle now deploys
(``settings.deployment.kind`` BUNDLE) is left alone, with the secret it reads. The plan lists
every deletion and restoration; the executor checks them again under the lock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from provision.adopt.give_back import give_back_notebook, give_back_workflow
from provision.adopt.recognise import is_runner
from provision.bundle import bundle_note, is_bundle_managed
from provision.change import Action, Change
from provision.desired import is_owned
from provision.errors import ConflictError
from provision.foreign_task import is_dbtwf_task, task_differences
from provision.observe import Reader, find_owned_workflow, location_paths
from provision.probes import with_expectations
from provision.state import AddedTask, StateRecord

if TYPE_CHECKING:
    from collections.abc import Callable

    from provision.databricks import Workspace
    from provision.model import Environment


def _still_written(env: Environment, task: dict[str, Any], entry: AddedTask) -> list[str]:
    """Where the task differs from what dbtwf wrote (empty: still dbtwf's task)."""
    notebook = task.get("notebook_task") or {}
    differences = []
    platform = task.get("dbt_platform_task")
    if platform is not None:  # switched by `dbtwf migrate`: the dbt job must still be the entry's
        if platform.get("dbt_platform_job_id") != str(entry.dbt_job_id):
            differences.append("dbt_platform_task.dbt_platform_job_id")
    elif notebook.get("notebook_path") != env.notebook_path:
        differences.append("notebook_task.notebook_path")
    if platform is None and (notebook.get("base_parameters") or {}).get("job_id") != str(entry.dbt_job_id):
        differences.append("notebook_task.base_parameters")
    if entry.written is not None:
        differences += [d for d in task_differences(task, entry.written) if d not in differences]
    return differences


def plan_destroy(ws: Workspace, env: Environment) -> list[Change]:
    """What destroy would delete, put back or leave alone, read-only. Empty when dbtwf owns nothing."""
    reader = Reader(ws)
    state = reader.state(env)
    changes = _plan_tasks(reader, env, state)
    changes += _plan_workflow(reader, env, state)
    adopted = state is not None and bool(state.original_notebook_sha256)
    if adopted:
        assert state is not None
        changes += give_back_notebook(reader, env, state)
    elif reader.status(env.notebook_path) is not None:
        changes.append(_plan_notebook(reader, env, state))
    bundled = [c for c in changes if c.resource == "workflow" and c.payload.get("bundle")]
    if (adopted or bundled) and reader.has_scope(env.secret_scope):
        if adopted:
            why = "the hand-made setup's, taken over by adopt: left as it is"
        else:
            # The bundle's workflow reads the token from the same scope and key: deleting it would break it.
            why = f"the bundle-deployed workflow {bundled[0].job_id} reads it; left alone"
        changes.append(Change("secret", f"{env.secret_scope}/{env.secret_key}", Action.NOOP, why))
    elif state is not None and (state.scope_created or state.token_fingerprint):
        changes += _plan_secret_removal(reader, env, scope_created=state.scope_created)
    if (
        state is not None
        and state.granted_readers
        and not bundled
        and not any(c.resource == "scope" for c in changes)
    ):
        changes += _plan_grant_removal(reader, env, state.granted_readers)
    if state is not None:
        changes.append(Change("state", env.state_path, Action.DELETE, "dbtwf's record"))
        changes += _plan_folders(reader, env, state)
    return with_expectations(changes, reader, env)


def _plan_notebook(reader: Reader, env: Environment, state: StateRecord | None) -> Change:
    """Delete the notebook dbtwf uploaded. With no upload recorded (no record: a second destroy,
    after one gave an adopted notebook back), only while it is dbtwf's runner: the path may
    hold the user's own code."""
    if state is None or not state.notebook_sha256:
        source = reader.export(env.notebook_path)
        if source is not None and not is_runner(source):
            why = "not dbtwf's runner and no upload recorded: the user's own notebook, left alone"
            return Change("notebook", env.notebook_path, Action.NOOP, why)
    return Change("notebook", env.notebook_path, Action.DELETE, "uploaded by dbtwf")


def _plan_folders(reader: Reader, env: Environment, state: StateRecord) -> list[Change]:
    """The folders the record says dbtwf made, deepest first, that still exist. Only the
    notebook's folder and those above it count: an edited record names no other folder.
    Each goes only if empty once the rest is deleted (the executor checks, after the lock)."""
    chain = location_paths(env.notebook_path)[1:]
    recorded = [path for path in chain if path in state.created_folders]
    reader.prefetch(*(lambda path=path: reader.status(path) for path in recorded))
    why = "made by dbtwf for the notebook; deleted only if empty"
    return [
        Change("folder", path, Action.DELETE, why) for path in recorded if reader.status(path) is not None
    ]


def _plan_tasks(reader: Reader, env: Environment, state: StateRecord | None) -> list[Change]:
    changes: list[Change] = []
    removing: dict[int, set[str]] = {}
    seen: set[tuple[int, str]] = set()
    for entry in state.added_tasks if state is not None else []:
        seen.add((entry.job_id, entry.task_key))
        where = f"job {entry.job_id}"
        job = reader.job(entry.job_id)
        tasks = {t.get("task_key"): t for t in ((job or {}).get("settings") or {}).get("tasks") or []}
        task = tasks.get(entry.task_key)
        if job is None or task is None:
            continue  # already gone: nothing to do, nothing to say
        if entry.adopted:
            why = f"in {where}, the user's own task taken over by adopt: left as it is"
            changes.append(Change("task", entry.task_key, Action.NOOP, why, entry.job_id, {"op": "keep"}))
            continue
        if is_owned(job, env):
            why = f"{where} is dbtwf's own workflow, not a workflow it added a task to; left alone"
            changes.append(Change("task", entry.task_key, Action.NOOP, why, entry.job_id, {"op": "keep"}))
            continue
        differences = _still_written(env, task, entry)
        if differences:
            why = (
                f"in {where}, changed since dbtwf wrote it ({', '.join(differences)}); left alone: "
                "remove it by hand if it should go"
            )
            changes.append(Change("task", entry.task_key, Action.NOOP, why, entry.job_id, {"op": "keep"}))
            continue
        original = entry.replaced
        if (
            original is not None
            and original.get("task_key") == entry.task_key
            and not is_dbtwf_task(env, original)
        ):
            notebook = (original.get("notebook_task") or {}).get("notebook_path") or "no notebook"
            why = f"put back in {where}: the task dbtwf replaced (runs {notebook})"
            payload = {"op": "restore", "task": original}
            changes.append(Change("task", entry.task_key, Action.UPDATE, why, entry.job_id, payload))
            continue
        removing.setdefault(entry.job_id, set()).add(entry.task_key)
        why = f"added by dbtwf to {where}"
        changes.append(Change("task", entry.task_key, Action.DELETE, why, entry.job_id, {"op": "remove"}))
    # Tasks carrying dbtwf's mark that the record does not name (lost, or written by a run
    # killed before it could record them).
    for job in reader.jobs_with_tasks():
        if is_owned(job, env):
            continue  # the workflow dbtwf owns goes as a whole
        job_id = int(job["job_id"])
        for task in (job.get("settings") or {}).get("tasks") or []:
            key = str(task.get("task_key"))
            if (job_id, key) in seen or not is_dbtwf_task(env, task):
                continue
            removing.setdefault(job_id, set()).add(key)
            why = f"added by dbtwf to job {job_id} (found by its mark; not in the state record)"
            changes.append(Change("task", key, Action.DELETE, why, job_id, {"op": "remove"}))
    for job_id, keys in removing.items():
        _refuse_to_orphan_dependents(job_id, reader.job(job_id) or {}, keys)
    return changes


def _plan_workflow(reader: Reader, env: Environment, state: StateRecord | None) -> list[Change]:
    changes: list[Change] = []
    workflow, found_by, _stale, _foreign, duplicates = find_owned_workflow(reader, env, state)
    recorded = state.workflow_job_id if state is not None else None
    if recorded is not None and found_by != "state":
        job = reader.job(recorded)
        if job is not None:  # in the record but without dbtwf's tags: not ours to delete
            why = (
                f"job {recorded} in the state record does not carry dbtwf's tags for {env.name!r}; left alone"
            )
            changes.append(
                Change("workflow", str((job.get("settings") or {}).get("name")), Action.NOOP, why, recorded)
            )
    if workflow is not None and is_bundle_managed(workflow.get("settings") or {}):
        why = f"{bundle_note(workflow['settings'])}; left alone: `databricks bundle destroy` removes it"
        job_id = int(workflow["job_id"])
        return [*changes, Change("workflow", env.workflow_name, Action.NOOP, why, job_id, {"bundle": True})]
    owned_ids = [int(workflow["job_id"])] if workflow is not None else list(duplicates)
    adopted = {w.job_id: w for w in state.adopted_workflows} if state is not None else {}
    for job_id in [i for i in owned_ids if i in adopted]:
        owned_ids.remove(job_id)
        current = (reader.job(job_id) or {}).get("settings") or {}
        payload = give_back_workflow(adopted[job_id], current, env)
        why = "made by hand, adopted: given back as adopt found it (dbtwf's tags removed), not deleted"
        if payload.get("kept"):
            why += f"; keeps task(s) {', '.join(payload['kept'])} added since (not dbtwf's)"
        gone = {name.split("/", 1)[1] for name in payload["fields_to_remove"] if name.startswith("tasks/")}
        _refuse_to_orphan_dependents(job_id, {"settings": current}, gone)
        changes.append(Change("adopt-workflow", env.workflow_name, Action.UPDATE, why, job_id, payload))
    for job_id in owned_ids:
        how = "recorded in the state" if found_by == "state" else "carries dbtwf's tags"
        changes.append(Change("workflow", env.workflow_name, Action.DELETE, how, job_id))
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


def _plan_secret_removal(reader: Reader, env: Environment, *, scope_created: bool) -> list[Change]:
    """The scope when dbtwf created it and it holds nothing else; otherwise only dbtwf's secret.
    Others may have put their own secrets in a scope dbtwf made: deleting it would lose them."""
    if not reader.has_scope(env.secret_scope):
        return []
    keys = set(reader.secrets(env.secret_scope))
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


def _plan_grant_removal(reader: Reader, env: Environment, granted: list[str]) -> list[Change]:
    """The READ dbtwf granted on a scope that stays (not dbtwf's, or holding others' secrets)."""
    if not reader.has_scope(env.secret_scope):
        return []
    acls = reader.acls(env.secret_scope)
    return [
        Change("scope-acl", f"{env.secret_scope}:{principal}", Action.DELETE, "READ granted by dbtwf")
        for principal in sorted(set(granted))
        if acls.get(principal) == "READ"
    ]


def destroy_changes(
    ws: Workspace,
    env: Environment,
    changes: list[Change],
    *,
    break_lock: bool = False,
    warn: Callable[[str], None] | None = None,
) -> list[Change]:
    """Deletes what ``plan_destroy`` listed, under the environment's lock, after checking
    every object is still what the plan saw."""
    from provision.apply import execute

    return execute(
        ws, env, changes, None, break_lock=break_lock, replan=lambda: plan_destroy(ws, env), warn=warn
    )
