"""`dbtwf`: the command line, as a table of contents.

Each command lives with its family in ``provision.commands`` (it reads its options, calls
one use case, renders the result); what they share (the global options --config, --env and
--debug, declared once and accepted before or after the command; the error edge) is in
``provision.commands.shell``. Keep module-level imports light: `dbtwf --help` must never
import `databricks.sdk` (about 2 s).

Ctrl-C exits 1 wherever it lands, like any other interrupted operation (see ``main``).
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from typing import Any

from provision.commands import adopt, doctor, export, migrate, provision, run, shell, tasks, token

app = shell.DbtwfTyper(
    name="dbtwf",
    cls=shell.DbtwfGroup,
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
    context_settings={"help_option_names": shell.HELP_OPTION_NAMES},
)
app.callback()(shell.global_options)

# The dbt Cloud token in the keyring.
app.add_typer(token.app)
# An environment's scope, secret, notebook and workflow.
app.command("onboard", epilog=provision.ONBOARD_EPILOG)(provision.onboard_command)
app.command("plan", epilog=provision.PLAN_EPILOG)(provision.plan_command)
app.command("apply", epilog=provision.APPLY_EPILOG)(provision.apply_command)
app.command("destroy", epilog=provision.DESTROY_EPILOG)(provision.destroy_command)
# A task in a workflow dbtwf does not own.
app.command("add-task", epilog=tasks.ADD_TASK_EPILOG)(tasks.add_task_command)
# Switching the tasks between the runner notebook and the dbt platform task (Beta).
app.command("migrate", epilog=migrate.MIGRATE_EPILOG)(migrate.migrate_command)
# A setup made by hand from the guide, brought under dbtwf.
app.command("adopt", epilog=adopt.ADOPT_EPILOG)(adopt.adopt_command)
# Running the workflow, and checking every link.
app.command("run", epilog=run.RUN_EPILOG)(run.run_command)
app.command("doctor", epilog=doctor.DOCTOR_EPILOG)(doctor.doctor_command)
# Handing the environments to another tool (a Databricks Asset Bundle).
app.add_typer(export.app)


def _interrupted_late(signum: int, frame: Any) -> None:
    """Ctrl-C after the command ended (Python joining threads, running exit handlers): exit 1,
    as during the command, rather than a traceback or death by SIGINT (exit 130)."""
    try:
        sys.stdout.flush()
        sys.stderr.write("interrupted\n")
        sys.stderr.flush()
    finally:
        os._exit(1)


def _ignore_sigint() -> None:
    # The last moments of the interpreter reset a Python handler to the default (death by
    # SIGINT, exit 130), but leave an ignored signal ignored.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def main() -> None:
    """Console script entry point.

    Ctrl-C exits 1 at every point: during the command (the error edge), while parsing (click's
    Abort), and, when main is the program's entry point, after the command ended.
    """
    caller = sys._getframe(1).f_globals.get("__name__") if sys._getframe(1) else None
    entry = caller == "__main__" and threading.current_thread() is threading.main_thread()
    if entry:
        atexit.register(_ignore_sigint)  # registered first, so it runs last
    try:
        app(prog_name="dbtwf")
    except KeyboardInterrupt:  # between click's return and here
        sys.stderr.write("interrupted\n")
        raise SystemExit(1) from None
    finally:
        if entry:
            signal.signal(signal.SIGINT, _interrupted_late)
