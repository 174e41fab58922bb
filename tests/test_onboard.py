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


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A terminal that answers no to every question (and records them)."""
    questions: list[str] = []

    def answer(question: str, **_: Any) -> bool:
        questions.append(question)
        return False

    monkeypatch.setattr("provision.commands.shell.can_ask", lambda: True)
    monkeypatch.setattr("typer.confirm", answer)
    return questions


@pytest.mark.parametrize("answer", ["no", "ctrl-c"])
def test_onboard_writes_the_config_only_once_confirmed(
    tmp_path: Path,
    databricks: Any,
    dbt_cloud: Any,
    cli: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    asked: list[str],
    answer: str,
) -> None:
    dbt_cloud.add_job(42)
    dbt_cloud.add_job(43)
    config = write_config(tmp_path / "dbtwf.toml", dbt_cloud.url, {"dev": {"nightly": 42}})
    before = config.read_bytes()
    if answer == "ctrl-c":

        def interrupt(question: str, **_: Any) -> bool:
            raise KeyboardInterrupt

        monkeypatch.setattr("typer.confirm", interrupt)
    with databricks.recording() as requests:
        result = invoke(["onboard", "--env", "prod", "--dbt-job-url", dbt_cloud.job_url(43)], cli)
    assert result.exit_code == 1, result.output
    assert config.read_bytes() == before  # asked (or interrupted) before a byte of it was written
    assert requests and [r for r in requests if r.is_write] == []  # signed in and planned, nothing written
    assert "create  scope" in result.stdout  # the plan was shown
    last = result.stderr.strip().splitlines()[-1]
    if answer == "no":
        assert asked == ["apply these changes to environment 'prod'?"]
        assert last == "environment 'prod' not applied; nothing was changed"  # a plain line, exit 1
    else:
        assert last == "interrupted"


def test_onboard_refused_by_databricks_writes_no_config(
    tmp_path: Path, databricks: Any, dbt_cloud: Any, cli: dict[str, str]
) -> None:
    dbt_cloud.add_job(42)
    result = invoke(
        ["onboard", "--dbt-job-url", dbt_cloud.job_url(42), "--yes"],
        {**cli, "DATABRICKS_TOKEN": "dapi-wrong"},
    )
    assert result.exit_code == 1, result.output
    assert "rejected the credentials" in result.stderr
    assert not (tmp_path / "dbtwf.toml").exists()


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


def test_apply_says_which_environment_and_where_the_workflow_is(
    tmp_path: Path, databricks: Any, dbt_cloud: Any, cli: dict[str, str]
) -> None:
    write_config(tmp_path / "dbtwf.toml", dbt_cloud.url, {"dev": {"nightly": 42}, "prod": {"nightly": 43}})
    dbt_cloud.add_job(42)
    for _ in range(2):  # created, then up to date: the workflow is named both times
        result = invoke(["apply", "--yes"], cli)
        assert result.exit_code == 0, result.output
        (job_id,) = databricks.jobs
        header = f"environment 'dev' in {databricks.url} as {databricks.user_name}"
        assert f"{header} (chosen by default; --env picks one of dev, prod)" in result.stderr
        assert f"workflow {job_id}: {databricks.url}/jobs/{job_id}" in result.stdout
        assert "next: `dbtwf run` runs the workflow now" in result.stderr
    explicit = invoke(["--env", "dev", "plan"], cli)
    assert f"{header}\n" in explicit.stderr  # chosen: nothing to add


def test_apply_all_adopts_with_adopt_and_says_what_is_up_to_date(
    tmp_path: Path, databricks: Any, dbt_cloud: Any, cli: dict[str, str]
) -> None:
    from tests.provision_helpers import make_workspace

    write_config(tmp_path / "dbtwf.toml", dbt_cloud.url, {"dev": {"nightly": 42}, "prod": {"nightly": 43}})
    dbt_cloud.add_job(42)
    dbt_cloud.add_job(43)
    theirs = make_workspace(databricks).create_job({"name": "dbt Cloud jobs (dev)", "tasks": []})
    refused = invoke(["apply", "--all", "--yes"], cli)
    assert refused.exit_code == 1 and "--adopt" in refused.stderr
    adopted = invoke(["apply", "--all", "--adopt", "--yes"], cli)
    assert adopted.exit_code == 0, adopted.output
    assert databricks.jobs[theirs]["settings"]["tags"]["dbtwf-env"] == "dev"
    # prod was applied by the first run; dev was left alone until --adopt.
    assert adopted.stderr.strip().endswith("applied 1 environment (dev); 1 environment (prod) up to date")
    again = invoke(["apply", "--all", "--yes"], cli)
    assert again.exit_code == 0 and again.stderr.strip().endswith("2 environments (dev, prod) up to date")
