"""`dbtwf migrate --to dbt_platform|notebook`: switch an environment's tasks to the other backend.

One plan, confirmed once and carried out by the one executor (``provision.apply.execute``):

- the owned workflow as apply makes it for the other backend (a jobs/reset that keeps every
  field dbtwf does not manage): task keys, dependencies and dbt job ids stay, the notebook
  task becomes a dbt platform task or back;
- going back to the notebook, the scope, secret and notebook as apply makes them (the token is
  needed then); going to dbt_platform, those are left in place, unused, until `dbtwf destroy`;
- each task dbtwf added to a workflow it does not own (the state record's ``added_tasks``):
  one jobs/update per such workflow holding only its switched task(s) (the Jobs API merges
  `tasks` by task_key), each keeping every field the user set (description, retries,
  notifications, run_if, ...): only the backend field, its timeout and its compute change;
- the state record (the new task as written), then ``task_type`` (and the connection) in
  dbtwf.toml through the config writer, so the next `plan` is a no-op.

A migrate to the backend the environment already uses is refused (exit 2, nothing read).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provision.change import Action, Change, has_changes
from provision.errors import UsageError
from provision.model import DBT_PLATFORM, TASK_TYPES, Environment
from provision.platform import BACKEND_FIELDS, COMPUTE_FIELDS, validate_connection_name

if TYPE_CHECKING:
    from provision.databricks import Workspace
    from provision.flows import Interaction, Outcome

#: The executor's resource kind for the config file (carried out last, see apply.py).
CONFIG = "config"
#: The op of a task change that switches a recorded added task to the other backend.
SWITCH = "switch"


def target_environment(env: Environment, to: str, connection: str | None) -> Environment:
    """The environment as it is after the migrate; bad input (exit 2) before anything is read."""
    if to not in TASK_TYPES:
        raise UsageError(f"--to {to!r} is not a task type", f"pass --to {' or --to '.join(TASK_TYPES)}")
    if env.task_type == to:
        raise UsageError(
            f"environment {env.name!r} already uses task_type {to!r}; nothing to migrate",
            "`dbtwf plan` shows whether its workspace matches the config",
        )
    if to != DBT_PLATFORM:
        if connection is not None:
            raise UsageError("--connection only applies with --to dbt_platform", "drop --connection")
        return dataclasses.replace(env, task_type="notebook")
    connection = connection if connection is not None else env.dbt_platform_connection
    if connection is None:
        raise UsageError(
            f"environment {env.name!r} names no dbt_platform_connection",
            "pass --connection NAME (the Unity Catalog connection an admin made for dbt)",
        )
    validate_connection_name(connection, "--connection")
    return dataclasses.replace(env, task_type=DBT_PLATFORM, dbt_platform_connection=connection)


def config_values(env: Environment, target: Environment) -> dict[str, Any]:
    """What the config writer sets: the task type, and the connection when it is new."""
    values: dict[str, Any] = {"task_type": target.task_type}
    if target.dbt_platform_connection != env.dbt_platform_connection:
        values["dbt_platform_connection"] = target.dbt_platform_connection
    return values


def switched_task(
    task: dict[str, Any], target: Environment, dbt_job_id: int, settings: dict[str, Any]
) -> dict[str, Any]:
    """``task`` (as jobs/get gave it) running ``dbt_job_id`` on the target backend: every field
    the user set stays; the backend field, its timeout and the compute are the target's."""
    from provision.desired import runner_task
    from provision.foreign_task import choose_compute, job_parameter_collisions, job_parameter_note

    depends_on = tuple(str(d.get("task_key")) for d in task.get("depends_on") or [])
    runner = runner_task(target, str(task["task_key"]), dbt_job_id, depends_on)
    new = {k: v for k, v in task.items() if k not in BACKEND_FIELDS + COMPUTE_FIELDS}
    for name in (*BACKEND_FIELDS, "timeout_seconds"):
        if name in runner:
            new[name] = runner[name]
    if target.uses_notebook:
        job_parameter_note(settings, dbt_job_id)  # a job-level job_id naming another dbt job: refused
        try:  # a parameter named like a runner option did nothing to a dbt platform task
            job_parameter_collisions(settings)
        except UsageError as error:
            name = settings.get("name") or "a workflow"
            raise UsageError(
                f"workflow {name!r}: {error.message}; nothing was changed",
                "rename or remove them in that workflow's job parameters, then migrate again",
            ) from None
        compute, _note = choose_compute(
            settings, target, cluster_id=None, job_cluster_key=None, depends_on=depends_on
        )
        new.update(compute)
    return new


