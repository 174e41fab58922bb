"""What the CLI prints: rich tables for people, plain JSON for scripts, errors on stderr.

Every message that may carry remote text passes through :func:`redact`, so a token that
reached an error message by accident is still never shown.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from provision.token import redact

if TYPE_CHECKING:
    from provision.change import Change

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


def print_header(header: dict[str, str]) -> None:
    """Which environment, workspace and identity a command acts on, on stderr, before anything else."""
    err_console.print(
        f"environment {header.get('environment')!r} in {header.get('workspace_host') or '?'} "
        f"as {header.get('identity') or '?'}",
        markup=False,
    )


def render_changes(changes: list[Change], as_json: bool, header: dict[str, str] | None = None) -> None:
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
