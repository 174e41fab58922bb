"""destroy: it deletes only what dbtwf created or recorded, keeps what others put in a scope
it made, puts back a user's task that add-task replaced, and stops before any write when it
cannot finish. Real HTTP against the emulators.

The tests come from test_onboard.py, test_add_task.py and test_audit_contract.py, unchanged
but for the CLI helper (this file's `invoke` takes the arguments one by one).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from typer.testing import CliRunner

from provision.cli import app
from provision.model import DbtJobTask, Environment
from provision.state import load_state
from tests.conftest import DBT_ACCOUNT_ID
from tests.provision_helpers import cli_env, make_workspace, write_config, write_kinds
from tests.test_add_task import DBT_JOB, foreign_settings, make_env, run_add_task

if TYPE_CHECKING:
    from provision.databricks import Workspace
    from tests.emulators.databricks import DatabricksEmulator
    from tests.emulators.dbtcloud import DbtCloudEmulator


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200", **(env or {})})


@pytest.fixture
def cli(tmp_path: Path, databricks: Any, dbt_cloud: Any) -> dict[str, str]:
    dbt_cloud.add_job(42)
    write_config(tmp_path / "dbtwf.toml", dbt_cloud.url, {"dev": {"nightly": 42}})
    return cli_env(tmp_path, databricks.url)


@pytest.fixture
def ws(databricks: DatabricksEmulator) -> Workspace:
    return make_workspace(databricks)


@pytest.fixture
def env(dbt_cloud: DbtCloudEmulator) -> Environment:
    dbt_cloud.add_job(DBT_JOB, name="Marts build")
    return make_env(
        dbt_cloud_host=dbt_cloud.url,
        dbt_cloud_account_id=DBT_ACCOUNT_ID,
        dbt_jobs=(DbtJobTask("nightly", DBT_JOB),),
        secret_scope="dbtwf-dev",
        notebook_path="/Shared/dbtwf/dev/run_dbt_cloud_job",
    )


def test_destroy_removes_only_what_dbtwf_created(
    databricks: Any, dbt_cloud: Any, cli: dict[str, str], tmp_path: Path
) -> None:
    from tests.provision_helpers import make_workspace

    write_config(tmp_path / "dbtwf.toml", dbt_cloud.url, {"dev": {"nightly": 42}})
    ws = make_workspace(databricks)
    ws.create_scope("dbtwf-dev")  # the user's scope: dbtwf only adds its secret to it
    ws.put_secret("dbtwf-dev", "other", "keep me")
    foreign = ws.create_job({"name": "theirs", "tasks": []})
    assert invoke("apply", "--yes", env=cli).exit_code == 0
    result = invoke("destroy", "--yes", env=cli)
    assert result.exit_code == 0, result.output
    assert list(databricks.jobs) == [foreign]
    assert databricks.secret_value("dbtwf-dev", "other") == "keep me"
    assert databricks.secret_value("dbtwf-dev", "dbt-cloud-api-token") is None
    with databricks.recording() as again:
        assert invoke("destroy", "--yes", env=cli).exit_code == 0
    assert write_kinds(again) == []


def test_destroy_keeps_a_scope_it_created_once_others_store_secrets_in_it(
    databricks: Any, cli: dict[str, str]
) -> None:
    # The scope was dbtwf's, but a colleague's secret in it is not: destroy deleted the whole scope.
    assert invoke("apply", "--yes", env=cli).exit_code == 0
    from tests.provision_helpers import make_workspace

    make_workspace(databricks).put_secret("dbtwf-dev", "warehouse-password", "keep me")
    result = invoke("destroy", "--yes", env=cli)
    assert result.exit_code == 0, result.output
    assert databricks.secret_value("dbtwf-dev", "warehouse-password") == "keep me"
    assert databricks.secret_value("dbtwf-dev", "dbt-cloud-api-token") is None
    with databricks.recording() as again:
        assert invoke("destroy", "--yes", env=cli).exit_code == 0
    assert [r for r in again if r.is_write] == []


def test_destroy_deletes_the_scope_it_created_when_only_its_secret_is_there(
    databricks: Any, cli: dict[str, str]
) -> None:
    assert invoke("apply", "--yes", env=cli).exit_code == 0
    assert invoke("destroy", "--yes", env=cli).exit_code == 0
    from tests.provision_helpers import make_workspace

    assert [s["name"] for s in make_workspace(databricks).list_scopes()] == []


def test_destroy_stops_before_any_write_when_a_foreign_task_depends_on_an_added_one(
    databricks: Any, dbt_cloud: Any, cli: dict[str, str]
) -> None:
    # Databricks refuses to drop a task another depends on: destroy failed halfway with a bare API error.
    from tests.provision_helpers import make_workspace

    ws = make_workspace(databricks)
    notebook = {"notebook_path": "/Users/a/ingest"}
    job_id = ws.create_job(
        {"name": "Nightly ETL", "tasks": [{"task_key": "ingest", "notebook_task": notebook}]}
    )
    assert invoke("add-task", "--workflow", str(job_id), "--dbt-job", "42", "--yes", env=cli).exit_code == 0
    report = {"task_key": "report", "depends_on": [{"task_key": "dbt_job_42"}], "notebook_task": notebook}
    ws.update_job(job_id, {"tasks": [report]})
    databricks.reset_log()

    result = invoke("destroy", "--yes", env=cli)
    assert result.exit_code == 1, result.output
    assert "'report'" in result.output and "'dbt_job_42'" in result.output and "hint:" in result.output
    assert databricks.writes() == []


def test_destroy_puts_back_the_users_task_that_replace_overwrote(
    databricks: DatabricksEmulator, ws: Workspace, env: Environment
) -> None:
    from provision.destroy import destroy_changes, plan_destroy

    job_id = ws.create_job(foreign_settings())
    original = {t["task_key"]: t for t in databricks.jobs[job_id]["settings"]["tasks"]}["step_001"]

    run_add_task(ws, env, workflow=str(job_id), dbt_job=str(DBT_JOB), task_key="step_001", replace=True)
    run_add_task(  # replacing dbtwf's own task again must not forget the user's original
        ws,
        env,
        workflow=str(job_id),
        dbt_job=str(DBT_JOB),
        task_key="step_001",
        replace=True,
        cluster_id="c-1",
    )
    record = load_state(ws, env)
    assert record is not None and record.added_tasks[0].replaced == original

    changes = plan_destroy(ws, env)
    (task_change,) = [c for c in changes if c.resource == "task"]
    assert (task_change.name, task_change.action.value) == ("step_001", "update")
    destroy_changes(ws, env, changes)

    tasks = {t["task_key"]: t for t in databricks.jobs[job_id]["settings"]["tasks"]}
    assert tasks["step_001"] == original
    assert sorted(tasks) == ["step_000", "step_001", "step_002"]


# -- the folders dbtwf made for the notebook ------------------------------------------------


def _home_folders(databricks: Any, ws: Workspace) -> tuple[str, str, str]:
    """The default location's folders: (~/.dbtwf/dev's notebook, ~/.dbtwf/dev, ~/.dbtwf)."""
    home = f"/Users/{databricks.user_name}"
    return f"{home}/.dbtwf/dev/run_dbt_cloud_job", f"{home}/.dbtwf/dev", f"{home}/.dbtwf"


def test_destroy_deletes_the_folders_apply_made(databricks: Any, cli: dict[str, str], ws: Workspace) -> None:
    notebook, folder, top = _home_folders(databricks, ws)
    assert invoke("apply", "--yes", env=cli).exit_code == 0
    assert ws.get_status(notebook) is not None
    state = ws.read_file(f"{folder}/.dbtwf-state-dev.json")
    assert state is not None and b'"created_folders"' in state
    record = load_state(ws, make_env(notebook_path=notebook))
    assert record is not None and record.created_folders == [folder, top]
    result = invoke("destroy", "--yes", env=cli)
    assert result.exit_code == 0, result.output
    assert "folder" in result.output and top in result.output  # shown like every other change
    assert ws.get_status(folder) is None and ws.get_status(top) is None
    assert ws.get_status(f"/Users/{databricks.user_name}") is not None  # the home was there before


def test_destroy_keeps_a_folder_that_existed_before_apply(
    databricks: Any, cli: dict[str, str], ws: Workspace
) -> None:
    _notebook, folder, top = _home_folders(databricks, ws)
    ws.mkdirs(top)  # the user's own folder: dbtwf only makes dev inside it
    assert invoke("apply", "--yes", env=cli).exit_code == 0
    assert invoke("destroy", "--yes", env=cli).exit_code == 0
    assert ws.get_status(folder) is None
    assert ws.get_status(top) is not None


def test_destroy_keeps_a_folder_holding_someone_elses_file(
    databricks: Any, cli: dict[str, str], ws: Workspace
) -> None:
    _notebook, folder, top = _home_folders(databricks, ws)
    assert invoke("apply", "--yes", env=cli).exit_code == 0
    ws.write_file(f"{folder}/notes.txt", b"mine", overwrite=False)
    result = invoke("destroy", "--yes", env=cli)
    assert result.exit_code == 0, result.output
    assert "is made by dbtwf, but not empty" in result.stderr  # said, not an error
    assert ws.read_file(f"{folder}/notes.txt") == b"mine"
    assert ws.get_status(top) is not None  # it holds the kept folder
    assert ws.read_file(f"{folder}/.dbtwf-state-dev.json") is None
    assert ws.get_status(folder) is not None


def test_destroy_deletes_no_folder_for_a_record_without_created_folders(
    databricks: Any, cli: dict[str, str], ws: Workspace
) -> None:
    _notebook, folder, top = _home_folders(databricks, ws)
    assert invoke("apply", "--yes", env=cli).exit_code == 0
    path = f"{folder}/.dbtwf-state-dev.json"
    old = json.loads(ws.read_file(path) or b"{}")
    del old["created_folders"]  # written by a dbtwf before this field: who made the folders is unknown
    ws.write_file(path, json.dumps(old).encode(), overwrite=True)
    result = invoke("destroy", "--yes", env=cli)
    assert result.exit_code == 0, result.output
    assert ws.get_status(folder) is not None and ws.get_status(top) is not None


def test_destroy_ignores_a_recorded_folder_outside_the_notebooks_path(
    databricks: Any, cli: dict[str, str], ws: Workspace
) -> None:
    _notebook, folder, _top = _home_folders(databricks, ws)
    assert invoke("apply", "--yes", env=cli).exit_code == 0
    ws.mkdirs("/Shared/empty-but-theirs")
    path = f"{folder}/.dbtwf-state-dev.json"
    edited = json.loads(ws.read_file(path) or b"{}")
    edited["created_folders"].append("/Shared/empty-but-theirs")  # an edited record
    ws.write_file(path, json.dumps(edited).encode(), overwrite=True)
    assert invoke("destroy", "--yes", env=cli).exit_code == 0
    assert ws.get_status("/Shared/empty-but-theirs") is not None
