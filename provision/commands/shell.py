"""What every command shares: the global options, the error edge, and the first steps.

The global options (--config, --env/-e, --debug) are declared once, as the parameters of the
app's callback (``global_options``). ``DbtwfCommand`` lends each command a copy of them, so
they work after the command's name too: ``dbtwf --env prod apply`` and ``dbtwf apply --env
prod`` (or ``--env=prod``, ``-e prod``) mean the same, and a value typed after the command
wins over one typed before. A copy takes no environment variable (only the callback reads
DBTWF_CONFIG / DBTWF_ENV, so a variable never overrides a typed value), and a command that
declares an option of the same name keeps it for itself.

``DbtwfGroup`` is the error edge: project errors become one or two lines and an exit code,
Ctrl-C exits 1, and anything unexpected is one line (a redacted traceback with --debug).
"""

from __future__ import annotations

import copy
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from typer.core import TyperCommand, TyperGroup

from provision.errors import DbtwfError, DeclinedError, UsageError

if TYPE_CHECKING:
    from provision.change import Change
    from provision.databricks import Workspace
    from provision.flows import Interaction
    from provision.model import Config, Environment

DEFAULT_CONFIG = Path("dbtwf.toml")
CONFIG_ENVVAR = "DBTWF_CONFIG"
ENV_ENVVAR = "DBTWF_ENV"
GLOBAL_PANEL = "Global options"
HELP_OPTION_NAMES = ["-h", "--help"]
_SETTINGS_KEY = "dbtwf.settings"
_Function = TypeVar("_Function", bound=Callable[..., Any])

# Frameworks signal help, usage errors and exits with exceptions that must pass through
# untouched. Click may be vendored (typer >= 0.22) or a separate package, so find its
# base class from a public typer name instead of importing `click`.
_CLICK_EXCEPTION: type[Exception] = next(
    cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException"
)
_FRAMEWORK_EXCEPTIONS: tuple[type[BaseException], ...] = (typer.Exit, typer.Abort, _CLICK_EXCEPTION)


@dataclass(frozen=True)
class Settings:
    """The global options, as given before and after the command (after wins)."""

    config_path: Path = DEFAULT_CONFIG
    env_name: str | None = None
    debug: bool = False


def settings(ctx: typer.Context) -> Settings:
    value = ctx.meta.get(_SETTINGS_KEY)  # meta is shared by the whole context chain
    return value if isinstance(value, Settings) else Settings()


#: The parameter names of the global options (see ``_remember``).
_GLOBAL_NAMES = ("config", "env", "debug")


def _version_callback(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"dbtwf {version('dbtwf')}")
        except PackageNotFoundError:
            typer.echo("dbtwf (not installed)")
        raise typer.Exit()


# Parentheses in help, never [brackets]: rich reads those as markup and drops them.
def global_options(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            envvar=CONFIG_ENVVAR,
            help=f"The config file (env {CONFIG_ENVVAR}; default ./dbtwf.toml).",
            show_default=False,
            show_envvar=False,
            dir_okay=False,
            rich_help_panel=GLOBAL_PANEL,
        ),
    ] = None,
    env: Annotated[
        str | None,
        typer.Option(
            "--env",
            "-e",
            envvar=ENV_ENVVAR,
            help=f"The environment to act on (env {ENV_ENVVAR}; default: the only one, else dev).",
            show_default=False,
            show_envvar=False,
            rich_help_panel=GLOBAL_PANEL,
        ),
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks of errors.", rich_help_panel=GLOBAL_PANEL)
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", callback=_version_callback, is_eager=True
        ),
    ] = False,
) -> None:
    """The app callback: the global options given before the command."""
    ctx.meta[_SETTINGS_KEY] = Settings(
        config_path=config if config is not None else DEFAULT_CONFIG, env_name=env or None, debug=debug
    )


def _remember(ctx: Any, param: Any, value: Any) -> Any:
    """A global option typed after the command: it wins over the one before."""
    source = ctx.get_parameter_source(param.name)
    if source is not None and source.name == "COMMANDLINE":
        now = settings(ctx)
        if param.name == "config":
            now = replace(now, config_path=Path(value))
        elif param.name == "env":
            now = replace(now, env_name=value or None)
        else:
            now = replace(now, debug=bool(value))
        ctx.meta[_SETTINGS_KEY] = now
    return value


class DbtwfCommand(TyperCommand):
    """A command that also takes the global options after its name (see the module docstring)."""

    def get_params(self, ctx: Any) -> list[Any]:
        params: list[Any] = super().get_params(ctx)
        root = ctx.find_root().command
        cached = getattr(self, "_dbtwf_globals", None)
        if cached is None or cached[0] is not root:
            taken = {name for param in params for name in (*param.opts, *param.secondary_opts)}
            copies = []
            for declared in root.params:
                if declared.name not in _GLOBAL_NAMES or taken & {*declared.opts, *declared.secondary_opts}:
                    continue
                lent = copy.copy(declared)
                lent.envvar, lent.expose_value, lent.callback = None, False, _remember
                copies.append(lent)
            cached = (root, copies)
            self._dbtwf_globals = cached
        return [*params, *cached[1]]


