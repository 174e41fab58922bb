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

from provision.errors import ConfigError, DbtwfError, UsageError

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
_HELP_OPTION_NAMES = ["-h", "--help"]

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
# Parentheses in help, never [brackets]: rich reads those as markup and drops them.
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help=f"The config file (env {CONFIG_ENVVAR}; default ./dbtwf.toml).",
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
        help=f"The environment to act on (env {ENV_ENVVAR}; default: the only one, else dev).",
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
    from provision.output import err_console

    return connect(env, on_retry=lambda notice: err_console.print(f"note: {notice}", markup=False))


def connect_environment(env: Environment) -> tuple[Workspace, Environment]:
    """The workspace, and the environment with a `~/` notebook path resolved to the connected
    identity's home folder (nothing else may use the environment's paths)."""
    from provision.location import resolve_location

    ws = connect_workspace(env)
    return ws, resolve_location(ws, env)


def _report_error(error: DbtwfError) -> None:
    from rich.markup import escape

    from provision.output import err_console
    from provision.token import redact

    if error.details:
        err_console.print(redact(error.details), markup=False, highlight=False)
    # escape(): messages quote config tables like [environments.prod], which rich would eat as markup.
    err_console.print(f"[bold red]error:[/] {escape(redact(error.message))}", markup=True)
    if error.hint:
        err_console.print(f"[bold]hint:[/] {escape(redact(error.hint))}", markup=True)


def _help_metavars(command: Any, ctx: Any) -> None:
    """Typer's rich help labels each option with its Python type: `<bool>` for a flag, which
    takes no value, and `<list[str]>` for a repeatable option, which takes one `<str>` each
    time. Label a flag with nothing and a repeatable option with its element, in every command
    (--help included: click makes that option once per command and keeps it)."""
    for param in [*command.params, command.get_help_option(ctx)]:
        if getattr(param, "param_type_name", None) != "option" or param.metavar is not None:
            continue
        if param.is_flag:
            param.metavar = ""
        elif param.multiple and callable(getattr(param, "bare_type", None)):
            label = str(param.bare_type())
            param.metavar = f"<{label.removeprefix('list[').removesuffix(']')}>"
    for sub in (getattr(command, "commands", None) or {}).values():
        _help_metavars(sub, ctx)


class _DbtwfGroup(TyperGroup):
    """Turns project errors into messages and exit codes for every command, under main()
    and under CliRunner alike."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        # Here, not in __init__: typer adds --install-completion after building the group.
        _help_metavars(self, self.context_class(self, help_option_names=_HELP_OPTION_NAMES))
        return super().main(*args, **kwargs)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except _FRAMEWORK_EXCEPTIONS:
            raise
        except DbtwfError as error:
            if _settings(ctx).debug:
                _print_traceback(error)
            _report_error(error)
            raise typer.Exit(error.exit_code) from None
        except KeyboardInterrupt:
            sys.stderr.write("interrupted\n")
            raise typer.Exit(1) from None
        except Exception as error:  # noqa: BLE001 - the last resort: one line (or a redacted traceback)
            from provision.output import err_console
            from provision.token import redact

            if _settings(ctx).debug:
                _print_traceback(error)
            err_console.print(
                f"error: unexpected {type(error).__name__}: {redact(str(error))}",
                markup=False,
                highlight=False,
            )
            if not _settings(ctx).debug:
                err_console.print("hint: re-run with --debug to see the traceback", markup=False)
            raise typer.Exit(1) from None


def _print_traceback(error: BaseException) -> None:
    """The traceback --debug shows, through the same redaction as every other message: an
    exception's text (a remote answer, a URL) may carry the token."""
    from provision.token import redact

    sys.stderr.write(redact("".join(traceback.format_exception(error))))
    sys.stderr.flush()


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
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
    pretty_exceptions_enable=False,  # plain tracebacks, and never local variables (tokens)
    context_settings={"help_option_names": _HELP_OPTION_NAMES},
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
    epilog="Examples:\n\n  dbtwf token set\n\n  dbtwf token show\n\n  dbtwf token delete",
    no_args_is_help=True,
)
app.add_typer(token_app)


