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
