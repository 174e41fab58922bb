"""apply against the Databricks emulator over real HTTP: request counts, updates in place,
ownership (new / exists / stale), the lock, and a create whose answer was lost."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from provision.apply import apply_changes
from provision.change import Action
from provision.databricks import Workspace
from provision.errors import ConflictError
from provision.model import DbtJobTask, Environment, Schedule
from provision.plan import plan_environment
from provision.state import STATE_VERSION, environment_lock, load_state, lock_path
from tests.provision_helpers import make_env, write_kinds, write_labels

TOKEN = "dbtc_apply_test_token_1234"


def converge(ws: Workspace, env: Environment, token: str = TOKEN, **options: Any) -> list[Any]:
    changes = plan_environment(ws, env, token, adopt=options.get("adopt", False))
    return apply_changes(ws, env, changes, token, **options)


def owned_jobs(databricks: Any, env: Environment) -> list[int]:
    return [
        job_id
        for job_id, job in databricks.jobs.items()
        if (job["settings"].get("tags") or {}).get("dbtwf-env") == env.name
    ]


def test_fresh_apply_writes_nine_and_a_second_apply_none(databricks: Any, ws: Workspace) -> None:
    env = make_env()
    with databricks.recording() as fresh:
        converge(ws, env)
    # The five resources, the lock's create and delete, and the state record twice: once
    # before scopes/create (dbtwf's ownership of the scope), once at the end.
    writes = write_labels(fresh)
    assert sorted(writes) == sorted(
        [
            "POST /api/2.0/workspace/mkdirs",
            "POST /api/2.0/workspace/import (lock)",
            "POST /api/2.0/workspace/import (state)",
            "POST /api/2.0/secrets/scopes/create",
            "POST /api/2.0/secrets/put",
            "POST /api/2.0/workspace/import (notebook)",
            "POST /api/2.2/jobs/create",
            "POST /api/2.0/workspace/import (state)",
            "POST /api/2.0/workspace/delete",
        ]
    )
    # The folder (the lock lives in it), then the lock before any other write; the record
    # says the scope is dbtwf's before it is created, the secret follows its scope (the
    # notebook and the workflow go beside them); the record is written last, then unlocked.
    assert writes[:2] == ["POST /api/2.0/workspace/mkdirs", "POST /api/2.0/workspace/import (lock)"]
    assert (
        writes.index("POST /api/2.0/workspace/import (state)")
        < writes.index("POST /api/2.0/secrets/scopes/create")
        < writes.index("POST /api/2.0/secrets/put")
    )
    assert writes[-2:] == ["POST /api/2.0/workspace/import (state)", "POST /api/2.0/workspace/delete"]
    assert databricks.secret_value(env.secret_scope, env.secret_key) == TOKEN
    assert len(owned_jobs(databricks, env)) == 1
    assert databricks.workspace_file(lock_path(env)) is None

    with databricks.recording() as second:
        changes = converge(ws, env)
    assert write_kinds(second) == []
    assert {c.action for c in changes} == {Action.NOOP}
    # Freshness comes from the record (sha256, object id, modified_at): no notebook export.
    exports = [r for r in second if r.path.endswith("/workspace/export")]
    assert [r.query.get("path") for r in exports] == [[env.state_path]]


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
    record left out: a workspace/import names the file it writes, so the notebook's is told apart.
    Sorted: independent writes go out together, in no fixed order."""
    bookkeeping = {lock_path(env), env.state_path}
    writes = []
    for request in requests:
        if not request.is_write:
            continue
        target = request.json().get("path") if "/workspace/" in request.path else None
        if target in bookkeeping:
            continue
        writes.append(f"{request.method} {request.path}" + (f" {target}" if target else ""))
    return sorted(writes)


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


# -- what is confirmed is what runs (issue 8 point 11) -----------------------------------------


#: The only writes of a refused execution: the lock taken and released.
LOCK_WRITES = ["POST /api/2.0/workspace/import", "POST /api/2.0/workspace/delete"]


def test_a_workspace_changed_after_the_plan_is_refused_and_nothing_written(
    databricks: Any, ws: Workspace
) -> None:
    env = make_env()
    converge(ws, env)
    (job_id,) = owned_jobs(databricks, env)
    wanted = replace(env, schedule=Schedule("0 0 6 * * ?"))
    confirmed = plan_environment(ws, wanted, TOKEN)
    assert next(c for c in confirmed if c.resource == "workflow").action is Action.UPDATE
    ws.update_job(job_id, {"max_concurrent_runs": 5})  # another client, between plan and apply
    databricks.reset_log()

    with pytest.raises(ConflictError, match="changed since the plan") as raised:
        apply_changes(ws, wanted, confirmed, TOKEN)

    assert f"job {job_id}" in raised.value.message and "plan" in (raised.value.hint or "")
    assert write_kinds(databricks.requests) == LOCK_WRITES
    assert databricks.jobs[job_id]["settings"]["max_concurrent_runs"] == 5
    assert "schedule" not in databricks.jobs[job_id]["settings"]


