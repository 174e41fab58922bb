"""`dbtwf migrate`: switch an environment's tasks between the runner notebook and Databricks'
dbt platform task (Beta), as one plan."""

from __future__ import annotations

from typing import Annotated

import typer

from provision.commands import shell
from provision.commands.provision import BreakLockOption, JsonOption, YesOption

MIGRATE_EPILOG = (
    "Examples:\n\n"
    "  dbtwf --env prod migrate --to dbt_platform --connection dbt_prod\n\n"
    "  dbtwf migrate --env prod --to notebook --yes --json\n\n"
    "Switches the owned workflow (one jobs/reset) and each task dbtwf added to another workflow "
    "(one jobs/update per workflow, only those tasks), keeping task keys, dependencies and dbt "
    "job ids, then sets task_type in dbtwf.toml. Going to dbt_platform needs no token and leaves "
    "the notebook and secret in place until `dbtwf destroy`; going back to notebook needs the token."
)


def migrate_command(
    ctx: typer.Context,
    to: Annotated[str, typer.Option("--to", help="The backend to switch to: dbt_platform or notebook.")],
    connection: Annotated[
        str | None,
        typer.Option(
            "--connection",
            help="The Unity Catalog connection dbt platform tasks use (default: dbt_platform_connection).",
        ),
    ] = None,
    yes: YesOption = False,
    as_json: JsonOption = False,
    break_lock: BreakLockOption = False,
) -> None:
    """Switch the environment's tasks to dbt platform tasks (Beta) or back to the runner notebook."""
    from provision import output
    from provision.migrate import migrate_environment, target_environment
    from provision.token import resolve_token

    options = shell.settings(ctx)
    environment = shell.load_environment(options)
    target_environment(environment, to, connection)  # bad input: exit 2 before the SDK is imported
    token = resolve_token(interactive=not yes) if to != "dbt_platform" else None
    ws, environment = shell.connect_environment(environment)
    ui = shell.interaction(yes=yes, as_json=as_json, header_note=shell.default_note(options))
    outcome = migrate_environment(
        ws,
        environment,
        target_environment(environment, to, connection),
        token,
        ui,
        config_path=options.config_path,
        break_lock=break_lock,
    )
    env_flag = f" --env {environment.name}" if options.env_name else ""
    output.render_outcome(
        outcome,
        as_json,
        next_step=f"`dbtwf{env_flag} plan` now shows nothing to do",
        applied=f"migrated environment {environment.name!r} to {to}",
    )
