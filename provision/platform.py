"""The second backend: Databricks' native dbt platform task (Beta) instead of the runner notebook.

An environment with ``task_type = "dbt_platform"`` gets workflow tasks of the form
``dbt_platform_task {connection_resource_name, dbt_platform_job_id}`` (the SDK's
``jobs.DbtPlatformTask``; the job id is a string there). Databricks triggers the dbt job
itself, authenticated by a Unity Catalog connection that an admin made (dbtwf never creates
it: it needs CREATE CONNECTION on the metastore). So no secret scope, no secret and no
notebook are needed, and no token is asked for.

What is documented (https://docs.databricks.com/aws/en/jobs/dbt-platform): the task is in
Beta, "connects to the dbt platform API and triggers a run there", and needs the preview
enabled and CREATE CONNECTION. Not documented, so assumed here: the task needs no compute
(it is an API call, like a condition task), and its ``timeout_seconds`` bounds the dbt run.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from provision.change import Action, Change, has_changes
from provision.errors import UsageError
from provision.names import quoted

WARNING = "warning"  # provision.location.WARNING: shown with the plan, never carried out

if TYPE_CHECKING:
    from provision.model import Environment
    from provision.observe import Observed

#: The docs page of the task (Beta), cited by doctor and the README.
DOCS_URL = "https://docs.databricks.com/aws/en/jobs/dbt-platform"
#: Fields of a task that say what runs it; a switch of backend replaces exactly these.
BACKEND_FIELDS = ("notebook_task", "dbt_platform_task")
#: Compute fields: a notebook task may need one, a dbt platform task takes none (assumed).
COMPUTE_FIELDS = ("existing_cluster_id", "job_cluster_key", "new_cluster", "environment_key")

# Unity Catalog object names: no period, space, slash or control character, at most 255.
_CONNECTION_NAME = re.compile(r"[^.\s/\x00-\x1f\x7f]{1,255}")

HOW_TO_CREATE = (
    "a metastore admin or a user with CREATE CONNECTION makes it (Catalog > External data > "
    f"Connections, or when adding a dbt platform task in the Jobs UI); see {DOCS_URL}"
)


def validate_connection_name(value: str, what: str = "dbt_platform_connection") -> None:
    """A Unity Catalog connection name (UsageError otherwise)."""
    if not isinstance(value, str) or not _CONNECTION_NAME.fullmatch(value):
        raise UsageError(
            f"{quoted(value)} is not a valid {what} (a Unity Catalog connection name: up to 255 "
            "characters, no period, space, slash or control character)"
        )


def platform_task(
    env: Environment, task_key: str, dbt_job_id: int, depends_on: tuple[str, ...]
) -> dict[str, Any]:
    """One dbt platform task (jobs/create shape): no compute, no parameters."""
    task: dict[str, Any] = {
        "task_key": task_key,
        "dbt_platform_task": {
            "connection_resource_name": env.dbt_platform_connection,
            "dbt_platform_job_id": str(dbt_job_id),  # a string in the SDK's DbtPlatformTask
        },
        "timeout_seconds": env.run_timeout_seconds,
    }
    if depends_on:
        task["depends_on"] = [{"task_key": key} for key in depends_on]
    return task


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


def is_platform_task_of(env: Environment, task: dict[str, Any]) -> bool:
    """A dbt platform task authenticated by the environment's connection."""
    platform = task.get("dbt_platform_task") or {}
    return bool(platform) and platform.get("connection_resource_name") == env.dbt_platform_connection