def plan_migrate(
    ws: Workspace, env: Environment, target: Environment, token: str | None, config_path: Path
) -> list[Change]:
    """The whole migrate as one plan (see the module docstring); each change stamped with what
    it expects to find, so the executor refuses when the workspace moved since."""
    from provision.config_writer import upsert_environment
    from provision.foreign_task import is_dbtwf_task
    from provision.location import NOTEBOOK_ACL, WARNING, notebook_acl_name, readers_to_grant
    from provision.observe import Reader
    from provision.plan import plan_environment
    from provision.probes import with_expectations

    # The config must still validate with the new values (exit 2 before any write).
    upsert_environment(config_path, env.name, config_values(env, target), write=False)
    reader = Reader(ws)  # one set of reads for the check, the environment's plan and the tasks
    if not target.uses_notebook and reader.connection(str(target.dbt_platform_connection)) is None:
        # Switching working tasks to a connection that is not there would fail every later run.
        from provision.platform import HOW_TO_CREATE

        raise UsageError(
            f"Unity Catalog connection {target.dbt_platform_connection!r} does not exist (or you may "
            "not see it); nothing was changed",
            f"dbtwf never creates it: {HOW_TO_CREATE}",
        )
    changes = plan_environment(ws, target, token, reader=reader)
    state_change = next(c for c in changes if c.resource == "state")
    changes = [c for c in changes if c.resource != "state"]

    state = reader.state(target)
    tasks: list[Change] = []
    foreign_jobs: list[dict[str, Any]] = []
    for entry in state.added_tasks if state is not None else []:
        job = reader.job(entry.job_id)
        settings: dict[str, Any] = (job or {}).get("settings") or {}
        found = next((t for t in settings.get("tasks") or [] if t.get("task_key") == entry.task_key), None)
        where = f"task {entry.task_key} of workflow {entry.job_id}"
        if job is None or found is None:
            gone = "workflow" if job is None else "task"
            tasks.append(Change(WARNING, where, Action.NOOP, f"{where}: the {gone} is gone; left as it is"))
            continue
        if entry.adopted:
            # The hand-made setup's own task, recorded by adopt as it was: it keeps running the
            # notebook, which stays (adopt's destroy gives it back).
            why = f"{where} was adopted as the hand-made setup had it: left running the notebook"
            tasks.append(Change(WARNING, where, Action.NOOP, why))
            continue
        if not (is_dbtwf_task(env, found) or is_dbtwf_task(target, found)):
            why = f"{where} no longer runs dbtwf's task (changed by hand); left as it is"
            tasks.append(Change(WARNING, where, Action.NOOP, why))
            continue
        new = switched_task(found, target, entry.dbt_job_id, settings)
        payload = {"op": SWITCH, "task": new, "dbt_job_id": entry.dbt_job_id}
        name = settings.get("name") or entry.job_id
        if all(found.get(k) == new.get(k) for k in BACKEND_FIELDS) and entry.written == new:
            tasks.append(
                Change(
                    "task", entry.task_key, Action.NOOP, f"already {target.task_type}", entry.job_id, payload
                )
            )
            continue
        why = f"switches to {target.task_type} in workflow {entry.job_id} {name!r}"
        tasks.append(Change("task", entry.task_key, Action.UPDATE, why, entry.job_id, payload))
        if job not in foreign_jobs:
            foreign_jobs.append(job)
    if target.uses_notebook and foreign_jobs:
        # A foreign workflow runs as its own identity, which must read the notebook.
        known = {c.name for c in changes}
        for principal in readers_to_grant(ws.current_user_name(), reader.location(target), foreign_jobs):
            acl = notebook_acl_name(target.notebook_path, principal)
            if acl not in known:
                why = f"a workflow runs as {principal[1]}, who needs CAN_READ on the notebook"
                tasks.append(Change(NOTEBOOK_ACL, acl, Action.CREATE, why))
    tasks = with_expectations(tasks, reader, target)

    changes += tasks
    if state_change.action is Action.NOOP and has_changes(changes):
        state_change = dataclasses.replace(
            state_change, action=Action.UPDATE, reason="records the switched tasks"
        )
    changes.append(state_change)
    values = config_values(env, target)
    said = ", ".join(f"{key} = {value!r}" for key, value in values.items())
    changes.append(
        Change(
            CONFIG,
            str(config_path),
            Action.UPDATE,
            f"[environments.{env.name}] {said}",
            None,
            {"environment": env.name, "values": values},
        )
    )
    return changes


def migrate_environment(
    ws: Workspace,
    env: Environment,
    target: Environment,
    token: str | None,
    ui: Interaction,
    *,
    config_path: Path,
    break_lock: bool,
) -> Outcome:
    """Plan, show, ask, and carry out exactly that with the one executor."""
    from provision.flows import carry_out, header_of

    header = header_of(ws, env)
    ui.show_header(header)
    changes = plan_migrate(ws, env, target, token, config_path)
    return carry_out(
        ws,
        target,
        changes,
        token,
        header,
        ui,
        break_lock=break_lock,
        replan=lambda: plan_migrate(ws, env, target, token, config_path),
        doing=(f"migrate environment {env.name!r} to {target.task_type}?", "migrated"),
    )
