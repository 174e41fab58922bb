"""Desired state: what the config says the workspace should hold for an environment.

The runner notebook as ``runner.notebook`` renders it, the workflow's settings (jobs/create
shape), the tags that mark a workflow as dbtwf's, and the digest a saved plan is tied to.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from provision.change import digest
from provision.model import ENVIRONMENT_TAG, MANAGED_BY_TAG, MANAGED_BY_VALUE, Environment
from provision.state import new_salt

#: Seconds the task may run past the runner's own timeout, so the runner can cancel the
#: dbt run and report it before Databricks kills the task.
TASK_TIMEOUT_MARGIN_SECONDS = 600
#: Top-level job settings dbtwf decides; any other field of an owned workflow is left as found.
MANAGED_JOB_FIELDS = (
    "name",
    "tags",
    "max_concurrent_runs",
    "queue",
    "tasks",
    "parameters",
    "schedule",
    "job_clusters",
    "email_notifications",
)


def render_runner_notebook(env: Environment) -> str:
    """The notebook apply uploads: exactly what `runner.notebook` renders for the environment."""
    from runner.notebook import NotebookDefaults, render_notebook

    return render_notebook(
        NotebookDefaults(
            dbt_cloud_host=env.dbt_cloud_host,
            dbt_cloud_account_id=env.dbt_cloud_account_id,
            secret_scope=env.secret_scope,
            secret_key=env.secret_key,
            timeout_seconds=env.run_timeout_seconds,
        )
    )


#: The values a rendered notebook fixes, as the plan names them when they change.
_NOTEBOOK_CONSTANTS = (
    ("dbt_cloud_host", "the dbt host"),
    ("dbt_cloud_account_id", "the dbt account"),
    ("secret_scope", "the secret scope"),
    ("secret_key", "the secret key"),
    ("timeout_seconds", "the run timeout"),
)
_CONSTANT_LINE = re.compile(r"\s*(dbt_cloud_host|dbt_cloud_account_id|secret_scope|secret_key)=(.+),\s*")
_TIMEOUT_LINE = re.compile(r"dbutils\.widgets\.text\('timeout_seconds', ('[^']*')")


def notebook_constants(source: str) -> dict[str, object]:
    """The values a runner notebook fixes (host, account, scope, key, the timeout widget's
    default), read back from its source; what cannot be found is left out."""
    found: dict[str, object] = {}
    for line in source.splitlines():
        match = _CONSTANT_LINE.fullmatch(line) or _TIMEOUT_LINE.match(line)
        if match is None:
            continue
        name, literal = (match[1], match[2]) if match.re is _CONSTANT_LINE else ("timeout_seconds", match[1])
        try:
            value = ast.literal_eval(literal)
        except (ValueError, SyntaxError):
            continue
        found[name] = int(value) if name == "timeout_seconds" and str(value).isdigit() else value
    return found


def notebook_difference(uploaded: str, rendered: str) -> str:
    """Why the workspace's notebook is not the rendered one, in words: the constants that
    changed (old -> new), else the runner code itself."""
    before, after = notebook_constants(uploaded), notebook_constants(rendered)
    if not before:
        return "differs from the runner notebook dbtwf renders (not one dbtwf uploaded?)"
    changed = [
        f"{label} changed ({before.get(name)!r} -> {after.get(name)!r})"
        for name, label in _NOTEBOOK_CONSTANTS
        if before.get(name) != after.get(name)
    ]
    return "; ".join(changed) if changed else "the runner code changed (another dbtwf version)"


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def workflow_tags(env: Environment) -> dict[str, str]:
    return {MANAGED_BY_TAG: MANAGED_BY_VALUE, ENVIRONMENT_TAG: env.name}


def is_owned(job: Mapping[str, Any], env: Environment) -> bool:
    tags = (job.get("settings") or {}).get("tags") or {}
    return bool(tags.get(MANAGED_BY_TAG) == MANAGED_BY_VALUE and tags.get(ENVIRONMENT_TAG) == env.name)


def runner_task(
    env: Environment, task_key: str, dbt_job_id: int | None, depends_on: tuple[str, ...]
) -> dict[str, Any]:
    """One notebook task running the runner; ``dbt_job_id`` None reads the job-level parameter.
    An environment of task_type "dbt_platform" gets a dbt platform task instead (``provision.platform``)."""
    if not env.uses_notebook:
        from provision.platform import platform_task

        if dbt_job_id is None:
            raise ValueError("a dbt platform task names its dbt job itself")
        return platform_task(env, task_key, dbt_job_id, depends_on)
    notebook_task: dict[str, Any] = {"notebook_path": env.notebook_path, "source": "WORKSPACE"}
    if dbt_job_id is not None:
        notebook_task["base_parameters"] = {"job_id": str(dbt_job_id)}
    task: dict[str, Any] = {
        "task_key": task_key,
        "notebook_task": notebook_task,
        "timeout_seconds": env.run_timeout_seconds + TASK_TIMEOUT_MARGIN_SECONDS,
    }
    if depends_on:
        task["depends_on"] = [{"task_key": key} for key in depends_on]
    # Serverless needs no compute field at all: a notebook task without one runs there.
    if env.compute.kind == "existing_cluster":
        task["existing_cluster_id"] = env.compute.existing_cluster_id
    elif env.compute.kind == "job_cluster":
        task["job_cluster_key"] = env.compute.job_cluster_key
    return task


def workflow_settings(env: Environment) -> dict[str, Any]:
    """The whole settings of the workflow dbtwf owns for the environment (jobs/create shape).

    One dbt job: a job-level parameter ``job_id`` that Databricks pushes down to the notebook
    widget, so "Run now with different parameters" can point it elsewhere. Several: each task
    carries its own ``base_parameters.job_id`` and there is no job-level one, because a job
    parameter overrides every task parameter of the same name.
    """
    # A dbt platform task has no parameters: each names its dbt job, and there is no compute.
    single = len(env.dbt_jobs) == 1 and env.uses_notebook
    settings: dict[str, Any] = {
        "name": env.workflow_name,
        "tags": workflow_tags(env),
        "max_concurrent_runs": 1,
        "queue": {"enabled": True},  # a run over the limit waits instead of being skipped
        "tasks": [
            runner_task(env, job.task_key, None if single else job.job_id, job.depends_on)
            for job in env.dbt_jobs
        ],
    }
    if single:
        settings["parameters"] = [{"name": "job_id", "default": str(env.dbt_jobs[0].job_id)}]
    if env.schedule is not None:
        settings["schedule"] = {
            "quartz_cron_expression": env.schedule.quartz_cron,
            "timezone_id": env.schedule.timezone,
            "pause_status": "PAUSED" if env.schedule.paused else "UNPAUSED",
        }
    if env.compute.kind == "job_cluster" and env.uses_notebook:
        settings["job_clusters"] = [
            {
                "job_cluster_key": env.compute.job_cluster_key,
                "new_cluster": dict(env.compute.new_cluster or {}),
            }
        ]
    if env.failure_emails:
        settings["email_notifications"] = {"on_failure": list(env.failure_emails)}
    return settings


def merged_settings(desired: Mapping[str, Any], observed: Mapping[str, Any]) -> dict[str, Any]:
    """What jobs/reset sends for an owned workflow: dbtwf's fields as desired, every other
    field (and any extra tag) as the user left it, so a reset only changes what dbtwf manages."""
    kept = {key: value for key, value in observed.items() if key not in MANAGED_JOB_FIELDS}
    tags = {**(observed.get("tags") or {}), **desired.get("tags", {})}
    return {**kept, **desired, "tags": tags}


@dataclass(frozen=True)
class Desired:
    env: Environment
    notebook_source: str
    workflow: dict[str, Any]
    #: Only compared against the state record's salted fingerprint; never shown or stored.
    token: str | None = field(default=None, repr=False)
    #: The salt a first fingerprint is made with (the record's own salt wins when it has one).
    fresh_salt: str = field(default_factory=new_salt)


def desired_state(env: Environment, token: str | None) -> Desired:
    return Desired(
        env=env, notebook_source=render_runner_notebook(env), workflow=workflow_settings(env), token=token
    )


def config_digest(env: Environment) -> str:
    """A digest of the resolved environment: a saved plan runs only against the same config."""
    return digest(dataclasses.asdict(env))