def test_each_change_carries_what_it_runs(databricks: Any, ws: Workspace) -> None:
    env = make_env()
    converge(ws, env)
    (job_id,) = owned_jobs(databricks, env)
    confirmed = plan_environment(ws, replace(env, schedule=Schedule("0 0 6 * * ?")), TOKEN)
    workflow = next(c for c in confirmed if c.resource == "workflow")
    sent = workflow.payload["settings"]
    assert sent["schedule"]["quartz_cron_expression"] == "0 0 6 * * ?"
    with databricks.recording() as requests:
        # Executed against the config as it was: the change's own settings are what is sent.
        apply_changes(ws, env, confirmed, TOKEN)
    (reset,) = [r for r in requests if r.path.endswith("/jobs/reset")]
    assert reset.json() == {"job_id": job_id, "new_settings": sent}


def test_a_hand_edited_notebook_after_the_plan_is_refused(databricks: Any, ws: Workspace) -> None:
    env = make_env()
    converge(ws, env)
    confirmed = plan_environment(ws, replace(env, run_timeout_seconds=60), TOKEN)
    ws.import_notebook(env.notebook_path, "# Databricks notebook source\nprint('mine')\n", overwrite=True)
    databricks.reset_log()
    with pytest.raises(ConflictError, match=f"notebook {env.notebook_path} was changed"):
        apply_changes(ws, replace(env, run_timeout_seconds=60), confirmed, TOKEN)
    assert write_kinds(databricks.requests) == LOCK_WRITES


def test_a_fresh_plan_overtaken_writes_nothing_at_all(databricks: Any, ws: Workspace) -> None:
    env = make_env()
    confirmed = plan_environment(ws, env, TOKEN)  # folder missing: it would be made first
    ws.create_scope(env.secret_scope)  # someone else, meanwhile
    databricks.reset_log()
    with pytest.raises(ConflictError, match=f"scope {env.secret_scope} was created"):
        apply_changes(ws, env, confirmed, TOKEN)
    assert databricks.writes() == []  # not even the folder


def test_a_plan_another_run_carried_out_meanwhile_ends_quietly(databricks: Any, ws: Workspace) -> None:
    env = make_env()
    confirmed = plan_environment(ws, env, TOKEN)
    converge(ws, env)  # the other run
    databricks.reset_log()
    done = apply_changes(ws, env, confirmed, TOKEN)
    assert {c.action for c in done} == {Action.NOOP}
    # The folder exists (the other run made it), so the comparison is made under the lock.
    assert write_kinds(databricks.requests) == LOCK_WRITES
    assert len(owned_jobs(databricks, env)) == 1


def test_a_token_other_than_the_planned_one_is_refused(databricks: Any, ws: Workspace) -> None:
    env = make_env()
    confirmed = plan_environment(ws, env, TOKEN)
    with pytest.raises(ConflictError, match="not the one the plan was made with"):
        apply_changes(ws, env, confirmed, "dbtc_another_token_0000")
    assert databricks.writes() == []


# -- the state record (issue 8 point 10) ------------------------------------------------------


def test_secret_overwritten_outside_dbtwf_is_drift_and_apply_stores_the_token_again(
    databricks: Any, ws: Workspace
) -> None:
    env = make_env()
    converge(ws, env)
    ws.put_secret(env.secret_scope, env.secret_key, "someone else's value")
    databricks.reset_log()

    changes = plan_environment(ws, env, TOKEN)
    secret = next(c for c in changes if c.resource == "secret")
    assert secret.action is Action.UPDATE and "overwritten outside dbtwf" in secret.reason
    without_token = next(c for c in plan_environment(ws, env, None) if c.resource == "secret")
    assert without_token.action is Action.UPDATE and "needs the token" in without_token.reason
    assert not [r for r in databricks.requests if r.path.endswith("/secrets/get")]  # value never read

    apply_changes(ws, env, changes, TOKEN)
    assert databricks.secret_value(env.secret_scope, env.secret_key) == TOKEN
    with databricks.recording() as again:
        converge(ws, env)
    assert write_kinds(again) == []


def test_a_version_1_record_loads_and_a_newer_one_is_refused(databricks: Any, ws: Workspace) -> None:
    from provision.errors import RemoteError

    env = make_env()
    converge(ws, env)
    record = json.loads(databricks.workspace_file(env.state_path) or b"{}")
    old = {
        key: record[key]
        for key in ("environment", "workflow_job_id", "scope_created", "token_salt", "token_fingerprint")
    }
    ws.write_file(env.state_path, json.dumps({**old, "version": 1, "notebook_sha256": ""}).encode(), True)
    loaded = load_state(ws, env)
    assert (
        loaded is not None
        and loaded.version == STATE_VERSION
        and loaded.workflow_job_id == record["workflow_job_id"]
    )
    assert loaded.scope_created is True and loaded.secret_updated_at is None

    ws.write_file(env.state_path, json.dumps({**record, "version": STATE_VERSION + 1}).encode(), True)
    with pytest.raises(RemoteError, match="newer dbtwf") as raised:
        plan_environment(ws, env, TOKEN)
    assert raised.value.hint and "upgrade" in raised.value.hint


# -- notebook freshness from the record (issue 9 point 6) -----------------------------------


