"""`dbtwf token set | show | delete`: the dbt Cloud API token in the OS keyring."""

from __future__ import annotations

import os
import sys

import typer
from typer.core import TyperGroup

from provision.commands.shell import DbtwfTyper
from provision.errors import UsageError

app = DbtwfTyper(
    name="token",
    cls=TyperGroup,
    help="The dbt Cloud API token in the OS keyring (never on the command line, never in a file).",
    epilog="Examples:\n\n  dbtwf token set\n\n  dbtwf token show\n\n  dbtwf token delete",
    no_args_is_help=True,
)


@app.command(
    "set",
    epilog="Examples:\n\n"
    "  dbtwf token set                      (prompts, input hidden)\n\n"
    "  pass show dbt/token | dbtwf token set   (reads stdin)",
    # Extra arguments are caught here, not by the parser: its error would echo them, token included.
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def token_set(ctx: typer.Context) -> None:
    """Store the dbt Cloud token in the OS keyring, read from a hidden prompt or stdin."""
    from provision.output import say, warn
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
    say(f"stored the dbt Cloud token {mask(raw.strip())} in {where.description}")
    if where.warning:
        warn(where.warning)
    if os.environ.get(TOKEN_ENV, "").strip():
        warn(f"{TOKEN_ENV} is set in this environment and takes precedence")


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


@app.command("show", epilog="Examples:\n\n  dbtwf token show")
def token_show() -> None:
    """Say which dbt Cloud token dbtwf would use and where it comes from, masked."""
    from provision.output import say
    from provision.token import TOKEN_ENV, mask, token_source

    found = token_source()
    if found is None:
        raise UsageError(
            f"no dbt Cloud token: {TOKEN_ENV} is not set and the keyring holds none",
            hint="run `dbtwf token set`",
        )
    token, source = found
    say(f"{mask(token)} from {source}")


@app.command("delete", epilog="Examples:\n\n  dbtwf token delete")
def token_delete() -> None:
    """Remove the dbt Cloud token from the OS keyring."""
    from provision.output import note, say
    from provision.token import TOKEN_ENV, delete_token, usable_keyring

    where = usable_keyring().description
    if delete_token():
        say(f"deleted the dbt Cloud token from {where}")
    else:
        say(f"no dbt Cloud token was stored in {where}")
    if os.environ.get(TOKEN_ENV, "").strip():
        note(f"{TOKEN_ENV} is still set in this environment")
