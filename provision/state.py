"""What dbtwf owns in one environment, kept as a small JSON file in the workspace.

The record lives next to the notebook (``Environment.state_path``), so a second machine
or a CI runner finds the same workflow, the tasks added to foreign workflows and whether
the scope was created by the tool. It never holds the token, only a salted fingerprint.

The lock is a second file beside it, created only if absent: two applies on one
environment cannot both create it, and a crashed apply's lock can be broken explicitly.
"""

from __future__ import annotations

import getpass
import json
import os
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

STATE_VERSION = 1


@dataclass(frozen=True)
class AddedTask:
    """A runner task dbtwf added to a workflow it does not own (removed again by destroy)."""

    job_id: int
    task_key: str
    dbt_job_id: int
    #: The user's own task of that key that `add-task --replace` overwrote (as jobs/get gave
    #: it); destroy puts it back instead of leaving the workflow without it.
    replaced: dict[str, Any] | None = None


@dataclass
class StateRecord:
    environment: str
    workflow_job_id: int | None = None
    #: True only when dbtwf created the scope; destroy deletes a scope only then.
    scope_created: bool = False
    #: Salt and salted SHA-256 of the token last stored in the secret, to see a changed token.
    token_salt: str = ""
    token_fingerprint: str = ""
    notebook_sha256: str = ""
    added_tasks: list[AddedTask] = field(default_factory=list)
    #: Principals dbtwf granted READ on the scope (for scope_readers): revoked when they
    #: leave scope_readers. An ACL dbtwf did not grant is never revoked.
    granted_readers: list[str] = field(default_factory=list)
    version: int = STATE_VERSION

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), indent=2, sort_keys=True) + "\n").encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes, where: str) -> StateRecord:
        try:
            raw: Any = json.loads(data)
            if not isinstance(raw, dict):
                raise TypeError("not an object")
            added = [
                AddedTask(int(t["job_id"]), str(t["task_key"]), int(t["dbt_job_id"]), t.get("replaced"))
                for t in raw.get("added_tasks", [])
            ]
            job_id = raw.get("workflow_job_id")
            return cls(
                environment=str(raw["environment"]),
                workflow_job_id=int(job_id) if job_id is not None else None,
                scope_created=bool(raw.get("scope_created", False)),
                token_salt=str(raw.get("token_salt", "")),
                token_fingerprint=str(raw.get("token_fingerprint", "")),
                notebook_sha256=str(raw.get("notebook_sha256", "")),
                added_tasks=added,
                granted_readers=[str(p) for p in raw.get("granted_readers", [])],
                version=int(raw.get("version", STATE_VERSION)),
            )
        except (ValueError, TypeError, KeyError) as error:
            raise RemoteError(
                f"the dbtwf state record {where} is unreadable: {error}",
                "delete it in the workspace; the next apply finds the workflow again by its tags",
            ) from None


def load_state(ws: Workspace, env: Environment) -> StateRecord | None:
    data = ws.read_file(env.state_path)
    if data is None:
        return None
    return StateRecord.from_json(data, env.state_path)


def save_state(ws: Workspace, env: Environment, record: StateRecord) -> None:
    ws.write_file(env.state_path, record.to_json(), overwrite=True)


def delete_state(ws: Workspace, env: Environment) -> None:
    ws.delete(env.state_path)


def lock_path(env: Environment) -> str:
    return f"{env.notebook_folder}/.dbtwf-lock-{env.name}.json"


def _holder() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()} pid {os.getpid()}"


@contextmanager
def environment_lock(
    ws: Workspace, env: Environment, *, break_lock: bool = False, now: Callable[[], float] = time.time
) -> Iterator[None]:
    """Holds the environment's lock file for the block; the folder must exist already."""
    path = lock_path(env)
    if break_lock:
        ws.delete(path)
    # The nonce tells our own lock from another's: the SDK re-sends a write whose answer was
    # lost, and the retry then finds the file the first attempt created.
    nonce = uuid.uuid4().hex
    body = json.dumps(
        {"holder": _holder(), "acquired_at": now(), "environment": env.name, "nonce": nonce}
    ).encode()
    try:
        ws.write_file(path, body, overwrite=False)
    except ConflictError:
        if not _is_ours(ws, path, nonce):
            raise _held(ws, env, path, now) from None
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


def _is_ours(ws: Workspace, path: str, nonce: str) -> bool:
    try:
        return bool(json.loads(ws.read_file(path) or b"{}").get("nonce") == nonce)
    except (ValueError, AttributeError, RemoteError):
        return False


def _held(ws: Workspace, env: Environment, path: str, now: Callable[[], float]) -> ConflictError:
    holder, age = "another dbtwf run", ""
    try:
        info = json.loads(ws.read_file(path) or b"{}")
        holder = str(info.get("holder") or holder)
        age = f" for {max(0, round(now() - float(info.get('acquired_at', now()))))} s"
    except (ValueError, TypeError, RemoteError):
        pass
    return ConflictError(
        f"environment {env.name!r} is locked by {holder}{age} ({path})",
        "wait for that apply to finish; if it crashed, re-run with --break-lock",
    )
