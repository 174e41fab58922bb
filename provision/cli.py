"""`dbtwf`: the command line. Commands are thin: parse options, call one function, render.

Layout: the shell (app, global options, error handling, helpers) first, then one section
per command family. Keep module-level imports light: `dbtwf --help` must never import
`databricks.sdk` (about 2 s), so each command imports its logic inside its body.
"""

from __future__ import annotations

import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from provision.errors import DbtwfError, UsageError

if TYPE_CHECKING:
    from provision.databricks import Workspace
    from provision.model import Environment

# =====================================================================================
# Shell: global options, error handling, helpers shared by every command
# =====================================================================================

DEFAULT_CONFIG = Path("dbtwf.toml")
CONFIG_ENVVAR = "DBTWF_CONFIG"
ENV_ENVVAR = "DBTWF_ENV"
_SETTINGS_KEY = "dbtwf.settings"
_GLOBAL_PANEL = "Global options"

# Frameworks signal help, usage errors and exits with exceptions that must pass through
# untouched. Click may be vendored (typer >= 0.22) or a separate package, so find its
# base class from a public typer name instead of importing `click`.
_CLICK_EXCEPTION: type[Exception] = next(
    cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException"
)
_FRAMEWORK_EXCEPTIONS: tuple[type[BaseException], ...] = (typer.Exit, typer.Abort, _CLICK_EXCEPTION)


@dataclass(frozen=True)
class Settings:
    """The global options after merging the values given before and after the command."""

    config_path: Path = DEFAULT_CONFIG
    env_name: str | None = None
    debug: bool = False


# Every command declares these too, so `dbtwf --env prod apply` and `dbtwf apply --env prod`
# mean the same. Only the app callback reads the environment variables: a command-level
# envvar would silently override a value typed before the command.
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help=f"The config file [env {CONFIG_ENVVAR}; default ./dbtwf.toml].",
        rich_help_panel=_GLOBAL_PANEL,
        show_default=False,
        dir_okay=False,
    ),
]
EnvOption = Annotated[
    str | None,
    typer.Option(
        "--env",
        "-e",
        help=f"The environment to act on [env {ENV_ENVVAR}; default: the only one, else dev].",
        rich_help_panel=_GLOBAL_PANEL,
        show_default=False,
    ),
]
DebugOption = Annotated[
    bool,
    typer.Option("--debug", help="Show tracebacks of errors.", rich_help_panel=_GLOBAL_PANEL),
]
# Common to several commands; shared so they read the same everywhere.
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def cli_context(ctx: typer.Context, config: Path | None, env: str | None, debug: bool) -> Settings:
    """Merge a command's global options over the ones given before the command."""
    before = _settings(ctx)
    settings = Settings(
        config_path=config if config is not None else before.config_path,
        env_name=env if env is not None else before.env_name,
        debug=debug or before.debug,
    )
    ctx.meta[_SETTINGS_KEY] = settings  # meta is shared by the whole context chain
    return settings


def _settings(ctx: typer.Context) -> Settings:
    value = ctx.meta.get(_SETTINGS_KEY)
    return value if isinstance(value, Settings) else Settings()


def load_environment(settings: Settings) -> Environment:
    """The selected environment of the config file, validated (ConfigError otherwise)."""
    from provision.config import load_config, select_environment

    return select_environment(load_config(settings.config_path), settings.env_name)


def connect_workspace(env: Environment) -> Workspace:
    """The environment's Databricks workspace; imports the SDK, so call it only when needed."""
    from provision.databricks import connect

    return connect(env)


def _report_error(error: DbtwfError) -> None:
    from provision.output import err_console, redact

    err_console.print(f"[bold red]error:[/] {redact(error.message)}", markup=True, highlight=False)
    if error.hint:
        err_console.print(f"[bold]hint:[/] {redact(error.hint)}", markup=True, highlight=False)


