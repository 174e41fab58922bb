"""What each change expects to find: the planner's reads of one object, asked again.

``with_expectations`` stamps every change with what the workspace holds of its object
(``Change.expect``); the executor asks the same ``PROBES`` again under the lock, and
``moved_since_plan`` says what differs. A new kind of resource needs a ``PROBES`` entry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from provision.change import Action, Change, digest
from provision.model import Environment
from provision.observe import Reader, named_jobs, status_stamp


def _probe_scope(reader: Reader, env: Environment, change: Change) -> dict[str, Any]:
    exists = reader.has_scope(change.name)
    if change.action is not Action.DELETE or not exists:
        return {"exists": exists}
    # Deleting a scope deletes what it holds: a secret stored meanwhile must stop it.
    return {"exists": True, "keys": sorted(reader.secrets(change.name))}


def _probe_scope_acl(reader: Reader, env: Environment, change: Change) -> dict[str, Any]:
    scope, _, principal = change.name.partition(":")
    principal = str(change.payload.get("principal") or principal)
    if not reader.has_read_scopes():  # one round trip for both, not two
        reader.prefetch(reader.scope_names, lambda: reader.acls(scope))
    if not reader.has_scope(scope):
        return {"permission": None}
    return {"permission": reader.acls(scope).get(principal)}


def _probe_secret(reader: Reader, env: Environment, change: Change) -> dict[str, Any]:
    scope, _, key = change.name.partition("/")
    if not reader.has_read_scopes():  # one round trip for both, not two
        reader.prefetch(reader.scope_names, lambda: reader.secrets(scope))
    secrets = reader.secrets(scope) if reader.has_scope(scope) else {}
    return {"exists": key in secrets, "updated": secrets.get(key)}


def _probe_path(reader: Reader, env: Environment, change: Change) -> dict[str, Any]:
    status = reader.status(change.name)
    if status is None:
        return {"exists": False}
    object_id, modified_at = status_stamp(status)
    return {"exists": True, "object_id": object_id, "modified_at": modified_at}


def _probe_workflow(reader: Reader, env: Environment, change: Change) -> dict[str, Any]:
    if change.job_id is not None:
        job = reader.job(change.job_id)
        return {"job": None if job is None else digest(job.get("settings") or {})}
    owned, _foreign = named_jobs(reader, env)
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
    "adopt-workflow": _probe_workflow,
    "backup": _probe_path,
    "task": _probe_task,
    "state": _probe_state,
}


def _prefetch_probes(changes: Sequence[Change], reader: Reader, env: Environment) -> None:
    """Every probe's reads at once (each probe reads its objects; most share none)."""
    reader.prefetch(
        *(
            lambda change=change: PROBES[change.resource](reader, env, change)
            for change in changes
            if change.resource in PROBES
        )
    )


def with_expectations(changes: Sequence[Change], reader: Reader, env: Environment) -> list[Change]:
    """The changes, each with what the workspace holds of its object now (``expect``)."""
    _prefetch_probes(changes, reader, env)
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
    compared = [
        change
        for change in changes
        if change.expect is not None
        and change.resource in PROBES
        and not (change.resource == "folder" and change.action is Action.CREATE)
    ]
    _prefetch_probes(compared, reader, env)  # every object at once, then compared in order
    moved: list[str] = []
    for change in compared:
        before = dict(change.expect or {})
        now = PROBES[change.resource](reader, env, change)
        if now != before:
            moved.append(_describe_move(change, before, now))
    return moved


def _describe_move(change: Change, before: dict[str, Any], now: dict[str, Any]) -> str:
    what = f"{change.resource} {change.name}" + (f" (job {change.job_id})" if change.job_id else "")
    for key in ("exists", "job", "digest"):
        if key in before and bool(before[key]) != bool(now.get(key)):
            return f"{what} was {'created' if now.get(key) else 'deleted'}"
    if "owned" in before:
        return f"{what} now exists as job {', '.join(str(i) for i in now.get('owned') or [])}"
    return f"{what} was changed"
