"""`dbtwf doctor`: check each link from the config to the compute and say what to fix."""

from __future__ import annotations

import typer

from provision.commands import shell
from provision.commands.provision import JsonOption

DOCTOR_EPILOG = (
    "Examples:\n\n"
    "  dbtwf doctor\n\n"
    "  dbtwf --env prod doctor --json | jq '.checks[] | select(.status != \"ok\")'\n\n"
    "Exit code 0 when every link is OK, 2 when the config cannot be used (nothing else is asked), "
    "1 otherwise. Doctor only reads; it never shows a secret."
)


def doctor_command(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Check each link from the config to the compute and say what to fix."""
    from provision.doctor import diagnose, exit_code
    from provision.output import render_doctor

    options = shell.settings(ctx)
    checks = diagnose(lambda: shell.load_environment(options), lambda env: shell.connect_workspace(env))
    render_doctor(checks, as_json)
    code = exit_code(checks)
    if code:
        raise typer.Exit(code)
