"""An attacker who can edit the state record (it lives in a workspace folder) points dbtwf at
what is not dbtwf's: a foreign workflow, a colleague's task, a scope full of other secrets.
destroy and apply check every entry against the workspace and refuse to delete or overwrite
what dbtwf did not write. Real HTTP against the Databricks emulator."""

from __future__ import annotations

import json
from typing import Any

import pytest

from provision.add_task import AddTaskRequest, add_task
from provision.apply import apply_changes
from provision.change import Action
from provision.databricks import Workspace
from provision.destroy import destroy_changes, plan_destroy
from provision.errors import RemoteError
from provision.model import DbtJobTask, Environment
from provision.plan import plan_environment
from provision.state import new_salt, token_fingerprint
from tests.conftest import DBT_CLOUD_TOKEN
from tests.provision_helpers import make_env

DBT_JOB = 42
THEIR_NOTEBOOK = {"notebook_path": "/Users/colleague/payroll"}


@pytest.fixture
def env(dbt_cloud: Any) -> Environment:
    dbt_cloud.add_job(DBT_JOB)
    return make_env(dbt_host=dbt_cloud.url, dbt_jobs=(DbtJobTask("nightly", DBT_JOB),))


def applied(ws: Workspace, env: Environment) -> None:
    apply_changes(ws, env, plan_environment(ws, env, DBT_CLOUD_TOKEN), DBT_CLOUD_TOKEN)


def their_job(ws: Workspace) -> int:
    return ws.create_job({"name": "Payroll", "tasks": [{"task_key": "pay", "notebook_task": THEIR_NOTEBOOK}]})


def tamper(databricks: Any, ws: Workspace, env: Environment, **fields: Any) -> None:
    record = json.loads(databricks.workspace_file(env.state_path) or b"{}")
    record.update(fields)
    ws.write_file(env.state_path, json.dumps(record).encode(), overwrite=True)


def test_a_record_pointing_at_a_foreign_workflow_does_not_delete_it(
    databricks: Any, ws: Workspace, env: Environment
) -> None:
    applied(ws, env)
    theirs = their_job(ws)
    tamper(databricks, ws, env, workflow_job_id=theirs)

    changes = plan_destroy(ws, env)
    left = [c for c in changes if c.resource == "workflow" and c.job_id == theirs]
    assert [c.action for c in left] == [Action.NOOP] and "does not carry dbtwf's tags" in left[0].reason
    destroy_changes(ws, env, changes)

    assert list(databricks.jobs) == [theirs]  # dbtwf's own workflow (found by tags) went, theirs stayed


def test_apply_never_resets_a_foreign_workflow_named_in_the_record(
    databricks: Any, ws: Workspace, env: Environment
) -> None:
    applied(ws, env)
    theirs = their_job(ws)
    before = databricks.jobs[theirs]["settings"]
    tamper(databricks, ws, env, workflow_job_id=theirs)
    applied(ws, env)
    assert databricks.jobs[theirs]["settings"] == before


def test_a_record_naming_a_colleagues_task_does_not_remove_it(
    databricks: Any, ws: Workspace, env: Environment
) -> None:
    applied(ws, env)
    theirs = their_job(ws)
    entry = {"job_id": theirs, "task_key": "pay", "dbt_job_id": DBT_JOB, "replaced": None}
    tamper(databricks, ws, env, added_tasks=[entry])

    (task,) = [c for c in plan_destroy(ws, env) if c.resource == "task"]
    assert task.action is Action.NOOP and "left alone" in task.reason
    destroy_changes(ws, env, plan_destroy(ws, env))
    assert [t["task_key"] for t in databricks.jobs[theirs]["settings"]["tasks"]] == ["pay"]


