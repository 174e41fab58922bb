"""What dbtwf owns in one environment, kept as a small JSON file in the workspace.

The record lives next to the notebook (``Environment.state_path``), so a second machine
or a CI runner finds the same workflow, the tasks added to foreign workflows and whether
the scope was created by the tool. It never holds the token, only a salted fingerprint.
The executor writes ownership as it is created (before a scope is created or a foreign
task is written), not only at the end, so a run killed half-way still knows what it made.

Records carry a version. Older versions are migrated on read (one function per step in
``_MIGRATIONS``); a record written by a newer dbtwf is refused rather than misread.

The lock is a second file beside it, created only if absent: two applies on one
environment cannot both create it, and a crashed apply's lock can be broken explicitly.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
import os
import secrets
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from provision.errors import ConflictError, RemoteError

if TYPE_CHECKING:
    from provision.databricks import Workspace
    from provision.model import Environment

#: Version 2 added the task as written, the secret's update time and the notebook's id;
#: version 3 what `dbtwf adopt` took over (an older dbtwf must not destroy it as its own).
STATE_VERSION = 3
#: A lock younger than this is most likely held by a run still going (an apply takes seconds).
LIVE_LOCK_SECONDS = 300.0

_log = logging.getLogger("dbtwf")


@dataclass(frozen=True)
class AddedTask:
    """A runner task dbtwf added to a workflow it does not own (removed again by destroy)."""

    job_id: int
    task_key: str
    dbt_job_id: int
    #: The user's own task of that key that `add-task --replace` overwrote (as jobs/get gave
    #: it); destroy puts it back instead of leaving the workflow without it.
    replaced: dict[str, Any] | None = None
    #: The task as dbtwf sent it in jobs/update: destroy removes the task only while the
    #: workflow still holds it unchanged. Not part of an entry's identity.
    written: dict[str, Any] | None = field(default=None, compare=False)
    #: Taken over by `dbtwf adopt` (the user's own task running the adopted notebook): destroy
    #: leaves it in place, running the notebook it puts back.
    adopted: bool = field(default=False, compare=False)


@dataclass(frozen=True)
class AdoptedWorkflow:
    """A workflow made by hand for the guide's notebook that `dbtwf adopt` tagged as dbtwf's:
    destroy gives it back (its tags as they were) instead of deleting it."""

    job_id: int
    #: Its tags before adopt added dbtwf's.
    tags: dict[str, str] = field(default_factory=dict, compare=False)
    #: Its settings of the fields dbtwf manages (``desired.MANAGED_JOB_FIELDS``), as adopt found
    #: them: destroy puts them back (apply converged them while dbtwf managed the workflow).
    settings: dict[str, Any] | None = field(default=None, compare=False)


@dataclass
class StateRecord:
    environment: str
    workflow_job_id: int | None = None
    #: True only when dbtwf created the scope; destroy deletes a scope only then.
    scope_created: bool = False
    #: Salt and salted SHA-256 of the token last stored in the secret, to see a changed token.
    token_salt: str = ""
    token_fingerprint: str = ""
    #: The secret's `last_updated_timestamp` (ms) right after dbtwf stored it: another value
    #: in secrets/list means someone overwrote it (drift), seen without reading the value.
    secret_updated_at: int | None = None
    #: SHA-256 of the notebook source dbtwf uploaded, and the object's id and modification
    #: time from get-status right after the upload: freshness without exporting it.
    notebook_sha256: str = ""
    notebook_object_id: int | None = None
    notebook_modified_at: int | None = None
    added_tasks: list[AddedTask] = field(default_factory=list)
    #: Principals dbtwf granted READ on the scope (for scope_readers): revoked when they
    #: leave scope_readers. An ACL dbtwf did not grant is never revoked.
    granted_readers: list[str] = field(default_factory=list)
    #: The folders dbtwf made for the notebook (its folder and the missing ones above it),
    #: deepest first: destroy removes those still empty. A record without it (older dbtwf)
    #: deletes no folder, as who made them is not known.
    created_folders: list[str] = field(default_factory=list)
    #: What `dbtwf adopt` took over: the workflows it tagged, the backup file of the notebook's
    #: hand-pasted code and that code's SHA-256 (destroy puts it back at the notebook's path).
    adopted_workflows: list[AdoptedWorkflow] = field(default_factory=list)
    backup_path: str = ""
    original_notebook_sha256: str = ""
    version: int = STATE_VERSION

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), indent=2, sort_keys=True) + "\n").encode("utf-8")

    def entry(self, job_id: int, task_key: str) -> AddedTask | None:
        return next((t for t in self.added_tasks if (t.job_id, t.task_key) == (job_id, task_key)), None)

    @classmethod
    def from_json(cls, data: bytes, where: str) -> StateRecord:
        try:
            raw: Any = json.loads(data)
            if not isinstance(raw, dict):
                raise TypeError("not an object")
            raw = migrate(raw, where)
            added = [
                AddedTask(
                    int(t["job_id"]),
                    str(t["task_key"]),
                    int(t["dbt_job_id"]),
                    _object_or_none(t.get("replaced"), "replaced"),
                    _object_or_none(t.get("written"), "written"),
                    bool(t.get("adopted", False)),
                )
                for t in _list(raw.get("added_tasks", []), "added_tasks")
            ]
            readers = _list(raw.get("granted_readers", []), "granted_readers")
            if not all(isinstance(p, str) for p in readers):
                raise TypeError("granted_readers holds a value that is not a principal name")
            folders = _list(raw.get("created_folders", []), "created_folders")
            if not all(isinstance(p, str) and p.startswith("/") for p in folders):
                raise TypeError("created_folders holds a value that is not a workspace path")
            adopted_workflows = [
                AdoptedWorkflow(
                    int(w["job_id"]),
                    {str(k): str(v) for k, v in dict(w.get("tags") or {}).items()},
                    _object_or_none(w.get("settings"), "settings"),
                )
                for w in _list(raw.get("adopted_workflows", []), "adopted_workflows")
            ]
            backup_path = str(raw.get("backup_path", ""))
            if backup_path and not backup_path.startswith("/"):
                raise TypeError("backup_path is not a workspace path")
            return cls(
                environment=str(raw["environment"]),
                workflow_job_id=_optional_int(raw.get("workflow_job_id")),
                scope_created=bool(raw.get("scope_created", False)),
                token_salt=str(raw.get("token_salt", "")),
                token_fingerprint=str(raw.get("token_fingerprint", "")),
                secret_updated_at=_optional_int(raw.get("secret_updated_at")),
                notebook_sha256=str(raw.get("notebook_sha256", "")),
                notebook_object_id=_optional_int(raw.get("notebook_object_id")),
                notebook_modified_at=_optional_int(raw.get("notebook_modified_at")),
                added_tasks=added,
                granted_readers=list(readers),
                created_folders=list(folders),
                adopted_workflows=adopted_workflows,
                backup_path=backup_path,
                original_notebook_sha256=str(raw.get("original_notebook_sha256", "")),
                version=STATE_VERSION,
            )
        except (ValueError, TypeError, KeyError) as error:
            raise RemoteError(
                f"the dbtwf state record {where} is unreadable: {error}",
                "delete it in the workspace; the next apply finds the workflow again by its tags",
            ) from None


def _list(value: Any, name: str) -> list[Any]:
    # A string or an object iterates too ('users' as five principals): only a list is a list.
    if not isinstance(value, list):
        raise TypeError(f"{name} is not a list")
    return value


def _object_or_none(value: Any, name: str) -> dict[str, Any] | None:
    # A task is an object: anything else would crash destroy halfway through its plan.
    if value is not None and not isinstance(value, dict):
        raise TypeError(f"an added task's {name!r} is not a task object")
    return value


def new_salt() -> str:
    """A fresh random salt for :func:`token_fingerprint`."""
    return secrets.token_hex(16)


def token_fingerprint(token: str, salt: str) -> str:
    """Salted SHA-256 of the token: lets the state record notice a changed token without
    keeping the token. The salt (random per environment) keeps equal tokens from having
    equal fingerprints and rules out precomputed tables."""
    return hashlib.sha256(f"{salt}\0{token}".encode()).hexdigest()


def _optional_int(value: Any) -> int | None:
    return int(value) if value is not None else None


def _from_version_1(raw: dict[str, Any]) -> dict[str, Any]:
    """Version 1 had no secret update time, notebook id or written task: they start unknown,
    so the next apply stores the token and records the notebook once more."""
    return {**raw, "version": 2}


def _from_version_2(raw: dict[str, Any]) -> dict[str, Any]:
    """Version 2 knew nothing of adopt: nothing adopted, no backup."""
    return {**raw, "version": 3}


#: version N -> the function that turns a version-N record into a version-N+1 one.
_MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _from_version_1, 2: _from_version_2}


def migrate(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """The record in the current version's shape; a newer record is refused, not guessed at."""
    version = int(raw.get("version", 1))
    if version > STATE_VERSION:
        raise RemoteError(
            f"the dbtwf state record {where} was written by a newer dbtwf (record version {version}; "
            f"this dbtwf reads up to version {STATE_VERSION})",
            "upgrade dbtwf (pip install --upgrade dbtwf) on this machine before changing the environment",
        )
    while version < STATE_VERSION:
        raw = _MIGRATIONS[version](raw)
        version += 1
    return raw


