"""`dbtwf adopt`: bring a setup made by hand from the guide under management."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from provision.commands import shell
from provision.commands.provision import JsonOption, YesOption

ADOPT_EPILOG = (
    "Examples:\n\n"
    "  dbtwf adopt --folder /Users/me@example.com\n\n"
    "  dbtwf --env prod adopt --notebook /Users/me@example.com/dbt/trigger_dbt_job --yes\n\n"
    "  dbtwf adopt --limit 20000 --json   (the whole workspace)\n\n"
    "Only reads until you confirm the plan: then it writes the environment into dbtwf.toml, keeps "
    "the hand-pasted code in <notebook>.dbtwf-backup.py, replaces the notebook by dbtwf's runner at "
    "the same path, tags the workflow made for it and records the tasks other workflows run it "
    "from. The secret is kept as it is: no token is needed. `dbtwf destroy` gives it all back."
)


def adopt_command(
    ctx: typer.Context,
    notebook: Annotated[
        list[str] | None, typer.Option("--notebook", help="Check this notebook (repeatable).")
    ] = None,
    folder: Annotated[
        list[str] | None, typer.Option("--folder", help="Scan this folder, recursively (repeatable).")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", help="Stop the scan after this many workspace objects.")
    ] = 5000,
    dbt_host: Annotated[
        str | None, typer.Option("--dbt-host", help="The dbt host, when the notebook does not say it.")
    ] = None,
    account_id: Annotated[
        int | None,
        typer.Option("--account-id", help="The dbt account id, when the notebook does not say it."),
    ] = None,
    secret_scope: Annotated[
        str | None,
        typer.Option("--secret-scope", help="The secret scope, when the notebook does not say it."),
    ] = None,
    secret_key: Annotated[
        str | None, typer.Option("--secret-key", help="The secret key, when the notebook does not say it.")
    ] = None,
    yes: YesOption = False,
    as_json: JsonOption = False,
) -> None:
    """Find a setup made by hand from the guide and bring it under dbtwf (plan first, then ask)."""
    from provision import output
    from provision.adopt.flow import AdoptOptions, adopt, check_options
    from provision.model import Environment

    options = shell.settings(ctx)
    given: dict[str, Any] = {
        name: value
        for name, value in (
            ("dbt_cloud_host", dbt_host),
            ("dbt_cloud_account_id", account_id),
            ("secret_scope", secret_scope),
            ("secret_key", secret_key),
        )
        if value is not None
    }
    request = AdoptOptions(options.env_name, tuple(notebook or ()), tuple(folder or ()), limit, given)
    check_options(request)  # bad input: exit 2 before the SDK is even imported
    name = options.env_name or "dev"
    known = _known_environment(options, name)
    sign_in = known or Environment(name=name, dbt_cloud_host="", dbt_cloud_account_id=0, dbt_jobs=())
    ws = shell.connect_workspace(sign_in)
    ui = shell.interaction(yes=yes, as_json=as_json)
    outcome = adopt(
        ws,
        request,
        options.config_path,
        _with_say(ui, as_json),
        ask=None if yes or not shell.can_ask() else _ask,
        progress=None if request.notebooks else _progress,
    )
    if outcome.scan.truncated:
        output.warn(f"the scan stopped after --limit {limit} objects: pass --folder, or a higher --limit")
    if as_json:
        output.print_json(outcome.to_dict())
        return
    for item in outcome.skipped:
        if item["kind"] != "refused":
            output.note(f"{item['path']}: {item['why']}; not a new hand-made setup")
    if outcome.status == "nothing new":
        output.say("nothing new to adopt")
        return
    output.say(
        f"adopted {outcome.notebook} as environment {outcome.environment!r}; "
        f"`dbtwf --env {outcome.environment} plan` shows what apply would still converge "
        "(apply needs the dbt token: it stores it in the secret)"
    )


def _known_environment(options: shell.Settings, name: str) -> Any:
    """The environment of that name when dbtwf.toml has one (its profile signs in)."""
    from provision.config import load_config

    if not options.config_path.exists():
        return None
    return load_config(options.config_path).environments.get(name)


def _with_say(ui: Any, as_json: bool) -> Any:
    """With --json, stdout holds the JSON alone: progress lines go to stderr."""
    from dataclasses import replace

    from provision import output

    return replace(ui, say=output.note) if as_json else ui


def _ask(name: str, why: str) -> str:
    label = {"dbt_cloud_account_id": "dbt account id"}.get(name, name.replace("_", " "))
    return str(typer.prompt(f"{why}; {label}", err=True))


def _progress(listed: int, done: bool) -> None:
    """One line rewritten in place on a terminal; elsewhere (a CI log, `2>file`) only the
    final count, not the in-place updates run together on one line."""
    terminal = sys.stderr.isatty()
    if not done and not terminal:
        return
    end = "\n" if done else "\r"
    sys.stderr.write(f"scanning the workspace: {listed} objects listed{end}")
    sys.stderr.flush()
