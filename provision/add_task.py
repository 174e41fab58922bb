"""`dbtwf add-task`: add a runner task to a workflow dbtwf does not own, and nothing else.

Everything that can be checked is checked before the first write: the dbt job (GET on
dbt Cloud), the workflow (exactly one match), the task key, its dependencies and compute.
Then one plan (``plan_add_task``) holds the environment's scope, secret and notebook as
apply would make them, the task and the state record, and the one executor carries it out
under the lock taken once: the workflow gets exactly one `jobs/update` whose `new_settings`
holds only `tasks: [the new task]` (the Jobs API merges `tasks` by `task_key`, so every other
task, cluster and setting is untouched), and only if the workflow is still as it was read.
`jobs/reset` is never used here. The task is recorded in the environment's workspace state
record before it is written (so an overwritten task of the user's is never lost), and it
carries dbtwf's mark in its description so `dbtwf destroy` finds it even without the record.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from provision.apply import execute
from provision.bundle import is_bundle_managed
from provision.change import Action, Change, has_changes, writes_secret
from provision.dbt_cloud import fetch_dbt_job
from provision.errors import (
    ConflictError,
    DbtwfError,
    NotFoundError,
    UnknownNameError,
    UsageError,
)
from provision.foreign_task import (
    build_task,
    choose_compute,
    is_dbtwf_task,
    job_parameter_collisions,
    job_parameter_note,
    task_differences,
    task_running,
    validate_allowed_job_parameters,
)
from provision.location import NOTEBOOK_ACL, notebook_acl_name, notebook_acl_principal, readers_to_grant
from provision.model import MANAGED_BY_TAG, MANAGED_BY_VALUE, Environment, default_task_key
from provision.names import validate_task_key
from provision.parallel import run_all
from runner.core import (
    RunnerInputError,
    base_url,
    parse_int,
    parse_job_url,
)

if TYPE_CHECKING:
    from provision.databricks import Workspace
    from provision.observe import Reader


@dataclass(frozen=True)
class AddTaskRequest:
    """What the user asked for, as typed (ids and URLs are parsed by add_task)."""

    workflow: str  # a numeric job id or the workflow's exact name
    dbt_job: str  # a numeric dbt job id or a dbt job URL
    task_key: str | None = None
    depends_on: tuple[str, ...] = ()
    replace: bool = False
    cluster_id: str | None = None
    job_cluster_key: str | None = None
    #: Job parameters of the workflow named like a runner widget that the user accepts
    #: (--allow-job-parameter): they set that widget on every run of the new task.
    allowed_job_parameters: tuple[str, ...] = ()


@dataclass(frozen=True)
class AddTaskResult:
    workflow_id: int
    workflow_name: str
    task_key: str
    dbt_job_id: int
    #: "create" (new task), "update" (replaced with --replace) or "no-op" (already identical).
    action: str
    task: dict[str, Any]
    #: What the user should know: the compute chosen for them, a job-level job_id, ...
    notes: tuple[str, ...] = ()
    #: The changes made to the environment's scope, secret and notebook first (may be empty).
    prerequisites: tuple[Change, ...] = field(default_factory=tuple)


# --- pure parts ----------------------------------------------------------------------------


def parse_dbt_job(value: str, env: Environment) -> int:
    """The dbt job id from an id or a dbt job URL; a URL of another host or account is refused."""
    text = value.strip()
    try:
        if "://" not in text:
            return parse_int(text, "--dbt-job")
        ref = parse_job_url(text)
    except RunnerInputError as error:
        raise UsageError(str(error), "pass the dbt job's numeric id or its URL from Deploy > Jobs") from None
    if base_url(ref.host) != _env_base_url(env) or ref.account_id != env.dbt_cloud_account_id:
        raise UsageError(
            f"the dbt job URL points at account {ref.account_id} on {ref.host}, but environment "
            f"{env.name!r} uses account {env.dbt_cloud_account_id} on {env.dbt_cloud_host}",
            "pass a job of the environment's dbt Cloud account, or choose another environment with --env",
        )
    return ref.job_id


def _env_base_url(env: Environment) -> str:
    try:
        return base_url(env.dbt_cloud_host)
    except RunnerInputError as error:
        raise UsageError(f"environment {env.name!r}: {error}") from None


def parse_workflow_ref(value: str) -> int | str:
    """A numeric value is a job id; anything else is a workflow name."""
    text = value.strip()
    if not text:
        raise UsageError("--workflow is empty", "pass the workflow's job id or its exact name")
    if text.isascii() and text.isdigit():
        try:
            return parse_int(text, "--workflow")
        except RunnerInputError as error:
            raise UsageError(str(error), "pass the workflow's job id or its exact name") from None
    return text


# --- remote parts -------------------------------------------------------------------------


def resolve_workflow(ws: Workspace, ref: int | str) -> dict[str, Any]:
    """The workflow as `jobs/get` returns it (all task pages joined), by id or exact name."""
    if isinstance(ref, int):
        job = ws.get_job(ref)
        if job is None:
            raise UnknownNameError(
                f"workflow {ref} not found in {ws.host}",
                "check the job id in the workflow's URL (…/jobs/<id>) or pass its name",
            )
        return job
    candidates = ws.list_jobs(name=ref)
    if not candidates:
        raise UnknownNameError(
            f"no workflow named {ref!r} in {ws.host}",
            "check the name (exact, case-insensitive) or pass the workflow's job id",
        )
    if len(candidates) > 1:
        listing = "; ".join(
            f"{c.get('job_id')} (created by {c.get('creator_user_name') or 'unknown'})" for c in candidates
        )
        raise ConflictError(
            f"{len(candidates)} workflows are named {ref!r}: {listing}",
            "pass the job id of the one you mean with --workflow",
        )
    job = ws.get_job(int(candidates[0]["job_id"]))
    if job is None:  # deleted between the list and the get
        raise NotFoundError(f"workflow {ref!r} disappeared while reading it", "try again")
    return job


def check_request(request: AddTaskRequest, env: Environment) -> tuple[int, int | str, str]:
    """Everything about the request that needs no server: (dbt job id, workflow, task key).

    The CLI calls it before connecting, so bad input costs no SDK import and no request.
    """
    dbt_job_id = parse_dbt_job(request.dbt_job, env)
    workflow_ref = parse_workflow_ref(request.workflow)
    task_key = request.task_key or default_task_key(dbt_job_id)
    validate_task_key(task_key, "--task-key")
    for upstream in request.depends_on:
        validate_task_key(upstream, "--depends-on task key")
        if upstream == task_key:
            raise UsageError(f"task {task_key!r} cannot depend on itself", "drop it from --depends-on")
    if request.cluster_id and request.job_cluster_key:
        raise UsageError("--cluster-id and --job-cluster-key exclude each other", "pass at most one of them")
    validate_allowed_job_parameters(request.allowed_job_parameters)
    return dbt_job_id, workflow_ref, task_key


def add_task(
    ws: Workspace,
    env: Environment,
    request: AddTaskRequest,
    token: str | None,
    *,
    confirm_bundle: Callable[[str], bool],
    break_lock: bool = False,
    warn: Callable[[str], None] | None = None,
) -> AddTaskResult:
    """Add (or with ``request.replace`` replace) the runner task; see the module docstring.

    ``confirm_bundle`` gets the warning text before a bundle-managed workflow is changed; it
    shows it and returns False to stop (nothing is written then), or raises itself.
    """
    from provision.observe import Reader, prefetch_observed

    dbt_job_id, workflow_ref, task_key = check_request(request, env)

    # Together: the dbt job on dbt Cloud, the workflow, and what the plan reads of the
    # environment; an error is reported in this order, as if they had been read one by one.
    reader = Reader(ws)
    dbt_job, workflow, _ = run_all(
        [
            # Without a token (dbt platform tasks need none) the dbt job is not checked here.
            lambda: (
                fetch_dbt_job(env.dbt_cloud_host, env.dbt_cloud_account_id, dbt_job_id, token)
                if token is not None
                else None
            ),
            lambda: resolve_workflow(ws, workflow_ref),
            lambda: prefetch_observed(reader, env, include_workflow=False),
        ]
    )
    dbt_job.get()
    job: dict[str, Any] = workflow.get() or {}
    job_id = int(job["job_id"])
    settings: dict[str, Any] = job.get("settings") or {}
    name = str(settings.get("name") or job_id)
    if (settings.get("tags") or {}).get(MANAGED_BY_TAG) == MANAGED_BY_VALUE:
        raise ConflictError(
            f"workflow {job_id} ({name!r}) is managed by dbtwf; `dbtwf apply` owns its tasks",
            "add the dbt job to the environment's dbt_jobs in dbtwf.toml and run `dbtwf apply`",
        )
    tasks_by_key = {t.get("task_key"): t for t in settings.get("tasks") or []}
    missing = [key for key in request.depends_on if key not in tasks_by_key]
    if missing:
        raise UnknownNameError(
            f"workflow {job_id} has no task {', '.join(map(repr, missing))} to depend on",
            "pass existing task keys to --depends-on (see the workflow's Tasks tab)",
        )
    if request.task_key is None and task_key not in tasks_by_key:
        running = task_running(settings, env, dbt_job_id)
        task_key = running if running and running not in request.depends_on else task_key

    notes: list[str] = []
    compute: dict[str, Any] = {}
    if env.uses_notebook:  # a dbt platform task takes no compute and no parameters
        compute, compute_note = choose_compute(
            settings,
            env,
            cluster_id=request.cluster_id,
            job_cluster_key=request.job_cluster_key,
            depends_on=request.depends_on,
        )
        if compute_note:
            notes.append(compute_note)
        notes.extend(job_parameter_collisions(settings, request.allowed_job_parameters))
        parameter_note = job_parameter_note(settings, dbt_job_id)
        if parameter_note:
            notes.append(parameter_note)
    elif token is None:
        notes.append("dbt job not checked against dbt Cloud (no token; a dbt platform task needs none)")
    desired = build_task(
        env, task_key=task_key, dbt_job_id=dbt_job_id, depends_on=request.depends_on, compute=compute
    )

    existing = tasks_by_key.get(task_key)
    if existing is None:
        action = "create"
    else:
        differences = task_differences(existing, desired)
        if not differences:
            action = "no-op"
        elif not request.replace:
            raise ConflictError(
                f"workflow {job_id} already has a task {task_key!r} with other settings "
                f"({', '.join(differences)})",
                "pass --replace to overwrite it, or --task-key to add another task",
            )
        else:
            action = "update"

    if action != "no-op" and is_bundle_managed(settings):
        warning = (
            f"workflow {job_id} ({name!r}) is deployed by a Databricks Asset Bundle: its next "
            f"`bundle deploy` will drop task {task_key!r}; add the task to the bundle to keep it"
        )
        if not confirm_bundle(warning):
            raise DbtwfError("add-task stopped; nothing was changed")

    planned = plan_add_task(
        ws, env, token, job, desired, dbt_job_id, action=action, overwritten=existing, reader=reader
    )
    if has_changes(planned) and writes_secret(planned) and token is not None:
        from provision.dbt_cloud import verify_token

        verify_token(env, token, verified=(dbt_job_id,))
    execute(ws, env, planned, token, break_lock=break_lock, warn=warn, planned_now=True)
    prerequisites = [c for c in planned if c.resource not in ("task", "state", NOTEBOOK_ACL) and c.writes]
    grants = [
        notebook_acl_principal(c.name, env.notebook_path)[1]
        for c in planned
        if c.resource == NOTEBOOK_ACL and c.writes
    ]
    if grants:
        notes.append(f"granted {', '.join(grants)} (the workflow runs as it) CAN_READ on {env.notebook_path}")
    return AddTaskResult(
        workflow_id=job_id,
        workflow_name=name,
        task_key=task_key,
        dbt_job_id=dbt_job_id,
        action=action,
        task=desired,
        notes=tuple(notes),
        prerequisites=tuple(prerequisites),
    )


def plan_add_task(
    ws: Workspace,
    env: Environment,
    token: str | None,
    job: dict[str, Any],
    task: dict[str, Any],
    dbt_job_id: int,
    *,
    action: str,
    overwritten: dict[str, Any] | None,
    reader: Reader | None = None,
) -> list[Change]:
    """The environment's scope, secret, folder and notebook as apply would make them (no
    workflow), the task, and the state record, each with what it expects to find. ``reader``:
    one that has already read some of it."""
    from provision.desired import desired_state
    from provision.observe import Reader, observe
    from provision.plan import plan
    from provision.probes import with_expectations

    reader = reader or Reader(ws)
    reader.remember_job(job)
    observed = observe(reader, env, include_workflow=False)
    prerequisites = [
        c for c in plan(desired_state(env, token), observed, include_workflow=False) if c.resource != "state"
    ]
    # The foreign workflow runs as its own identity (often its creator, not the deployer),
    # which must read the notebook in the deployer's home: CAN_READ, nothing more.
    for principal in readers_to_grant(ws.current_user_name(), observed.location, [job]):
        why = f"the workflow runs as {principal[1]}, who needs CAN_READ on the notebook"
        name_ = notebook_acl_name(env.notebook_path, principal)
        prerequisites.append(Change(NOTEBOOK_ACL, name_, Action.CREATE, why))
    job_id = int(job["job_id"])
    key = str(task["task_key"])
    name = (job.get("settings") or {}).get("name") or job_id
    payload: dict[str, Any] = {"op": "add", "task": task, "dbt_job_id": dbt_job_id}
    if action == "create":
        change = Change("task", key, Action.CREATE, f"added to workflow {job_id} {name!r}", job_id, payload)
    elif action == "update":
        # The user's task it overwrites is kept for destroy to put back (not dbtwf's own).
        mine = overwritten is not None and is_dbtwf_task(env, overwritten)
        payload = {**payload, "op": "replace", "overwritten": None if mine else overwritten}
        change = Change(
            "task", key, Action.UPDATE, f"replaces the task in workflow {job_id}", job_id, payload
        )
    else:
        change = Change("task", key, Action.NOOP, f"already in workflow {job_id}", job_id, payload)
    state = observed.state
    recorded = state is not None and any(
        (t.job_id, t.task_key, t.dbt_job_id) == (job_id, key, dbt_job_id) for t in state.added_tasks
    )
    changes = [*prerequisites, change]
    if state is None:
        changes.append(Change("state", env.state_path, Action.CREATE, "missing"))
    elif has_changes(changes) or not recorded:
        changes.append(Change("state", env.state_path, Action.UPDATE, "records the task"))
    else:
        changes.append(Change("state", env.state_path, Action.NOOP, "current"))
    return with_expectations(changes, reader, env)
