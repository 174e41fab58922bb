"""`dbtwf plan | apply | destroy | onboard`: an environment's scope, secret, notebook and workflow."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from provision.commands import shell
from provision.errors import UsageError

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
BreakLockOption = Annotated[
    bool,
    typer.Option(
        "--break-lock",
        help="Remove a lock left behind by a crashed run before taking it (warns when it is recent).",
    ),
]
AdoptOption = Annotated[
    bool, typer.Option("--adopt", help="Take over a same-named workflow dbtwf did not create.")
]

PLAN_EPILOG = (
    "Examples:\n\n  dbtwf plan\n\n  dbtwf --env prod plan --json\n\n"
    "  dbtwf --env prod plan --out prod.plan.json   (then: dbtwf apply --plan prod.plan.json)\n\n"
    "Only reads. Without a token the secret is reported as present, not compared."
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
) -> None:
    """Show what apply would change in the environment (create / update / no-op per resource)."""
    from provision import flows, output

    options = shell.settings(ctx)
    ws, environment = shell.connect_environment(shell.load_environment(options))
    ui = shell.interaction(yes=False, as_json=as_json, header_note=shell.default_note(options))
    token = shell.optional_token() if environment.uses_notebook else None  # dbt platform tasks: none
    header, plan = flows.plan_only(ws, environment, token, ui, adopt=adopt, out=out)
    output.render_changes(list(plan.changes), as_json, header=header)
    if out is not None and not as_json:
        output.note(f"saved the plan to {out}; carry it out with `dbtwf apply --plan {out}`")


APPLY_EPILOG = (
    "Examples:\n\n  dbtwf apply\n\n  dbtwf --env prod apply --yes --json\n\n"
    "  dbtwf apply --plan prod.plan.json   (exactly a plan saved by `dbtwf plan --out`)\n\n"
    "  dbtwf apply --all --yes        (every environment, concurrently)\n\n"
    "A second apply with nothing changed sends no write request. Apply carries out exactly the "
    "changes shown, and stops without writing if the workspace changed meanwhile."
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
) -> None:
    """Create or update the scope, secret, notebook and workflow so the environment matches the config."""
    from provision import flows, output
    from provision.token import resolve_token

    options = shell.settings(ctx)
    _check_apply_options(options, all_environments=all_environments, plan_file=plan_file, adopt=adopt)
    if all_environments:
        _apply_all(options, yes=yes, as_json=as_json, break_lock=break_lock, adopt=adopt)
        return
    if plan_file is not None:
        _apply_saved_plan(options, plan_file, yes=yes, as_json=as_json, break_lock=break_lock)
        return
    environment = shell.load_environment(options)
    # dbt platform tasks need no token: Databricks reaches dbt through the environment's connection.
    token = resolve_token(interactive=not yes) if environment.uses_notebook else None
    ws, environment = shell.connect_environment(environment)
    ui = shell.interaction(yes=yes, as_json=as_json, header_note=shell.default_note(options))
    outcome = flows.apply_environment(ws, environment, token, ui, break_lock=break_lock, adopt=adopt)
    output.render_outcome(outcome, as_json, next_step=_next_run(options.env_name))


def _check_apply_options(
    options: shell.Settings, *, all_environments: bool, plan_file: Path | None, adopt: bool
) -> None:
    if all_environments and options.env_name is not None:
        raise UsageError(
            f"--all and --env {options.env_name} conflict (--env may come from {shell.ENV_ENVVAR})",
            hint=f"drop --env, or unset {shell.ENV_ENVVAR} for this command",
        )
    if all_environments and plan_file is not None:
        raise UsageError("--all and --plan exclude each other", "a saved plan is for one environment")
    if plan_file is not None and adopt:
        raise UsageError("--adopt and --plan exclude each other", "pass --adopt to `dbtwf plan --out`")


def _next_run(env_name: str | None) -> str:
    env = f" --env {env_name}" if env_name else ""
    return f"`dbtwf{env} run` runs the workflow now and follows it to the end"


def _apply_saved_plan(
    options: shell.Settings, path: Path, *, yes: bool, as_json: bool, break_lock: bool
) -> None:
    """`apply --plan FILE`: the environment the plan names, exactly its changes."""
    from dataclasses import replace

    from provision import flows, output
    from provision.token import resolve_token

    saved = flows.read_saved_plan(path, options.env_name)
    environment = shell.load_environment(replace(options, env_name=saved.environment))
    token = resolve_token(interactive=not yes) if environment.uses_notebook else None
    ws, environment = shell.connect_environment(environment)
    ui = shell.interaction(yes=yes, as_json=as_json)
    outcome = flows.apply_saved_plan(ws, environment, saved, token, ui, where=path, break_lock=break_lock)
    output.render_outcome(outcome, as_json, next_step=_next_run(saved.environment))


def _apply_all(options: shell.Settings, *, yes: bool, as_json: bool, break_lock: bool, adopt: bool) -> None:
    """Every environment: plan concurrently, confirm once, apply concurrently, report each."""
    from provision import flows, output
    from provision.errors import DbtwfError
    from provision.token import resolve_token

    environments = list(shell.load_config(options).environments.values())
    needs_token = any(environment.uses_notebook for environment in environments)  # dbt platform: none
    token = resolve_token(interactive=not yes) if needs_token else None
    ui = shell.interaction(yes=yes, as_json=as_json)
    outcome = flows.apply_every_environment(
        environments, token, shell.connect_workspace, ui, break_lock=break_lock, adopt=adopt
    )
    output.render_every_environment(outcome, as_json)
    for result in outcome.failed:
        assert result.error is not None
        shell.report_error(
            DbtwfError(f"environment {result.environment.name!r}: {result.error.message}", result.error.hint)
        )
    if outcome.failed:
        raise typer.Exit(max(result.error.exit_code for result in outcome.failed if result.error is not None))


DESTROY_EPILOG = (
    "Examples:\n\n  dbtwf --env dev destroy\n\n  dbtwf destroy --yes\n\n"
    "Removes only what dbtwf created: its workflow, the tasks it added to other workflows (found "
    "by the state record and by their mark), the notebook, the secret, its state record, and the "
    "scope only if dbtwf created it. Each entry is checked against the workspace first: a task "
    "changed since dbtwf wrote it is listed and left alone."
)


def destroy_command(
    ctx: typer.Context,
    yes: YesOption = False,
    as_json: JsonOption = False,
    break_lock: BreakLockOption = False,
) -> None:
    """Remove what dbtwf created for the environment, and nothing else."""
    from provision import flows, output

    options = shell.settings(ctx)
    ws, environment = shell.connect_environment(shell.load_environment(options))
    ui = shell.interaction(yes=yes, as_json=as_json, header_note=shell.default_note(options))
    output.render_outcome(flows.destroy_environment(ws, environment, ui, break_lock=break_lock), as_json)


ONBOARD_EPILOG = (
    "Examples:\n\n"
    "  dbtwf onboard --dbt-job-url https://ab123.us1.dbt.com/deploy/1/projects/2/jobs/3\n\n"
    "  dbtwf onboard --env prod --dbt-job-url URL --schedule '0 0 6 * * ?' --yes --run\n\n"
    "Checks the token and the job against dbt Cloud and signs in to Databricks before anything "
    "is written; dbtwf.toml is written only once you confirm the plan."
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
) -> None:
    """Set up an environment from a dbt job URL: config, token, secret, notebook, workflow."""
    from provision import onboard, output

    options = shell.settings(ctx)
    request = onboard.OnboardOptions(
        dbt_job_url,
        options.env_name,
        workflow,
        schedule,
        timezone,
        notebook_path,
        secret_scope,
        secret_key,
        databricks_profile,
        cluster_id,
    )
    target = onboard.prepare_target(request, options.config_path)  # bad input: exit 2, nothing sent
    if not yes and not shell.can_ask():
        # apply will want a confirmation nobody can give: stop before anything is sent.
        raise UsageError(
            "onboard asks before it changes anything, and stdin is not a terminal", "re-run with --yes"
        )
    ui = shell.interaction(yes=yes, as_json=False)
    token = onboard.resolve_onboard_token(yes)
    ws, environment, outcome = onboard.onboard(
        target, options.config_path, token, ui, connect=shell.connect_environment, break_lock=break_lock
    )
    output.render_outcome(outcome, as_json=False, next_step=None if run else _next_run(options.env_name))
    if run:
        from provision.commands.run import follow_run

        follow_run(ws, environment, wait=True)
