"""Checks of the user-facing contract that the feature tests left open (README.md, "Exit codes":
0 / 1 / 2, errors of one or two lines with a hint): what a user sees in help, the exit code and
hint of a rejected Databricks token or a missing permission, Ctrl-C, and `python -m runner`'s
short input errors. Real HTTP against the emulators."""

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
    from provision.commands import shell

    def interrupted(settings: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(shell, "load_environment", interrupted)
    result = invoke("plan", env={"DBTWF_CONFIG": str(tmp_path / "dbtwf.toml")})
    assert result.exit_code == 1
    assert result.output.strip() == "interrupted"
