"""What the CLI prints: rich tables for people, plain JSON for scripts, errors on stderr.

Every message that may carry remote text passes through :func:`redact`, so a token that
reached an error message by accident is still never shown.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from provision.token import redact

if TYPE_CHECKING:
    from provision.add_task import AddTaskResult
    from provision.change import Change
    from provision.doctor import Check
    from provision.flows import EveryOutcome, Outcome

#: Results (tables, JSON) on stdout; errors, warnings and progress on stderr.
# soft_wrap: messages keep their own line breaks; rich would cut them at 80 columns in a pipe.
console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

_ACTION_STYLES = {"create": "green", "update": "yellow", "delete": "red", "no-op": "dim"}
_ACTION_SIGNS = {"create": "+", "update": "~", "delete": "-", "no-op": "="}


def print_json(data: Any) -> None:
    """``data`` as indented JSON on stdout: plain text, no colours, for scripts and `jq`."""
    sys.stdout.write(redact(json.dumps(data, indent=2, default=str)) + "\n")
    sys.stdout.flush()


def say(text: str) -> None:
    """A result line on stdout."""
    console.print(redact(text), markup=False)


def warn(text: str) -> None:
    err_console.print(f"warning: {redact(text)}", markup=False)


def note(text: str) -> None:
    err_console.print(f"note: {redact(text)}", markup=False)


def _action_value(change: Change) -> str:
    action = change.action
    return str(getattr(action, "value", action))


def summarize(changes: Iterable[Change]) -> str:
    """One line: ``2 to create, 1 to update, 3 unchanged`` (or ``nothing to change``)."""
    counts: dict[str, int] = {}
    for change in changes:
        if change.resource == _WARNING:
            continue
        action = _action_value(change)
        counts[action] = counts.get(action, 0) + 1
    parts = [
        f"{counts[action]} {label}"
        for action, label in (
            ("create", "to create"),
            ("update", "to update"),
            ("delete", "to delete"),
            ("no-op", "unchanged"),
        )
        if counts.get(action)
    ]
    if not any(counts.get(action) for action in ("create", "update", "delete")):
        return "nothing to change" + (f" ({parts[0]})" if parts else "")
    return ", ".join(parts)


_WARNING = "warning"  # provision.location.WARNING, without importing the planner here


def print_warnings(changes: Iterable[Change]) -> None:
    """The plan's warnings (who can edit the notebook or read the token), one per line on stderr."""
    for change in changes:
        if change.resource == _WARNING:
            err_console.print(f"warning: {redact(change.reason)}", markup=False)


def print_header(header: Mapping[str, str], why: str | None = None) -> None:
    """Which environment, workspace and identity a command acts on, on stderr, before anything
    else; ``why`` says why that environment (chosen by default among several)."""
    err_console.print(
        f"environment {header.get('environment')!r} in {header.get('workspace_host') or '?'} "
        f"as {header.get('identity') or '?'}" + (f" ({why})" if why else ""),
        markup=False,
    )


def render_changes(changes: list[Change], as_json: bool, header: Mapping[str, str] | None = None) -> None:
    """The plan: a table with one row per resource and a summary line, or JSON: a list of the
    changes, or with ``header`` an object holding the header's fields and ``changes``.
    Warnings are entries of resource "warning" in JSON, and lines on stderr here."""
    if as_json:
        listed = [change.to_dict() for change in changes]
        print_json({**header, "changes": listed} if header is not None else listed)
        return
    warnings = [change for change in changes if change.resource == _WARNING]
    changes = [change for change in changes if change.resource != _WARNING]
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("", no_wrap=True)
    table.add_column("action", no_wrap=True)
    table.add_column("resource", no_wrap=True)
    table.add_column("name", overflow="fold")
    table.add_column("reason", overflow="fold")
    for change in changes:
        action = _action_value(change)
        style = _ACTION_STYLES.get(action, "")
        # Text cells: names and reasons may hold [brackets] that rich would read as markup.
        table.add_row(
            Text(_ACTION_SIGNS.get(action, "?")),
            Text(action),
            Text(change.resource),
            Text(redact(change.name)),
            Text(redact(change.reason)),
            style=style,
        )
    if changes:
        # A pipe or CI log gets the whole table unwrapped: rich would fold it at 80 columns
        # (and clamps print(width=) to the console's width, hence a console of the right width).
        target = console
        if not console.is_terminal:
            wide = console.options.update(width=4096)
            target = Console(highlight=False, width=Measurement.get(console, wide, table).maximum)
        target.print(table)
    console.print(summarize(changes), markup=False)
    print_warnings(warnings)


