"""`dbtwf onboard`: from a dbt job URL to a provisioned environment in one command.

Order matters for "nothing half-done": every input is validated (exit 2) and the token and
the job are checked against dbt Cloud before Databricks is touched; the environment is
worked out in memory, Databricks is signed in to and the plan shown and confirmed before
dbtwf.toml is written (and a token typed at the prompt kept in the keyring). Answering no
leaves everything as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provision.errors import ConfigError, ConflictError, DbtwfError, UsageError
from provision.model import Environment, default_task_key

if TYPE_CHECKING:
    from provision.databricks import Workspace
    from provision.flows import Interaction, Outcome

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
    """GET the job with the token: proves both before Databricks is touched, while the
    Databricks SDK that comes next loads (the round trip and the import overlap). Returns
    the job's name."""
    from provision.databricks import while_importing_sdk
    from provision.dbt_cloud import fetch_dbt_job

    job = while_importing_sdk(
        lambda: fetch_dbt_job(target.dbt_host, target.dbt_account_id, target.dbt_job_id, token)
    )
    return str(job.get("name") or f"job {target.dbt_job_id}")


# -- the flow --------------------------------------------------------------------------------


def prepare_target(options: OnboardOptions, config_path: Path) -> OnboardTarget:
    """Every option parsed and checked against the environment it updates (exit 2); nothing sent."""
    from provision.config import load_config, select_environment

    existing = None
    if config_path.exists():
        known = load_config(config_path)
        try:  # the environment onboard updates; none yet means a new one
            existing = select_environment(known, options.env_name)
        except ConfigError:
            existing = None
    return prepare(options, existing)


@dataclass(frozen=True)
class OnboardToken:
    value: str = field(repr=False)
    #: Typed at the prompt (neither the variable nor the keyring had one): kept in the keyring
    #: for the next command, once the plan is confirmed.
    typed: bool = False


def resolve_onboard_token(yes: bool) -> OnboardToken:
    """The token from the variable or the keyring, else the hidden prompt (without --yes)."""
    from provision.token import resolve_token, token_source

    try:
        configured = token_source() is not None
    except UsageError:
        configured = False
    return OnboardToken(resolve_token(interactive=not yes), typed=not configured)


def onboard(
    target: OnboardTarget,
    config_path: Path,
    token: OnboardToken,
    ui: Interaction,
    *,
    connect: Callable[[Environment], tuple[Workspace, Environment]],
    break_lock: bool,
) -> tuple[Workspace, Environment, Outcome]:
    """Check the job, plan the environment in memory, ask; then write dbtwf.toml and apply."""
    from provision.config_writer import upsert_environment
    from provision.flows import apply_environment

    job_name = check_dbt_job(target, token.value)
    ui.say(f"dbt job {target.dbt_job_id} ({job_name}) found; the token works")
    pending = upsert_environment(config_path, target.env_name, target.values, write=False)
    ws, environment = connect(pending)  # signs in to Databricks: a refusal writes nothing

    def write_config() -> None:
        written = upsert_environment(config_path, target.env_name, target.values)
        ui.say(f"wrote environment {written.name!r} to {config_path}")
        if written != pending:
            raise ConflictError(
                f"{config_path} changed while onboard was asking; the plan shown is not the one of "
                f"environment {written.name!r} as written, so nothing was applied",
                "run `dbtwf plan`, then `dbtwf apply`",
            )
        if token.typed:
            _keep_token(token.value, ui)

    outcome = apply_environment(
        ws,
        environment,
        token.value,
        ui,
        break_lock=break_lock,
        verified_jobs=frozenset({target.dbt_job_id}),
        confirmed=write_config,
    )
    return ws, environment, outcome


def _keep_token(token: str, ui: Interaction) -> None:
    from provision.token import store_token

    try:
        where = store_token(token)
    except DbtwfError as error:
        ui.note(f"the token is not kept in a keyring: {error.message}")
    else:
        if where.warning:
            ui.warn(where.warning)
