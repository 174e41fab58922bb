"""`dbtwf add-task`: a task running a dbt Cloud job, added to a workflow dbtwf does not own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer

from provision.commands import shell
from provision.commands.provision import BreakLockOption, YesOption
from provision.errors import UsageError

ADD_TASK_EPILOG = (
    "Examples:\n\n"
    "  dbtwf add-task --workflow 123 --dbt-job 456\n\n"
    "  dbtwf add-task --workflow 'Nightly ETL' --dbt-job "
    "https://ab123.us1.dbt.com/deploy/1/projects/2/jobs/456 --depends-on ingest\n\n"
    "  dbtwf --env prod add-task --workflow 123 --dbt-job 456 --task-key dbt_marts --replace --yes\n\n"
    "The workflow gets exactly one jobs/update holding only the new task; every other task, "
    "cluster and setting stays as it is. A bundle-deployed workflow needs --yes (or a yes at "
    "the prompt): its next `bundle deploy` drops the task. A workflow whose job parameters are "
    "named like a runner option (git_branch, wait, ...) is refused: they would override the "
    "task's on every run; rename them, or accept each with --allow-job-parameter NAME."
)


def add_task_command(
    ctx: typer.Context,
    workflow: Annotated[str, typer.Option("--workflow", help="The workflow's job id or exact name.")],
    dbt_job: Annotated[str, typer.Option("--dbt-job", help="The dbt job's id or URL.")],
    task_key: Annotated[
        str | None, typer.Option("--task-key", help="The new task's key.", show_default="dbt_job_<job id>")
    ] = None,
    depends_on: Annotated[
        list[str] | None, typer.Option("--depends-on", help="A task it runs after (repeatable).")
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Overwrite a task of that key that has other settings.")
    ] = False,
    cluster_id: Annotated[
        str | None, typer.Option("--cluster-id", help="Run on this existing cluster.")
    ] = None,
    job_cluster_key: Annotated[
        str | None, typer.Option("--job-cluster-key", help="Run on this job cluster of the workflow.")
    ] = None,
    break_lock: BreakLockOption = False,
    allow_job_parameter: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-job-parameter",
            help="Accept the workflow's job parameter of this name (git_branch, wait, ...) setting "
            "the runner option of the same name on every run (repeatable).",
        ),
    ] = None,
    yes: YesOption = False,
) -> None:
    """Add a task running a dbt Cloud job to a workflow dbtwf does not own."""
    from provision.add_task import AddTaskRequest, add_task, check_request
    from provision.output import render_added_task, warn
    from provision.token import resolve_token

    environment = shell.load_environment(shell.settings(ctx))
    request = AddTaskRequest(
        workflow=workflow,
        dbt_job=dbt_job,
        task_key=task_key,
        depends_on=tuple(depends_on or ()),
        replace=replace,
        cluster_id=cluster_id,
        job_cluster_key=job_cluster_key,
        allowed_job_parameters=tuple(allow_job_parameter or ()),
    )
    check_request(request, environment)  # bad input: exit 2 before the SDK is even imported
    # A dbt platform task needs no token: one found is only used to check the dbt job.
    token = resolve_token(interactive=not yes) if environment.uses_notebook else shell.optional_token()
    ws, environment = shell.connect_environment(environment)
    result = add_task(
        ws,
        environment,
        request,
        token,
        confirm_bundle=_bundle_confirmer(yes),
        break_lock=break_lock,
        warn=warn,
    )
    render_added_task(result)


def _bundle_confirmer(yes: bool) -> Callable[[str], bool]:
    """Shows the bundle warning, then asks (or takes --yes); off a terminal, --yes is needed."""
    from provision.output import warn

    def confirm_bundle(warning: str) -> bool:
        warn(warning)
        if yes:
            return True
        if shell.can_ask():
            return bool(typer.confirm("Add the task anyway?", default=False, err=True))
        raise UsageError("the workflow is deployed by a bundle", "re-run with --yes to add the task anyway")

    return confirm_bundle
