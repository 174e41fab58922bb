"""onboard, plan and apply through the CLI, against both emulators over real HTTP
(destroy: test_destroy.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from provision.cli import app
from tests.conftest import DBT_CLOUD_TOKEN
from tests.provision_helpers import cli_env, write_config, write_kinds

runner = CliRunner()


def invoke(args: list[str], env: dict[str, str]) -> Any:
    return runner.invoke(app, args, env=env, catch_exceptions=False)


@pytest.fixture
def cli(tmp_path: Path, databricks: Any) -> dict[str, str]:
    return cli_env(tmp_path, databricks.url)


def test_onboard_then_apply_changes_nothing(
    tmp_path: Path, databricks: Any, dbt_cloud: Any, cli: dict[str, str]
) -> None:
    dbt_cloud.add_job(42)
    with databricks.recording() as fresh:
        result = invoke(["onboard", "--dbt-job-url", dbt_cloud.job_url(42), "--yes"], cli)
    assert result.exit_code == 0, result.output
    # mkdirs, lock, state (the scope is dbtwf's), scope, secret, notebook, job, state, unlock.
    assert 5 <= len(write_kinds(fresh)) <= 9
    config = (tmp_path / "dbtwf.toml").read_text()
    assert "42" in config and DBT_CLOUD_TOKEN not in config
    (job,) = databricks.jobs.values()
    assert job["settings"]["parameters"] == [{"name": "job_id", "default": "42"}]

    with databricks.recording() as again:
        result = invoke(["apply", "--yes"], cli)
    assert result.exit_code == 0, result.output
    assert write_kinds(again) == []
    plan = invoke(["plan", "--json"], cli)
    assert plan.exit_code == 0 and '"no-op"' in plan.stdout and '"create"' not in plan.stdout


def test_onboard_rejects_a_bad_token_before_touching_databricks(
    databricks: Any, dbt_cloud: Any, cli: dict[str, str], tmp_path: Path
) -> None:
    dbt_cloud.add_job(42)
    result = invoke(
        ["onboard", "--dbt-job-url", dbt_cloud.job_url(42), "--yes"],
        {**cli, "DBT_CLOUD_API_TOKEN": "dbtc_wrong"},
    )
    assert result.exit_code == 1
    assert "token" in result.output and "hint" in result.output
    assert databricks.requests == [] and not (tmp_path / "dbtwf.toml").exists()


def test_onboard_unknown_dbt_job_exits_2_and_writes_nothing(
    databricks: Any, dbt_cloud: Any, cli: dict[str, str], tmp_path: Path
) -> None:
    # The URL names a job that does not exist: bad input (exit 2), like an unknown workflow.
    result = invoke(["onboard", "--dbt-job-url", dbt_cloud.job_url(999), "--yes"], cli)
    assert result.exit_code == 2 and "dbt job 999 not found" in result.output
    assert databricks.requests == [] and not (tmp_path / "dbtwf.toml").exists()


@pytest.mark.parametrize(
    ("extra", "url_tail"),
    [
        ([], "/not/a/job/url"),
        ([], "/deploy/abc/projects/1/jobs/42"),
        (["--secret-scope", "bad scope!"], None),
        (["--secret-key", "x" * 129], None),
        (["--notebook-path", "relative/nb"], None),
        (["--schedule", "every day"], None),
        (["--timezone", "UTC"], None),  # a timezone without a schedule
    ],
)
def test_onboard_bad_input_exits_2_with_no_request(
    databricks: Any,
    dbt_cloud: Any,
    cli: dict[str, str],
    tmp_path: Path,
    extra: list[str],
    url_tail: str | None,
) -> None:
    url = dbt_cloud.url + url_tail if url_tail else dbt_cloud.job_url(42)
    result = invoke(["onboard", "--dbt-job-url", url, "--yes", *extra], cli)
    assert result.exit_code == 2, result.output
    assert databricks.requests == [] and dbt_cloud.requests == []
    assert not (tmp_path / "dbtwf.toml").exists()


def test_onboard_without_yes_off_a_terminal_exits_2_before_writing(
    databricks: Any, dbt_cloud: Any, cli: dict[str, str], tmp_path: Path
) -> None:
    dbt_cloud.add_job(42)
    result = invoke(["onboard", "--dbt-job-url", dbt_cloud.job_url(42)], cli)
    assert result.exit_code == 2, result.output
    assert "--yes" in result.output
    assert databricks.requests == [] and dbt_cloud.requests == []
    assert not (tmp_path / "dbtwf.toml").exists()


def test_apply_all_with_dbtwf_env_set_names_the_variable(
    databricks: Any, dbt_cloud: Any, cli: dict[str, str], tmp_path: Path
) -> None:
    write_config(tmp_path / "dbtwf.toml", dbt_cloud.url, {"dev": {"nightly": 42}})
    result = invoke(["apply", "--all", "--yes"], {**cli, "DBTWF_ENV": "dev"})
    assert result.exit_code == 2 and "DBTWF_ENV" in result.output
    assert databricks.requests == []


def test_onboard_without_a_token_exits_2(databricks: Any, dbt_cloud: Any, tmp_path: Path) -> None:
    dbt_cloud.add_job(42)
    result = invoke(
        ["onboard", "--dbt-job-url", dbt_cloud.job_url(42), "--yes"],
        cli_env(tmp_path, databricks.url, token=None),
    )
    assert result.exit_code == 2 and "DBT_CLOUD_API_TOKEN" in result.output
    assert databricks.requests == []


def test_unknown_environment_exits_2(
    databricks: Any, dbt_cloud: Any, cli: dict[str, str], tmp_path: Path
) -> None:
    write_config(tmp_path / "dbtwf.toml", dbt_cloud.url, {"dev": {"nightly": 42}})
    result = invoke(["--env", "nope", "apply", "--yes"], cli)
    assert result.exit_code == 2 and "dev" in result.output
    assert databricks.requests == []


def test_apply_all_converges_every_environment(
    databricks: Any, dbt_cloud: Any, cli: dict[str, str], tmp_path: Path
) -> None:
    write_config(tmp_path / "dbtwf.toml", dbt_cloud.url, {"dev": {"nightly": 42}, "prod": {"nightly": 43}})
    dbt_cloud.add_job(42)  # apply proves the token on each environment's jobs before storing it
    dbt_cloud.add_job(43)
    result = invoke(["apply", "--all", "--yes"], cli)
    assert result.exit_code == 0, result.output
    envs = sorted(job["settings"]["tags"]["dbtwf-env"] for job in databricks.jobs.values())
    assert envs == ["dev", "prod"]
    with databricks.recording() as again:
        assert invoke(["apply", "--all", "--yes"], cli).exit_code == 0
    assert write_kinds(again) == []


def test_apply_all_reports_a_failed_environment_and_applies_the_others(
    databricks: Any, dbt_cloud: Any, cli: dict[str, str], tmp_path: Path
) -> None:
    import json

    from tests.provision_helpers import make_workspace

    write_config(tmp_path / "dbtwf.toml", dbt_cloud.url, {"dev": {"nightly": 42}, "prod": {"nightly": 43}})
    dbt_cloud.add_job(42)
    dbt_cloud.add_job(43)
    ws = make_workspace(databricks)
    folder = f"/Users/{databricks.user_name}/.dbtwf/prod"
    ws.mkdirs(folder)  # another apply holds prod's lock
    held = {"holder": "ci@runner pid 7", "acquired_at": 0, "environment": "prod", "nonce": "x"}
    ws.write_file(f"{folder}/.dbtwf-lock-prod.json", json.dumps(held).encode(), overwrite=False)
    result = invoke(["apply", "--all", "--yes", "--json"], cli)
    assert result.exit_code == 1, result.output
    assert "environment 'prod'" in result.output and "ci@runner" in result.output
    tags = [job["settings"]["tags"]["dbtwf-env"] for job in databricks.jobs.values()]
    assert tags == ["dev"]
    report = json.loads(result.stdout)
    assert "error" in report["prod"] and report["prod"]["environment"] == "prod"
    assert report["dev"]["identity"] == databricks.user_name
    assert {"resource": "workflow", "action": "create"}.items() <= next(
        change for change in report["dev"]["changes"] if change["resource"] == "workflow"
    ).items()


def test_the_config_is_written_through_a_symlink_and_keeps_its_mode(tmp_path: Path) -> None:
    from provision.config_writer import upsert_environment

    real = tmp_path / "dotfiles" / "dbtwf.toml"
    real.parent.mkdir()
    write_config(real, "https://ab123.us1.dbt.com", {"dev": {"nightly": 42}})
    real.chmod(0o640)
    link = tmp_path / "dbtwf.toml"
    link.symlink_to(real)
    upsert_environment(link, "prod", {"dbt_jobs": {"nightly": 43}})
    assert link.is_symlink() and link.resolve() == real
    assert "[environments.prod" in real.read_text() and oct(real.stat().st_mode & 0o777) == oct(0o640)
    # Planning only writes nothing.
    before = real.read_bytes()
    upsert_environment(link, "qa", {"dbt_jobs": {"nightly": 44}}, write=False)
    assert real.read_bytes() == before
