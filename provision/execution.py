"""The writes of the one executor (``provision.apply.execute``): one handler per kind of
change, run under the environment's lock, keeping the state record as they go.

``Execution.run`` sends destroy's changes one by one in the plan's order, and everything else
as soon as what it needs is done (``_together``); ``HANDLERS`` maps a change's resource to the
handler that carries it out, and is also what the executor accepts.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from provision.change import Action, Change
from provision.desired import is_owned
from provision.errors import ConflictError, DbtwfError
from provision.parallel import gather
from provision.state import AddedTask, AdoptedWorkflow, StateRecord

if TYPE_CHECKING:
    from provision.databricks import Workspace
    from provision.model import Environment

_log = logging.getLogger("dbtwf")
#: Task payload ops: add-task writes ("add", "replace"), migrate ("switch"), adopt ("adopt");
#: any other (destroy's "remove", "restore") removes or puts back a task.
_WRITE_OPS = ("add", "replace", "switch", "adopt")


class Execution:
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
            if any(c.action is Action.DELETE or removes_task(c) for c in changes):
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
            if removes_task(change):
                if change.job_id is not None and change.job_id not in done_tasks and change.writes:
                    done_tasks.add(change.job_id)
                    same_job = [c for c in changes if c.resource == "task" and c.job_id == change.job_id]
                    self.remove_tasks(change.job_id, same_job)
                continue
            handler = HANDLERS.get(change.resource)
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
            handler = HANDLERS[resource]
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

        config = of("config")
        for change in config:
            if change.action is Action.CREATE:  # adopt: first, so a run stopped half-way can be destroyed
                self.config(change)
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
        for change in config:
            if change.action is not Action.CREATE:  # migrate: last, so a failed one can be re-run
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
        """The environment in dbtwf.toml: created by adopt, updated by migrate (task_type and
        connection)."""
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
        if change.action in (Action.CREATE, Action.NOOP) and "sha256" in change.payload:
            # Recorded before the write (a NOOP: kept by an adopt that stopped half-way), so a
            # run stopped right after it still names the backup and destroy can give it back.
            sha256 = str(change.payload["sha256"])
            with self.lock:
                self.record.backup_path = change.name
                self.record.original_notebook_sha256 = sha256
                self.save()
            if change.action is Action.CREATE:
                body = (
                    backup_header(env.notebook_path, sha256) + "\n" + str(change.payload["source"])
                ).encode()
                try:
                    self.ws.write_file(change.name, body, overwrite=False)
                except ConflictError:
                    # The SDK re-sends a write whose answer was lost: the first attempt's file is ours.
                    if self.ws.read_file(change.name) != body:
                        raise
        elif change.writes and change.payload.get("op") == "restore":
            self.ws.import_notebook(env.notebook_path, str(change.payload["source"]), overwrite=True)
            self.ws.delete(change.name)
            with self.lock:
                self.record.backup_path = self.record.original_notebook_sha256 = ""
                self.record.notebook_sha256 = ""
                self.record.notebook_object_id = self.record.notebook_modified_at = None

    def adopt_workflow(self, change: Change) -> None:
        """adopt (op "adopt"): dbtwf's tags added to a workflow made by hand, nothing else (jobs/update
        of `tags` only); recorded first. destroy (UPDATE, op "give-back"): one jobs/update putting
        back its tags and the settings dbtwf manages as adopt found them; it stays the user's."""
        assert change.job_id is not None
        job_id = change.job_id
        if change.payload.get("op") == "adopt":
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


def removes_task(change: Change) -> bool:
    """destroy's removal (or putting back) of a task in a foreign workflow."""
    return change.resource == "task" and change.payload.get("op") not in _WRITE_OPS


HANDLERS: dict[str, Callable[[Execution, Change], None]] = {
    "scope": Execution.scope,
    "scope-acl": Execution.scope_acl,
    "secret": Execution.secret,
    "folder": Execution.folder,
    "notebook": Execution.notebook,
    "notebook-acl": Execution.notebook_acl,
    "workflow": Execution.workflow,
    "adopt-workflow": Execution.adopt_workflow,
    "backup": Execution.backup,
    "task": Execution.task,
    "state": Execution.state,
    "config": Execution.config,
}


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
