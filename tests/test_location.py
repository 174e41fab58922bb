"""Where the runner notebook lives and who can change it: the default in the deploying
identity's home, the gateway's permission calls, and doctor's checks, over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from provision.location import LocationFacts, check_same_deployment, facts_from_acl, run_as_of
from provision.model import Environment, default_notebook_path
from tests.conftest import DBT_CLOUD_TOKEN
from tests.provision_helpers import configured_cli, make_env, make_workspace, set_notebook_path

DBT_JOB = 42


@pytest.fixture
def invoke(
    tmp_path: Path, databricks: Any, dbt_cloud: Any, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Any]:
    dbt_cloud.add_job(DBT_JOB)
    return configured_cli(tmp_path, monkeypatch, databricks.url, dbt_cloud.url, DBT_JOB)


def doctor(invoke: Callable[..., Any]) -> tuple[int, dict[str, dict[str, Any]]]:
    result = invoke("doctor", "--json")
    return result.exit_code, {c["name"]: c for c in json.loads(result.stdout)["checks"]}


# -- the default location ----------------------------------------------------------------------


def test_the_default_is_one_value_in_the_home_folder() -> None:
    env = Environment(name="qa", dbt_cloud_host="h", dbt_cloud_account_id=1, dbt_jobs=())
    assert env.notebook_path == default_notebook_path("qa") == "~/.dbtwf/qa/run_dbt_cloud_job"
    resolved = env.resolved("sp-1234")
    assert resolved.notebook_path == "/Users/sp-1234/.dbtwf/qa/run_dbt_cloud_job"
    assert resolved.resolved("someone-else") is resolved  # absolute: nothing left to resolve
    from provision.model import environment_defaults

    assert environment_defaults("qa")["notebook_path"] == default_notebook_path("qa")


def test_apply_puts_notebook_state_and_lock_in_the_deployers_home(
    invoke: Callable[..., Any], databricks: Any
) -> None:
    result = invoke("apply", "--yes")
    assert result.exit_code == 0, result.output
    home = f"/Users/{databricks.user_name}/.dbtwf/dev"
    assert databricks.workspace_file(f"{home}/run_dbt_cloud_job") is not None
    assert databricks.workspace_file(f"{home}/.dbtwf-state-dev.json") is not None
    imports = [r.json()["path"] for r in databricks.requests if r.path.endswith("/workspace/import")]
    assert imports and all(path.startswith(home + "/") for path in imports), imports
    (job,) = databricks.jobs.values()
    assert {t["notebook_task"]["notebook_path"] for t in job["settings"]["tasks"]} == {
        f"{home}/run_dbt_cloud_job"
    }
    assert databricks.effective_level(f"{home}/run_dbt_cloud_job", "users") is None
    # Nothing under /Shared, and no `~` ever reached the workspace.
    assert not [r for r in databricks.requests if "/Shared" in r.path + r.body.decode(errors="replace")]
    assert not [r for r in databricks.requests if "~" in r.body.decode(errors="replace")]
    again = invoke("plan")
    assert again.exit_code == 0 and "nothing to change" in again.stdout


# -- the gateway ---------------------------------------------------------------------------------


def test_gateway_reads_and_grants_object_permissions(databricks: Any) -> None:
    ws = make_workspace(databricks)
    assert ws.current_user_name() == databricks.user_name
    home = f"/Users/{databricks.user_name}"
    ws.import_notebook(f"{home}/nb", "# Databricks notebook source\n", overwrite=False)
    notebook_id = str((ws.get_status(f"{home}/nb") or {})["object_id"])
    databricks.add_user("dapi-runner", "runner@example.com")
    ws.update_permissions(
        "notebooks", notebook_id, [{"user_name": "runner@example.com", "permission_level": "CAN_READ"}]
    )
    acl = ws.get_permissions("notebooks", notebook_id)
    assert acl is not None
    facts = facts_from_acl(f"{home}/nb", acl)
    assert facts.can_read("runner@example.com") and not facts.can_read("stranger@example.com")
    assert not facts.editable_by_all_users
    databricks.premium_tier = False
    assert ws.get_permissions("notebooks", notebook_id) is None  # no object ACLs without Premium


def test_facts_see_all_users_editing_through_shared() -> None:
    acl = {
        "access_control_list": [
            {
                "group_name": "users",
                "all_permissions": [{"permission_level": "CAN_MANAGE", "inherited": True}],
            },
            {"user_name": "me@example.com", "all_permissions": [{"permission_level": "CAN_MANAGE"}]},
        ]
    }
    facts = facts_from_acl("/Shared/dbtwf/dev/run_dbt_cloud_job", acl)
    assert facts.editable_by_all_users and facts.all_users_inherited
    reading = facts_from_acl(
        "/x",
        {
            "access_control_list": [
                {"group_name": "users", "all_permissions": [{"permission_level": "CAN_RUN"}]}
            ]
        },
    )
    assert not reading.editable_by_all_users and reading.can_read("anyone")
    assert LocationFacts("/x", access_control=False).editable_by_all_users


def test_run_as_comes_from_settings_then_jobs_get() -> None:
    assert run_as_of({"settings": {"run_as": {"service_principal_name": "abc-123"}}}) == (
        "service_principal_name",
        "abc-123",
    )
    assert run_as_of({"run_as_user_name": "ana@example.com"}) == ("user_name", "ana@example.com")
    assert run_as_of({"run_as_user_name": "6f1c-app-id"}) == ("service_principal_name", "6f1c-app-id")
    assert run_as_of({"creator_user_name": "bo@example.com"}) == ("user_name", "bo@example.com")


def test_a_workflow_running_another_notebook_is_refused_with_where_it_is() -> None:
    from provision.errors import ConflictError

    env = make_env(notebook_path="/Users/bob@example.com/.dbtwf/dev/run_dbt_cloud_job")
    theirs = "/Users/ana@example.com/.dbtwf/dev/run_dbt_cloud_job"
    job = {
        "job_id": 7,
        "creator_user_name": "ana@example.com",
        "settings": {
            "name": "dbt Cloud jobs (dev)",
            "tasks": [{"task_key": "t", "notebook_task": {"notebook_path": theirs}}],
        },
    }
    with pytest.raises(ConflictError) as caught:
        check_same_deployment(env, job)
    assert theirs in caught.value.message and "created by ana@example.com" in caught.value.message
    assert "run dbtwf as ana@example.com" in (caught.value.hint or "")
    assert f'notebook_path = "{theirs}"' in (caught.value.hint or "")
    check_same_deployment(make_env(notebook_path=theirs), job)  # the same deployment: fine
    old = {
        **job,
        "settings": {
            "tasks": [
                {"task_key": "t", "notebook_task": {"notebook_path": "/Shared/dbtwf/dev/run_dbt_cloud_job"}}
            ]
        },
    }
    with pytest.raises(ConflictError) as moved:
        check_same_deployment(env, old)
    assert "dbtwf destroy" in (moved.value.hint or "")


# -- doctor ----------------------------------------------------------------------------------------


def test_doctor_fails_a_notebook_every_user_can_edit(
    invoke: Callable[..., Any], databricks: Any, tmp_path: Path
) -> None:
    set_notebook_path(tmp_path, "/Shared/dbtwf/dev/run_dbt_cloud_job")
    assert invoke("apply", "--yes").exit_code == 0
    with databricks.recording() as during:
        code, checks = doctor(invoke)
    assert [r for r in during if r.is_write] == []
    assert code == 1
    location = checks["notebook location"]
    assert location["status"] == "fail"
    assert "every workspace user can edit /Shared/dbtwf/dev/run_dbt_cloud_job" in location["detail"]
    assert "inherited from /Shared" in location["detail"]
    assert "~/.dbtwf/dev/run_dbt_cloud_job" in location["fix"]
    table = invoke("doctor")
    assert "FAIL" in table.stdout and "all checks passed" not in table.stdout


def test_doctor_warns_on_a_workspace_without_premium(invoke: Callable[..., Any], databricks: Any) -> None:
    databricks.premium_tier = False
    assert invoke("apply", "--yes").exit_code == 0
    with databricks.recording() as during:
        code, checks = doctor(invoke)
    assert [r for r in during if r.is_write] == []
    assert code == 0  # warnings do not fail doctor
    assert checks["scope access"]["status"] == "warn"
    assert "every workspace user can read the dbt Cloud token" in checks["scope access"]["detail"]
    assert "Premium" in checks["scope access"]["fix"] and "accept" in checks["scope access"]["fix"]
    assert checks["notebook location"]["status"] == "warn"
    assert "not on the Premium plan" in checks["notebook location"]["detail"]
    table = invoke("doctor")
    assert table.exit_code == 0
    assert "all checks passed" not in table.stdout and "2 warning(s)" in table.stdout
    assert DBT_CLOUD_TOKEN not in table.output


def test_a_lock_release_that_fails_is_tried_again(databricks: Any) -> None:
    # Not location as such: the fault matrix met it once the plan made a few more reads. A
    # lock left behind by a 500 on its delete blocks every later run of the environment.
    from provision.state import environment_lock, lock_path

    ws = make_workspace(databricks)
    env = make_env().resolved(databricks.user_name)
    ws.mkdirs(env.notebook_folder)
    databricks.faults.inject("500", path=r"/api/2\.0/workspace/delete", times=2)
    with environment_lock(ws, env):
        pass
    assert databricks.workspace_file(lock_path(env)) is None
    deletes = [r.status for r in databricks.requests if r.path.endswith("/workspace/delete")]
    assert deletes == [500, 500, 200]
