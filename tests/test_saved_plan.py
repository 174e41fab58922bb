"""plan / apply / destroy through the CLI over real HTTP: which workspace they act on, the
token proven before it is stored, and saved plans (`plan --out`, `apply --plan`) that run
exactly as planned or not at all."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DBT_CLOUD_TOKEN
from tests.provision_helpers import configured_cli, make_workspace, write_kinds

DBT_JOB = 42
WRONG_TOKEN = "dbtc_not_a_valid_token_00000000"
LOCK_ONLY = ["POST /api/2.0/workspace/import", "POST /api/2.0/workspace/delete"]


@pytest.fixture
def dbtwf(
    tmp_path: Path, databricks: Any, dbt_cloud: Any, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Any]:
    dbt_cloud.add_job(DBT_JOB)
    return configured_cli(tmp_path, monkeypatch, databricks.url, dbt_cloud.url, DBT_JOB)


def secret_puts(databricks: Any) -> list[Any]:
    return [r for r in databricks.requests if r.path.endswith("/secrets/put")]


# -- which environment, workspace and identity (issue 8 point 8, header) ---------------------


@pytest.mark.parametrize("command", [["plan"], ["apply", "--yes"], ["destroy", "--yes"]])
def test_commands_name_environment_host_and_identity_first(
    dbtwf: Callable[..., Any], databricks: Any, command: list[str]
) -> None:
    result = dbtwf(*command)
    assert result.exit_code == 0, result.output
    first = result.stderr.splitlines()[0]
    assert first == f"environment 'dev' in {databricks.url} as {databricks.user_name}"

    as_json = json.loads(dbtwf(*command, "--json").stdout)
    assert as_json["environment"] == "dev"
    assert as_json["workspace_host"] == databricks.url
    assert as_json["identity"] == databricks.user_name
    assert isinstance(as_json["changes"], list)


# -- the token is proven before it is stored (issue 8 point 7) -------------------------------


def test_a_wrong_token_is_never_stored(
    dbtwf: Callable[..., Any], databricks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert dbtwf("apply", "--yes").exit_code == 0
    monkeypatch.setenv("DBT_CLOUD_API_TOKEN", WRONG_TOKEN)
    databricks.reset_log()

    result = dbtwf("apply", "--yes")

    assert result.exit_code == 1, result.output
    assert "dbt Cloud rejected the API token" in result.stderr and "hint:" in result.stderr
    assert databricks.writes() == []
    assert databricks.secret_value("dbtwf-dev", "dbt-cloud-api-token") == DBT_CLOUD_TOKEN
    assert WRONG_TOKEN not in result.output


def test_a_wrong_token_on_a_fresh_environment_writes_nothing(
    dbtwf: Callable[..., Any], databricks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DBT_CLOUD_API_TOKEN", WRONG_TOKEN)
    result = dbtwf("apply", "--yes")
    assert result.exit_code == 1, result.output
    assert databricks.writes() == []


def test_the_token_is_checked_only_when_it_is_stored(
    dbtwf: Callable[..., Any], databricks: Any, dbt_cloud: Any, tmp_path: Path
) -> None:
    with dbt_cloud.recording() as first:
        assert dbtwf("apply", "--yes").exit_code == 0
    assert [r.path for r in first] == [f"/api/v2/accounts/{dbt_cloud.account_id}/jobs/{DBT_JOB}/"]
    config = tmp_path / "dbtwf.toml"
    config.write_text(config.read_text() + '\n[environments.dev.schedule]\nquartz_cron = "0 0 6 * * ?"\n')
    with dbt_cloud.recording() as second:
        assert dbtwf("apply", "--yes").exit_code == 0  # the workflow changes, the secret does not
    assert second == []


# -- saved plans (issue 8 point 11) ------------------------------------------------------------


def test_a_saved_plan_is_carried_out_exactly(
    dbtwf: Callable[..., Any], databricks: Any, tmp_path: Path
) -> None:
    saved = tmp_path / "dev.plan.json"
    planned = dbtwf("plan", "--out", str(saved))
    assert planned.exit_code == 0, planned.output
    assert databricks.writes() == []
    text = saved.read_text()
    for needle in (DBT_CLOUD_TOKEN, DBT_CLOUD_TOKEN[-6:]):
        assert needle not in text
    data = json.loads(text)
    assert (data["format"], data["version"], data["environment"]) == ("dbtwf-plan", 1, "dev")
    assert data["identity"] == databricks.user_name and data["token"]["fingerprint"]

    with databricks.recording() as requests:
        applied = dbtwf("apply", "--plan", str(saved), "--yes")
    assert applied.exit_code == 0, applied.output
    (create,) = [r for r in requests if r.path.endswith("/jobs/create")]
    workflow = next(c for c in data["changes"] if c["resource"] == "workflow")
    sent = create.json()
    planned_settings = workflow["payload"]["settings"]
    assert {key: sent[key] for key in planned_settings} == planned_settings
    assert not {key: value for key, value in sent.items() if key not in planned_settings and value}
    (notebook,) = [c for c in data["changes"] if c["resource"] == "notebook"]
    assert databricks.workspace_file(notebook["name"]) == notebook["payload"]["source"].encode()
    assert "is up to date; nothing to do" in dbtwf("apply", "--yes").stdout


@pytest.mark.parametrize("what", ["token", "config", "host", "identity"])
def test_a_saved_plan_that_no_longer_matches_is_refused(
    dbtwf: Callable[..., Any],
    databricks: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    dbt_cloud: Any,
    what: str,
) -> None:
    saved = tmp_path / "dev.plan.json"
    assert dbtwf("plan", "--out", str(saved)).exit_code == 0
    if what == "token":
        monkeypatch.setenv("DBT_CLOUD_API_TOKEN", "dbtc_the_rotated_token_1111111")
        expected = "the dbt Cloud token is not the one the plan was made with"
    elif what == "config":
        config = tmp_path / "dbtwf.toml"
        config.write_text(config.read_text().replace(f"nightly = {DBT_JOB}", "nightly = 43"))
        expected = "the config of environment 'dev' changed since the plan"
    else:
        data = json.loads(saved.read_text())
        if what == "host":
            data["workspace_host"] = "https://prod.cloud.databricks.invalid"
            expected = "the plan was made for https://prod.cloud.databricks.invalid"
        else:
            data["identity"] = "deployer@example.com"
            expected = "the plan was made as deployer@example.com"
        saved.write_text(json.dumps(data))
    databricks.reset_log()

    result = dbtwf("apply", "--plan", str(saved), "--yes")

    assert result.exit_code == 1, result.output
    assert "no longer matches" in result.stderr and expected in result.stderr
    assert "dbtwf plan --out" in result.stderr
    assert databricks.writes() == []


def test_a_saved_plan_refuses_a_workspace_changed_since(
    dbtwf: Callable[..., Any], databricks: Any, tmp_path: Path
) -> None:
    assert dbtwf("apply", "--yes").exit_code == 0
    config = tmp_path / "dbtwf.toml"
    config.write_text(config.read_text() + '\n[environments.dev.schedule]\nquartz_cron = "0 0 6 * * ?"\n')
    saved = tmp_path / "dev.plan.json"
    assert dbtwf("plan", "--out", str(saved)).exit_code == 0
    (job_id,) = databricks.jobs
    make_workspace(databricks).update_job(job_id, {"max_concurrent_runs": 3})  # a hand edit
    databricks.reset_log()

    result = dbtwf("apply", "--plan", str(saved), "--yes")

    assert result.exit_code == 1, result.output
    assert "the workspace changed since the plan: workflow" in result.stderr
    assert f"(job {job_id}) was changed" in result.stderr
    assert write_kinds(databricks.requests) == LOCK_ONLY
    assert databricks.jobs[job_id]["settings"]["max_concurrent_runs"] == 3


@pytest.mark.parametrize(
    ("resource", "field", "value"),
    [
        ("notebook", "source", "# Databricks notebook source\nprint(dbutils.secrets.get('x', 'y'))\n"),
        ("secret", "scope", "someone-elses-scope"),
        ("folder", "path", "/Shared/evil"),
    ],
)
def test_a_saved_plan_edited_by_hand_is_refused_before_any_write(
    dbtwf: Callable[..., Any], databricks: Any, tmp_path: Path, resource: str, field: str, value: str
) -> None:
    """The plan file is no key to the workspace: an edited payload (the notebook's code, where
    the token is stored) is refused, because planning again does not give it."""
    saved = tmp_path / "dev.plan.json"
    assert dbtwf("plan", "--out", str(saved)).exit_code == 0
    plan = json.loads(saved.read_text())
    (change,) = [c for c in plan["changes"] if c["resource"] == resource]
    change["payload"][field] = value
    saved.write_text(json.dumps(plan))
    databricks.reset_log()

    result = dbtwf("apply", "--plan", str(saved), "--yes")

    assert result.exit_code == 1, result.output
    assert f"is not what planning gives now, in: {resource}" in result.stderr
    assert databricks.writes() == []


def test_a_plan_made_without_a_token_cannot_store_one(
    dbtwf: Callable[..., Any], databricks: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved = tmp_path / "dev.plan.json"
    monkeypatch.delenv("DBT_CLOUD_API_TOKEN")
    assert dbtwf("plan", "--out", str(saved)).exit_code == 0
    monkeypatch.setenv("DBT_CLOUD_API_TOKEN", DBT_CLOUD_TOKEN)
    result = dbtwf("apply", "--plan", str(saved), "--yes")
    assert result.exit_code == 1
    assert "made without one" in result.stderr
    assert databricks.writes() == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "is not a dbtwf plan"),
        ('{"format": "something-else"}', "is not a dbtwf plan"),
        ('{"format": "dbtwf-plan", "version": 99}', "written by a newer dbtwf"),
        ('{"format": "dbtwf-plan", "version": 1}', "is not a readable dbtwf plan"),
    ],
)
def test_a_bad_plan_file_is_bad_input(
    dbtwf: Callable[..., Any], databricks: Any, tmp_path: Path, content: str, message: str
) -> None:
    saved = tmp_path / "bad.plan.json"
    saved.write_text(content)
    result = dbtwf("apply", "--plan", str(saved), "--yes")
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert databricks.requests == []


def test_a_plan_of_another_environment_is_bad_input(
    dbtwf: Callable[..., Any], databricks: Any, tmp_path: Path
) -> None:
    saved = tmp_path / "dev.plan.json"
    assert dbtwf("plan", "--out", str(saved)).exit_code == 0
    databricks.reset_log()
    result = dbtwf("apply", "--plan", str(saved), "--env", "prod", "--yes")
    assert result.exit_code == 2 and "is for environment 'dev'" in result.stderr
    assert databricks.requests == []


def test_apply_all_stores_no_token_dbt_cloud_rejects(
    dbtwf: Callable[..., Any],
    databricks: Any,
    dbt_cloud: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.provision_helpers import write_config

    write_config(
        tmp_path / "dbtwf.toml", dbt_cloud.url, {"dev": {"nightly": DBT_JOB}, "prod": {"nightly": DBT_JOB}}
    )
    monkeypatch.setenv("DBT_CLOUD_API_TOKEN", WRONG_TOKEN)
    result = dbtwf("apply", "--all", "--yes")
    assert result.exit_code == 1, result.output
    assert "environment 'dev': dbt Cloud rejected the API token" in result.stderr
    assert "environment 'prod': dbt Cloud rejected the API token" in result.stderr
    assert databricks.writes() == []


def test_onboard_proves_the_token_once(databricks: Any, dbt_cloud: Any, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from provision.cli import app
    from tests.provision_helpers import cli_env

    dbt_cloud.add_job(DBT_JOB)
    result = CliRunner().invoke(
        app,
        ["onboard", "--dbt-job-url", dbt_cloud.job_url(DBT_JOB), "--yes"],
        env=cli_env(tmp_path, databricks.url),
    )
    assert result.exit_code == 0, result.output
    assert [r.path for r in dbt_cloud.requests] == [
        f"/api/v2/accounts/{dbt_cloud.account_id}/jobs/{DBT_JOB}/"
    ]


def test_a_young_lock_says_wait_and_breaking_it_warns(dbtwf: Callable[..., Any], databricks: Any) -> None:
    import time

    ws = make_workspace(databricks)
    folder = f"/Users/{databricks.user_name}/.dbtwf/dev"  # the default: the deployer's home
    ws.mkdirs(folder)
    held = {"holder": "ci@runner pid 7", "acquired_at": time.time() - 5, "environment": "dev", "nonce": "x"}
    ws.write_file(f"{folder}/.dbtwf-lock-dev.json", json.dumps(held).encode(), overwrite=False)

    refused = dbtwf("apply", "--yes")
    assert refused.exit_code == 1
    assert "locked by ci@runner pid 7 for" in refused.stderr and "probably still going" in refused.stderr

    broken = dbtwf("apply", "--yes", "--break-lock")
    assert broken.exit_code == 0, broken.output
    assert "warning: breaking the lock of environment 'dev' held by ci@runner pid 7 for" in broken.stderr
    assert "may still be going" in broken.stderr
