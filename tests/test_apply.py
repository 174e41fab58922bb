"""apply against the Databricks emulator over real HTTP: request counts, updates in place,
ownership (new / exists / stale), the lock, and a create whose answer was lost."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from provision.apply import apply_changes
from provision.databricks import Workspace
from provision.errors import ConflictError
from provision.model import DbtJobTask, Environment, Schedule
from provision.plan import Action, plan_environment
from provision.state import environment_lock, load_state, lock_path
from tests.provision_helpers import make_env, make_workspace, write_kinds

TOKEN = "dbtc_apply_test_token_1234"


@pytest.fixture
def ws(databricks: Any) -> Workspace:
    return make_workspace(databricks)


def converge(ws: Workspace, env: Environment, token: str = TOKEN, **options: Any) -> list[Any]:
    changes = plan_environment(ws, env, token, adopt=options.get("adopt", False))
    return apply_changes(ws, env, changes, token, **options)


def owned_jobs(databricks: Any, env: Environment) -> list[int]:
    return [
        job_id
        for job_id, job in databricks.jobs.items()
        if (job["settings"].get("tags") or {}).get("dbtwf-env") == env.name
    ]


def test_fresh_apply_writes_at_most_eight_and_a_second_apply_none(databricks: Any, ws: Workspace) -> None:
    env = make_env()
    with databricks.recording() as fresh:
        converge(ws, env)
    # The five resources, plus the state record and the lock's create and delete.
    assert write_kinds(fresh) == [
        "POST /api/2.0/workspace/mkdirs",  # folder (made before the lock, which lives in it)
        "POST /api/2.0/workspace/import",  # lock
        "POST /api/2.0/secrets/scopes/create",
        "POST /api/2.0/secrets/put",
        "POST /api/2.0/workspace/import",  # notebook
        "POST /api/2.2/jobs/create",
        "POST /api/2.0/workspace/import",  # state record
        "POST /api/2.0/workspace/delete",  # lock released
    ]
    assert databricks.secret_value(env.secret_scope, env.secret_key) == TOKEN
    assert len(owned_jobs(databricks, env)) == 1
    assert databricks.workspace_file(lock_path(env)) is None

    with databricks.recording() as second:
        changes = converge(ws, env)
    assert write_kinds(second) == []
    assert {c.action for c in changes} == {Action.NOOP}


def test_workflow_settings_as_created(databricks: Any, ws: Workspace) -> None:
    env = make_env(
        dbt_jobs=(DbtJobTask("a", 1), DbtJobTask("b", 2, ("a",))), schedule=Schedule("0 0 6 * * ?")
    )
    converge(ws, env)
    (job,) = databricks.jobs.values()
    settings = job["settings"]
    assert settings["tags"] == {"managed-by": "dbtwf", "dbtwf-env": "dev"}
    assert not settings.get("parameters")
    assert [t["notebook_task"]["base_parameters"] for t in settings["tasks"]] == [
        {"job_id": "1"},
        {"job_id": "2"},
    ]
    assert settings["schedule"]["quartz_cron_expression"] == "0 0 6 * * ?"


def resource_writes(requests: list[Any], env: Environment) -> list[str]:
    """The writes to the environment's resources, "METHOD path [target]", the lock and the state
    record left out: a workspace/import names the file it writes, so the notebook's is told apart."""
    bookkeeping = {lock_path(env), env.state_path}
    writes = []
    for request in requests:
        if not request.is_write:
            continue
        target = request.json().get("path") if "/workspace/" in request.path else None
        if target in bookkeeping:
            continue
        writes.append(f"{request.method} {request.path}" + (f" {target}" if target else ""))
    return writes


NOTEBOOK_IMPORT = "POST /api/2.0/workspace/import /Shared/dbtwf/dev/run_dbt_cloud_job"


@pytest.mark.parametrize(
    ("change", "expected_writes"),
    [
        ({"schedule": Schedule("0 30 7 * * ?", "Europe/Berlin")}, ["POST /api/2.2/jobs/reset"]),
        (
            {"dbt_jobs": (DbtJobTask("nightly", 42), DbtJobTask("marts", 43))},
            ["POST /api/2.2/jobs/reset"],
        ),
        # The timeout is baked into the notebook's widget and set on the workflow's tasks.
        ({"run_timeout_seconds": 120}, [NOTEBOOK_IMPORT, "POST /api/2.2/jobs/reset"]),
    ],
)
def test_changed_settings_update_in_place(
    databricks: Any, ws: Workspace, change: dict[str, Any], expected_writes: list[str]
) -> None:
    env = make_env()
    converge(ws, env)
    (job_id,) = owned_jobs(databricks, env)
    with databricks.recording() as update:
        converge(ws, replace(env, **change))
    assert resource_writes(update, env) == expected_writes
    assert owned_jobs(databricks, env) == [job_id]
    with databricks.recording() as again:
        converge(ws, replace(env, **change))
    assert write_kinds(again) == []


def test_reset_keeps_fields_dbtwf_does_not_manage(databricks: Any, ws: Workspace) -> None:
    env = make_env()
    converge(ws, env)
    (job_id,) = owned_jobs(databricks, env)
    tags = {**databricks.jobs[job_id]["settings"]["tags"], "team": "data"}
    ws.update_job(job_id, {"description": "kept", "tags": tags})
    converge(ws, replace(env, schedule=Schedule("0 0 6 * * ?")))
    settings = databricks.jobs[job_id]["settings"]
    assert settings["description"] == "kept"
    assert settings["tags"]["team"] == "data"


