"""Reading the workspace: what it holds of an environment, each object read once.

``Reader`` makes each read once per plan (or per check), the independent ones together
(``prefetch_observed``: two rounds of requests for a whole plan); ``observe`` turns the
reads into ``Observed``, the planner's input. The owned workflow is found by the state record's job
id, else by its name and dbtwf's tags.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from provision.desired import is_owned
from provision.location import (
    LocationFacts,
    check_same_deployment,
    observe_location,
    observe_scope_acls,
)
from provision.model import Environment, same_scope
from provision.parallel import Outcome, run_all
from provision.state import StateRecord

if TYPE_CHECKING:
    from provision.databricks import Workspace


class Reader:
    """The workspace reads of one plan or one check, each made once.

    The planner and the executor's re-check under the lock read through a Reader each and
    compute what they compare with the same ``PROBES``, so "changed since the plan" means a
    different answer from the workspace, never a different way of asking.

    Reads that do not depend on each other go out together (``prefetch``): each answer, or
    the error it raised, is kept, and the code that uses it later gets exactly that, in its
    own order. Several threads asking for the same read share one request.
    """

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self._cache: dict[tuple[Any, ...], Outcome[Any]] = {}
        self._lock = threading.Lock()
        self._reading: dict[tuple[Any, ...], threading.Event] = {}

    def _once(self, key: tuple[Any, ...], read: Callable[[], Any]) -> Any:
        while True:
            with self._lock:
                if key in self._cache:
                    return self._cache[key].get()
                waiting = self._reading.get(key)
                if waiting is None:
                    self._reading[key] = threading.Event()
            if waiting is None:
                break
            waiting.wait()  # another thread is making this very read
        outcome: Outcome[Any] | None = None
        try:
            outcome = Outcome(value=read())
        except Exception as error:  # noqa: BLE001 - kept, and raised to whoever uses the read
            outcome = Outcome(error=error)
        finally:  # an interrupt keeps nothing: a thread still waiting makes the read itself
            with self._lock:
                if outcome is not None:
                    self._cache[key] = outcome
                self._reading.pop(key).set()
        return outcome.get()

    def prefetch(self, *reads: Callable[[], Any]) -> None:
        """Makes the reads concurrently, for later use; raises nothing (a failed read raises
        where its answer is used, as if it had been made there)."""
        run_all(reads)

    def scope_names(self) -> frozenset[str]:
        return frozenset(
            self._once(("scopes", None), lambda: [str(s.get("name")) for s in self.ws.list_scopes()])
        )

    def has_read_scopes(self) -> bool:
        with self._lock:
            return ("scopes", None) in self._cache

    def has_scope(self, name: str) -> bool:
        """Whether the scope exists, compared as Databricks does: case-insensitively."""
        return any(same_scope(existing, name) for existing in self.scope_names())

    def scope_acls(self, env: Environment, *, required: bool) -> dict[str, str]:
        """The scope's ACLs as ``location.observe_scope_acls`` reads them (a refusal to list
        them fails the plan only when it needs them), cached like ``acls``."""
        scope = env.secret_scope

        def read() -> list[dict[str, str]]:
            acls = observe_scope_acls(self.ws, env, required=required)
            return [{"principal": p, "permission": level} for p, level in acls.items()]

        items = self._once(("scope-acls", scope, required), read)
        with self._lock:
            self._cache.setdefault(("acls", scope), Outcome(value=items))
        return self.acls(scope)

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
        with self._lock:
            self._cache[("job", int(job["job_id"]))] = Outcome(value=job)

    def jobs_named(self, name: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._once(
            ("named", name.lower()), lambda: self.ws.list_jobs(name=name)
        )
        return found

    def connection(self, name: str) -> dict[str, Any] | None:
        """A Unity Catalog connection (the dbt platform tasks'), None when there is none."""
        found: dict[str, Any] | None = self._once(("connection", name), lambda: self.ws.get_connection(name))
        return found

    def jobs_with_tasks(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._once(("all-jobs", None), self.ws.list_jobs_with_tasks)
        return found

    def state(self, env: Environment) -> StateRecord | None:
        data = self.file(env.state_path)
        return None if data is None else StateRecord.from_json(data, env.state_path)

    def location(self, env: Environment) -> LocationFacts:
        """Who can edit or read the notebook (``location.observe_location``), through this
        Reader's get-status answers."""
        facts: LocationFacts = self._once(
            ("location", env.notebook_path), lambda: observe_location(self.ws, env, status=self.status)
        )
        return facts


def location_paths(path: str) -> list[str]:
    """The notebook and the folders above it down to a top folder's child (``/Users/me``,
    ``/Shared/x``): where ``observe_location`` looks for the nearest existing one, read at
    once rather than one level at a time. Higher levels are read only when all are missing."""
    paths = [path]
    while True:
        parent = path.rsplit("/", 1)[0]
        parts = [part for part in parent.split("/") if part]
        if parts[:1] == ["Workspace"]:
            parts = parts[1:]
        if len(parts) < 2:
            return paths
        paths.append(parent)
        path = parent


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
    #: The notebook's folder and the folders above it that do not exist, deepest first
    #: (from the get-status answers already read): what creating the folder makes.
    missing_folders: tuple[str, ...] = ()


def missing_folders(reader: Reader, env: Environment) -> tuple[str, ...]:
    """The notebook's folder and the missing ones above it, deepest first, as far as
    ``location_paths`` reads (a top folder's child, ``/Users/me``, at most)."""
    missing: list[str] = []
    for path in location_paths(env.notebook_path)[1:]:
        if reader.status(path) is not None:
            break
        missing.append(path)
    return tuple(missing)


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
    owned, foreign = named_jobs(reader, env)
    if len(owned) > 1:
        return None, None, stale, foreign, tuple(owned)
    if owned:
        job = reader.job(owned[0])
        if job is not None:
            check_same_deployment(env, job)  # deployed from another notebook: another identity's
        return job, "tags", stale, foreign, ()
    return None, None, stale, foreign, ()


def named_jobs(reader: Reader, env: Environment) -> tuple[list[int], tuple[int, ...]]:
    named = reader.jobs_named(env.workflow_name)
    owned = sorted(int(job["job_id"]) for job in named if is_owned(job, env))
    foreign = tuple(sorted(int(job["job_id"]) for job in named if not is_owned(job, env)))
    return owned, foreign


def recorded_upload(state: StateRecord | None) -> bool:
    return bool(
        state is not None
        and state.notebook_sha256
        and state.notebook_object_id is not None
        and state.notebook_modified_at is not None
    )


def status_stamp(status: Mapping[str, Any] | None) -> tuple[Any, Any]:
    status = status or {}
    return status.get("object_id"), status.get("modified_at")


def prefetch_observed(reader: Reader, env: Environment, *, include_workflow: bool = True) -> None:
    """Makes the reads ``observe`` needs in two rounds of concurrent requests: first what the
    config alone names (the state record, the scopes, the notebook and the folders above it),
    then what those answers point at (the owned job, the scope's secrets and ACLs, the
    permissions of the nearest existing folder, an export the record cannot spare). ``observe``
    then runs on the answers; the rare reads left (a job found by its tags) it makes itself."""
    reader.prefetch(
        lambda: reader.file(env.state_path),
        reader.scope_names,
        *(lambda path=path: reader.status(path) for path in location_paths(env.notebook_path)),
    )

    def workflow() -> None:
        state = reader.state(env)
        if state is not None and state.workflow_job_id is not None:
            reader.job(state.workflow_job_id)
        else:
            reader.jobs_named(env.workflow_name)

    def scope() -> None:
        if reader.has_scope(env.secret_scope):
            state = reader.state(env)
            required = bool(env.scope_readers or (state is not None and state.granted_readers))
            reader.prefetch(
                lambda: reader.scope_acls(env, required=required),
                lambda: reader.secrets(env.secret_scope),
            )

    def export() -> None:
        status = reader.status(env.notebook_path)
        if status is not None and not (
            recorded_upload(reader.state(env)) and None not in status_stamp(status)
        ):
            reader.export(env.notebook_path)

    reader.prefetch(
        *((workflow,) if include_workflow else ()),
        scope,
        export,
        lambda: reader.location(env),
    )


def observe(reader: Reader, env: Environment, *, include_workflow: bool = True) -> Observed:
    prefetch_observed(reader, env, include_workflow=include_workflow)
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
    if status is not None and not (recorded_upload(state) and None not in status_stamp(status)):
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
        location=reader.location(env),
        missing_folders=() if folder_exists else missing_folders(reader, env),
    )