def report_error(error: DbtwfError) -> None:
    """The message (and its hint) on stderr; a cancellation is a plain line, not an error."""
    from rich.markup import escape

    from provision.output import err_console
    from provision.token import redact

    if isinstance(error, DeclinedError):
        err_console.print(redact(error.message), markup=False)
        return
    if error.details:
        err_console.print(redact(error.details), markup=False, highlight=False)
    # escape(): messages quote config tables like [environments.prod], which rich would eat as markup.
    err_console.print(f"[bold red]error:[/] {escape(redact(error.message))}", markup=True)
    if error.hint:
        err_console.print(f"[bold]hint:[/] {escape(redact(error.hint))}", markup=True)


def _print_traceback(error: BaseException) -> None:
    """The traceback --debug shows, through the same redaction as every other message: an
    exception's text (a remote answer, a URL) may carry the token."""
    from provision.token import redact

    sys.stderr.write(redact("".join(traceback.format_exception(error))))
    sys.stderr.flush()


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


class DbtwfGroup(TyperGroup):
    """Turns project errors into messages and exit codes for every command, under main()
    and under CliRunner alike."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        # Here, not in __init__: typer adds --install-completion after building the group.
        _help_metavars(self, self.context_class(self, help_option_names=HELP_OPTION_NAMES))
        return super().main(*args, **kwargs)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except _FRAMEWORK_EXCEPTIONS:
            raise
        except DbtwfError as error:
            if settings(ctx).debug:
                _print_traceback(error)
            report_error(error)
            raise typer.Exit(error.exit_code) from None
        except KeyboardInterrupt:
            sys.stderr.write("interrupted\n")
            raise typer.Exit(1) from None
        except Exception as error:  # noqa: BLE001 - the last resort: one line (or a redacted traceback)
            from provision.output import err_console
            from provision.token import redact

            if settings(ctx).debug:
                _print_traceback(error)
            err_console.print(
                f"error: unexpected {type(error).__name__}: {redact(str(error))}",
                markup=False,
                highlight=False,
            )
            if not settings(ctx).debug:
                err_console.print("hint: re-run with --debug to see the traceback", markup=False)
            raise typer.Exit(1) from None


class DbtwfTyper(typer.Typer):
    """A Typer whose commands take the global options after their name (``DbtwfCommand``)."""

    def command(
        self, name: str | None = None, *, cls: type[TyperCommand] | None = None, **kwargs: Any
    ) -> Callable[[_Function], _Function]:
        return super().command(name, cls=cls or DbtwfCommand, **kwargs)


# -- the first steps of a command ----------------------------------------------------------


def load_config(options: Settings) -> Config:
    from provision.config import load_config as load

    return load(options.config_path)


def load_environment(options: Settings) -> Environment:
    """The selected environment of the config file, validated (ConfigError otherwise)."""
    from provision.config import select_environment

    return select_environment(load_config(options), options.env_name)


def default_note(options: Settings) -> str | None:
    """What to add to the header when the environment was chosen by default among several."""
    if options.env_name is not None:
        return None
    names = list(load_config(options).environments)
    if len(names) < 2:
        return None
    return f"chosen by default; --env picks one of {', '.join(names)}"


def connect_workspace(env: Environment) -> Workspace:
    """The environment's Databricks workspace; imports the SDK, so call it only when needed."""
    from provision.databricks import connect
    from provision.output import note

    return connect(env, on_retry=note)


def connect_environment(env: Environment) -> tuple[Workspace, Environment]:
    """The workspace, and the environment with a `~/` notebook path resolved to the connected
    identity's home folder (nothing else may use the environment's paths)."""
    from provision.location import resolve_location

    ws = connect_workspace(env)
    return ws, resolve_location(ws, env)


def optional_token() -> str | None:
    """The token when one is configured; plan works without it (the secret is not compared)."""
    from provision.token import resolve_token

    try:
        return resolve_token(interactive=False)
    except UsageError:
        return None


def can_ask() -> bool:
    """Whether a question can be answered: stdin is a terminal."""
    return sys.stdin.isatty()


def confirmer(yes: bool) -> Callable[[str], bool]:
    """Asks before writing; without a terminal, --yes is required rather than assumed."""

    def confirm(question: str) -> bool:
        if yes:
            return True
        if not can_ask():
            raise UsageError("confirmation needed, and stdin is not a terminal", hint="re-run with --yes")
        return bool(typer.confirm(question, default=False))

    return confirm


def interaction(*, yes: bool, as_json: bool, header_note: str | None = None) -> Interaction:
    """The callbacks a use case talks to the person through: nothing shown with --json."""
    from provision import output
    from provision.flows import Interaction

    def show_header(header: Mapping[str, str]) -> None:
        if not as_json:
            output.print_header(header, header_note)

    def show_plan(changes: Sequence[Change]) -> None:
        if not as_json:
            output.render_changes(list(changes), as_json=False)

    def show_section(title: str) -> None:
        if not as_json:
            output.print_section(title)

    return Interaction(
        show_header=show_header,
        show_section=show_section,
        show_plan=show_plan,
        confirm=confirmer(yes),
        asks=not yes,
        warn=output.warn,
        note=output.note,
        say=output.say,
    )