@token_app.command(
    "set",
    epilog="Examples:\n\n"
    "  dbtwf token set                      (prompts, input hidden)\n\n"
    "  pass show dbt/token | dbtwf token set   (reads stdin)",
    # Extra arguments are caught here, not by the parser: its error would echo them, token included.
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
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
    from provision.token import TOKEN_ENV, mask, register_secret, store_token, usable_keyring

    if ctx.args:
        raise UsageError(
            "`dbtwf token set` takes no arguments: the token is never read from the command line "
            "(it would stay in your shell history)",
            hint="run it alone and paste at the hidden prompt, or pipe the token to its stdin",
        )
    usable_keyring()  # fail before the user pastes anything
    raw = _read_token_input()
    register_secret(raw.strip())  # from here on, no message can show it
    where = store_token(raw)
    console.print(f"stored the dbt Cloud token {mask(raw.strip())} in {where.description}", markup=False)
    if where.warning:
        err_console.print(f"warning: {where.warning}", markup=False)
    if os.environ.get(TOKEN_ENV, "").strip():
        err_console.print(
            f"warning: {TOKEN_ENV} is set in this environment and takes precedence", markup=False
        )


def _read_token_input() -> str:
    """The token from the hidden prompt (a terminal) or stdin; bytes that are not UTF-8 are bad
    input, not a traceback."""
    try:
        if sys.stdin.isatty():
            import getpass

            return getpass.getpass("dbt Cloud API token (input hidden): ")
        buffer = getattr(sys.stdin, "buffer", None)
        return buffer.read().decode("utf-8") if buffer is not None else sys.stdin.read()
    except UnicodeDecodeError:
        raise UsageError(
            "the token read from stdin is not valid UTF-8 text",
            hint="pipe only the token, as dbt Cloud shows it, or paste it at the hidden prompt",
        ) from None


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
            f"no dbt Cloud token: {TOKEN_ENV} is not set and the keyring holds none",
            hint="run `dbtwf token set`",
        )
    token, source = found
    console.print(f"{mask(token)} from {source}", markup=False)


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
    from provision.token import TOKEN_ENV, delete_token, usable_keyring

    where = usable_keyring().description
    if delete_token():
        console.print(f"deleted the dbt Cloud token from {where}", markup=False)
    else:
        console.print(f"no dbt Cloud token was stored in {where}", markup=False)
    if os.environ.get(TOKEN_ENV, "").strip():
        err_console.print(f"note: {TOKEN_ENV} is still set in this environment", markup=False)


# =====================================================================================
# plan | apply | destroy | onboard  (core engineer)
# =====================================================================================

BreakLockOption = Annotated[
    bool,
    typer.Option(
        "--break-lock",
        help="Remove a lock left behind by a crashed run before taking it (warns when it is recent).",
    ),
]
AdoptOption = Annotated[
    bool,
    typer.Option("--adopt", help="Take over a same-named workflow dbtwf did not create."),
]


