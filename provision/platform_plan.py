"""The planner's part of the dbt platform backend (``provision.platform``): a plan of dbt
platform tasks holds no scope, secret or notebook, and shows what a notebook backend left as
unused (kept until `dbtwf destroy`)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from provision.change import Action, Change, has_changes
from provision.location import WARNING

if TYPE_CHECKING:
    from provision.model import Environment
    from provision.observe import Observed, Reader

#: What only the runner notebook needs: left out of a plan of dbt platform tasks.
_NOTEBOOK_BACKEND = ("scope", "scope-acl", "secret", "notebook", "notebook-acl")


def without_notebook_backend(changes: list[Change], env: Environment, observed: Observed) -> list[Change]:
    """The planner's changes for dbt platform tasks: no scope, secret or notebook (nor who may
    read them), what a notebook backend left shown as unused, and the state record's change
    decided on what remains."""
    about_notebook = (env.notebook_path, env.secret_scope)
    kept = [
        c
        for c in changes
        if c.resource not in (*_NOTEBOOK_BACKEND, "state")
        and not (c.resource == WARNING and c.name in about_notebook)
    ]
    kept[:0] = unused_notebook_backend(env, observed)
    state, recorded = observed.state, changes[-1]
    assert recorded.resource == "state"
    workflow = next((c for c in kept if c.resource == "workflow"), None)
    if state is None:
        kept.append(recorded)
    elif has_changes(kept):
        kept.append(replace(recorded, action=Action.UPDATE, reason="records the changes above"))
    elif workflow is not None and workflow.job_id != state.workflow_job_id:
        kept.append(replace(recorded, action=Action.UPDATE, reason="records the workflow found by its tags"))
    else:
        kept.append(replace(recorded, action=Action.NOOP, reason="current", payload={}))
    return kept


def unused_notebook_backend(env: Environment, observed: Observed) -> list[Change]:
    """What a notebook backend left in the workspace, as no-ops the plan shows: unused by the
    dbt platform tasks, kept (a switch back reuses them) until `dbtwf destroy` removes them."""
    kept = "unused by dbt_platform tasks; kept until `dbtwf destroy` (or `dbtwf migrate --to notebook`)"
    changes: list[Change] = []
    state = observed.state
    if observed.scope_exists and state is not None and state.scope_created:
        changes.append(Change("scope", env.secret_scope, Action.NOOP, kept))
    if observed.secret_exists and state is not None and state.token_fingerprint:
        changes.append(Change("secret", f"{env.secret_scope}/{env.secret_key}", Action.NOOP, kept))
    notebook_there = observed.notebook_status is not None or observed.notebook_source is not None
    if notebook_there and state is not None and state.notebook_sha256:
        changes.append(Change("notebook", env.notebook_path, Action.NOOP, kept))
    return changes


def missing_connection_warning(reader: Reader, env: Environment) -> list[Change]:
    """A warning when the Unity Catalog connection the tasks name cannot be found: dbtwf never
    creates it, and every run of the workflow fails until an admin does."""
    from provision.platform import HOW_TO_CREATE

    name = str(env.dbt_platform_connection)
    if reader.connection(name) is not None:
        return []
    why = (
        f"Unity Catalog connection {name!r} does not exist (or you may not see it): every run of these "
        f"dbt platform tasks fails until it does; {HOW_TO_CREATE}"
    )
    return [Change(WARNING, name, Action.NOOP, why)]
