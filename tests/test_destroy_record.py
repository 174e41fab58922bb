"""destroy and the state record over real HTTP: ownership written as it is created, tasks found
again without the record, and every record entry checked against the workspace first
(tests/test_destroy.py has destroy's other cases)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from provision.add_task import AddTaskRequest, add_task
from provision.apply import apply_changes
from provision.change import Action
from provision.config import load_config, select_environment
from provision.databricks import Workspace
from provision.desired import is_owned
from provision.destroy import destroy_changes, plan_destroy
from provision.model import DbtJobTask, Environment
from provision.plan import plan_environment
from provision.state import load_state, lock_path
from tests.conftest import DBT_CLOUD_TOKEN
from tests.provision_helpers import cli_env, make_env, make_workspace, write_config

ROOT = Path(__file__).resolve().parents[1]
DBT_JOB = 42


@pytest.fixture
def env(dbt_cloud: Any) -> Environment:
    dbt_cloud.add_job(DBT_JOB)
    return make_env(dbt_host=dbt_cloud.url, dbt_jobs=(DbtJobTask("nightly", DBT_JOB),))


def foreign_job(ws: Workspace) -> int:
    notebook = {"notebook_path": "/Users/someone/etl"}
    return ws.create_job(
        {
            "name": "Nightly ETL",
            "tasks": [
                {"task_key": "ingest", "notebook_task": notebook},
                {"task_key": "report", "notebook_task": notebook},
            ],
        }
    )


def added(ws: Workspace, env: Environment, job_id: int, **request: Any) -> str:
    result = add_task(
        ws,
        env,
        AddTaskRequest(workflow=str(job_id), dbt_job=str(DBT_JOB), **request),
        DBT_CLOUD_TOKEN,
        confirm_bundle=lambda _: True,
    )
    return result.task_key


def task_keys(databricks: Any, job_id: int) -> list[str]:
    return [t["task_key"] for t in databricks.jobs[job_id]["settings"]["tasks"]]


def destroy(ws: Workspace, env: Environment) -> list[Any]:
    return destroy_changes(ws, env, plan_destroy(ws, env))


def test_add_task_marks_its_task(databricks: Any, ws: Workspace, env: Environment) -> None:
    job_id = foreign_job(ws)
    key = added(ws, env, job_id)
    task = next(t for t in databricks.jobs[job_id]["settings"]["tasks"] if t["task_key"] == key)
    assert task["description"] == f"Runs dbt Cloud job {DBT_JOB}. Added by dbtwf for environment 'dev'."
    record = load_state(ws, env)
    assert record is not None and record.added_tasks[0].written is not None


def test_a_lost_record_still_lets_destroy_remove_the_added_tasks(
    databricks: Any, ws: Workspace, env: Environment
) -> None:
    job_id = foreign_job(ws)
    key = added(ws, env, job_id)
    ws.delete(env.state_path)  # lost: deleted by hand, or never written by a killed run

    changes = plan_destroy(ws, env)
    (task,) = [c for c in changes if c.resource == "task"]
    assert (task.name, task.action, task.job_id) == (key, Action.DELETE, job_id)
    assert "found by its mark" in task.reason
    destroy_changes(ws, env, changes)

    assert task_keys(databricks, job_id) == ["ingest", "report"]
    assert ws.get_status(env.notebook_path) is None


def test_a_task_edited_after_add_task_is_reported_not_removed(
    databricks: Any, ws: Workspace, env: Environment
) -> None:
    job_id = foreign_job(ws)
    key = added(ws, env, job_id)
    edited = next(t for t in databricks.jobs[job_id]["settings"]["tasks"] if t["task_key"] == key)
    edited["notebook_task"] = {**edited["notebook_task"], "notebook_path": "/Users/someone/their_own"}
    ws.update_job(job_id, {"tasks": [edited]})

    changes = plan_destroy(ws, env)
    (task,) = [c for c in changes if c.resource == "task"]
    assert task.action is Action.NOOP
    assert "changed since dbtwf wrote it (notebook_task.notebook_path)" in task.reason
    destroy_changes(ws, env, changes)
    assert key in task_keys(databricks, job_id)


def test_a_replaced_task_is_put_back_only_while_dbtwfs_task_is_intact(
    databricks: Any, ws: Workspace, env: Environment
) -> None:
    job_id = foreign_job(ws)
    added(ws, env, job_id, task_key="report", replace=True)
    mine = next(t for t in databricks.jobs[job_id]["settings"]["tasks"] if t["task_key"] == "report")
    ws.update_job(job_id, {"tasks": [{**mine, "timeout_seconds": 5}]})  # someone tuned it since

    (task,) = [c for c in plan_destroy(ws, env) if c.resource == "task"]
    assert task.action is Action.NOOP and "timeout_seconds" in task.reason
    destroy(ws, env)
    after = next(t for t in databricks.jobs[job_id]["settings"]["tasks"] if t["task_key"] == "report")
    assert after["timeout_seconds"] == 5  # neither removed nor overwritten with the old one


def test_destroy_refuses_when_the_workflow_changed_after_its_plan(
    databricks: Any, ws: Workspace, env: Environment
) -> None:
    from provision.errors import ConflictError

    job_id = foreign_job(ws)
    key = added(ws, env, job_id)
    changes = plan_destroy(ws, env)
    ws.update_job(job_id, {"max_concurrent_runs": 4})
    databricks.reset_log()
    with pytest.raises(ConflictError, match="changed since the plan"):
        destroy_changes(ws, env, changes)
    assert [f"{r.method} {r.path}" for r in databricks.writes()] == [
        "POST /api/2.0/workspace/import",
        "POST /api/2.0/workspace/delete",
    ]
    assert key in task_keys(databricks, job_id)


def test_a_scope_created_by_a_run_killed_right_after_is_recorded_and_destroyed(
    tmp_path: Path, databricks: Any, dbt_cloud: Any
) -> None:
    dbt_cloud.add_job(DBT_JOB)
    write_config(tmp_path / "dbtwf.toml", dbt_cloud.url, {"dev": {"nightly": DBT_JOB}})
    process: list[subprocess.Popen[bytes]] = []
    original = databricks.record

    def record(entry: Any) -> None:  # SIGKILL the apply as scopes/create is answered
        original(entry)
        if entry.is_write and entry.path.endswith("/secrets/scopes/create") and process:
            os.kill(process[0].pid, signal.SIGKILL)
            process[0].wait()

    databricks.record = record
    try:
        process.append(
            subprocess.Popen(
                [sys.executable, "-c", "from provision.cli import main; main()", "apply", "--yes"],
                cwd=ROOT,
                env={**os.environ, **cli_env(tmp_path, databricks.url)},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        assert process[0].wait(timeout=60) == -signal.SIGKILL
    finally:
        del databricks.record
    ws = make_workspace(databricks)
    env = select_environment(load_config(tmp_path / "dbtwf.toml"), "dev").resolved(databricks.user_name)
    assert env.secret_scope in {s["name"] for s in ws.list_scopes()}
    record = load_state(ws, env)
    assert record is not None and record.scope_created is True

    ws.delete(lock_path(env))  # what --break-lock does
    changes = plan_destroy(ws, env)
    # The notebook and the workflow go out beside the scope (apply sends independent writes
    # together), so they may exist too: destroy removes what there is, the scope included.
    # The record saved before scopes/create already names the folders apply made: they go last.
    planned = [(c.resource, c.action) for c in changes]
    folders = [c.name for c in changes if c.resource == "folder"]
    assert folders and folders[0] == env.notebook_folder
    assert planned[-2 - len(folders) :] == [("scope", Action.DELETE), ("state", Action.DELETE)] + [
        ("folder", Action.DELETE)
    ] * len(folders)
    assert {resource for resource, _ in planned} <= {"workflow", "notebook", "scope", "state", "folder"}
    destroy_changes(ws, env, changes)
    assert ws.list_scopes() == []
    assert ws.get_status(env.notebook_folder) is None
    assert not [j for j in databricks.jobs.values() if is_owned(j, env)]


def test_apply_found_by_tags_keeps_the_scope_someone_else_made(
    databricks: Any, ws: Workspace, env: Environment
) -> None:
    ws.create_scope(env.secret_scope)
    apply_changes(ws, env, plan_environment(ws, env, DBT_CLOUD_TOKEN), DBT_CLOUD_TOKEN)
    record = load_state(ws, env)
    assert record is not None and record.scope_created is False
    destroy(ws, env)
    assert [s["name"] for s in ws.list_scopes()] == [env.secret_scope]