# -- what apply, onboard and destroy say at the end ---------------------------------------------


def render_outcome(
    outcome: Outcome, as_json: bool, *, next_step: str | None = None, applied: str | None = None
) -> None:
    """JSON of what was done (the plan, when nothing was), or a line saying what became of the
    environment; then the workflow's id and page, and ``next_step`` when given."""
    from provision import flows

    if as_json:
        nothing = outcome.status in (flows.UP_TO_DATE, flows.NOTHING_OWNED)
        render_changes(outcome.planned if nothing else outcome.done, as_json=True, header=outcome.header)
        return
    name = outcome.environment
    if outcome.status == flows.UP_TO_DATE:
        say(f"environment {name!r} is up to date; nothing to do")
        print_warnings(outcome.planned)
    elif outcome.status == flows.APPLIED:
        say(applied or f"applied environment {name!r}")
        warned = {(change.resource, change.name) for change in outcome.planned}
        print_warnings(change for change in outcome.done if (change.resource, change.name) not in warned)
    elif outcome.status == flows.MATCHED:
        say(f"environment {name!r} already matches the config (another run applied it); nothing written")
    elif outcome.status == flows.NOTHING_OWNED:
        if outcome.planned:
            render_changes(outcome.planned, as_json=False)
        say(f"dbtwf owns nothing to delete in environment {name!r}")
    else:
        say(f"destroyed what dbtwf owned in environment {name!r}")
        print_warnings(outcome.done)  # a folder dbtwf made that is not empty, left
    if outcome.workflow_id is not None:
        say(f"workflow {outcome.workflow_id}: {outcome.workflow_url}")
        if next_step:
            err_console.print(f"next: {redact(next_step)}", markup=False)


def print_section(title: str) -> None:
    """The title of one environment's part of apply --all (a line of its own, in bold)."""
    console.print(Text(f"\n{title}", style="bold"))


def count_environments(names: list[str]) -> str:
    """``2 environments (dev, prod)``."""
    return f"{len(names)} environment{'' if len(names) == 1 else 's'} ({', '.join(names)})"


def summarize_every(applied: list[str], up_to_date: list[str]) -> str:
    """apply --all's last line: what was applied and what was up to date, by name."""
    if not applied:
        return f"{count_environments(up_to_date)} up to date"
    line = f"applied {count_environments(applied)}"
    return f"{line}; {count_environments(up_to_date)} up to date" if up_to_date else line


def render_every_environment(outcome: EveryOutcome, as_json: bool) -> None:
    """apply --all: a JSON object per environment, or the summary line (errors are reported
    by the error edge)."""
    if as_json:
        print_json(
            {
                result.environment.name: {**result.header(), "error": result.error.message}
                if result.error is not None
                else {**result.header(), "changes": [change.to_dict() for change in result.changes]}
                for result in outcome.results
            }
        )
    elif not outcome.failed:
        err_console.print(summarize_every(outcome.applied, outcome.up_to_date), markup=False)


def render_added_task(result: AddTaskResult) -> None:
    """add-task: the prerequisites it made, its notes, then one line saying what became of the task."""
    for change in result.prerequisites:
        err_console.print(
            redact(f"{change.action.value} {change.resource} {change.name}: {change.reason}"), markup=False
        )
    for text in result.notes:
        note(text)
    where = f"workflow {result.workflow_id} {result.workflow_name!r}"
    verb = {"create": "added", "update": "replaced"}.get(result.action)
    if verb is None:
        say(f"task {result.task_key!r} (dbt job {result.dbt_job_id}) is already in {where}")
    else:
        say(f"{verb} task {result.task_key!r} (dbt job {result.dbt_job_id}) in {where}")


