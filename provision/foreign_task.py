"""What a task dbtwf puts in a workflow it does not own looks like, and the rules it follows
there (pure): the task itself with dbtwf's mark, its compute, how it differs from one found,
and the job parameters of the workflow that would steer it. Used by `add-task`, `migrate` and
`destroy`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from provision.desired import runner_task
from provision.errors import ConflictError, UnknownNameError, UsageError
from provision.platform import COMPUTE_FIELDS as _COMPUTE_FIELDS
from runner.core import NOTEBOOK_WIDGETS, PINNED_PARAMETERS

if TYPE_CHECKING:
    from provision.model import Environment

_MARK = re.compile(r"Added by dbtwf for environment '([^']*)'")


def choose_compute(
    settings: dict[str, Any],
    env: Environment,
    *,
    cluster_id: str | None,
    job_cluster_key: str | None,
    depends_on: tuple[str, ...],
) -> tuple[dict[str, Any], str | None]:
    """The task's compute fields and, when dbtwf chose for the user, a note saying what and why.

    Order: an explicit flag; the environment's existing cluster; a job cluster of the
    workflow (the one of the first dependency that has one, else the only one), because a
    workflow built on job clusters may run where serverless is not enabled and the notebook
    only makes HTTP calls, so sharing an already started cluster costs nothing; serverless.
    Several job clusters and no way to pick one: stop and ask, rather than guess. Both flags
    at once were refused by check_request.
    """
    job_clusters = [
        c["job_cluster_key"] for c in settings.get("job_clusters") or [] if "job_cluster_key" in c
    ]
    if cluster_id:
        return {"existing_cluster_id": cluster_id}, None
    if job_cluster_key:
        if job_cluster_key not in job_clusters:
            known = ", ".join(job_clusters) or "none"
            raise UnknownNameError(
                f"the workflow has no job cluster {job_cluster_key!r} (it has: {known})",
                "pass one of its job cluster keys, --cluster-id, or neither for serverless",
            )
        return {"job_cluster_key": job_cluster_key}, None
    if env.compute.kind == "existing_cluster" and env.compute.existing_cluster_id:
        cluster = env.compute.existing_cluster_id
        return {"existing_cluster_id": cluster}, f"runs on the environment's cluster {cluster}"
    if not job_clusters:
        return {}, None
    tasks_by_key = {t.get("task_key"): t for t in settings.get("tasks") or []}
    for upstream in depends_on:
        key = tasks_by_key.get(upstream, {}).get("job_cluster_key")
        if key in job_clusters:
            return {"job_cluster_key": key}, (
                f"runs on job cluster {key!r}, which task {upstream!r} it depends on already uses; "
                "pass --cluster-id or --job-cluster-key to choose otherwise"
            )
    if len(job_clusters) == 1:
        return {"job_cluster_key": job_clusters[0]}, (
            f"runs on the workflow's job cluster {job_clusters[0]!r}, as the workflow uses job clusters; "
            "pass --cluster-id or --job-cluster-key to choose otherwise"
        )
    raise UsageError(
        f"the workflow has several job clusters ({', '.join(job_clusters)}) and no compute was chosen",
        "pass --job-cluster-key KEY (or --cluster-id ID) to say where the task runs",
    )


def build_task(
    env: Environment,
    *,
    task_key: str,
    dbt_job_id: int,
    depends_on: tuple[str, ...] = (),
    compute: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The notebook task in the Jobs API's wire shape: apply's runner task (same notebook,
    parameter and timeout), with the compute chosen for the foreign workflow, and dbtwf's
    mark in its description so destroy recognises it even without the state record."""
    task = {
        k: v
        for k, v in runner_task(env, task_key, dbt_job_id, depends_on).items()
        if k not in _COMPUTE_FIELDS
    }
    task["description"] = task_mark(env, dbt_job_id)
    task.update(compute or {})
    return task


def task_differences(existing: dict[str, Any], desired: dict[str, Any]) -> list[str]:
    """The fields of ``desired`` the existing task disagrees on (empty: the same task).

    Only what add-task sets is compared: the service fills in defaults of its own
    (`run_if`, `email_notifications`, ...) that must not count as a difference.
    """
    differences = []
    if "dbt_platform_task" in desired or "dbt_platform_task" in existing:
        if (existing.get("dbt_platform_task") or {}) != desired.get("dbt_platform_task"):
            differences.append("dbt_platform_task")
        differences += _common_differences(existing, desired)
        return differences
    old_nb = existing.get("notebook_task") or {}
    new_nb = desired["notebook_task"]
    if old_nb.get("notebook_path") != new_nb["notebook_path"]:
        differences.append("notebook_task.notebook_path")
    if (old_nb.get("source") or "WORKSPACE") != new_nb["source"]:
        differences.append("notebook_task.source")
    if (old_nb.get("base_parameters") or {}) != new_nb["base_parameters"]:
        differences.append("notebook_task.base_parameters")
    return differences + _common_differences(existing, desired)


def _common_differences(existing: dict[str, Any], desired: dict[str, Any]) -> list[str]:
    differences = []
    old_deps = sorted(d.get("task_key", "") for d in existing.get("depends_on") or [])
    new_deps = sorted(d["task_key"] for d in desired.get("depends_on") or [])
    if old_deps != new_deps:
        differences.append("depends_on")
    if existing.get("timeout_seconds") != desired.get("timeout_seconds"):
        differences.append("timeout_seconds")
    differences.extend(name for name in _COMPUTE_FIELDS if existing.get(name) != desired.get(name))
    return differences


