"""A plan to keep: ``plan --out`` saves one, ``apply --plan`` carries out exactly it."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from provision.change import Change, writes_secret
from provision.desired import config_digest
from provision.errors import UsageError
from provision.plan import plan_environment
from provision.state import new_salt, token_fingerprint

if TYPE_CHECKING:
    from provision.databricks import Workspace
    from provision.model import Environment

PLAN_FORMAT = "dbtwf-plan"
PLAN_VERSION = 1


@dataclass(frozen=True)
class Plan:
    """One environment's changes and what they were planned against.

    Saved as versioned JSON by ``plan --out``; ``apply --plan`` carries out exactly these
    changes after checking that the workspace (host and identity), the config (a digest of
    the resolved environment) and the token (a salted fingerprint, never the token) match.
    """

    environment: str
    workspace_host: str
    identity: str
    config_digest: str
    changes: tuple[Change, ...]
    #: Salted fingerprint of the token the plan was made with; empty: made without one.
    token_salt: str = ""
    token_fingerprint: str = field(default="", repr=False)
    created_at: float = 0.0

    def header(self) -> dict[str, str]:
        return {
            "environment": self.environment,
            "workspace_host": self.workspace_host,
            "identity": self.identity,
        }

    def to_json(self) -> bytes:
        data = {
            "format": PLAN_FORMAT,
            "version": PLAN_VERSION,
            **self.header(),
            "config_digest": self.config_digest,
            "token": {"salt": self.token_salt, "fingerprint": self.token_fingerprint}
            if self.token_fingerprint
            else None,
            "created_at": self.created_at,
            "changes": [change.to_saved() for change in self.changes],
        }
        return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes, where: str) -> Plan:
        hint = "make it again with `dbtwf plan --out FILE`"
        try:
            raw: Any = json.loads(data)
        except ValueError as error:
            raise UsageError(f"{where} is not a dbtwf plan: {error}", hint) from None
        if not isinstance(raw, dict) or raw.get("format") != PLAN_FORMAT:
            raise UsageError(f'{where} is not a dbtwf plan (no "format": "{PLAN_FORMAT}")', hint)
        version = raw.get("version")
        if not isinstance(version, int) or version > PLAN_VERSION:
            raise UsageError(
                f"{where} was written by a newer dbtwf (plan version {version}; this one reads "
                f"{PLAN_VERSION})",
                "apply it with the dbtwf that wrote it, or " + hint,
            )
        try:
            token = raw.get("token") or {}
            return cls(
                environment=str(raw["environment"]),
                workspace_host=str(raw["workspace_host"]),
                identity=str(raw["identity"]),
                config_digest=str(raw["config_digest"]),
                changes=tuple(Change.from_saved(c) for c in raw["changes"]),
                token_salt=str(token.get("salt", "")),
                token_fingerprint=str(token.get("fingerprint", "")),
                created_at=float(raw.get("created_at") or 0.0),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise UsageError(f"{where} is not a readable dbtwf plan: {error!r}", hint) from None

    def mismatches(self, *, host: str, identity: str, env: Environment, token: str | None) -> list[str]:
        """What no longer matches what the plan saw; empty when it may run."""
        found: list[str] = []
        if host.rstrip("/") != self.workspace_host.rstrip("/"):
            found.append(f"the workspace is {host}, the plan was made for {self.workspace_host}")
        if identity != self.identity:
            found.append(f"the identity is {identity}, the plan was made as {self.identity}")
        if env.name != self.environment:
            found.append(f"the environment is {env.name!r}, the plan is for {self.environment!r}")
        elif config_digest(env) != self.config_digest:
            found.append(f"the config of environment {env.name!r} changed since the plan")
        if self.token_fingerprint:
            if token is None or token_fingerprint(token, self.token_salt) != self.token_fingerprint:
                found.append("the dbt Cloud token is not the one the plan was made with")
        elif writes_secret(self.changes):
            found.append("the plan stores the dbt Cloud token but was made without one")
        return found


#: Per plan, not per config: the secret's salt and salted fingerprint (checked against the token).
_SALTED = ("salt", "fingerprint")


def _comparable(change: Change) -> dict[str, Any]:
    saved = change.to_saved()
    # The wording aside, and what the change expects to find: the executor checks that against
    # the workspace under the lock, and names what moved.
    saved.pop("reason", None)
    saved.pop("expect", None)
    if change.resource == "secret":
        saved["payload"] = {k: v for k, v in saved["payload"].items() if k not in _SALTED}
    return saved


def edits(saved: tuple[Change, ...], fresh: list[Change]) -> list[str]:
    """The saved changes that are not what planning now gives, each named once.

    A saved plan is a file: whoever can write it could change what apply would send (a
    notebook path, a `run_as`, the notebook's code). The file carries no key that could prove
    it unchanged, so `apply --plan` plans again and carries the saved plan out only when both
    agree change for change, payload included (the salted token fingerprint aside).
    What each change expects to find is left to the executor, which checks it under the lock.
    """
    if [(c.resource, c.name) for c in saved] != [(c.resource, c.name) for c in fresh]:
        return ["its list of changes is not the one planning gives now"]
    return [
        f"{was.resource} {was.name}"
        for was, now in zip(saved, fresh, strict=True)
        if json.dumps(_comparable(was), sort_keys=True, default=str)
        != json.dumps(_comparable(now), sort_keys=True, default=str)
    ]


def make_plan(
    ws: Workspace, env: Environment, token: str | None, *, identity: str, adopt: bool = False
) -> Plan:
    changes = plan_environment(ws, env, token, adopt=adopt)
    salt = new_salt() if token is not None else ""
    return Plan(
        environment=env.name,
        workspace_host=ws.host,
        identity=identity,
        config_digest=config_digest(env),
        changes=tuple(changes),
        token_salt=salt,
        token_fingerprint=token_fingerprint(token, salt) if token is not None else "",
        created_at=time.time(),
    )