class _DbtwfGroup(TyperGroup):
    """Turns project errors into messages and exit codes for every command, under main()
    and under CliRunner alike."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except _FRAMEWORK_EXCEPTIONS:
            raise
        except DbtwfError as error:
            if _settings(ctx).debug:
                traceback.print_exc(file=sys.stderr)
            _report_error(error)
            raise typer.Exit(error.exit_code) from None
        except KeyboardInterrupt:
            sys.stderr.write("interrupted\n")
            raise typer.Exit(130) from None
        except Exception as error:
            if _settings(ctx).debug:
                raise
            from provision.output import err_console, redact

            err_console.print(
                f"error: unexpected {type(error).__name__}: {redact(str(error))}",
                markup=False,
                highlight=False,
            )
            err_console.print("hint: re-run with --debug to see the traceback", markup=False)
            raise typer.Exit(1) from None


app = typer.Typer(
    name="dbtwf",
    cls=_DbtwfGroup,
    help="Run dbt Cloud jobs from Databricks Workflows: provision the secret, the runner "
    "notebook and the workflow per environment, safely and repeatably.",
    epilog=(
        "Examples:\n\n"
        "  dbtwf onboard --dbt-job-url https://ab123.us1.dbt.com/deploy/1/projects/2/jobs/3\n\n"
        "  dbtwf plan --env prod\n\n"
        "  dbtwf --env prod apply --yes\n\n"
        "  dbtwf token set"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,  # plain tracebacks, and never local variables (tokens)
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"dbtwf {version('dbtwf')}")
        except PackageNotFoundError:
            typer.echo("dbtwf (not installed)")
        raise typer.Exit()


@app.callback()
def _global_options(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            envvar=CONFIG_ENVVAR,
            help="The config file.",
            show_default="./dbtwf.toml",
            dir_okay=False,
        ),
    ] = None,
    env: Annotated[
        str | None,
        typer.Option(
            "--env",
            "-e",
            envvar=ENV_ENVVAR,
            help="The environment to act on (default: the only one, else dev).",
            show_default=False,
        ),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", callback=_version_callback, is_eager=True
        ),
    ] = False,
) -> None:
    ctx.meta[_SETTINGS_KEY] = Settings(
        config_path=config if config is not None else DEFAULT_CONFIG,
        env_name=env or None,
        debug=debug,
    )


def main() -> None:
    """Console script entry point."""
    app(prog_name="dbtwf")


# =====================================================================================
# token set | show | delete  (config/token engineer)
# =====================================================================================

token_app = typer.Typer(
    name="token",
    help="The dbt Cloud API token in the OS keyring (never on the command line, never in a file).",
    no_args_is_help=True,
)
app.add_typer(token_app)


@token_app.command(
    "set",
    epilog="Examples:\n\n"
    "  dbtwf token set                      (prompts, input hidden)\n\n"
    "  pass show dbt/token | dbtwf token set   (reads stdin)",
)
def token_set(
    ctx: typer.Context,
    config: ConfigOption = None,
    env: EnvOption = None,
    debug: DebugOption = False,
) -> None:
    """Store the dbt Cloud token in the OS keyring, read from a hidden prompt or stdin."""
    cli_context(ctx, config, env, debug)
    from provision.output import console, err_console
    from provision.token import TOKEN_ENV, keyring_backend_name, mask, store_token

    backend = keyring_backend_name()  # fail before the user pastes anything
    if sys.stdin.isatty():
        import getpass

        raw = getpass.getpass("dbt Cloud API token (input hidden): ")
    else:
        raw = sys.stdin.read()
    store_token(raw)
    stored = raw.strip()
    console.print(f"stored the dbt Cloud token {mask(stored)} in the OS keyring ({backend})")
    if os.environ.get(TOKEN_ENV, "").strip():
        err_console.print(f"warning: {TOKEN_ENV} is set in this environment and takes precedence")


@token_app.command("show", epilog="Examples:\n\n  dbtwf token show")
def token_show(
    ctx: typer.Context,
    config: ConfigOption = None,
    env: EnvOption = None,
    debug: DebugOption = False,
) -> None:
    """Say which dbt Cloud token dbtwf would use and where it comes from, masked."""
    cli_context(ctx, config, env, debug)
    from provision.output import console
    from provision.token import TOKEN_ENV, mask, token_source

    found = token_source()
    if found is None:
        raise UsageError(
            f"no dbt Cloud token: {TOKEN_ENV} is not set and the OS keyring holds none",
            hint="run `dbtwf token set`",
        )
    token, source = found
    console.print(f"{mask(token)} from {source}")


@token_app.command("delete", epilog="Examples:\n\n  dbtwf token delete")
def token_delete(
    ctx: typer.Context,
    config: ConfigOption = None,
    env: EnvOption = None,
    debug: DebugOption = False,
) -> None:
    """Remove the dbt Cloud token from the OS keyring."""
    cli_context(ctx, config, env, debug)
    from provision.output import console, err_console
    from provision.token import TOKEN_ENV, delete_token

    if delete_token():
        console.print("deleted the dbt Cloud token from the OS keyring")
    else:
        console.print("no dbt Cloud token was stored in the OS keyring")
    if os.environ.get(TOKEN_ENV, "").strip():
        err_console.print(f"note: {TOKEN_ENV} is still set in this environment")


# =====================================================================================
# plan | apply | destroy | onboard  (core engineer)
# =====================================================================================


# =====================================================================================
# add-task | run | doctor  (tasks/run/doctor engineer)
# =====================================================================================


_ADD_TASK_EPILOG = (
    "Examples:\n\n"
    "  dbtwf add-task --workflow 123 --dbt-job 456\n\n"
    "  dbtwf add-task --workflow 'Nightly ETL' --dbt-job "
    "https://ab123.us1.dbt.com/deploy/1/projects/2/jobs/456 --depends-on ingest\n\n"
    "  dbtwf --env prod add-task --workflow 123 --dbt-job 456 --task-key dbt_marts --replace --yes\n\n"
    "The workflow gets exactly one jobs/update holding only the new task; every other task, "
    "cluster and setting stays as it is. A bundle-deployed workflow needs --yes (or a yes at "
    "the prompt): its next `bundle deploy` drops the task."
)


@app.command("add-task", epilog=_ADD_TASK_EPILOG)
def add_task_command(
    ctx: typer.Context,
    workflow: Annotated[str, typer.Option("--workflow", help="The workflow's job id or exact name.")],
    dbt_job: Annotated[str, typer.Option("--dbt-job", help="The dbt job's id or URL.")],
    task_key: Annotated[
        str | None, typer.Option("--task-key", help="The new task's key.", show_default="dbt_cloud_<job id>")
    ] = None,
    depends_on: Annotated[
        list[str] | None, typer.Option("--depends-on", help="A task it runs after (repeatable).")
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Overwrite a task of that key that has other settings.")
    ] = False,
    cluster_id: Annotated[
        str | None, typer.Option("--cluster-id", help="Run on this existing cluster.")
    ] = None,
    job_cluster_key: Annotated[
        str | None, typer.Option("--job-cluster-key", help="Run on this job cluster of the workflow.")
    ] = None,
    break_lock: Annotated[
        bool, typer.Option("--break-lock", help="Remove a stale lock left by a crashed dbtwf first.")
    ] = False,
    yes: YesOption = False,
    config: ConfigOption = None,
    env: EnvOption = None,
    debug: DebugOption = False,
) -> None:
    """Add a task running a dbt Cloud job to a workflow dbtwf does not own."""
    settings = cli_context(ctx, config, env, debug)
    from provision.add_task import AddTaskRequest, add_task, check_request
    from provision.output import console, err_console, redact
    from provision.token import resolve_token

    environment = load_environment(settings)
    request = AddTaskRequest(
        workflow=workflow,
        dbt_job=dbt_job,
        task_key=task_key,
        depends_on=tuple(depends_on or ()),
        replace=replace,
        cluster_id=cluster_id,
        job_cluster_key=job_cluster_key,
    )
    check_request(request, environment)  # bad input: exit 2 before the SDK is even imported
    token = resolve_token(interactive=not yes)

    def confirm_bundle(warning: str) -> bool:
        err_console.print(f"warning: {redact(warning)}", markup=False)
        if yes:
            return True
        if sys.stdin.isatty():
            return typer.confirm("Add the task anyway?", default=False, err=True)
        raise UsageError("the workflow is deployed by a bundle", "re-run with --yes to add the task anyway")

    result = add_task(
        connect_workspace(environment),
        environment,
        request,
        token,
        confirm_bundle=confirm_bundle,
        break_lock=break_lock,
    )
    for change in result.prerequisites:
        err_console.print(
            f"{change.action.value} {change.resource} {change.name}: {change.reason}", markup=False
        )
    for note in result.notes:
        err_console.print(f"note: {redact(note)}", markup=False)
    where = f"workflow {result.workflow_id} {result.workflow_name!r}"
    verb = {"create": "added", "update": "replaced"}.get(result.action)
    if verb is None:
        console.print(
            f"task {result.task_key!r} (dbt job {result.dbt_job_id}) is already in {where}", markup=False
        )
    else:
        console.print(
            f"{verb} task {result.task_key!r} (dbt job {result.dbt_job_id}) in {where}", markup=False
        )


_RUN_EPILOG = (
    "Examples:\n\n"
    "  dbtwf run\n\n"
    "  dbtwf --env prod run --no-wait\n\n"
    "Exit code 0 when the run succeeded, 1 when it failed (the failing task's error is shown)."
)


@app.command("run", epilog=_RUN_EPILOG)
def run_command(
    ctx: typer.Context,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="Start the run, print its page and return.")
    ] = False,
    poll_interval: Annotated[
        float, typer.Option("--poll-interval", help="Seconds between status checks.", min=0.0, hidden=True)
    ] = 5.0,
    config: ConfigOption = None,
    env: EnvOption = None,
    debug: DebugOption = False,
) -> None:
    """Run the environment's workflow now and follow it to the end."""
    settings = cli_context(ctx, config, env, debug)
    from provision.output import console
    from provision.runs import run_workflow

    environment = load_environment(settings)
    ws = connect_workspace(environment)
    with _RunStatus() as status:
        outcome = run_workflow(
            ws, environment, wait=not no_wait, on_update=status.update, poll_interval=poll_interval
        )
    if not outcome.waited:
        console.print(f"started run {outcome.run_id}; follow it at {outcome.run_page_url}", markup=False)
        return
    outcome.raise_for_failure()
    console.print(f"run {outcome.run_id} succeeded", markup=False)


