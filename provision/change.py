"""One change of a plan: what to do to one object, what doing it needs, what the planner saw.

A ``Change`` is executable on its own: ``payload`` holds what carrying it out needs (the
notebook source, the job settings to send, the principal, the token's fingerprint, never
the token) and ``expect`` what the planner saw of the object (``provision.probes``). The
executor (``provision.apply.execute``) carries out a list of them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Action(str, Enum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    NOOP = "no-op"


@dataclass(frozen=True)
class Change:
    # "scope" | "scope-acl" | "secret" | "folder" | "notebook" | "notebook-acl" | "workflow" | "task"
    # | "state" | "adopt-workflow" | "backup" (dbtwf adopt), or "warning": shown with the plan,
    # never carried out (always a no-op)
    resource: str
    name: str
    action: Action
    reason: str
    #: The job id an UPDATE/NOOP/DELETE of a workflow or task applies to.
    job_id: int | None = None
    #: What carrying the change out needs (JSON-able; never a secret).
    payload: Mapping[str, Any] = field(default_factory=dict, compare=False)
    #: What the planner saw of the object (a probe's answer); None: not checked.
    expect: Mapping[str, Any] | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """What a person or script is shown (table row, --json)."""
        data: dict[str, Any] = {
            "resource": self.resource,
            "name": self.name,
            "action": self.action.value,
            "reason": self.reason,
        }
        if self.job_id is not None:
            data["job_id"] = self.job_id
        return data

    def to_saved(self) -> dict[str, Any]:
        """Everything, for a saved plan."""
        return {**self.to_dict(), "payload": dict(self.payload), "expect": self.expect}

    @classmethod
    def from_saved(cls, data: Mapping[str, Any]) -> Change:
        job_id = data.get("job_id")
        return cls(
            resource=str(data["resource"]),
            name=str(data["name"]),
            action=Action(data["action"]),
            reason=str(data.get("reason", "")),
            job_id=int(job_id) if job_id is not None else None,
            payload=dict(data.get("payload") or {}),
            expect=data.get("expect"),
        )

    @property
    def writes(self) -> bool:
        return self.action is not Action.NOOP


def has_changes(changes: Sequence[Change]) -> bool:
    return any(change.action is not Action.NOOP for change in changes)


def writes_secret(changes: Sequence[Change]) -> bool:
    """Whether carrying the changes out stores the token (so it must be checked first)."""
    return any(c.resource == "secret" and c.action in (Action.CREATE, Action.UPDATE) for c in changes)


def digest(value: Any) -> str:
    """SHA-256 of a JSON value in canonical form (sorted keys)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
