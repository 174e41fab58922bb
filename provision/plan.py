"""Desired state vs what the workspace holds, as data: the plan that apply carries out.

``plan(desired, observed)`` is pure: frozen dataclasses in, a list of ``Change`` out, so
every decision (create, update in place, leave alone, refuse) is tested without a server.
The executor (``provision.apply.execute``) re-probes under the lock and refuses when the
workspace moved since the plan, so what runs is what was confirmed.

The parts: ``provision.change`` (a change), ``provision.desired`` (what the config wants),
``provision.observe`` (what the workspace holds), this module (the decisions),
``provision.probes`` (what each change expects to find), ``provision.saved_plan`` (a plan
kept by ``plan --out``). ``plan_environment`` chains observe, plan and probes.

A new kind of resource is a planner branch here, a ``PROBES`` entry and an executor entry
in ``provision.apply``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from provision.bundle import bundle_warning, handed_to_bundle, is_bundle_managed
from provision.change import Action, Change, has_changes
from provision.desired import (
    MANAGED_JOB_FIELDS,
    Desired,
    desired_state,
    merged_settings,
    notebook_difference,
    sha256_text,
)
from provision.errors import ConflictError
from provision.location import security_changes
from provision.observe import Observed, Reader, observe, recorded_upload, status_stamp
from provision.probes import with_expectations
from provision.state import token_fingerprint

if TYPE_CHECKING:
    from provision.databricks import Workspace
    from provision.model import Environment

_PERMISSION_RANK = {"READ": 1, "WRITE": 2, "MANAGE": 3}


def same_notebook(uploaded: str, rendered: str) -> bool:
    """Whether the workspace's notebook is the rendered one: an export may differ from the
    upload only in line endings and trailing whitespace."""

    def normalized(source: str) -> str:
        return source.replace("\r\n", "\n").rstrip()

    return normalized(uploaded) == normalized(rendered)


def _subset_differences(desired: Any, observed: Any, path: str) -> list[str]:
    """Where ``observed`` differs from ``desired``, ignoring fields dbtwf does not set
    (server defaults such as ``run_if`` or ``format``). Task lists compare by task_key."""
    if isinstance(desired, dict):
        if not isinstance(observed, dict):
            return [path]
        found: list[str] = []
        for key, value in desired.items():
            found += _subset_differences(value, observed.get(key), f"{path}.{key}" if path else key)
        return found
    if isinstance(desired, list):
        if not isinstance(observed, list) or len(desired) != len(observed):
            return [path]
        if desired and all(isinstance(item, dict) and "task_key" in item for item in desired):
            by_key = {item.get("task_key"): item for item in observed if isinstance(item, dict)}
            found = []
            for item in desired:
                found += _subset_differences(
                    item, by_key.get(item["task_key"]), f"{path}[{item['task_key']}]"
                )
            return found
        found = []
        for index, (want, have) in enumerate(zip(desired, observed, strict=True)):
            found += _subset_differences(want, have, f"{path}[{index}]")
        return found
    return [] if desired == observed else [path]


def workflow_differences(desired: Mapping[str, Any], observed_settings: Mapping[str, Any]) -> list[str]:
    """The managed fields of an owned workflow that do not match the desired settings."""
    differences: list[str] = []
    for name in MANAGED_JOB_FIELDS:
        want = desired.get(name)
        have = observed_settings.get(name)
        if want is None:
            # Not wanted any more (a schedule removed, several dbt jobs now): must be absent.
            if have not in (None, [], {}) and not (
                name == "email_notifications" and not (have or {}).get("on_failure")
            ):
                differences.append(name)
            continue
        differences += _subset_differences(want, have, name)
    return differences


def format_ms(stamp: int | None) -> str:
    if stamp is None:
        return "an unknown time"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(stamp / 1000))


def plan(
    desired: Desired, observed: Observed, *, adopt: bool = False, include_workflow: bool = True
) -> list[Change]:
    """The changes that converge the environment. Raises ConflictError where it must not guess."""
    env = desired.env
    changes: list[Change] = []
    scope = env.secret_scope

    if observed.scope_exists:
        changes.append(Change("scope", scope, Action.NOOP, "exists"))
    else:
        changes.append(Change("scope", scope, Action.CREATE, "missing"))

    for principal in env.scope_readers:
        grant = {"principal": principal, "permission": "READ"}
        have = observed.scope_acls.get(principal)
        if have is not None and _PERMISSION_RANK.get(have, 0) >= _PERMISSION_RANK["READ"]:
            changes.append(
                Change("scope-acl", f"{scope}:{principal}", Action.NOOP, f"has {have}", None, grant)
            )
        else:
            action = Action.CREATE if have is None else Action.UPDATE
            changes.append(Change("scope-acl", f"{scope}:{principal}", action, "needs READ", None, grant))

    changes.append(_plan_secret(desired, observed))
    changes.append(
        Change("folder", env.notebook_folder, Action.NOOP, "exists")
        if observed.folder_exists
        # Which folders mkdirs makes (the state records them: destroy removes them if empty).
        else Change(
            "folder",
            env.notebook_folder,
            Action.CREATE,
            "missing",
            None,
            {"created": list(observed.missing_folders or (env.notebook_folder,))},
        )
    )
    notebook, record_notebook = _plan_notebook(desired, observed)
    changes.append(notebook)

    state = observed.state
    recorded = state.workflow_job_id if state is not None else None
    workflow_id = recorded
    if include_workflow:
        changes.append(_plan_workflow(desired, observed, adopt=adopt))
        workflow_id = changes[-1].job_id
        if changes[-1].payload.get("bundle"):
            changes.append(bundle_warning(changes[-1]))
    changes += security_changes(
        env,
        deployer=observed.deployer,
        location=observed.location,
        workflow=observed.workflow,
        scope_exists=observed.scope_exists,
        scope_acls=observed.scope_acls,
        granted_readers=state.granted_readers if state is not None else (),
    )
    if state is None:
        changes.append(Change("state", env.state_path, Action.CREATE, "missing"))
    elif has_changes(changes):
        changes.append(Change("state", env.state_path, Action.UPDATE, "records the changes above"))
    elif recorded != workflow_id:
        changes.append(
            Change("state", env.state_path, Action.UPDATE, "records the workflow found by its tags")
        )
    elif record_notebook:
        changes.append(
            Change("state", env.state_path, Action.UPDATE, "records the notebook's id and modification time")
        )
    else:
        changes.append(Change("state", env.state_path, Action.NOOP, "current"))
    if not env.uses_notebook:  # dbt platform tasks: no scope, secret or notebook needed
        from provision.platform_plan import without_notebook_backend

        return without_notebook_backend(changes, env, observed)
    return changes


def _plan_secret(desired: Desired, observed: Observed) -> Change:
    env = desired.env
    name = f"{env.secret_scope}/{env.secret_key}"
    state = observed.state
    payload: dict[str, Any] = {}
    if desired.token is not None:
        salt = (state.token_salt if state is not None else "") or desired.fresh_salt
        payload = {"salt": salt, "fingerprint": token_fingerprint(desired.token, salt)}
    if not observed.secret_exists:
        return Change("secret", name, Action.CREATE, "missing", None, payload)
    recorded_at = state.secret_updated_at if state is not None else None
    if recorded_at is not None and observed.secret_updated_at != recorded_at:
        # Someone stored another value since dbtwf did: what the runner reads is not known.
        why = (
            f"overwritten outside dbtwf at {format_ms(observed.secret_updated_at)} "
            f"(dbtwf stored it at {format_ms(recorded_at)}); storing the token again"
        )
        if desired.token is None:
            why += " needs the token"
        return Change("secret", name, Action.UPDATE, why, None, payload)
    if desired.token is None:
        return Change("secret", name, Action.NOOP, "exists (token not available to compare)")
    if state is None or not state.token_fingerprint:
        why = "no fingerprint recorded; re-storing the token"
        if state is not None and (state.backup_path or state.adopted_workflows):
            # Adopt kept the hand-made secret: say that this replaces a value dbtwf never stored.
            why = "kept by adopt as the hand-made setup stored it; replacing it with your token"
        return Change("secret", name, Action.UPDATE, why, None, payload)
    if payload["fingerprint"] != state.token_fingerprint:
        return Change("secret", name, Action.UPDATE, "the token changed", None, payload)
    if recorded_at is None:
        why = "no update time recorded; re-storing the token so changes made outside dbtwf show"
        return Change("secret", name, Action.UPDATE, why, None, payload)
    return Change("secret", name, Action.NOOP, "token unchanged")


def _plan_notebook(desired: Desired, observed: Observed) -> tuple[Change, bool]:
    """The notebook change, and whether the state should record the notebook's id and time
    (found current by the export fallback: the next plan then needs no export)."""
    env = desired.env
    path = env.notebook_path
    wanted = sha256_text(desired.notebook_source)
    upload = {"source": desired.notebook_source, "sha256": wanted}
    status, state = observed.notebook_status, observed.state
    if status is None and observed.notebook_source is None:
        return Change("notebook", path, Action.CREATE, "missing", None, upload), False
    stamp = status_stamp(status)
    if state is not None and recorded_upload(state) and None not in stamp:
        if stamp != (state.notebook_object_id, state.notebook_modified_at):
            why = "differs from what dbtwf uploaded: changed in the workspace since"
            return Change("notebook", path, Action.UPDATE, why, None, upload), False
        if state.notebook_sha256 != wanted:
            return Change(
                "notebook", path, Action.UPDATE, _why_differs(desired, observed), None, upload
            ), False
        return Change("notebook", path, Action.NOOP, "current (unchanged since dbtwf uploaded it)"), False
    if not same_notebook(observed.notebook_source or "", desired.notebook_source):
        return Change("notebook", path, Action.UPDATE, _why_differs(desired, observed), None, upload), False
    if None in stamp:
        return Change("notebook", path, Action.NOOP, "current (compared by export)"), False
    found = {"record": {"sha256": wanted, "object_id": stamp[0], "modified_at": stamp[1]}}
    return Change("notebook", path, Action.NOOP, "current (compared by export)", None, found), True


def _why_differs(desired: Desired, observed: Observed) -> str:
    if observed.notebook_source is None:
        return "differs from the runner version"
    return notebook_difference(observed.notebook_source, desired.notebook_source)


def with_notebook_source(reader: Reader, env: Environment, observed: Observed, desired: Desired) -> Observed:
    """``observed`` with the notebook's source also when the record vouches for a notebook
    that is no longer the rendered one: one export, only when it is about to be replaced
    anyway, so the plan can say what changed (the dbt host, the runner code, ...)."""
    state, status = observed.state, observed.notebook_status
    if observed.notebook_source is not None or status is None or state is None or not recorded_upload(state):
        return observed
    if status_stamp(status) != (state.notebook_object_id, state.notebook_modified_at):
        return observed  # changed in the workspace: that is the reason given
    if state.notebook_sha256 == sha256_text(desired.notebook_source):
        return observed
    return replace(observed, notebook_source=reader.export(env.notebook_path))


def _plan_workflow(desired: Desired, observed: Observed, *, adopt: bool) -> Change:
    env = desired.env
    name = env.workflow_name
    if observed.duplicate_owned:
        ids = ", ".join(str(i) for i in observed.duplicate_owned)
        raise ConflictError(
            f"several jobs named {name!r} carry dbtwf's tags for environment {env.name!r}: {ids}",
            "delete the extra ones in the Databricks UI, keeping the one you use, then re-run",
        )
    if observed.workflow is not None:
        job_id = int(observed.workflow["job_id"])
        settings = observed.workflow.get("settings") or {}
        if is_bundle_managed(settings):
            return handed_to_bundle(name, job_id, settings)
        differences = workflow_differences(desired.workflow, settings)
        how = "found by its tags" if observed.found_by == "tags" else "owned"
        if differences:
            reset = {"settings": merged_settings(desired.workflow, settings)}
            why = f"{how}; differs in {', '.join(differences)}"
            return Change("workflow", name, Action.UPDATE, why, job_id, reset)
        return Change("workflow", name, Action.NOOP, f"{how}; in sync", job_id)
    if observed.foreign_same_name:
        ids = ", ".join(str(i) for i in observed.foreign_same_name)
        if adopt and len(observed.foreign_same_name) == 1:
            job_id = observed.foreign_same_name[0]
            why = "adopting the existing job; its settings are replaced"
            return Change("workflow", name, Action.UPDATE, why, job_id, {"settings": desired.workflow})
        raise ConflictError(
            f"a workflow named {name!r} already exists (job {ids}) and dbtwf did not create it",
            "set another workflow_name for the environment in dbtwf.toml, or re-run with --adopt "
            "to take over that job (its settings will be replaced); a setup made by hand from dbt's "
            f"guide (or given back by destroy after an adopt): `dbtwf --env {env.name} adopt`, which "
            "keeps its notebook's code",
        )
    create = {"settings": desired.workflow}
    if observed.stale_job_id is not None:
        why = f"job {observed.stale_job_id} in the state was deleted"
        return Change("workflow", name, Action.CREATE, why, None, create)
    return Change("workflow", name, Action.CREATE, "missing", None, create)


def plan_environment(
    ws: Workspace,
    env: Environment,
    token: str | None,
    *,
    include_workflow: bool = True,
    adopt: bool = False,
    reader: Reader | None = None,
) -> list[Change]:
    """Observe the workspace and plan. ``include_workflow=False`` leaves the workflow out
    (add-task only needs the scope, secret and notebook). ``reader``: a caller planning more
    on top (migrate) shares its reads instead of making them again."""
    reader = reader or Reader(ws)
    desired = desired_state(env, token)
    observed = with_notebook_source(
        reader, env, observe(reader, env, include_workflow=include_workflow), desired
    )
    changes = plan(desired, observed, adopt=adopt, include_workflow=include_workflow)
    if not env.uses_notebook:
        from provision.platform_plan import missing_connection_warning

        changes[-1:-1] = missing_connection_warning(reader, env)
    return with_expectations(changes, reader, env)
