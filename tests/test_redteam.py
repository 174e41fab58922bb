"""Red-team findings after the safety pass (issue 8) and the fidelity pass (issue 9).

Each test reproduces one finding over real HTTP against the emulators; it failed before the
fix that follows it in the history. Cases whose fix lies in code under restructuring are
marked xfail(strict=True) with the fix they need.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.__main__ import main as runner_main
from runner.core import DbtCloudClient, RunnerInputError
from tests.conftest import DBT_CLOUD_TOKEN
from tests.emulators.databricks import DatabricksEmulator
from tests.emulators.dbtcloud import DbtCloudEmulator, Scenario
from tests.provision_helpers import write_config
from tests.test_security import cli, dbtwf  # noqa: F401 - the fixture, shared

DBT_JOB = 42
SECRET_TAIL = "Tail0fTheT0ken"


# --- a token no header can carry is refused without quoting it -----------------------------


@pytest.mark.parametrize(
    "token", [f"{DBT_CLOUD_TOKEN}\n{SECRET_TAIL}", f"{DBT_CLOUD_TOKEN}\u2603{SECRET_TAIL}"]
)
def test_a_token_with_a_newline_or_non_ascii_is_refused_without_being_printed(
    token: str,
    cli: Path,  # noqa: F811
    databricks: DatabricksEmulator,
    dbt_cloud: DbtCloudEmulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """http.client refused such a header with "Invalid header value b'Token <the token>'" (or a
    UnicodeEncodeError naming a character of it), and the CLI printed that as an unexpected
    error: in apply, onboard, add-task, doctor, also under --debug."""
    dbt_cloud.add_job(DBT_JOB, scenario=Scenario(outcome="success", polls=1))
    write_config(cli, dbt_cloud.url, {"dev": {"nightly": DBT_JOB}})
    monkeypatch.setenv("DBT_CLOUD_API_TOKEN", token)
    for args in (
        ("apply", "--yes"),
        ("--debug", "apply", "--yes"),
        ("add-task", "--workflow", "1", "--dbt-job", str(DBT_JOB)),
        ("doctor", "--json"),
    ):
        result = dbtwf(*args)
        assert SECRET_TAIL not in result.output, args
        assert "Traceback" not in result.output or args[0] == "--debug", args
        said = " ".join(result.output.split())  # doctor's table wraps its cells
        assert "not printable ASCII" in said or "contains whitespace" in said, (args, result.output)
        assert result.exit_code == (1 if args[0] == "doctor" else 2), (args, result.output)
    assert [r for r in databricks.requests if r.is_write] == []
    assert dbt_cloud.requests == []  # refused before sending

    # The runner outside Databricks, and its client used directly, refuse it the same way.
    assert runner_main(["--job-id", str(DBT_JOB), "--host", dbt_cloud.url, "--account-id", "1"]) == 2
    assert SECRET_TAIL not in capsys.readouterr().err
    with pytest.raises(RunnerInputError) as refused:
        DbtCloudClient(dbt_cloud.url, 1, token)
    assert SECRET_TAIL not in str(refused.value)
    assert dbt_cloud.requests == []


# --- ids: '²' passed str.isdigit() and crashed int(); ids beyond int64 were accepted ---------


def test_odd_ids_are_bad_input_everywhere_before_any_request(
    cli: Path,  # noqa: F811
    databricks: DatabricksEmulator,
    dbt_cloud: DbtCloudEmulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """'²' (a digit to str.isdigit, not to int) made add-task and the runner fail with
    "unexpected ValueError" (exit 1); 5,000 digits hit int()'s limit the same way; an id
    beyond int64 went out to both services."""
    dbt_cloud.add_job(DBT_JOB, scenario=Scenario(outcome="success", polls=1))
    write_config(cli, dbt_cloud.url, {"dev": {"nightly": DBT_JOB}})
    for odd in ("\u00b2", "9" * 5000, str(2**63)):
        tries = [("--workflow", "1", "--dbt-job", odd)]
        if odd.isascii():  # '²' as --workflow is a workflow's name
            tries.append(("--workflow", odd, "--dbt-job", str(DBT_JOB)))
        for args in tries:
            result = dbtwf("add-task", *args, "--yes")
            assert result.exit_code == 2, (args, result.output)
            assert "must be a positive integer" in result.stderr and "unexpected" not in result.stderr
            assert len(result.stderr) < 400, result.stderr  # not 5,000 digits echoed back
        url = f"{dbt_cloud.url}/deploy/1/projects/1/jobs/{odd}"
        assert runner_main(["--job-url", url]) == 2, odd
        assert runner_main(["--job-id", odd, "--host", dbt_cloud.url, "--account-id", "1"]) == 2, odd
        assert "must be a positive integer" in capsys.readouterr().err

    # dbt_cloud_account_id beyond int64 in dbtwf.toml, or '²' in DBT_CLOUD_ACCOUNT_ID
    cli.write_text(cli.read_text().replace("dbt_cloud_account_id = ", f"dbt_cloud_account_id = {2**70}  # "))
    planned = dbtwf("plan")
    assert planned.exit_code == 2 and "below 2**63" in planned.stderr, planned.output
    write_config(cli, dbt_cloud.url, {"dev": {"nightly": DBT_JOB}})
    cli.write_text("\n".join(line for line in cli.read_text().splitlines() if "account_id" not in line))
    monkeypatch.setenv("DBT_CLOUD_ACCOUNT_ID", "\u00b2")
    planned = dbtwf("plan")
    assert planned.exit_code == 2 and "DBT_CLOUD_ACCOUNT_ID" in planned.stderr, planned.output
    assert [r for r in databricks.requests if r.is_write] == []
    assert dbt_cloud.requests == []


# --- a dbt host that reads as one host and sends the token to another ----------------------


@pytest.mark.parametrize(
    "host",
    [
        "https://dbt.evil.invalid#@acme.us1.dbt.com",  # reads as acme..., urllib goes to evil
        "https://dbt.evil.invalid?@acme.us1.dbt.com",
        "https://acme.us1.dbt.com\n.evil.invalid",  # urlsplit drops the newline: acme...com.evil...
        "https://acme.us1.dbt.com:abc",
        "https://acme.us1.dbt.com:99999",
        "https://\uff41cme.us1.dbt.com",  # fullwidth 'a': shown as one name, resolved as another
    ],
)
def test_a_dbt_host_that_reads_as_another_is_refused_at_config_validation(
    host: str,
    cli: Path,  # noqa: F811
    databricks: DatabricksEmulator,
    dbt_cloud: DbtCloudEmulator,
) -> None:
    """Before: plan and `apply --yes` accepted each (the token unchanged, nothing checked the
    host) and uploaded a notebook that would send the token to the host urllib reads."""
    write_config(cli, "placeholder.invalid", {"dev": {"nightly": DBT_JOB}})
    text = cli.read_text().replace('"placeholder.invalid"', json_string(host))
    cli.write_text(text)
    for args in (("plan",), ("apply", "--yes")):
        result = dbtwf(*args)
        assert result.exit_code == 2, (args, result.output)
        assert "dbt_cloud_host" in result.stderr and "Traceback" not in result.output
    assert [r for r in databricks.requests if r.is_write] == []
    with pytest.raises(RunnerInputError):
        DbtCloudClient(host, 1, DBT_CLOUD_TOKEN)


def json_string(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(text)


# --- a state record of the wrong shape ------------------------------------------------------


def _foreign_workflow(databricks: DatabricksEmulator) -> int:
    from tests.test_security import sdk

    settings = {"name": "Foreign ETL", "tasks": [{"task_key": "ingest", "notebook_task": THEIR_NOTEBOOK}]}
    return int(sdk(databricks).api_client.do("POST", "/api/2.2/jobs/create", body=settings)["job_id"])


THEIR_NOTEBOOK = {"notebook_path": "/Repos/etl/ingest"}


@pytest.mark.parametrize(
    "tampering",
    [
        {"replaced": "x"},  # destroy: unexpected AttributeError ('str' object has no attribute 'get')
        {"written": [1]},  # destroy: unexpected TypeError (list indices must be integers)
        {"granted_readers": "users"},  # read as five principals u, s, e, r, s
    ],
)
def test_a_state_record_of_the_wrong_shape_is_refused_before_any_write(
    tampering: dict[str, object],
    cli: Path,  # noqa: F811
    databricks: DatabricksEmulator,
    dbt_cloud: DbtCloudEmulator,
) -> None:
    from tests.provision_helpers import make_workspace

    dbt_cloud.add_job(DBT_JOB, scenario=Scenario(outcome="success", polls=1))
    write_config(cli, dbt_cloud.url, {"dev": {"nightly": DBT_JOB}})
    assert dbtwf("apply", "--yes").exit_code == 0
    theirs = _foreign_workflow(databricks)
    assert dbtwf("add-task", "--workflow", str(theirs), "--dbt-job", str(DBT_JOB), "--yes").exit_code == 0
    state_path = f"/Users/{databricks.user_name}/.dbtwf/dev/.dbtwf-state-dev.json"
    record = json.loads(databricks.workspace_file(state_path) or b"{}")
    if "granted_readers" in tampering:
        record.update(tampering)
    else:
        record["added_tasks"][0].update(tampering)
    make_workspace(databricks).write_file(state_path, json.dumps(record).encode(), overwrite=True)
    databricks.reset_log()

    for args in (("destroy", "--yes"), ("plan",)):
        result = dbtwf(*args)
        assert result.exit_code == 1, (args, result.output)
        assert "state record" in result.stderr and "unreadable" in result.stderr, result.output
        assert "unexpected" not in result.stderr
    assert [r for r in databricks.requests if r.is_write] == []
    tasks = [t["task_key"] for t in databricks.jobs[theirs]["settings"]["tasks"]]
    assert tasks == ["ingest", f"dbt_job_{DBT_JOB}"]  # the user's task and dbtwf's, both still there


# --- a saved plan edited by hand ------------------------------------------------------------


@pytest.mark.parametrize("edit", ["notebook_path", "run_as"])
def test_a_saved_plan_whose_payload_was_edited_is_refused(
    edit: str,
    cli: Path,  # noqa: F811
    tmp_path: Path,
    databricks: DatabricksEmulator,
    dbt_cloud: DbtCloudEmulator,
) -> None:
    """E.g. a plan artifact of a CI pipeline, edited between its plan job and its apply job."""
    dbt_cloud.add_job(DBT_JOB, scenario=Scenario(outcome="success", polls=1))
    dbt_cloud.add_job(DBT_JOB + 1, scenario=Scenario(outcome="success", polls=1))
    write_config(cli, dbt_cloud.url, {"dev": {"nightly": DBT_JOB}})
    assert dbtwf("apply", "--yes").exit_code == 0
    write_config(cli, dbt_cloud.url, {"dev": {"nightly": DBT_JOB, "hourly": DBT_JOB + 1}})
    saved = tmp_path / "dev.plan.json"
    assert dbtwf("plan", "--out", str(saved)).exit_code == 0
    plan = json.loads(saved.read_text())
    (workflow,) = [c for c in plan["changes"] if c["resource"] == "workflow"]
    settings = workflow["payload"]["settings"]
    if edit == "notebook_path":
        settings["tasks"][0]["notebook_task"]["notebook_path"] = "/Users/attacker/evil"
    else:
        settings["run_as"] = {"user_name": "admin@example.com"}
    saved.write_text(json.dumps(plan))
    databricks.reset_log()

    result = dbtwf("apply", "--plan", str(saved), "--yes")

    (job,) = databricks.jobs.values()
    assert "/Users/attacker/evil" not in json.dumps(job["settings"])
    assert "admin@example.com" not in json.dumps(job["settings"])
    assert result.exit_code == 1, result.output
    assert "is not what planning gives now, in: workflow" in result.output
    assert not [r for r in databricks.requests if r.is_write]
