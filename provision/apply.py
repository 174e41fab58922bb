"""The one executor: carries out exactly the confirmed changes, for apply, destroy and add-task.

Nothing is written when every change is a no-op (not even the lock). Otherwise:

1. the token given must be the one the plan fingerprinted (a secret change says which);
2. the folder is made when the plan says so (the lock file lives in it), after checking,
   without the lock, that nothing moved since the plan, so a refusal writes nothing (a plan
   made by the same command a moment ago, with no question asked, is that check itself);
3. the environment's lock is taken, once;
4. every object the changes are about is read again (``moved_since_plan``, all at once). If
   the workspace changed since the plan (another apply, a hand edit), the executor refuses
   rather than do something else than what was confirmed; only when a fresh plan has nothing
   left to do (another run did exactly this meanwhile) does it stop quietly, having written
   nothing;
5. each write goes out once what it needs is done, beside the independent ones (the scope
   then the secret, the notebook, the workflow; destroy's deletes one by one, in the plan's
   order). Ownership is recorded before it is created: the state record says "dbtwf created
   the scope" before scopes/create and names a foreign task before the jobs/update that
   writes it, so a run killed in between still knows;
6. the state record is written once more at the end when it changed, and the lock released;
7. destroy only: the folders dbtwf made for the notebook are deleted, deepest first, each
   only while empty (the lock file lived in one of them). Apply records them with the state.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from provision.change import Action, Change, has_changes, writes_secret
from provision.desired import is_owned, merged_settings
from provision.errors import ConflictError, DbtwfError, UsageError
from provision.observe import Reader
from provision.parallel import gather
from provision.probes import moved_since_plan
from provision.saved_plan import Plan
from provision.state import AddedTask, AdoptedWorkflow, StateRecord, environment_lock, token_fingerprint

if TYPE_CHECKING:
    from provision.databricks import Workspace
    from provision.model import Environment

__all__ = ["apply_changes", "create_workflow", "execute", "merged_settings"]

_log = logging.getLogger("dbtwf")
#: Task payload ops: add-task writes ("add", "replace"); destroy removes or puts back.
_WRITE_OPS = ("add", "replace", "switch", "adopt")


def execute(
    ws: Workspace,
    env: Environment,
    changes: Sequence[Change],
    token: str | None,
    *,
    break_lock: bool = False,
    replan: Callable[[], list[Change]] | None = None,
    check_token: Callable[[str], None] | None = None,
    warn: Callable[[str], None] | None = None,
    planned_now: bool = False,
) -> list[Change]:
    """Carry out ``changes`` as planned; returns what was done.

    ``replan`` plans afresh (only used to see whether a moved workspace already matches);
    ``check_token`` proves the token against dbt Cloud before a secret write; ``warn`` hears
    what the user must know (a lock broken while young). ``planned_now``: the changes were
    planned by this command a moment ago, nothing in between (no question asked): the plan's
    reads are then the check before the folder is made, and are not made again (the check
    under the lock is made either way).
    """
    changes = list(changes)
    if not has_changes(changes):
        return changes
    unknown = sorted({c.resource for c in changes if c.writes and c.resource not in _HANDLERS})
    if unknown:
        raise UsageError(
            f"this dbtwf cannot carry out changes of kind {', '.join(unknown)}; nothing was changed",
            "plan again with this dbtwf, or apply with the dbtwf that made the plan",
        )
    if writes_secret(changes):
        _require_planned_token(changes, token)
        if check_token is not None and token is not None:
            check_token(token)  # a rejected token: exit 1, nothing written
    # destroy's folder deletes run after the lock is released (see _remove_folders).
    folder_change = next(
        (c for c in changes if c.resource == "folder" and c.action is not Action.DELETE), None
    )
    if folder_change is not None and folder_change.action is Action.CREATE and planned_now:
        ws.mkdirs(env.notebook_folder)  # idempotent; the lock lives in it
        has_folder = True
    elif folder_change is not None and folder_change.action is Action.CREATE:
        reader = Reader(ws)
        moved = moved_since_plan(changes, reader, env)
        if not moved:
            ws.mkdirs(env.notebook_folder)  # idempotent; the lock lives in it
        elif reader.status(env.notebook_folder) is None:
            # Still no folder, so no dbtwf run is half-way (the folder is its first write):
            # whatever moved, a fresh plan now is a fair comparison, and a refusal writes nothing.
            return _moved(moved, replan)
        # Else another run made the folder and may still be going: decide under the lock.
        has_folder = True
    elif folder_change is not None:
        has_folder = True
    else:  # destroy plans no folder: without one, nothing of ours can be there to lock
        has_folder = ws.get_status(env.notebook_folder) is not None
    if not has_folder:
        done = _run_checked(ws, env, changes, token, replan)
    else:
        with environment_lock(ws, env, break_lock=break_lock, warn=warn):
            done = _run_checked(ws, env, changes, token, replan)
    if any(c.resource == "folder" and c.action is Action.DELETE for c in done):
        done = _remove_folders(ws, done)
    return done


def _remove_folders(ws: Workspace, done: list[Change]) -> list[Change]:
    """destroy: the folders dbtwf made, deepest first, once the lock file (which lives in the
    notebook's folder) is gone. Non-recursive: a folder holding anything (another run's lock,
    someone's file) is left, and said, not an error."""
    from provision.location import WARNING

    result: list[Change] = []
    kept: list[Change] = []
    for change in done:
        if (
            change.resource == "folder"
            and change.action is Action.DELETE
            and not ws.delete_if_empty(change.name)
        ):
            why = "made by dbtwf, but not empty: left with what it holds"
            change = replace(change, action=Action.NOOP, reason=why)
            kept.append(Change(WARNING, change.name, Action.NOOP, f"folder {change.name} is {why}"))
        result.append(change)
    return result + kept


def _run_checked(
    ws: Workspace,
    env: Environment,
    changes: list[Change],
    token: str | None,
    replan: Callable[[], list[Change]] | None,
) -> list[Change]:
    reader = Reader(ws)
    moved = moved_since_plan(changes, reader, env)
    if moved:
        return _moved(moved, replan)
    execution = _Execution(ws, env, token, reader.state(env), reader.file(env.state_path))
    execution.run(changes)
    # A workflow created here is named by its new id: nobody needs to read the record for it.
    created = execution.record.workflow_job_id
    done = [
        replace(change, job_id=created)
        if change.resource == "workflow" and change.action is Action.CREATE and change.job_id is None
        else change
        for change in changes
    ]
    return done + execution.warnings


def _moved(moved: list[str], replan: Callable[[], list[Change]] | None) -> list[Change]:
    if replan is not None:
        fresh = replan()
        if not has_changes(fresh):
            return fresh  # another run did exactly this meanwhile: nothing left to do
    raise ConflictError(
        f"the workspace changed since the plan: {'; '.join(moved)}",
        "nothing was changed; run `dbtwf plan` again to see what applies now",
    )


def _require_planned_token(changes: list[Change], token: str | None) -> None:
    for change in changes:
        if change.resource != "secret" or change.action not in (Action.CREATE, Action.UPDATE):
            continue
        fingerprint = str(change.payload.get("fingerprint") or "")
        if token is None or not fingerprint:
            raise UsageError(
                "the secret needs the dbt Cloud token, and none was given"
                if token is None
                else "the plan stores the dbt Cloud token but was made without one",
                "set DBT_CLOUD_API_TOKEN or run `dbtwf token set`, then plan again",
            )
        if token_fingerprint(token, str(change.payload.get("salt", ""))) != fingerprint:
            raise ConflictError(
                "the dbt Cloud token is not the one the plan was made with; nothing was changed",
                "run `dbtwf plan` again with the token you mean to store",
            )


class _Execution:
    """One run of the changes under the lock, keeping the state record as it goes."""

    def __init__(
        self,
        ws: Workspace,
        env: Environment,
        token: str | None,
        record: StateRecord | None,
        saved: bytes | None,
    ) -> None:
        self.ws = ws
        self.env = env
        self.token = token
        #: Held while the record changes or is written: the writes of one wave run in threads.
        self.lock = threading.RLock()
        self.record = record or StateRecord(environment=env.name)
        self.saved = saved
        self.state_deleted = False
        #: What the user must hear about what was done (a scope every user can read).
        self.warnings: list[Change] = []

    def save(self) -> None:
        """Write the record when it differs from what the workspace holds."""
        with self.lock:
            data = self.record.to_json()
            if data != self.saved:
                self.ws.write_file(self.env.state_path, data, overwrite=True)
                self.saved = data

    def run(self, changes: list[Change]) -> None:
        try:
            if any(c.action is Action.DELETE or _removes_task(c) for c in changes):
                self._one_by_one(changes)  # destroy: one change after another, as planned
            else:
                self._together(changes)
        except BaseException:
            # Keep what was done (a created scope, a stored token, a job id) for the next run.
            blank = StateRecord(environment=self.env.name).to_json()
            if not self.state_deleted and self.record.to_json() not in (self.saved, blank):
                try:
                    self.save()
                except DbtwfError as error:
                    _log.warning("could not record the progress in %s: %s", self.env.state_path, error)
            raise

    def _one_by_one(self, changes: list[Change]) -> None:
        done_tasks: set[int] = set()
        for change in changes:
            if _removes_task(change):
                if change.job_id is not None and change.job_id not in done_tasks and change.writes:
                    done_tasks.add(change.job_id)
                    same_job = [c for c in changes if c.resource == "task" and c.job_id == change.job_id]
                    self.remove_tasks(change.job_id, same_job)
                continue
            handler = _HANDLERS.get(change.resource)
            if handler is not None:
                handler(self, change)

    def _together(self, changes: list[Change]) -> None:
        """Each write goes out as soon as what it needs is there, beside the others: the scope
        (once the record says dbtwf makes it), then its ACLs and the secret; the notebook, then
        who may read it; the workflow. Then a foreign workflow's task, which runs the notebook
        and reads the secret, and last the state record. The folder was made before the lock."""

        def of(resource: str) -> list[Change]:
            return [change for change in changes if change.resource == resource]

        def calls(resource: str) -> list[Callable[[], None]]:
            handler = _HANDLERS[resource]
            return [functools.partial(handler, self, change) for change in of(resource)]

        def secret_side() -> None:
            for change in of("scope"):
                self.scope(change)
            gather([*calls("scope-acl"), *calls("secret")])

        def notebook_side() -> None:
            for change in of("backup"):  # adopt: the hand-pasted code is kept before it is replaced
                self.backup(change)
            for change in of("notebook"):
                self.notebook(change)
            gather(calls("notebook-acl"))

        def workflow_side() -> None:
            for change in of("workflow"):
                self.workflow(change)
            for change in of("adopt-workflow"):
                self.adopt_workflow(change)

        for change in of("folder"):
            self.folder(change)  # recorded with the first save; made before the lock
        gather([secret_side, notebook_side, workflow_side])
        switched = [c for c in of("task") if c.payload.get("op") == "switch"]
        for change in of("task"):
            if change not in switched:
                self.task(change)
        for job_id in dict.fromkeys(
            c.job_id for c in switched if c.writes
        ):  # migrate: one update per workflow
            assert job_id is not None
            self.switch_tasks(job_id, [c for c in switched if c.job_id == job_id and c.writes])
        for change in of("state"):
            self.state(change)
        for change in of("config"):
            self.config(change)

    # -- the resources ---------------------------------------------------------------------
    def scope(self, change: Change) -> None:
        if change.action is Action.CREATE:
            from provision.location import WARNING, all_users_scope_warning

            with self.lock:
                self.record.scope_created = True
                self.save()  # ownership before the object: a kill after the create still knows
            try:
                manager = self.ws.create_scope(self.env.secret_scope)
            except ConflictError:
                with self.lock:
                    self.record.scope_created = False  # created by someone else meanwhile: theirs
                return
            if manager == "users":  # a workspace without Premium allows nothing else
                warning = all_users_scope_warning(self.env.secret_scope, "MANAGE")
                self.warnings.append(Change(WARNING, self.env.secret_scope, Action.NOOP, warning))
        elif change.action is Action.DELETE:
            self.ws.delete_scope(self.env.secret_scope)
            with self.lock:
                self.record.scope_created = False

    def scope_acl(self, change: Change) -> None:
        principal = str(change.payload.get("principal") or change.name.split(":", 1)[1])
        if change.action is Action.DELETE:  # a READ dbtwf granted, for a principal no longer listed
            self.ws.delete_acl(self.env.secret_scope, principal)
            with self.lock:
                self.record.granted_readers = [p for p in self.record.granted_readers if p != principal]
        elif change.writes:
            self.ws.put_acl(self.env.secret_scope, principal, str(change.payload.get("permission") or "READ"))
            with self.lock:
                if principal not in self.record.granted_readers:
                    self.record.granted_readers.append(principal)

    def notebook_acl(self, change: Change) -> None:
        """CAN_READ on the notebook for the identity a workflow running it runs as."""
        from provision.location import grant_read, notebook_acl_principal

        if change.writes:
            grant_read(
                self.ws, self.env.notebook_path, notebook_acl_principal(change.name, self.env.notebook_path)
            )

    def secret(self, change: Change) -> None:
        env = self.env
        if change.action is Action.DELETE:
            self.ws.delete_secret(env.secret_scope, env.secret_key)
            return
        if not change.writes:
            stamp = change.payload.get("updated_at")  # adopt: the secret found, kept as it is
            if stamp is not None:
                with self.lock:
                    self.record.secret_updated_at = int(stamp)
            return
        assert self.token is not None  # checked against the plan's fingerprint before any write
        self.ws.put_secret(env.secret_scope, env.secret_key, self.token)
        with self.lock:
            self.record.token_salt = str(change.payload["salt"])
            self.record.token_fingerprint = str(change.payload["fingerprint"])
        # Right after the put: another time in secrets/list later means someone else wrote it.
        listed = {
            s.get("key"): s.get("last_updated_timestamp") for s in self.ws.list_secrets(env.secret_scope)
        }
        stamp = listed.get(env.secret_key)
        with self.lock:
            self.record.secret_updated_at = int(stamp) if stamp is not None else None

    def folder(self, change: Change) -> None:
        """Made before the lock (see execute); destroy's deletes come after it (see
        _remove_folders). Here the record learns which folders that mkdirs made."""
        if change.action is not Action.CREATE:
            return
        made = [str(path) for path in change.payload.get("created") or ()]
        with self.lock:
            known = [p for p in self.record.created_folders if p not in made]
            # Deepest first, so destroy empties a folder before the one holding it.
            self.record.created_folders = sorted(made + known, key=lambda p: -p.count("/"))

    def notebook(self, change: Change) -> None:
        env = self.env
        if change.action is Action.DELETE:
            self.ws.delete(env.notebook_path)
            with self.lock:
                self.record.notebook_sha256 = ""
                self.record.notebook_object_id = self.record.notebook_modified_at = None
            return
        if not change.writes:
            found = change.payload.get("record")
            if found:
                self._record_notebook(str(found["sha256"]), found)
            return
        self.ws.import_notebook(env.notebook_path, str(change.payload["source"]), overwrite=True)
        self._record_notebook(str(change.payload["sha256"]), self.ws.get_status(env.notebook_path) or {})

    def _record_notebook(self, sha256: str, status: Any) -> None:
        object_id, modified_at = status.get("object_id"), status.get("modified_at")
        with self.lock:
            self.record.notebook_sha256 = sha256
            self.record.notebook_object_id = int(object_id) if object_id is not None else None
            self.record.notebook_modified_at = int(modified_at) if modified_at is not None else None

    def workflow(self, change: Change) -> None:
        settings = dict(change.payload.get("settings") or {})
        job_id: int | None = change.job_id
        if change.action is Action.CREATE:
            job_id = create_workflow(self.ws, self.env, settings)
        elif change.action is Action.UPDATE:
            assert change.job_id is not None
            self.ws.reset_job(change.job_id, settings)
        elif change.action is Action.DELETE:
            assert change.job_id is not None
            self.ws.delete_job(change.job_id)
            with self.lock:
                if self.record.workflow_job_id == change.job_id:
                    self.record.workflow_job_id = None
            return
        with self.lock:  # a NOOP: found by its tags after the state was lost
            self.record.workflow_job_id = job_id

    def task(self, change: Change) -> None:
        """add-task: record the entry first, then the one jobs/update holding only the task."""
        assert change.job_id is not None
        task = dict(change.payload["task"])
        key = str(task["task_key"])
        earlier = self.record.entry(change.job_id, key)
        # A task dbtwf added before is not the user's: keep the original it replaced, if any.
        replaced = earlier.replaced if earlier is not None else change.payload.get("overwritten")
        entry = AddedTask(
            change.job_id,
            key,
            int(change.payload["dbt_job_id"]),
            replaced,
            task,
            adopted=bool(change.payload.get("adopted")) or (earlier is not None and earlier.adopted),
        )
        self.record.added_tasks = [t for t in self.record.added_tasks if t is not earlier] + [entry]
        if not change.writes:
            return
        self.save()  # before the write: a kill in between must not lose the user's original task
        # Only `tasks`: the API merges it by task_key and leaves every other field alone.
        self.ws.update_job(change.job_id, {"tasks": [task]})

    def switch_tasks(self, job_id: int, changes: list[Change]) -> None:
        """migrate: record the tasks as they will be written, then one jobs/update holding only
        them (merged by task_key: the workflow's other tasks and fields stay as they are)."""
        tasks = [dict(change.payload["task"]) for change in changes]
        with self.lock:
            for change, task in zip(changes, tasks, strict=True):
                key = str(task["task_key"])
                earlier = self.record.entry(job_id, key)
                replaced = earlier.replaced if earlier is not None else None
                entry = AddedTask(job_id, key, int(change.payload["dbt_job_id"]), replaced, task)
                self.record.added_tasks = [t for t in self.record.added_tasks if t is not earlier] + [entry]
            self.save()  # before the write, as for add-task
        self.ws.update_job(job_id, {"tasks": tasks})

    def config(self, change: Change) -> None:
        """migrate: the environment's task_type (and connection) in dbtwf.toml, last."""
        from pathlib import Path

        from provision.config_writer import upsert_environment

        if change.writes:  # comments and layout kept; the whole file validated before it is written
            upsert_environment(
                Path(change.name), str(change.payload["environment"]), dict(change.payload["values"])
            )

    def backup(self, change: Change) -> None:
        """adopt (CREATE): the notebook's hand-pasted code kept in a workspace file next to it,
        recorded before the notebook is replaced. destroy (UPDATE, op "restore"): that code put
        back at the notebook's path, then the backup file deleted."""
        from provision.adopt.recognise import backup_header

        env = self.env
        if change.action is Action.CREATE:
            source, sha256 = str(change.payload["source"]), str(change.payload["sha256"])
            body = backup_header(env.notebook_path, sha256) + "\n" + source
            self.ws.write_file(change.name, body.encode("utf-8"), overwrite=False)
            with self.lock:
                self.record.backup_path = change.name
                self.record.original_notebook_sha256 = sha256
                self.save()  # the backup is known before the notebook is overwritten
        elif change.writes and change.payload.get("op") == "restore":
            self.ws.import_notebook(env.notebook_path, str(change.payload["source"]), overwrite=True)
            self.ws.delete(change.name)
            with self.lock:
                self.record.backup_path = self.record.original_notebook_sha256 = ""
                self.record.notebook_sha256 = ""
                self.record.notebook_object_id = self.record.notebook_modified_at = None

    def adopt_workflow(self, change: Change) -> None:
        """adopt (CREATE): dbtwf's tags added to a workflow made by hand, nothing else (jobs/update
        of `tags` only); recorded first. destroy (UPDATE, op "give-back"): one jobs/update putting
        back its tags and the settings dbtwf manages as adopt found them; it stays the user's."""
        assert change.job_id is not None
        job_id = change.job_id
        if change.action is Action.CREATE:
            original = {str(k): str(v) for k, v in dict(change.payload.get("original_tags") or {}).items()}
            settings = change.payload.get("original_settings")
            adopted = AdoptedWorkflow(job_id, original, dict(settings) if settings is not None else None)
            with self.lock:
                kept = [w for w in self.record.adopted_workflows if w.job_id != job_id]
                self.record.adopted_workflows = [*kept, adopted]
                self.record.workflow_job_id = job_id
                self.save()
            self.ws.update_job(job_id, {"tags": dict(change.payload["tags"])})
        elif change.writes and change.payload.get("op") == "give-back":
            removed = [str(name) for name in change.payload.get("fields_to_remove") or ()]
            self.ws.update_job(job_id, dict(change.payload.get("new_settings") or {}), removed or None)
            with self.lock:
                self.record.adopted_workflows = [
                    w for w in self.record.adopted_workflows if w.job_id != job_id
                ]
                if self.record.workflow_job_id == job_id:
                    self.record.workflow_job_id = None

    def remove_tasks(self, job_id: int, changes: list[Change]) -> None:
        """destroy: one jobs/update per foreign workflow removes dbtwf's tasks in it and puts
        back the user's tasks that --replace overwrote."""
        removed = [c.name for c in changes if c.writes and c.payload.get("op") == "remove"]
        restored = [dict(c.payload["task"]) for c in changes if c.writes and c.payload.get("op") == "restore"]
        self.ws.update_job(
            job_id,
            {"tasks": restored} if restored else {},
            fields_to_remove=[f"tasks/{key}" for key in removed] or None,
        )
        gone = {(job_id, c.name) for c in changes if c.writes}
        self.record.added_tasks = [t for t in self.record.added_tasks if (t.job_id, t.task_key) not in gone]

    def state(self, change: Change) -> None:
        if change.action is Action.DELETE:
            self.ws.delete(self.env.state_path)
            self.state_deleted = True
        elif change.writes or self.saved is not None:
            self.save()


def _removes_task(change: Change) -> bool:
    """destroy's removal (or putting back) of a task in a foreign workflow."""
    return change.resource == "task" and change.payload.get("op") not in _WRITE_OPS


_HANDLERS: dict[str, Callable[[_Execution, Change], None]] = {
    "scope": _Execution.scope,
    "scope-acl": _Execution.scope_acl,
    "secret": _Execution.secret,
    "folder": _Execution.folder,
    "notebook": _Execution.notebook,
    "notebook-acl": _Execution.notebook_acl,
    "workflow": _Execution.workflow,
    "adopt-workflow": _Execution.adopt_workflow,
    "backup": _Execution.backup,
    "task": _Execution.task,
    "state": _Execution.state,
    "config": _Execution.config,
}


def apply_changes(
    ws: Workspace,
    env: Environment,
    changes: Sequence[Change],
    token: str | None,
    *,
    break_lock: bool = False,
    adopt: bool = False,
    check_token: Callable[[str], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> list[Change]:
    """Executes ``changes`` as planned by plan_environment; returns what was done."""
    from provision.plan import plan_environment

    include_workflow = any(change.resource == "workflow" for change in changes)
    return execute(
        ws,
        env,
        changes,
        token,
        break_lock=break_lock,
        replan=lambda: plan_environment(ws, env, token, include_workflow=include_workflow, adopt=adopt),
        check_token=check_token,
        warn=warn,
    )


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
    plan: Plan | None = None
    changes: list[Change] = field(default_factory=list)
    error: DbtwfError | None = None

    @property
    def pending(self) -> bool:
        return self.error is None and has_changes(self.changes)

    def header(self) -> dict[str, str]:
        if self.plan is not None:
            return self.plan.header()
        return {"environment": self.environment.name}


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
    environments: list[Environment],
    token: str | None,
    connect: Callable[[Environment], Workspace],
    *,
    check_token: Callable[[Environment, str], None] | None = None,
    adopt: bool = False,
) -> list[EnvironmentResult]:
    """Plans every environment concurrently (each its own workspace and lock); a plan that
    stores the token proves it with ``check_token`` first. ``adopt`` as for one environment."""
    from provision.saved_plan import make_plan

    results = [EnvironmentResult(environment) for environment in environments]

    def plan_one(result: EnvironmentResult) -> None:
        from provision.location import resolve_location

        ws = result.workspace = connect(result.environment)
        result.environment = resolve_location(ws, result.environment)
        result.plan = make_plan(ws, result.environment, token, identity=ws.current_user(), adopt=adopt)
        result.changes = list(result.plan.changes)
        if check_token is not None and token is not None and writes_secret(result.changes):
            check_token(result.environment, token)

    _concurrently(plan_one, results)
    return results


def apply_all(
    results: list[EnvironmentResult],
    token: str | None,
    *,
    break_lock: bool,
    adopt: bool = False,
    warn: Callable[[str], None] | None = None,
) -> None:
    """Applies the pending plans concurrently; each result then holds what was done or its error."""

    def apply_one(result: EnvironmentResult) -> None:
        assert result.workspace is not None
        env = result.environment
        result.changes = apply_changes(
            result.workspace,
            env,
            result.changes,
            token,
            break_lock=break_lock,
            adopt=adopt,
            warn=None if warn is None else (lambda text: warn(f"environment {env.name!r}: {text}")),
        )

    _concurrently(apply_one, [result for result in results if result.pending])