def test_an_older_record_exports_once_then_records_the_notebook(databricks: Any, ws: Workspace) -> None:
    env = make_env()
    converge(ws, env)
    record = json.loads(databricks.workspace_file(env.state_path) or b"{}")
    record.update(notebook_object_id=None, notebook_modified_at=None)
    ws.write_file(env.state_path, json.dumps(record).encode(), overwrite=True)

    with databricks.recording() as first:
        changes = converge(ws, env)
    notebook = next(c for c in changes if c.resource == "notebook")
    assert notebook.action is Action.NOOP and "export" in notebook.reason
    assert any(r.query.get("path") == [env.notebook_path] for r in first if r.path.endswith("/export"))
    # Only the record is written (under the lock): no notebook upload.
    assert write_kinds(first) == [
        "POST /api/2.0/workspace/import",
        "POST /api/2.0/workspace/import",
        "POST /api/2.0/workspace/delete",
    ]
    with databricks.recording() as second:
        assert not [c for c in converge(ws, env) if c.action is not Action.NOOP]
    assert not [r for r in second if r.query.get("path") == [env.notebook_path] and "export" in r.path]
    assert write_kinds(second) == []


def test_a_notebook_edited_in_the_workspace_is_seen_without_exporting_it(
    databricks: Any, ws: Workspace
) -> None:
    env = make_env()
    converge(ws, env)
    ws.import_notebook(env.notebook_path, "# Databricks notebook source\nprint('edited')\n", overwrite=True)
    with databricks.recording() as requests:
        changes = plan_environment(ws, env, TOKEN)
    notebook = next(c for c in changes if c.resource == "notebook")
    assert notebook.action is Action.UPDATE and "changed in the workspace" in notebook.reason
    assert not [r for r in requests if r.path.endswith("/workspace/export") and "run_dbt" in str(r.query)]


# -- the lock (issue 8 point 13) --------------------------------------------------------------

NOW = 1_800_000_000.0


def hold_lock(ws: Workspace, env: Environment, age: float) -> None:
    ws.mkdirs(env.notebook_folder)
    body = {"holder": "ci@runner pid 7", "acquired_at": NOW - age, "environment": env.name, "nonce": "x"}
    ws.write_file(lock_path(env), json.dumps(body).encode(), overwrite=False)


def test_a_lock_seconds_old_is_a_live_run_and_an_hour_old_one_is_stale(
    databricks: Any, ws: Workspace
) -> None:
    env = make_env()
    hold_lock(ws, env, age=4)
    with pytest.raises(ConflictError) as live, environment_lock(ws, env, now=lambda: NOW):
        pass
    assert "ci@runner pid 7 for 4 s" in live.value.message
    assert live.value.hint and "probably still going" in live.value.hint and "wait" in live.value.hint

    ws.delete(lock_path(env))
    hold_lock(ws, env, age=3600)
    with pytest.raises(ConflictError) as stale, environment_lock(ws, env, now=lambda: NOW):
        pass
    assert "for 60 min" in stale.value.message
    hint = stale.value.hint or ""
    assert "most likely crashed" in hint and "--break-lock" in hint


def test_breaking_a_young_lock_says_whose_and_how_old(databricks: Any, ws: Workspace) -> None:
    env = make_env()
    hold_lock(ws, env, age=12)
    warnings: list[str] = []
    with environment_lock(ws, env, break_lock=True, now=lambda: NOW, warn=warnings.append):
        pass
    (warning,) = warnings
    assert "ci@runner pid 7 for 12 s" in warning and "may still be going" in warning

    hold_lock(ws, env, age=7200)
    warnings.clear()
    with environment_lock(ws, env, break_lock=True, now=lambda: NOW, warn=warnings.append):
        pass
    assert warnings == ["breaking the stale lock of environment 'dev' held by ci@runner pid 7 for 2.0 h"]


def test_a_change_of_a_kind_this_dbtwf_cannot_run_is_refused_before_any_write(
    databricks: Any, ws: Workspace
) -> None:
    from provision.apply import execute
    from provision.change import Change
    from provision.errors import UsageError

    env = make_env()
    changes = [
        *plan_environment(ws, env, TOKEN),
        Change("folder-acl", env.notebook_folder, Action.CREATE, "new"),
    ]
    with pytest.raises(UsageError, match="cannot carry out changes of kind folder-acl"):
        execute(ws, env, changes, TOKEN)
    assert databricks.writes() == []


def test_a_run_half_way_through_is_waited_for_not_mistaken_for_a_change(
    databricks: Any, ws: Workspace
) -> None:
    env = make_env()
    confirmed = plan_environment(ws, env, TOKEN)  # nothing there yet
    # Another apply made the folder, took the lock and recorded the scope as its own.
    ws.mkdirs(env.notebook_folder)
    with environment_lock(ws, env):
        ws.write_file(env.state_path, b'{"environment": "dev", "scope_created": true}', overwrite=True)
        with pytest.raises(ConflictError, match="locked by") as raised:
            apply_changes(ws, env, confirmed, TOKEN)
    assert "probably still going" in (raised.value.hint or "")