class _RunStatus:
    """Shows the run page URL at once, then one status line per task: a live table on a
    terminal, plain lines (only when something changed) otherwise."""

    def __init__(self) -> None:
        from provision.output import console, err_console

        self._console = console
        self._err = err_console
        self._live: Any = None
        self._printed: dict[str, str] = {}
        self._announced = False

    def __enter__(self) -> _RunStatus:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.stop()

    def update(self, snapshot: Any) -> None:
        if not self._announced:
            self._announced = True
            self._console.print(f"run {snapshot.run_id}: {snapshot.run_page_url}", markup=False)
        if self._err.is_terminal:
            self._update_live(snapshot)
            return
        for task in snapshot.tasks:
            if self._printed.get(task.task_key) != task.state:
                self._printed[task.task_key] = task.state
                self._err.print(
                    f"  {task.task_key}: {task.state} ({snapshot.elapsed_seconds:.0f}s)", markup=False
                )

    def _update_live(self, snapshot: Any) -> None:
        from rich.live import Live
        from rich.table import Table

        table = Table(box=None, show_header=False, pad_edge=False)
        for task in snapshot.tasks:
            table.add_row(task.task_key, task.state)
        table.add_row(f"[dim]{snapshot.state}[/]", f"[dim]{snapshot.elapsed_seconds:.0f}s[/]")
        if self._live is None:
            self._live = Live(table, console=self._err, auto_refresh=False, transient=False)
            self._live.start()
        self._live.update(table, refresh=True)