def test_changed_token_is_put_again_once(databricks: Any, ws: Workspace) -> None:
    env = make_env()
    converge(ws, env)
    with databricks.recording() as update:
        converge(ws, env, token="dbtc_rotated_token_5678")
    kinds = write_kinds(update)
    assert kinds.count("POST /api/2.0/secrets/put") == 1
    assert "POST /api/2.2/jobs/create" not in kinds
    assert databricks.secret_value(env.secret_scope, env.secret_key) == "dbtc_rotated_token_5678"
    state = load_state(ws, env)
    assert state is not None and "rotated" not in json.dumps(state.__dict__, default=str)


def test_hand_edited_notebook_is_overwritten(databricks: Any, ws: Workspace) -> None:
    env = make_env()
    converge(ws, env)
    ws.import_notebook(env.notebook_path, "# Databricks notebook source\nprint('edited')\n", overwrite=True)
    with databricks.recording() as update:
        changes = converge(ws, env)
    assert next(c for c in changes if c.resource == "notebook").action is Action.UPDATE
    assert write_kinds(update).count("POST /api/2.0/workspace/import") == 3  # lock, notebook, state


def test_stale_job_deleted_by_hand_is_created_again(databricks: Any, ws: Workspace) -> None:
    env = make_env()
    converge(ws, env)
    (old,) = owned_jobs(databricks, env)
    ws.delete_job(old)
    changes = converge(ws, env)
    workflow = next(c for c in changes if c.resource == "workflow")
    assert workflow.action is Action.CREATE and str(old) in workflow.reason
    (new,) = owned_jobs(databricks, env)
    state = load_state(ws, env)
    assert state is not None and state.workflow_job_id == new != old


def test_lost_state_finds_the_workflow_by_its_tags(databricks: Any, ws: Workspace) -> None:
    env = make_env()
    converge(ws, env)
    (job_id,) = owned_jobs(databricks, env)
    ws.delete(env.state_path)
    with databricks.recording() as again:
        changes = converge(ws, env)
    assert "POST /api/2.2/jobs/create" not in write_kinds(again)
    assert next(c for c in changes if c.resource == "workflow").reason.startswith("found by its tags")
    state = load_state(ws, env)
    assert state is not None and state.workflow_job_id == job_id
    # The scope existed before this state record: it is not claimed as dbtwf's to delete.
    assert state.scope_created is False


def test_same_named_foreign_job_is_never_touched_without_adopt(databricks: Any, ws: Workspace) -> None:
    env = make_env()
    foreign = ws.create_job({"name": env.workflow_name, "tasks": []})
    with pytest.raises(ConflictError, match=str(foreign)):
        plan_environment(ws, env, TOKEN)
    converge(ws, env, adopt=True)
    assert databricks.jobs[foreign]["settings"]["tags"]["managed-by"] == "dbtwf"
    assert len(databricks.jobs) == 1


def test_create_whose_answer_is_lost_leaves_exactly_one_workflow(databricks: Any, ws: Workspace) -> None:
    env = make_env()
    databricks.faults.inject("drop_after_write", path=r"/api/2\.2/jobs/create", method="POST")
    with databricks.recording() as requests:
        converge(ws, env)
    # The SDK re-sent the create after the dropped connection: two landed, the extra was removed.
    assert write_kinds(requests).count("POST /api/2.2/jobs/create") == 2
    assert "POST /api/2.2/jobs/delete" in write_kinds(requests)
    assert len(owned_jobs(databricks, env)) == 1
    state = load_state(ws, env)
    assert state is not None and state.workflow_job_id == owned_jobs(databricks, env)[0]


def test_a_held_lock_stops_apply_and_can_be_broken(databricks: Any, ws: Workspace) -> None:
    env = make_env()
    ws.mkdirs(env.notebook_folder)
    with environment_lock(ws, env), pytest.raises(ConflictError) as raised:
        converge(ws, env)
    assert raised.value.hint and "--break-lock" in raised.value.hint
    assert databricks.secret_value(env.secret_scope, env.secret_key) is None

    ws.write_file(lock_path(env), b'{"holder": "crashed", "acquired_at": 0}', overwrite=False)
    with pytest.raises(ConflictError, match="crashed"):
        converge(ws, env)
    converge(ws, env, break_lock=True)
    assert databricks.secret_value(env.secret_scope, env.secret_key) == TOKEN
    assert databricks.workspace_file(lock_path(env)) is None


def test_non_premium_workspace_gets_a_users_managed_scope(databricks: Any, ws: Workspace) -> None:
    databricks.premium_tier = False
    env = make_env()
    converge(ws, env)
    assert {a["principal"]: a["permission"] for a in ws.list_acls(env.secret_scope)}["users"] == "MANAGE"


def test_scope_readers_get_read(databricks: Any, ws: Workspace) -> None:
    env = make_env(scope_readers=("analysts",))
    converge(ws, env)
    assert {a["principal"]: a["permission"] for a in ws.list_acls(env.secret_scope)}["analysts"] == "READ"
    with databricks.recording() as again:
        converge(ws, env)
    assert write_kinds(again) == []