def test_a_record_cannot_make_destroy_write_another_task_into_a_workflow(
    databricks: Any, ws: Workspace, env: Environment
) -> None:
    theirs = their_job(ws)
    add_task(
        ws, env, AddTaskRequest(str(theirs), str(DBT_JOB)), DBT_CLOUD_TOKEN, confirm_bundle=lambda _: True
    )
    record = json.loads(databricks.workspace_file(env.state_path) or b"{}")
    evil = {"task_key": "pay", "notebook_task": {"notebook_path": "/Users/attacker/steal"}}
    record["added_tasks"][0]["replaced"] = evil  # another key: it would overwrite the colleague's
    ws.write_file(env.state_path, json.dumps(record).encode(), overwrite=True)

    destroy_changes(ws, env, plan_destroy(ws, env))

    tasks = {t["task_key"]: t for t in databricks.jobs[theirs]["settings"]["tasks"]}
    assert sorted(tasks) == ["pay"]  # dbtwf's task removed, nothing written in its place
    assert tasks["pay"]["notebook_task"]["notebook_path"] == THEIR_NOTEBOOK["notebook_path"]


def test_a_record_claiming_a_scope_full_of_other_secrets_keeps_them(
    databricks: Any, ws: Workspace, env: Environment
) -> None:
    ws.create_scope(env.secret_scope)
    ws.put_secret(env.secret_scope, "warehouse-password", "keep me")
    applied(ws, env)
    tamper(databricks, ws, env, scope_created=True)
    destroy_changes(ws, env, plan_destroy(ws, env))
    assert databricks.secret_value(env.secret_scope, "warehouse-password") == "keep me"
    assert databricks.secret_value(env.secret_scope, env.secret_key) is None


def test_a_secret_stored_between_destroys_plan_and_run_keeps_the_scope(
    databricks: Any, ws: Workspace, env: Environment
) -> None:
    from provision.errors import ConflictError

    applied(ws, env)
    changes = plan_destroy(ws, env)
    assert any(c.resource == "scope" and c.action is Action.DELETE for c in changes)
    ws.put_secret(env.secret_scope, "added-meanwhile", "keep me")
    with pytest.raises(ConflictError, match=f"scope {env.secret_scope} was changed"):
        destroy_changes(ws, env, changes)
    assert databricks.secret_value(env.secret_scope, "added-meanwhile") == "keep me"


def test_a_task_marked_for_another_environment_is_not_this_ones(
    databricks: Any, ws: Workspace, env: Environment, dbt_cloud: Any
) -> None:
    theirs = their_job(ws)
    prod = make_env("prod", dbt_host=dbt_cloud.url, dbt_jobs=(DbtJobTask("nightly", DBT_JOB),))
    add_task(
        ws, prod, AddTaskRequest(str(theirs), str(DBT_JOB)), DBT_CLOUD_TOKEN, confirm_bundle=lambda _: True
    )
    applied(ws, env)
    assert not [c for c in plan_destroy(ws, env) if c.resource == "task"]


def test_a_record_from_a_newer_dbtwf_is_refused_before_anything_is_written(
    databricks: Any, ws: Workspace, env: Environment
) -> None:
    applied(ws, env)
    tamper(databricks, ws, env, version=99, workflow_job_id=None)
    databricks.reset_log()
    with pytest.raises(RemoteError, match="newer dbtwf"):
        plan_destroy(ws, env)
    with pytest.raises(RemoteError, match="newer dbtwf"):
        plan_environment(ws, env, DBT_CLOUD_TOKEN)
    assert databricks.writes() == []


def test_fingerprint_is_salted_and_hides_the_token() -> None:
    salt = new_salt()
    fingerprint = token_fingerprint(DBT_CLOUD_TOKEN, salt)
    assert fingerprint == token_fingerprint(DBT_CLOUD_TOKEN, salt)
    assert fingerprint != token_fingerprint(DBT_CLOUD_TOKEN, new_salt())
    assert fingerprint != token_fingerprint(DBT_CLOUD_TOKEN + "x", salt)
    assert len(fingerprint) == 64 and DBT_CLOUD_TOKEN not in fingerprint