_DOCTOR_EPILOG = (
    "Examples:\n\n"
    "  dbtwf doctor\n\n"
    "  dbtwf --env prod doctor --json | jq '.checks[] | select(.status != \"ok\")'\n\n"
    "Exit code 0 when every link is OK, 1 otherwise. Doctor only reads; it never shows a secret."
)


@app.command("doctor", epilog=_DOCTOR_EPILOG)
def doctor_command(
    ctx: typer.Context,
    as_json: JsonOption = False,
    config: ConfigOption = None,
    env: EnvOption = None,
    debug: DebugOption = False,
) -> None:
    """Check each link from the config to the compute and say what to fix."""
    settings = cli_context(ctx, config, env, debug)
    from provision.doctor import Status, all_passed, diagnose
    from provision.output import console, print_json, redact

    checks = diagnose(lambda: load_environment(settings), connect_workspace)
    passed = all_passed(checks)
    if as_json:
        print_json({"ok": passed, "checks": [check.to_dict() for check in checks]})
    else:
        from rich.table import Table

        styles = {Status.OK: "green", Status.FAIL: "bold red", Status.SKIP: "dim"}
        table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
        for column in ("status", "check", "detail", "fix"):
            table.add_column(column, overflow="fold")
        for check in checks:
            table.add_row(
                check.status.value.upper(),
                check.name,
                redact(check.detail),
                redact(check.fix or ""),
                style=styles[check.status],
            )
        console.print(table)
        failed = sum(check.status is Status.FAIL for check in checks)
        console.print("all checks passed" if passed else f"{failed} check(s) failed", markup=False)
    if not passed:
        raise typer.Exit(1)