def load_state(ws: Workspace, env: Environment) -> StateRecord | None:
    data = ws.read_file(env.state_path)
    if data is None:
        return None
    return StateRecord.from_json(data, env.state_path)


def save_state(ws: Workspace, env: Environment, record: StateRecord) -> None:
    ws.write_file(env.state_path, record.to_json(), overwrite=True)


def delete_state(ws: Workspace, env: Environment) -> None:
    ws.delete(env.state_path)


# -- the lock --------------------------------------------------------------------------------


def lock_path(env: Environment) -> str:
    return f"{env.notebook_folder}/.dbtwf-lock-{env.name}.json"


def _holder() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()} pid {os.getpid()}"


@dataclass(frozen=True)
class LockInfo:
    """Who holds an environment's lock and since when (the holder's clock, epoch seconds)."""

    path: str
    holder: str = "another dbtwf run"
    acquired_at: float | None = None
    nonce: str = ""

    def age(self, now: float) -> float | None:
        return None if self.acquired_at is None else max(0.0, now - self.acquired_at)

    def is_live(self, now: float) -> bool:
        """Young enough to belong to a run still going; unknown age counts as live."""
        age = self.age(now)
        return age is None or age < LIVE_LOCK_SECONDS

    def describe(self, now: float) -> str:
        age = self.age(now)
        return self.holder if age is None else f"{self.holder} for {format_age(age)}"