def job_parameter_note(settings: dict[str, Any], dbt_job_id: int) -> str | None:
    """Refuse a workflow whose job-level `job_id` parameter would override the task's.

    Databricks gives job parameters precedence over a task's `base_parameters` of the same
    name, so the new task would run the job-level value's dbt job. With the same default it
    works (until someone runs it with another value): say so. With another one it would run
    the wrong dbt job: stop.
    """
    for parameter in settings.get("parameters") or []:
        if parameter.get("name") != "job_id":
            continue
        default = str(parameter.get("default", ""))
        if default == str(dbt_job_id):
            return (
                "the workflow has a job-level parameter job_id (default "
                f"{default}); it overrides the task's job_id, so 'Run now with different "
                "parameters' changes which dbt job this task runs"
            )
        raise ConflictError(
            f"the workflow has a job-level parameter job_id={default!r}, which overrides the task's "
            f"job_id, so the new task would run dbt job {default} instead of {dbt_job_id}",
            "remove or rename the workflow's job_id parameter, or add-task the dbt job it names",
        )
    return None


#: Runner widgets a job parameter may be accepted for (job_id has its own rule above).
ALLOWABLE_JOB_PARAMETERS = tuple(name for name in NOTEBOOK_WIDGETS if name != "job_id")


def validate_allowed_job_parameters(names: tuple[str, ...]) -> None:
    """--allow-job-parameter takes only the runner's run options (UsageError otherwise)."""
    for name in names:
        if name not in ALLOWABLE_JOB_PARAMETERS:
            raise UsageError(
                f"--allow-job-parameter {name!r} is not a run option of the runner notebook",
                f"pass one of {', '.join(ALLOWABLE_JOB_PARAMETERS)} (job_id follows its own rule; "
                f"{', '.join(PINNED_PARAMETERS)} can never be set by a parameter)",
            )


def job_parameter_collisions(settings: dict[str, Any], allowed: tuple[str, ...] = ()) -> list[str]:
    """Refuse a workflow whose job parameters would silently steer the new task; notes for the
    ones the user accepted.

    Databricks pushes job parameters down to every notebook task, over the task's
    `base_parameters` of the same name, so a foreign workflow's `git_branch` or `wait` would
    change what the dbt run builds or whether the task waits for it. A parameter named like
    one of the notebook's constants (host, account, secret) makes the runner refuse every run.
    """
    parameters = [p for p in settings.get("parameters") or [] if isinstance(p, dict)]
    defaults = {str(p.get("name")): str(p.get("default", "")) for p in parameters}
    pinned = [name for name in PINNED_PARAMETERS if name in defaults]
    if pinned:
        raise UsageError(
            f"the workflow has job parameter(s) {', '.join(pinned)}: the runner refuses every run "
            "passing them (the dbt host, account and token's secret are fixed in its notebook)",
            "rename or remove them in the workflow's job parameters before adding the task",
        )
    colliding = [name for name in ALLOWABLE_JOB_PARAMETERS if name in defaults]
    refused = [name for name in colliding if name not in allowed]
    if refused:
        listing = ", ".join(f"{name}={defaults[name]!r}" for name in refused)
        raise UsageError(
            f"the workflow's job parameter(s) {listing} would set the new task's runner option(s) "
            "of the same name on every run (job parameters override task parameters)",
            "rename or remove them in the workflow, or accept each one with "
            + " ".join(f"--allow-job-parameter {name}" for name in refused),
        )
    return [
        f"job parameter {name}={defaults[name]!r} sets the runner's {name} on every run of this task "
        "(accepted with --allow-job-parameter)"
        for name in colliding
    ]


def task_running(settings: dict[str, Any], env: Environment, dbt_job_id: int) -> str | None:
    """The key of a task of the workflow that already runs this dbt job on the environment's
    notebook, or None. Without --task-key that task is the one asked for, whatever its key: a
    derived key never adds a dbt job twice (as in dbtwf.toml), and a task added before the
    default key became `dbt_job_<id>` (it was `dbt_cloud_<id>`) is found again."""
    from provision.platform import is_platform_task_of

    for task in settings.get("tasks") or []:
        notebook = task.get("notebook_task") or {}
        parameters = notebook.get("base_parameters") or {}
        if notebook.get("notebook_path") == env.notebook_path and parameters.get("job_id") == str(dbt_job_id):
            return str(task.get("task_key"))
        platform_job = (task.get("dbt_platform_task") or {}).get("dbt_platform_job_id")
        if is_platform_task_of(env, task) and platform_job == str(dbt_job_id):
            return str(task.get("task_key"))
    return None


def task_mark(env: Environment, dbt_job_id: int) -> str:
    """The description add-task gives its task: how destroy recognises it without the record."""
    return f"Runs dbt Cloud job {dbt_job_id}. Added by dbtwf for environment '{env.name}'."


def is_dbtwf_task(env: Environment, task: dict[str, Any]) -> bool:
    """A task add-task wrote for ``env``: its mark, and the environment's notebook."""
    from provision.platform import is_platform_task_of

    match = _MARK.search(str(task.get("description") or ""))
    notebook = (task.get("notebook_task") or {}).get("notebook_path")
    # Either backend: `dbtwf migrate` switches a task between them, keeping its mark.
    runs_ours = notebook == env.notebook_path or is_platform_task_of(env, task)
    return bool(match and match.group(1) == env.name and runs_ours)
