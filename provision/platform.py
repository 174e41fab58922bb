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
from typing import TYPE_CHECKING, Any

from provision.errors import UsageError
from provision.names import quoted

if TYPE_CHECKING:
    from provision.model import Environment

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


def is_platform_task_of(env: Environment, task: dict[str, Any]) -> bool:
    """A dbt platform task authenticated by the environment's connection."""
    platform = task.get("dbt_platform_task") or {}
    return bool(platform) and platform.get("connection_resource_name") == env.dbt_platform_connection