def _confirm(question: str, yes: bool) -> None:
    """Ask before writing; without a terminal, --yes is required rather than assumed."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageError("confirmation needed, and stdin is not a terminal", hint="re-run with --yes")
    if not typer.confirm(question, default=False):
        raise typer.Exit(1)


def _optional_token() -> str | None:
    """The token when one is configured; plan works without it (the secret is not compared)."""
    from provision.token import resolve_token

    try:
        return resolve_token(interactive=False)
    except UsageError:
        return None


def _warn(text: str) -> None:
    from provision.output import err_console
    from provision.token import redact

    err_console.print(f"warning: {redact(text)}", markup=False)


def _header(ws: Workspace, environment: Environment, as_json: bool) -> dict[str, str]:
    """Which environment, workspace and identity: said first (stderr), and part of --json."""
    from provision.output import print_header

    header = {"environment": environment.name, "workspace_host": ws.host, "identity": ws.current_user()}
    if not as_json:
        print_header(header)
    return header


def _check_token(environment: Environment, token: str, verified: frozenset[int] = frozenset()) -> None:
    from provision.dbt_cloud import verify_token

    verify_token(environment, token, verified=verified)


@app.command(
    "plan",
    epilog="Examples:\n\n  dbtwf plan\n\n  dbtwf --env prod plan --json\n\n"
    "  dbtwf --env prod plan --out prod.plan.json   (then: dbtwf apply --plan prod.plan.json)\n\n"
    "Only reads. Without a token the secret is reported as present, not compared.",
)
def plan_command(
    ctx: typer.Context,
    as_json: JsonOption = False,
    adopt: AdoptOption = False,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Also save the plan to this file; `dbtwf apply --plan FILE` carries out exactly it.",
            dir_okay=False,
        ),
    ] = None,
    config: ConfigOption = None,
    env: EnvOption = None,
    debug: DebugOption = False,
) -> None:
    """Show what apply would change in the environment (create / update / no-op per resource)."""
    settings = cli_context(ctx, config, env, debug)
    from provision.output import err_console, render_changes
    from provision.saved_plan import make_plan

    environment = load_environment(settings)
    ws, environment = connect_environment(environment)
    header = _header(ws, environment, as_json)
    token = _optional_token()
    plan = make_plan(ws, environment, token, identity=header["identity"], adopt=adopt)
    if out is not None:
        try:
            out.write_bytes(plan.to_json())
        except OSError as error:
            raise UsageError(f"cannot write the plan to {out}: {error.strerror or error}") from None
    render_changes(list(plan.changes), as_json, header=header)
    if out is not None and not as_json:
        err_console.print(
            f"saved the plan to {out}; carry it out with `dbtwf apply --plan {out}`", markup=False
        )


@app.command(
    "apply",
    epilog="Examples:\n\n  dbtwf apply\n\n  dbtwf --env prod apply --yes --json\n\n"
    "  dbtwf apply --plan prod.plan.json   (exactly a plan saved by `dbtwf plan --out`)\n\n"
    "  dbtwf apply --all --yes        (every environment, concurrently)\n\n"
    "A second apply with nothing changed sends no write request. Apply carries out exactly the "
    "changes shown, and stops without writing if the workspace changed meanwhile.",
)
def apply_command(
    ctx: typer.Context,
    yes: YesOption = False,
    as_json: JsonOption = False,
    all_environments: Annotated[
        bool, typer.Option("--all", help="Apply every environment of the config file, concurrently.")
    ] = False,
    plan_file: Annotated[
        Path | None,
        typer.Option(
            "--plan",
            help="Carry out exactly this plan (from `dbtwf plan --out`); refused if the workspace, "
            "the config or the token changed since.",
            dir_okay=False,
        ),
    ] = None,
    break_lock: BreakLockOption = False,
    adopt: AdoptOption = False,
    config: ConfigOption = None,
    env: EnvOption = None,
    debug: DebugOption = False,
) -> None:
    """Create or update the scope, secret, notebook and workflow so the environment matches the config."""
    settings = cli_context(ctx, config, env, debug)
    from provision.token import resolve_token

    if all_environments:
        if settings.env_name is not None:
            raise UsageError(
                f"--all and --env {settings.env_name} conflict (--env may come from {ENV_ENVVAR})",
                hint=f"drop --env, or unset {ENV_ENVVAR} for this command",
            )
        if plan_file is not None:
            raise UsageError("--all and --plan exclude each other", "a saved plan is for one environment")
        _apply_all(settings, yes=yes, as_json=as_json, break_lock=break_lock)
        return
    if plan_file is not None:
        if adopt:
            raise UsageError("--adopt and --plan exclude each other", "pass --adopt to `dbtwf plan --out`")
        _apply_saved_plan(settings, plan_file, yes=yes, as_json=as_json, break_lock=break_lock)
        return
    environment = load_environment(settings)
    token = resolve_token(interactive=not yes)
    ws, environment = connect_environment(environment)
    _plan_confirm_apply(
        ws,
        environment,
        token,
        yes=yes,
        as_json=as_json,
        break_lock=break_lock,
        adopt=adopt,
    )


def _plan_confirm_apply(
    ws: Workspace,
    environment: Environment,
    token: str,
    *,
    yes: bool,
    as_json: bool,
    break_lock: bool,
    adopt: bool = False,
    verified_jobs: frozenset[int] = frozenset(),
) -> None:
    """The apply flow shared by `apply` and `onboard`: plan, show, ask, carry out exactly that, report.

    ``verified_jobs``: dbt jobs the token was already proven on (onboard checks its job first).
    """
    from provision.saved_plan import make_plan

    header = _header(ws, environment, as_json)
    plan = make_plan(ws, environment, token, identity=header["identity"], adopt=adopt)
    _confirm_and_execute(
        ws,
        environment,
        list(plan.changes),
        token,
        header,
        yes=yes,
        as_json=as_json,
        break_lock=break_lock,
        verified_jobs=verified_jobs,
        replan=lambda: list(
            make_plan(ws, environment, token, identity=header["identity"], adopt=adopt).changes
        ),
    )


def _confirm_and_execute(
    ws: Workspace,
    environment: Environment,
    changes: list[Any],
    token: str,
    header: dict[str, str],
    *,
    yes: bool,
    as_json: bool,
    break_lock: bool,
    verified_jobs: frozenset[int] = frozenset(),
    replan: Any = None,
) -> None:
    from provision.apply import execute
    from provision.change import has_changes, writes_secret
    from provision.output import console, print_warnings, render_changes

    if not has_changes(changes):
        if as_json:
            render_changes(changes, as_json=True, header=header)
        else:
            console.print(f"environment {environment.name!r} is up to date; nothing to do", markup=False)
            print_warnings(changes)
        return
    if writes_secret(changes):
        _check_token(environment, token, verified_jobs)  # a token dbt Cloud rejects is never stored
    if not as_json:
        render_changes(changes, as_json=False)
    _confirm(f"apply these changes to environment {environment.name!r}?", yes)
    done = execute(ws, environment, changes, token, break_lock=break_lock, replan=replan, warn=_warn)
    if as_json:
        render_changes(done, as_json=True, header=header)
    elif has_changes(done):
        console.print(f"applied environment {environment.name!r}", markup=False)
        warned = {(change.resource, change.name) for change in changes}
        print_warnings(change for change in done if (change.resource, change.name) not in warned)
    else:
        console.print(
            f"environment {environment.name!r} already matches the config (another run applied it); "
            "nothing written",
            markup=False,
        )


def _apply_saved_plan(settings: Settings, path: Path, *, yes: bool, as_json: bool, break_lock: bool) -> None:
    """`apply --plan FILE`: exactly the saved changes, if the workspace, config and token still match."""
    from provision.config import load_config, select_environment
    from provision.saved_plan import Plan
    from provision.token import resolve_token

    try:
        data = path.read_bytes()
    except OSError as error:
        raise UsageError(f"cannot read the plan {path}: {error.strerror or error}") from None
    saved = Plan.from_json(data, str(path))
    if settings.env_name is not None and settings.env_name != saved.environment:
        raise UsageError(
            f"the plan {path} is for environment {saved.environment!r}, not {settings.env_name!r}",
            "drop --env (the plan names its environment) or pass the plan of that environment",
        )
    environment = select_environment(load_config(settings.config_path), saved.environment)
    token = resolve_token(interactive=not yes)
    ws, environment = connect_environment(environment)
    header = _header(ws, environment, as_json)
    mismatches = saved.mismatches(host=ws.host, identity=header["identity"], env=environment, token=token)
    if mismatches:
        from provision.errors import ConflictError

        raise ConflictError(
            f"the plan {path} no longer matches: {'; '.join(mismatches)}; nothing was changed",
            f"make a new plan with `dbtwf plan --out {path}`",
        )
    _confirm_and_execute(
        ws, environment, list(saved.changes), token, header, yes=yes, as_json=as_json, break_lock=break_lock
    )


def _apply_all(settings: Settings, *, yes: bool, as_json: bool, break_lock: bool) -> None:
    """Plan every environment concurrently, confirm once, apply concurrently; report each."""
    from provision.apply import apply_all, plan_all
    from provision.config import load_config
    from provision.output import console, err_console, print_header, print_json, render_changes
    from provision.token import resolve_token

    environments = list(load_config(settings.config_path).environments.values())
    token = resolve_token(interactive=not yes)
    results = plan_all(environments, token, connect_workspace, check_token=_check_token)
    pending = [result.environment.name for result in results if result.pending]
    if not as_json:
        for result in results:
            console.print(f"\n[bold]{result.environment.name}[/]")
            if result.plan is not None:
                print_header(result.header())
            if result.error is None:
                render_changes(result.changes, as_json=False)
    if pending:
        _confirm(f"apply changes to {', '.join(pending)}?", yes)
    apply_all(results, token, break_lock=break_lock, warn=_warn)
    if as_json:
        print_json(
            {
                result.environment.name: {**result.header(), "error": result.error.message}
                if result.error is not None
                else {**result.header(), "changes": [change.to_dict() for change in result.changes]}
                for result in results
            }
        )
    failed = [(result.environment.name, result.error) for result in results if result.error is not None]
    for name, error in failed:
        _report_error(DbtwfError(f"environment {name!r}: {error.message}", error.hint))
    if failed:
        raise typer.Exit(max(error.exit_code for _, error in failed))
    if not as_json:
        err_console.print(f"applied {len(pending)} of {len(environments)} environments", markup=False)


@app.command(
    "destroy",
    epilog="Examples:\n\n  dbtwf --env dev destroy\n\n  dbtwf destroy --yes\n\n"
    "Removes only what dbtwf created: its workflow, the tasks it added to other workflows (found "
    "by the state record and by their mark), the notebook, the secret, its state record, and the "
    "scope only if dbtwf created it. Each entry is checked against the workspace first: a task "
    "changed since dbtwf wrote it is listed and left alone.",
)
def destroy_command(
    ctx: typer.Context,
    yes: YesOption = False,
    as_json: JsonOption = False,
    break_lock: BreakLockOption = False,
    config: ConfigOption = None,
    env: EnvOption = None,
    debug: DebugOption = False,
) -> None:
    """Remove what dbtwf created for the environment, and nothing else."""
    settings = cli_context(ctx, config, env, debug)
    from provision.change import has_changes
    from provision.destroy import destroy_changes, plan_destroy
    from provision.output import console, render_changes

    environment = load_environment(settings)
    ws, environment = connect_environment(environment)
    header = _header(ws, environment, as_json)
    changes = plan_destroy(ws, environment)
    if not has_changes(changes):
        if as_json:
            render_changes(changes, as_json=True, header=header)
            return
        if changes:
            render_changes(changes, as_json=False)
        console.print(f"dbtwf owns nothing to delete in environment {environment.name!r}", markup=False)
        return
    if not as_json:
        render_changes(changes, as_json=False)
    _confirm(f"delete these from environment {environment.name!r}?", yes)
    done = destroy_changes(ws, environment, changes, break_lock=break_lock, warn=_warn)
    if as_json:
        render_changes(done, as_json=True, header=header)
    else:
        console.print(f"destroyed what dbtwf owned in environment {environment.name!r}", markup=False)


@app.command(
    "onboard",
    epilog="Examples:\n\n"
    "  dbtwf onboard --dbt-job-url https://ab123.us1.dbt.com/deploy/1/projects/2/jobs/3\n\n"
    "  dbtwf onboard --env prod --dbt-job-url URL --schedule '0 0 6 * * ?' --yes --run\n\n"
    "Checks the token and the job against dbt Cloud before anything is written.",
)
def onboard_command(
    ctx: typer.Context,
    dbt_job_url: Annotated[
        str,
        typer.Option("--dbt-job-url", help="The dbt job's page: https://HOST/deploy/A/projects/P/jobs/J."),
    ],
    workflow: Annotated[str | None, typer.Option("--workflow", help="The workflow's name.")] = None,
    schedule: Annotated[
        str | None, typer.Option("--schedule", help="A Quartz cron expression, e.g. '0 0 6 * * ?'.")
    ] = None,
    timezone: Annotated[str | None, typer.Option("--timezone", help="The schedule's time zone.")] = None,
    notebook_path: Annotated[
        str | None,
        typer.Option(
            "--notebook-path", help="The runner notebook's workspace path: absolute, or ~/... in your home."
        ),
    ] = None,
    secret_scope: Annotated[str | None, typer.Option("--secret-scope", help="The secret scope.")] = None,
    secret_key: Annotated[str | None, typer.Option("--secret-key", help="The key of the token.")] = None,
    databricks_profile: Annotated[
        str | None, typer.Option("--databricks-profile", help="A profile of ~/.databrickscfg.")
    ] = None,
    cluster_id: Annotated[
        str | None, typer.Option("--cluster-id", help="Run on this cluster instead of serverless.")
    ] = None,
    yes: YesOption = False,
    run: Annotated[bool, typer.Option("--run", help="Run the workflow once afterwards, follow it.")] = False,
    break_lock: BreakLockOption = False,
    config: ConfigOption = None,
    env: EnvOption = None,
    debug: DebugOption = False,
) -> None:
    """Set up an environment from a dbt job URL: config, token, secret, notebook, workflow."""
    settings = cli_context(ctx, config, env, debug)
    from provision.config import load_config, select_environment
    from provision.onboard import OnboardOptions, check_dbt_job, prepare, write_environment
    from provision.output import console

    options = OnboardOptions(
        dbt_job_url=dbt_job_url,
        env_name=settings.env_name,
        workflow_name=workflow,
        schedule=schedule,
        timezone=timezone,
        notebook_path=notebook_path,
        secret_scope=secret_scope,
        secret_key=secret_key,
        databricks_profile=databricks_profile,
        cluster_id=cluster_id,
    )
    existing = None
    if settings.config_path.exists():
        known = load_config(settings.config_path)
        try:  # the environment onboard updates; none yet means a new one
            existing = select_environment(known, settings.env_name)
        except ConfigError:
            existing = None
    target = prepare(options, existing)
    if not yes and not sys.stdin.isatty():
        # Apply will want a confirmation nobody can give: stop before the config is written.
        raise UsageError(
            "onboard asks before it changes the workspace, and stdin is not a terminal", "re-run with --yes"
        )
    token = _onboard_token(yes)
    job_name = check_dbt_job(target, token)
    console.print(f"dbt job {target.dbt_job_id} ({job_name}) found; the token works", markup=False)
    environment = write_environment(settings.config_path, target)
    console.print(f"wrote environment {environment.name!r} to {settings.config_path}", markup=False)
    ws, environment = connect_environment(environment)
    _plan_confirm_apply(
        ws,
        environment,
        token,
        yes=yes,
        as_json=False,
        break_lock=break_lock,
        verified_jobs=frozenset({target.dbt_job_id}),
    )
    if run:
        from provision.runs import run_workflow

        with _RunStatus() as status:
            outcome = run_workflow(ws, environment, wait=True, on_update=status.update)
        outcome.raise_for_failure()
        console.print(f"run {outcome.run_id} succeeded", markup=False)


def _onboard_token(yes: bool) -> str:
    """The token; one typed at the prompt is also kept in the keyring for the next command."""
    from provision.output import err_console
    from provision.token import resolve_token, store_token, token_source

    try:
        configured = token_source() is not None
    except UsageError:
        configured = False
    token = resolve_token(interactive=not yes)
    if not configured:
        try:
            where = store_token(token)
        except DbtwfError as error:
            err_console.print(f"note: the token is not kept in a keyring: {error.message}", markup=False)
        else:
            if where.warning:
                err_console.print(f"warning: {where.warning}", markup=False)
    return token


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
    "the prompt): its next `bundle deploy` drops the task. A workflow whose job parameters are "
    "named like a runner option (git_branch, wait, ...) is refused: they would override the "
    "task's on every run; rename them, or accept each with --allow-job-parameter NAME."
)


@app.command("add-task", epilog=_ADD_TASK_EPILOG)
def add_task_command(
    ctx: typer.Context,
    workflow: Annotated[str, typer.Option("--workflow", help="The workflow's job id or exact name.")],
    dbt_job: Annotated[str, typer.Option("--dbt-job", help="The dbt job's id or URL.")],
    task_key: Annotated[
        str | None, typer.Option("--task-key", help="The new task's key.", show_default="dbt_job_<job id>")
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
    allow_job_parameter: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-job-parameter",
            help="Accept the workflow's job parameter of this name (git_branch, wait, ...) setting "
            "the runner option of the same name on every run (repeatable).",
        ),
    ] = None,
    yes: YesOption = False,
    config: ConfigOption = None,
    env: EnvOption = None,
    debug: DebugOption = False,
) -> None:
    """Add a task running a dbt Cloud job to a workflow dbtwf does not own."""
    settings = cli_context(ctx, config, env, debug)
    from provision.add_task import AddTaskRequest, add_task, check_request
    from provision.output import console, err_console
    from provision.token import redact, resolve_token

    environment = load_environment(settings)
    request = AddTaskRequest(
        workflow=workflow,
        dbt_job=dbt_job,
        task_key=task_key,
        depends_on=tuple(depends_on or ()),
        replace=replace,
        cluster_id=cluster_id,
        job_cluster_key=job_cluster_key,
        allowed_job_parameters=tuple(allow_job_parameter or ()),
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

    ws, environment = connect_environment(environment)
    result = add_task(
        ws,
        environment,
        request,
        token,
        confirm_bundle=confirm_bundle,
        break_lock=break_lock,
        warn=_warn,
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
        float | None,
        typer.Option(
            "--poll-interval",
            help="Seconds between status checks (default: every second at first, backing off to 10 s).",
            min=0.0,
            hidden=True,
        ),
    ] = None,
    config: ConfigOption = None,
    env: EnvOption = None,
    debug: DebugOption = False,
) -> None:
    """Run the environment's workflow now and follow it to the end."""
    settings = cli_context(ctx, config, env, debug)
    from provision.output import console
    from provision.runs import run_workflow

    environment = load_environment(settings)
    ws, environment = connect_environment(environment)
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
    terminal, plain lines (only when something changed) otherwise. A task's dbt run (id,
    status, URL) is a result: a column of the live table, else a line on stdout."""

    def __init__(self) -> None:
        from provision.output import console, err_console
        from provision.token import redact

        self._console = console
        self._err = err_console
        self._redact = redact
        self._live: Any = None
        self._printed: dict[str, str] = {}
        self._printed_dbt_runs: set[str] = set()
        self._announced = False
        self._last: Any = None
        self._queue_told: tuple[int | None, str] | None = None

    def __enter__(self) -> _RunStatus:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is None:
            return
        self._live.stop()
        if not self._console.is_terminal and self._last is not None:
            # stdout is a pipe or file: the dbt runs are results, so they go there too.
            self._print_dbt_runs(self._last)

    def _print_dbt_runs(self, snapshot: Any) -> None:
        for task in snapshot.tasks:
            if task.dbt_run is not None and task.task_key not in self._printed_dbt_runs:
                self._printed_dbt_runs.add(task.task_key)
                self._console.print(
                    f"  {task.task_key}: {self._redact(task.dbt_run.describe())}", markup=False
                )

    def update(self, snapshot: Any) -> None:
        self._last = snapshot
        if not self._announced:
            self._announced = True
            self._console.print(f"run {snapshot.run_id}: {snapshot.run_page_url}", markup=False)
        self._tell_queue(snapshot)
        if self._err.is_terminal:
            self._update_live(snapshot)
            return
        for task in snapshot.tasks:
            if self._printed.get(task.task_key) != task.state:
                self._printed[task.task_key] = task.state
                self._err.print(
                    f"  {task.task_key}: {task.state} ({snapshot.elapsed_seconds:.0f}s)", markup=False
                )
        self._print_dbt_runs(snapshot)

    def _tell_queue(self, snapshot: Any) -> None:
        """A queued run says so once, with the run it waits for."""
        if not snapshot.queued:
            self._queue_told = None
            return
        told = (snapshot.waiting_for, snapshot.state_message)
        if self._queue_told == told:
            return
        self._queue_told = told
        if snapshot.waiting_for is not None:
            where = f" ({snapshot.waiting_for_url})" if snapshot.waiting_for_url else ""
            line = (
                f"run {snapshot.run_id} is queued: it starts when run {snapshot.waiting_for} "
                f"of the same workflow ends{where}"
            )
        else:
            line = f"run {snapshot.run_id} is queued: {snapshot.state_message or 'waiting for a free slot'}"
        self._err.print(self._redact(line), markup=False, highlight=False)

    def _update_live(self, snapshot: Any) -> None:
        from rich.live import Live
        from rich.table import Table
        from rich.text import Text

        table = Table(box=None, show_header=False, pad_edge=False)
        for task in snapshot.tasks:
            dbt_run = self._redact(task.dbt_run.describe()) if task.dbt_run is not None else ""
            table.add_row(Text(task.task_key), Text(task.state), Text(dbt_run, overflow="fold"))
        table.add_row(f"[dim]{snapshot.state}[/]", f"[dim]{snapshot.elapsed_seconds:.0f}s[/]", "")
        if self._live is None:
            self._live = Live(table, console=self._err, auto_refresh=False, transient=False)
            self._live.start()
        self._live.update(table, refresh=True)


_DOCTOR_EPILOG = (
    "Examples:\n\n"
    "  dbtwf doctor\n\n"
    "  dbtwf --env prod doctor --json | jq '.checks[] | select(.status != \"ok\")'\n\n"
    "Exit code 0 when every link is OK, 2 when the config cannot be used (nothing else is asked), "
    "1 otherwise. Doctor only reads; it never shows a secret."
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
    from provision.output import console, print_json
    from provision.token import redact

    checks = diagnose(lambda: load_environment(settings), connect_workspace)
    passed = all_passed(checks)
    if as_json:
        print_json({"ok": passed, "checks": [check.to_dict() for check in checks]})
    else:
        from rich.table import Table

        styles = {Status.OK: "green", Status.WARN: "yellow", Status.FAIL: "bold red", Status.SKIP: "dim"}
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
        warned = sum(check.status is Status.WARN for check in checks)
        if not passed:
            console.print(f"{failed} check(s) failed", markup=False)
        elif warned:
            console.print(f"no check failed, {warned} warning(s): read the WARN lines above", markup=False)
        else:
            console.print("all checks passed", markup=False)
    if not passed:
        # A config that cannot be used (missing, invalid, a plain-http dbt host) is bad input:
        # every link that needs it was skipped, so nothing was sent anywhere.
        config_failed = any(check.name == "config" and check.status is Status.FAIL for check in checks)
        raise typer.Exit(2 if config_failed else 1)
