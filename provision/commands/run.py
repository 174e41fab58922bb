"""`dbtwf run`: run the environment's workflow now and follow it to the end."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from provision.commands import shell

if TYPE_CHECKING:
    from provision.databricks import Workspace
    from provision.model import Environment

RUN_EPILOG = (
    "Examples:\n\n"
    "  dbtwf run\n\n"
    "  dbtwf --env prod run --no-wait\n\n"
    "Exit code 0 when the run succeeded, 1 when it failed (the failing task's error is shown)."
)


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
) -> None:
    """Run the environment's workflow now and follow it to the end."""
    ws, environment = shell.connect_environment(shell.load_environment(shell.settings(ctx)))
    follow_run(ws, environment, wait=not no_wait, poll_interval=poll_interval)


def follow_run(
    ws: Workspace, environment: Environment, *, wait: bool, poll_interval: float | None = None
) -> None:
    """Start the workflow, show it as it goes, and end with its outcome (RunFailedError: exit 1)."""
    from provision.output import RunStatus, say
    from provision.runs import run_workflow

    with RunStatus() as status:
        outcome = run_workflow(
            ws, environment, wait=wait, on_update=status.update, poll_interval=poll_interval
        )
    if not outcome.waited:
        say(f"started run {outcome.run_id}; follow it at {outcome.run_page_url}")
        return
    outcome.raise_for_failure()
    say(f"run {outcome.run_id} succeeded")
