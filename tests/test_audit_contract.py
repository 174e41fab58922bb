"""Acceptance checks of design.md section 4 that the feature tests left open: what a user
sees in help, the exit code and hint of a rejected Databricks token, a scope destroy must
keep, and `python -m runner`'s short input errors. Real HTTP against the emulators."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from provision.cli import app

ROOT = Path(__file__).resolve().parents[1]


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    # Wide enough that rich does not wrap a help line inside its box.
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200", **(env or {})})


def test_global_options_help_keeps_its_variable_and_default() -> None:
    # rich read "[env DBTWF_CONFIG; default ./dbtwf.toml]" as markup and printed "The config file ."
    result = invoke("plan", "--help")
    assert result.exit_code == 0, result.output
    assert "The config file (env DBTWF_CONFIG; default ./dbtwf.toml)." in result.output
    assert "(env DBTWF_ENV; default: the only one, else dev)." in result.output


def test_token_group_help_has_examples() -> None:
    result = invoke("token", "--help")
    assert result.exit_code == 0, result.output
    assert "Examples" in result.output and "dbtwf token show" in result.output


@pytest.fixture
def cli(tmp_path: Path, databricks: Any, dbt_cloud: Any) -> dict[str, str]:
    from tests.provision_helpers import cli_env, write_config

    dbt_cloud.add_job(42)
    write_config(tmp_path / "dbtwf.toml", dbt_cloud.url, {"dev": {"nightly": 42}})
    return cli_env(tmp_path, databricks.url)


def test_a_rejected_databricks_token_exits_1_with_an_auth_hint_and_writes_nothing(
    databricks: Any, cli: dict[str, str]
) -> None:
    # Databricks answers a wrong PAT with 403 "Invalid access token.": dbtwf said "permission
    # denied ... ask a workspace admin", which sends the user the wrong way.
    result = invoke("apply", "--yes", env={**cli, "DATABRICKS_TOKEN": "dapi-wrong"})
    assert result.exit_code == 1, result.output
    assert "rejected the credentials" in result.output and "DATABRICKS_TOKEN" in result.output
    assert "workspace admin" not in result.output and "Traceback" not in result.output
    assert databricks.writes() == []


def test_permission_denied_on_the_scope_exits_1_with_a_hint_before_any_write(
    databricks: Any, cli: dict[str, str]
) -> None:
    from databricks.sdk import WorkspaceClient

    from provision.databricks import Workspace

    databricks.add_user("dapi-colleague", "colleague@example.com")
    colleague = Workspace(WorkspaceClient(host=databricks.url, token="dapi-colleague"))
    colleague.create_scope("dbtwf-dev")  # only the colleague may manage it
    databricks.reset_log()
    result = invoke("apply", "--yes", env=cli)
    assert result.exit_code == 1, result.output
    assert "permission" in result.output and "hint:" in result.output
    assert "Traceback" not in result.output
    assert databricks.writes() == []


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


def test_runner_input_errors_are_two_lines_without_the_usage_block(dbt_cloud: Any) -> None:
    # argparse's parser.error() printed a 13-line usage block above the one line that matters.
    result = subprocess.run(
        [sys.executable, "-m", "runner", "--job-id", "abc", "--host", dbt_cloud.url, "--account-id", "1"],
        cwd=ROOT,
        env={**os.environ, "DBT_CLOUD_API_TOKEN": "dbtc_x"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "python -m runner: error: job_id must be a positive integer, got 'abc'",
        "hint: see `python -m runner --help`",
    ]
    assert dbt_cloud.requests == []


def test_readme_exit_codes_are_the_contracts_three() -> None:
    # The README promised 130 on Ctrl-C; dbtwf exits 1 then (the contract has only 0/1/2).
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Exit codes", 1)[1].split("\n\n", 2)[1]
    codes = [line.split("|")[1].strip() for line in table.splitlines()[2:]]
    assert codes == ["0", "1", "2"]


def test_ctrl_c_exits_1_with_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import provision.cli

    def interrupted(settings: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(provision.cli, "load_environment", interrupted)
    result = invoke("plan", env={"DBTWF_CONFIG": str(tmp_path / "dbtwf.toml")})
    assert result.exit_code == 1
    assert result.output.strip() == "interrupted"


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
    report = {"task_key": "report", "depends_on": [{"task_key": "dbt_cloud_42"}], "notebook_task": notebook}
    ws.update_job(job_id, {"tasks": [report]})
    databricks.reset_log()

    result = invoke("destroy", "--yes", env=cli)
    assert result.exit_code == 1, result.output
    assert "'report'" in result.output and "'dbt_cloud_42'" in result.output and "hint:" in result.output
    assert databricks.writes() == []
