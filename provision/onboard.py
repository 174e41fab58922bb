"""`dbtwf onboard`: from a dbt job URL to a provisioned environment in one command.

Order matters for "nothing half-done": every input is validated and the token and the job
are checked against dbt Cloud before the config file or Databricks is touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provision.errors import UsageError
from provision.model import Environment, default_task_key

DEFAULT_ENVIRONMENT = "dev"


@dataclass(frozen=True)
class OnboardOptions:
    dbt_job_url: str
    env_name: str | None = None
    workflow_name: str | None = None
    schedule: str | None = None
    timezone: str | None = None
    notebook_path: str | None = None
    secret_scope: str | None = None
    secret_key: str | None = None
    databricks_profile: str | None = None
    cluster_id: str | None = None


@dataclass(frozen=True)
class OnboardTarget:
    """The validated inputs: which environment, what to write into it, which dbt job."""

    env_name: str
    values: dict[str, Any]
    dbt_host: str
    dbt_account_id: int
    dbt_job_id: int


def prepare(options: OnboardOptions, existing: Environment | None) -> OnboardTarget:
    """Parse and validate every option (UsageError, exit 2) before anything is sent."""
    from provision.names import validate_notebook_path, validate_scope_name, validate_secret_name
    from provision.quartz import validate_quartz_cron
    from runner.core import RunnerInputError, parse_job_url

    try:
        ref = parse_job_url(options.dbt_job_url)
    except RunnerInputError as error:
        raise UsageError(str(error), "pass the URL of the job's page in dbt Cloud to --dbt-job-url") from None
    if options.secret_scope is not None:
        validate_scope_name(options.secret_scope, "--secret-scope")
    if options.secret_key is not None:
        validate_secret_name(options.secret_key, "--secret-key")
    if options.notebook_path is not None:
        validate_notebook_path(options.notebook_path)
    if options.schedule is not None:
        validate_quartz_cron(options.schedule)
    if (
        options.timezone is not None
        and options.schedule is None
        and (existing is None or existing.schedule is None)
    ):
        raise UsageError(
            "--timezone needs a schedule", "add --schedule QUARTZ, e.g. --schedule '0 0 6 * * ?'"
        )
    if options.cluster_id is not None and existing is not None and existing.compute.kind == "job_cluster":
        raise UsageError(
            f"--cluster-id conflicts with the job cluster spec of environment {existing.name!r}",
            "remove the compute job cluster settings from dbtwf.toml, or drop --cluster-id",
        )
    if existing is not None and existing.dbt_cloud_account_id != ref.account_id:
        raise UsageError(
            f"the URL's account {ref.account_id} differs from environment {existing.name!r}'s "
            f"account {existing.dbt_cloud_account_id}",
            "use another --env for another dbt Cloud account",
        )

    values: dict[str, Any] = {"dbt_cloud_host": ref.host, "dbt_cloud_account_id": ref.account_id}
    # upsert_environment merges by task key and does not add a job the environment already runs.
    values["dbt_jobs"] = {default_task_key(ref.job_id): ref.job_id}
    optional = {
        "workflow_name": options.workflow_name,
        "notebook_path": options.notebook_path,
        "secret_scope": options.secret_scope,
        "secret_key": options.secret_key,
        "databricks_profile": options.databricks_profile,
    }
    values.update({key: value for key, value in optional.items() if value is not None})
    if options.schedule is not None or options.timezone is not None:
        schedule: dict[str, Any] = {}
        if options.schedule is not None:
            schedule["quartz_cron"] = options.schedule
        if options.timezone is not None:
            schedule["timezone"] = options.timezone
        values["schedule"] = schedule
    if options.cluster_id is not None:
        values["cluster_id"] = options.cluster_id
    env_name = options.env_name or (existing.name if existing else DEFAULT_ENVIRONMENT)
    return OnboardTarget(env_name, values, ref.host, ref.account_id, ref.job_id)


def check_dbt_job(target: OnboardTarget, token: str) -> str:
    """GET the job with the token: proves both before Databricks is touched. Returns its name."""
    from provision.dbt_cloud import fetch_dbt_job

    job = fetch_dbt_job(target.dbt_host, target.dbt_account_id, target.dbt_job_id, token)
    return str(job.get("name") or f"job {target.dbt_job_id}")


def write_environment(config_path: Path, target: OnboardTarget) -> Environment:
    from provision.config_writer import upsert_environment

    return upsert_environment(config_path, target.env_name, target.values)