def format_age(seconds: float) -> str:
    if seconds < 120:
        return f"{round(seconds)} s"
    if seconds < 7200:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def read_lock(ws: Workspace, env: Environment) -> LockInfo | None:
    """The lock file's content, or None when the environment is not locked."""
    path = lock_path(env)
    data = ws.read_file(path)
    if data is None:
        return None
    try:
        info = json.loads(data)
        acquired = info.get("acquired_at")
        return LockInfo(
            path,
            str(info.get("holder") or "another dbtwf run"),
            float(acquired) if acquired is not None else None,
            str(info.get("nonce") or ""),
        )
    except (ValueError, TypeError, AttributeError):
        return LockInfo(path)


@contextmanager
def environment_lock(
    ws: Workspace,
    env: Environment,
    *,
    break_lock: bool = False,
    now: Callable[[], float] = time.time,
    warn: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Holds the environment's lock file for the block; the folder must exist already.

    ``break_lock`` removes a lock left behind first, and says so through ``warn`` (naming the
    holder and its age, louder when the lock is young enough to belong to a live run).
    """
    path = lock_path(env)
    if break_lock:
        _break(ws, env, now(), warn or _log.warning)
    # The nonce tells our own lock from another's: the SDK re-sends a write whose answer was
    # lost, and the retry then finds the file the first attempt created.
    nonce = uuid.uuid4().hex
    body = json.dumps(
        {"holder": _holder(), "acquired_at": now(), "environment": env.name, "nonce": nonce}
    ).encode()
    try:
        ws.write_file(path, body, overwrite=False)
    except ConflictError:
        held = _read_quietly(ws, env)
        if held is None or held.nonce != nonce:
            raise held_error(env, held or LockInfo(path), now()) from None
    try:
        yield
    finally:
        _release(ws, path)


def _release(ws: Workspace, path: str, attempts: int = 3) -> None:
    """Deletes the lock, again after a failure (the SDK does not retry a 500): a lock left
    behind stops every later run until someone breaks it by hand. Deleting is idempotent."""
    for attempt in range(1, attempts + 1):
        try:
            ws.delete(path)
            return
        except RemoteError:
            if attempt == attempts:
                raise


def _break(ws: Workspace, env: Environment, at: float, warn: Callable[[str], None]) -> None:
    held = _read_quietly(ws, env)
    if held is None:
        return
    if held.is_live(at):
        warn(
            f"breaking the lock of environment {env.name!r} held by {held.describe(at)}: that run "
            "may still be going; if it is, the two runs change the workspace at the same time"
        )
    else:
        warn(f"breaking the stale lock of environment {env.name!r} held by {held.describe(at)}")
    ws.delete(held.path)


def _read_quietly(ws: Workspace, env: Environment) -> LockInfo | None:
    try:
        return read_lock(ws, env)
    except RemoteError:
        return LockInfo(lock_path(env))


def held_error(env: Environment, held: LockInfo, at: float) -> ConflictError:
    """The error for a lock held by another run, with a hint that depends on its age."""
    age = held.age(at)
    if age is not None and age >= LIVE_LOCK_SECONDS:
        hint = (
            f"the lock is {format_age(age)} old, so that run most likely crashed: "
            "re-run with --break-lock to remove it"
        )
    elif age is not None:
        hint = (
            f"that run took the lock {format_age(age)} ago and is probably still going: wait for it "
            "to finish and try again; only if you know it crashed, re-run with --break-lock"
        )
    else:
        hint = "wait for that run to finish; if it crashed, re-run with --break-lock"
    return ConflictError(
        f"environment {env.name!r} is locked by {held.describe(at)} ({held.path})",
        hint,
    )
