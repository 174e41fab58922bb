"""`python -m runner` as a subprocess, and the rendered notebook executed cell by cell.

Both run on real time against the emulator, so their scenarios end on the first poll (about
one second); everything slower is covered on the fake clock in test_runner_emulator.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runner.core import DbtRunFailedError
from runner.notebook import NOTEBOOK_HEADER, NotebookDefaults, render_notebook
from tests.conftest import DBT_ACCOUNT_ID, DBT_CLOUD_TOKEN
from tests.emulators.databricks_notebook import NotebookExit, code_cells
from tests.emulators.dbtcloud import DbtCloudEmulator, Scenario
from tests.fake_dbutils import FakeDBUtils

JOB = 777
ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, token: str | None = DBT_CLOUD_TOKEN) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("DBT_CLOUD_")}
    if token is not None:
        env["DBT_CLOUD_API_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "runner", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_clean(result: subprocess.CompletedProcess[str]) -> None:
    """No traceback, no token, not even its last four characters."""
    for text in (result.stdout, result.stderr):
        assert "Traceback" not in text
        assert DBT_CLOUD_TOKEN not in text and DBT_CLOUD_TOKEN[-4:] not in text


def test_cli_exits_0_when_the_dbt_run_succeeds(dbt_cloud: DbtCloudEmulator) -> None:
    dbt_cloud.add_job(JOB, scenario=Scenario(outcome="success", polls=1))
    result = cli("--job-id", str(JOB), "--host", dbt_cloud.url, "--account-id", str(DBT_ACCOUNT_ID))
    assert result.returncode == 0, result.stderr
    (dbt_run,) = dbt_cloud.runs_of(JOB)
    assert f"dbt run {dbt_run['id']} triggered: {dbt_run['href']}" in result.stdout
    assert "Success" in result.stdout
    assert_clean(result)


def test_cli_exits_1_with_the_step_logs_when_the_dbt_run_fails(dbt_cloud: DbtCloudEmulator) -> None:
    dbt_cloud.add_job(JOB, scenario=Scenario(outcome="error", polls=1))
    result = cli("--job-url", dbt_cloud.job_url(JOB), "--cause", "from CI")
    assert result.returncode == 1
    assert "error: dbt run" in result.stderr and "Invoke dbt with `dbt build`" in result.stderr
    assert "UNRESOLVED_COLUMN" in result.stderr
    assert dbt_cloud.runs_of(JOB)[0]["trigger"]["cause"].startswith("from CI [dbtwf:")
    assert_clean(result)


def test_cli_no_wait_exits_0_at_once(dbt_cloud: DbtCloudEmulator) -> None:
    dbt_cloud.add_job(JOB, scenario=Scenario(outcome="never", seconds=3600))
    result = cli(
        "--job-url", dbt_cloud.job_url(JOB), "--no-wait", "--step", "dbt seed", "--threads-override", "2"
    )
    assert result.returncode == 0, result.stderr
    # The run never ends; exiting 0 without a single look at it is what "at once" means.
    run_polls = [r for r in dbt_cloud.requests if r.method == "GET" and re.search(r"/runs/\d+/$", r.path)]
    assert run_polls == []
    (dbt_run,) = dbt_cloud.runs_of(JOB)
    assert dbt_run["trigger"]["steps_override"] == ["dbt seed"]
    assert dbt_run["trigger"]["threads_override"] == 2


def test_cli_exits_1_when_the_token_is_rejected(dbt_cloud: DbtCloudEmulator) -> None:
    dbt_cloud.add_job(JOB)
    result = cli("--job-url", dbt_cloud.job_url(JOB), token="dbtc_not_the_right_one_wxyz")
    assert result.returncode == 1
    assert "401" in result.stderr and "wxyz" not in result.stderr
    assert_clean(result)


@pytest.mark.parametrize(
    ("args", "token", "message"),
    [
        (
            ("--job-id", "Enter the Job ID", "--host", "h.us1.dbt.com", "--account-id", "1"),
            "t",
            "placeholder",
        ),
        (("--job-id", "5", "--account-id", "1"), "t", "no dbt Cloud host"),
        (("--job-id", "5", "--host", "h.us1.dbt.com", "--account-id", "1"), None, "DBT_CLOUD_API_TOKEN"),
        (("--job-url", "https://h/deploy/1/projects/2/jobs/3", "--job-id", "4"), "t", "not both"),
        (("--job-id", "5", "--host", "h", "--account-id", "1", "--threads-override", "many"), "t", "threads"),
        (("--bogus",), "t", "unrecognized arguments"),
    ],
)
def test_cli_exits_2_on_bad_input_before_any_request(
    dbt_cloud: DbtCloudEmulator, args: tuple[str, ...], token: str | None, message: str
) -> None:
    result = cli(*args, token=token)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert dbt_cloud.requests == []


@pytest.mark.parametrize(
    "args",
    [
        ("--timeout-seconds", "3600"),  # was taken as --timeout-seconds-override 3600
        ("--threads", "4"),  # was taken as --threads-override 4
        ("--reuse",),  # was taken as --reuse-running
    ],
)
def test_cli_takes_options_only_by_their_full_names(
    args: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    from runner.__main__ import build_parser

    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["--job-id", "5", *args])
    assert exited.value.code == 2
    assert f"unrecognized arguments: {' '.join(args)}" in capsys.readouterr().err


# --- the rendered notebook, executed -------------------------------------------------------


class _Notebook:
    def __init__(self) -> None:
        self.exit_values: list[str] = []

    def exit(self, value: str) -> None:
        self.exit_values.append(value)
        raise NotebookExit(value)  # what Databricks' exit does: it ends the notebook by raising


class DBUtilsWithExit(FakeDBUtils):
    """As on a Databricks cluster: `dbutils.notebook.exit` exists too."""

    def __init__(self, parameters: dict[str, str], secrets: dict[tuple[str, str], str]) -> None:
        super().__init__(parameters, secrets)
        self.notebook = _Notebook()


def execute_notebook(source: str, dbutils: FakeDBUtils) -> dict[str, Any]:
    """Run the Python cells in one namespace, as a Databricks job task does (and the emulator)."""
    assert source.startswith(NOTEBOOK_HEADER + "\n")
    namespace: dict[str, Any] = {"__name__": "__main__", "dbutils": dbutils}
    for number, cell in enumerate(code_cells(source), start=1):
        exec(compile(cell, f"<command-{number}>", "exec"), namespace)  # noqa: S102 - the notebook under test
    return namespace


def notebook_for(emu: DbtCloudEmulator) -> str:
    return render_notebook(NotebookDefaults(emu.url, DBT_ACCOUNT_ID, "dbt-cloud", "api-key", 600))


def test_the_rendered_notebook_runs_a_job_to_success_and_sets_task_values(
    dbt_cloud: DbtCloudEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    dbt_cloud.add_job(JOB, scenario=Scenario(outcome="success", polls=1))
    dbutils = FakeDBUtils({"job_id": str(JOB)}, {("dbt-cloud", "api-key"): DBT_CLOUD_TOKEN})
    assert not hasattr(dbutils, "notebook")  # notebook.exit is optional: the run still completes
    namespace = execute_notebook(notebook_for(dbt_cloud), dbutils)
    (dbt_run,) = dbt_cloud.runs_of(JOB)
    assert namespace["dbt_run"].run_id == dbt_run["id"]
    assert dbutils.jobs.taskValues.values == {
        "dbt_run_id": dbt_run["id"],
        "dbt_run_url": dbt_run["href"],
        "dbt_run_status": "Success",
    }
    assert dbutils.widgets.defaults["timeout_seconds"] == "600"
    printed = capsys.readouterr().out
    assert dbt_run["href"] in printed
    assert DBT_CLOUD_TOKEN not in printed and DBT_CLOUD_TOKEN[-4:] not in printed


def test_the_rendered_notebook_raises_when_the_dbt_run_fails(
    dbt_cloud: DbtCloudEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    dbt_cloud.add_job(JOB, scenario=Scenario(outcome="error", polls=1))
    dbutils = FakeDBUtils({"job_id": str(JOB)}, {("dbt-cloud", "api-key"): DBT_CLOUD_TOKEN})
    with pytest.raises(Exception) as caught:  # the notebook's own class, defined by exec
        execute_notebook(notebook_for(dbt_cloud), dbutils)
    assert type(caught.value).__name__ == DbtRunFailedError.__name__
    assert "Invoke dbt with `dbt build`" in str(caught.value)
    assert dbutils.jobs.taskValues.values["dbt_run_status"] == "Error"
    assert DBT_CLOUD_TOKEN[-4:] not in str(caught.value) + capsys.readouterr().out


def test_the_rendered_notebook_exits_with_the_dbt_run_for_the_jobs_api(dbt_cloud: DbtCloudEmulator) -> None:
    dbt_cloud.add_job(JOB, scenario=Scenario(outcome="success", polls=1))
    dbutils = DBUtilsWithExit({"job_id": str(JOB)}, {("dbt-cloud", "api-key"): DBT_CLOUD_TOKEN})
    with pytest.raises(NotebookExit) as exited:
        execute_notebook(notebook_for(dbt_cloud), dbutils)
    (dbt_run,) = dbt_cloud.runs_of(JOB)
    expected = {"dbt_run_id": dbt_run["id"], "dbt_run_url": dbt_run["href"], "dbt_run_status": "Success"}
    assert json.loads(exited.value.value) == expected == dbutils.jobs.taskValues.values
    assert dbutils.notebook.exit_values == [exited.value.value]  # exactly once, as the last act
    assert DBT_CLOUD_TOKEN[-4:] not in exited.value.value


def test_the_rendered_notebook_in_no_wait_mode_exits_with_the_started_run(
    dbt_cloud: DbtCloudEmulator,
) -> None:
    dbt_cloud.add_job(JOB, scenario=Scenario(outcome="never", seconds=3600))
    dbutils = DBUtilsWithExit(
        {"job_id": str(JOB), "wait": "false"}, {("dbt-cloud", "api-key"): DBT_CLOUD_TOKEN}
    )
    with pytest.raises(NotebookExit) as exited:
        execute_notebook(notebook_for(dbt_cloud), dbutils)
    (dbt_run,) = dbt_cloud.runs_of(JOB)
    value = json.loads(exited.value.value)
    assert (value["dbt_run_id"], value["dbt_run_url"]) == (dbt_run["id"], dbt_run["href"])
    assert value["dbt_run_status"] == dbutils.jobs.taskValues.values["dbt_run_status"] != "Success"


def test_a_failed_dbt_run_raises_and_never_exits_the_notebook(dbt_cloud: DbtCloudEmulator) -> None:
    dbt_cloud.add_job(JOB, scenario=Scenario(outcome="error", polls=1))
    dbutils = DBUtilsWithExit({"job_id": str(JOB)}, {("dbt-cloud", "api-key"): DBT_CLOUD_TOKEN})
    with pytest.raises(Exception) as caught:  # the notebook's own class, defined by exec
        execute_notebook(notebook_for(dbt_cloud), dbutils)
    assert type(caught.value).__name__ == DbtRunFailedError.__name__
    assert dbutils.notebook.exit_values == []  # exit would have marked the task SUCCEEDED