# -- doctor ----------------------------------------------------------------------------------


def render_doctor(checks: list[Check], as_json: bool) -> None:
    """One row per link (status, check, detail, fix) and a last line; or JSON."""
    from provision.doctor import Status, all_passed

    passed = all_passed(checks)
    if as_json:
        print_json({"ok": passed, "checks": [check.to_dict() for check in checks]})
        return
    styles = {Status.OK: "green", Status.WARN: "yellow", Status.FAIL: "bold red", Status.SKIP: "dim"}
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for column in ("status", "check", "detail", "fix"):
        table.add_column(column, overflow="fold")
    for check in checks:
        # Text cells: details quote config tables ([environments.dev]) and remote answers.
        table.add_row(
            Text(check.status.value.upper()),
            Text(check.name),
            Text(redact(check.detail)),
            Text(redact(check.fix or "")),
            style=styles[check.status],
        )
    console.print(table)
    failed = sum(check.status is Status.FAIL for check in checks)
    warned = sum(check.status is Status.WARN for check in checks)
    if not passed:
        say(f"{failed} check(s) failed")
    elif warned:
        say(f"no check failed, {warned} warning(s): read the WARN lines above")
    else:
        say("all checks passed")


# -- run -------------------------------------------------------------------------------------


class RunStatus:
    """Shows the run page URL at once, then one status line per task: a live table on a
    terminal, plain lines (only when something changed) otherwise. A task's dbt run (id,
    status, URL) is a result: a column of the live table, else a line on stdout."""

    def __init__(self) -> None:
        self._live: Any = None
        self._printed: dict[str, str] = {}
        self._printed_dbt_runs: set[str] = set()
        self._announced = False
        self._last: Any = None
        self._queue_told: tuple[int | None, str] | None = None

    def __enter__(self) -> RunStatus:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is None:
            return
        self._live.stop()
        if not console.is_terminal and self._last is not None:
            # stdout is a pipe or file: the dbt runs are results, so they go there too.
            self._print_dbt_runs(self._last)

    def _print_dbt_runs(self, snapshot: Any) -> None:
        for task in snapshot.tasks:
            if task.dbt_run is not None and task.task_key not in self._printed_dbt_runs:
                self._printed_dbt_runs.add(task.task_key)
                say(f"  {task.task_key}: {task.dbt_run.describe()}")

    def update(self, snapshot: Any) -> None:
        self._last = snapshot
        if not self._announced:
            self._announced = True
            say(f"run {snapshot.run_id}: {snapshot.run_page_url}")
        self._tell_queue(snapshot)
        if err_console.is_terminal:
            self._update_live(snapshot)
            return
        for task in snapshot.tasks:
            if self._printed.get(task.task_key) != task.state:
                self._printed[task.task_key] = task.state
                err_console.print(
                    redact(f"  {task.task_key}: {task.state} ({snapshot.elapsed_seconds:.0f}s)"), markup=False
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
        err_console.print(redact(line), markup=False, highlight=False)

    def _update_live(self, snapshot: Any) -> None:
        from rich.live import Live

        table = Table(box=None, show_header=False, pad_edge=False)
        for task in snapshot.tasks:
            dbt_run = redact(task.dbt_run.describe()) if task.dbt_run is not None else ""
            table.add_row(Text(task.task_key), Text(task.state), Text(dbt_run, overflow="fold"))
        table.add_row(
            Text(str(snapshot.state), style="dim"), Text(f"{snapshot.elapsed_seconds:.0f}s", style="dim"), ""
        )
        if self._live is None:
            self._live = Live(table, console=err_console, auto_refresh=False, transient=False)
            self._live.start()
        self._live.update(table, refresh=True)
