"""The dbt platform task backend (Beta) and `dbtwf migrate`, over real HTTP against both emulators.

An environment with task_type = "dbt_platform" gets dbt platform tasks and no scope, secret or
notebook (and no token is asked for); the Databricks emulator runs such a task by triggering
the job on the dbt Cloud emulator through the Unity Catalog connection's host and token.
`dbtwf migrate` switches the owned workflow and the tasks added to foreign workflows, as one
plan, and the next plan is a no-op.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import DBT_ACCOUNT_ID, DBT_CLOUD_TOKEN
from tests.emulators.dbtcloud import Scenario
from tests.provision_helpers import cli_env, make_workspace, write_config

if TYPE_CHECKING:
    from provision.databricks import Workspace

DBT_JOB = 42
CONNECTION = "dbt_platform_conn"


def platform_config(path: Path, dbt_url: str, *, connection: str | None = CONNECTION) -> None:
    write_config(path, dbt_url, {"dev": {"nightly": DBT_JOB}})
    lines = ["# the team's dbt jobs", "[environments.dev]", 'task_type = "dbt_platform"']
    if connection is not None:
        lines.append(f'dbt_platform_connection = "{connection}"')
    path.write_text(
        path.read_text().replace(
            "[environments.dev.dbt_jobs]", "\n".join(lines) + "\n\n[environments.dev.dbt_jobs]"
        )
    )


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, databricks: Any) -> Callable[..., Any]:
    """The CLI in-process with the emulators' credentials and NO dbt token anywhere."""
    from typer.testing import CliRunner

    from provision.cli import app

    for name, value in cli_env(tmp_path, databricks.url, token=None).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DBT_CLOUD_API_TOKEN", raising=False)

    def invoke(*args: str) -> Any:
        return CliRunner().invoke(app, list(args))

    return invoke


def seed_connection(databricks: Any, dbt_cloud: Any) -> None:
    databricks.add_dbt_platform_connection(
        CONNECTION, dbt_url=dbt_cloud.url, account_id=DBT_ACCOUNT_ID, token=DBT_CLOUD_TOKEN
    )


def the_job(databricks: Any) -> dict[str, Any]:
    (job,) = databricks.jobs.values()
    return dict(job["settings"])


# --- config ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda text: text.replace(f'dbt_platform_connection = "{CONNECTION}"\n', ""),
            "dbt_platform_connection: missing",
        ),
        (lambda text: text.replace('"dbt_platform"', '"dbt-cloud"'), "task_type: must be one of"),
        (
            lambda text: text.replace(f'"{CONNECTION}"', '"main.dbt conn"'),
            "not a valid dbt_platform_connection",
        ),
    ],
)
def test_bad_task_type_or_connection_is_exit_2_before_any_request(
    cli: Callable[..., Any], tmp_path: Path, databricks: Any, edit: Callable[[str], str], expected: str
) -> None:
    config = tmp_path / "dbtwf.toml"
    platform_config(config, "http://127.0.0.1:9")
    config.write_text(edit(config.read_text()))
    result = cli("plan")
    assert result.exit_code == 2, result.output
    assert expected in result.stderr and len(result.stderr.strip().splitlines()) <= 2
    assert databricks.requests == []


# --- apply and run ---------------------------------------------------------------------------


def test_apply_makes_only_dbt_platform_tasks_no_secret_no_notebook_no_token(
    cli: Callable[..., Any], tmp_path: Path, databricks: Any, dbt_cloud: Any
) -> None:
    platform_config(tmp_path / "dbtwf.toml", dbt_cloud.url)
    applied = cli("apply", "--yes")  # no DBT_CLOUD_API_TOKEN, no keyring entry, no terminal
    assert applied.exit_code == 0, applied.output

    settings = the_job(databricks)
    assert [{k: t[k] for k in ("task_key", "dbt_platform_task")} for t in settings["tasks"]] == [
        {
            "task_key": "nightly",
            "dbt_platform_task": {
                "connection_resource_name": CONNECTION,
                "dbt_platform_job_id": str(DBT_JOB),
            },
        }
    ]
    task = settings["tasks"][0]
    assert "notebook_task" not in task and "existing_cluster_id" not in task and "job_cluster_key" not in task
    assert not settings.get("parameters")  # the task names its dbt job; no job-level job_id
    # No scope, no secret (read only to show leftovers of a notebook backend), no notebook.
    assert not [r.path for r in databricks.requests if r.is_write and "/secrets/" in r.path]
    imported = [
        str(r.json().get("path")) for r in databricks.requests if r.path.endswith("/workspace/import")
    ]
    assert imported and all("/.dbtwf-" in path for path in imported)  # only the lock and the state record
    assert DBT_CLOUD_TOKEN not in applied.output

    databricks.reset_log()
    plan = json.loads(cli("plan", "--json").stdout)
    assert {c["action"] for c in plan["changes"]} == {"no-op"}
    assert not any(r.is_write for r in databricks.requests)


def test_run_follows_the_dbt_platform_task_to_success_and_failure(
    cli: Callable[..., Any], tmp_path: Path, databricks: Any, dbt_cloud: Any
) -> None:
    platform_config(tmp_path / "dbtwf.toml", dbt_cloud.url)
    seed_connection(databricks, dbt_cloud)
    dbt_cloud.add_job(DBT_JOB, scenario=Scenario(outcome="success", polls=1))
    assert cli("apply", "--yes").exit_code == 0

    ok = cli("run", "--poll-interval", "0.05")
    assert ok.exit_code == 0, ok.output
    assert "succeeded" in ok.stdout
    (dbt_run,) = dbt_cloud.runs_of(DBT_JOB)  # triggered by Databricks through the connection
    assert f"nightly: dbt run {dbt_run['id']} Success: {dbt_run['href']}" in ok.stdout
    assert "Triggered by Databricks job run" in str(dbt_run.get("trigger", {}).get("cause", ""))

    dbt_cloud.set_scenario(DBT_JOB, Scenario(outcome="error", polls=1))
    failed = cli("run", "--poll-interval", "0.05")
    assert failed.exit_code == 1
    assert "task 'nightly'" in failed.stderr and "dbt platform job run" in failed.stderr
    assert len(dbt_cloud.runs_of(DBT_JOB)) == 2
    assert DBT_CLOUD_TOKEN not in ok.output + failed.output


def test_a_missing_connection_fails_the_task_run(
    cli: Callable[..., Any], tmp_path: Path, databricks: Any, dbt_cloud: Any
) -> None:
    platform_config(tmp_path / "dbtwf.toml", dbt_cloud.url)
    dbt_cloud.add_job(DBT_JOB, scenario=Scenario(outcome="success", polls=1))
    applied = cli("apply", "--yes")
    # apply goes ahead (an admin may make the connection later) but says what will happen.
    assert applied.exit_code == 0 and f"connection {CONNECTION!r} does not exist" in applied.output
    assert "every run of these dbt platform tasks fails" in applied.output
    failed = cli("run", "--poll-interval", "0.05")
    assert failed.exit_code == 1 and f"Connection '{CONNECTION}' does not exist" in failed.stderr
    assert dbt_cloud.runs_of(DBT_JOB) == []


# --- doctor ------------------------------------------------------------------------------------


def test_doctor_checks_the_connection_and_says_how_to_make_it(
    cli: Callable[..., Any], tmp_path: Path, databricks: Any, dbt_cloud: Any
) -> None:
    platform_config(tmp_path / "dbtwf.toml", dbt_cloud.url)
    assert cli("apply", "--yes").exit_code == 0

    missing = cli("doctor", "--json")
    assert missing.exit_code == 1
    checks = {c["name"]: c for c in json.loads(missing.stdout)["checks"]}
    assert checks["dbt platform connection"]["status"] == "fail"
    assert "CREATE CONNECTION" in checks["dbt platform connection"]["fix"]
    assert "docs.databricks.com/aws/en/jobs/dbt-platform" in checks["dbt platform connection"]["fix"]
    assert "secret scope" not in checks and "notebook" not in checks  # nothing of it is used
    assert checks["dbt token"]["status"] == "ok"  # none needed

    seed_connection(databricks, dbt_cloud)
    present = cli("doctor", "--json")
    assert present.exit_code == 0, present.output
    checks = {c["name"]: c for c in json.loads(present.stdout)["checks"]}
    assert checks["dbt platform connection"]["status"] == "ok"
    assert checks["workflow"]["status"] == "ok"
    assert any(r.path == f"/api/2.1/unity-catalog/connections/{CONNECTION}" for r in databricks.requests)
    assert DBT_CLOUD_TOKEN not in present.output  # GET never answers the connection's token


# --- add-task -----------------------------------------------------------------------------------


def test_add_task_on_a_dbt_platform_environment_adds_a_dbt_platform_task(
    cli: Callable[..., Any], tmp_path: Path, databricks: Any, dbt_cloud: Any
) -> None:
    platform_config(tmp_path / "dbtwf.toml", dbt_cloud.url)
    ws = make_workspace(databricks)
    job_id = ws.create_job(
        {
            "name": "Nightly ETL",
            "tasks": [{"task_key": "ingest", "notebook_task": {"notebook_path": "/Shared/ingest"}}],
        }
    )
    added = cli(
        "add-task", "--workflow", str(job_id), "--dbt-job", str(DBT_JOB), "--depends-on", "ingest", "--yes"
    )
    assert added.exit_code == 0, added.output
    tasks = {t["task_key"]: t for t in databricks.jobs[job_id]["settings"]["tasks"]}
    task = tasks[f"dbt_job_{DBT_JOB}"]
    assert task["dbt_platform_task"] == {
        "connection_resource_name": CONNECTION,
        "dbt_platform_job_id": str(DBT_JOB),
    }
    assert "notebook_task" not in task and task["depends_on"] == [{"task_key": "ingest"}]
    assert tasks["ingest"]["notebook_task"]["notebook_path"] == "/Shared/ingest"
    assert not any("/secrets/" in r.path for r in databricks.requests if r.is_write)


# --- migrate -----------------------------------------------------------------------------------


def writes(databricks: Any, kind: str) -> list[Any]:
    return [r for r in databricks.requests if r.is_write and r.path.endswith(kind)]


def applied_on_the_notebook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, databricks: Any, dbt_cloud: Any
) -> tuple[Callable[..., Any], Workspace]:
    """A notebook environment applied with the token set: the CLI in-process, and the workspace."""
    from typer.testing import CliRunner

    from provision.cli import app

    for name, value in cli_env(tmp_path, databricks.url).items():
        monkeypatch.setenv(name, value)

    def invoke(*args: str) -> Any:
        return CliRunner().invoke(app, list(args))

    dbt_cloud.add_job(DBT_JOB, scenario=Scenario(outcome="success", polls=1))
    assert invoke("apply", "--yes").exit_code == 0
    return invoke, make_workspace(databricks)


def test_migrate_to_dbt_platform_and_back_switches_owned_and_added_tasks_as_one_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, databricks: Any, dbt_cloud: Any
) -> None:
    config = tmp_path / "dbtwf.toml"
    write_config(config, dbt_cloud.url, {"dev": {"nightly": DBT_JOB}})
    config.write_text("# keep me: the team's config\n" + config.read_text())
    invoke, ws = applied_on_the_notebook(tmp_path, monkeypatch, databricks, dbt_cloud)
    foreign = ws.create_job(
        {
            "name": "Nightly ETL",
            "tasks": [
                {"task_key": "ingest", "notebook_task": {"notebook_path": "/Shared/ingest"}},
                {
                    "task_key": "report",
                    "depends_on": [{"task_key": "ingest"}],
                    "notebook_task": {"notebook_path": "/Shared/report"},
                },
            ],
        }
    )
    added = invoke(
        "add-task",
        "--workflow",
        str(foreign),
        "--dbt-job",
        str(DBT_JOB),
        "--task-key",
        "dbt_marts",
        "--depends-on",
        "ingest",
        "--yes",
    )
    assert added.exit_code == 0, added.output
    # A field the user set on the added task afterwards: migrate keeps it.
    marts = next(t for t in databricks.jobs[foreign]["settings"]["tasks"] if t["task_key"] == "dbt_marts")
    ws.update_job(foreign, {"tasks": [{**marts, "max_retries": 2}]})
    others_before = [t for t in databricks.jobs[foreign]["settings"]["tasks"] if t["task_key"] != "dbt_marts"]

    monkeypatch.delenv("DBT_CLOUD_API_TOKEN")  # going to dbt_platform needs no token
    # Not before the connection exists: every run of the switched tasks would fail.
    databricks.reset_log()
    missing = invoke("migrate", "--env", "dev", "--to", "dbt_platform", "--connection", CONNECTION, "--yes")
    assert missing.exit_code == 2 and f"connection {CONNECTION!r} does not exist" in missing.stderr
    assert "CREATE CONNECTION" in missing.stderr and [r for r in databricks.requests if r.is_write] == []
    seed_connection(databricks, dbt_cloud)
    databricks.reset_log()
    there = invoke(
        "migrate", "--env", "dev", "--to", "dbt_platform", "--connection", CONNECTION, "--yes", "--json"
    )
    assert there.exit_code == 0, there.output
    # One read of the connection and of the state record: the check, the plan and the tasks share them.
    reads = [r.path for r in databricks.requests if not r.is_write]
    assert reads.count(f"/api/2.1/unity-catalog/connections/{CONNECTION}") == 1
    assert reads.count("/api/2.0/workspace/export") == 2  # the plan's read, the check under the lock
    planned = json.loads(there.stdout)["changes"]
    assert ("config", "update") in {(c["resource"], c["action"]) for c in planned}
    assert len(writes(databricks, "/jobs/reset")) == 1  # the owned workflow
    (update,) = writes(databricks, "/jobs/update")  # one per foreign workflow, only its task
    assert [t["task_key"] for t in update.json()["new_settings"]["tasks"]] == ["dbt_marts"]
    assert not any("/secrets/" in r.path and r.is_write for r in databricks.requests)

    settings = databricks.jobs[foreign]["settings"]
    assert [t for t in settings["tasks"] if t["task_key"] != "dbt_marts"] == others_before
    marts = next(t for t in settings["tasks"] if t["task_key"] == "dbt_marts")
    assert marts["dbt_platform_task"] == {
        "connection_resource_name": CONNECTION,
        "dbt_platform_job_id": str(DBT_JOB),
    }
    assert "notebook_task" not in marts
    assert marts["max_retries"] == 2 and marts["depends_on"] == [{"task_key": "ingest"}]
    assert "Added by dbtwf for environment 'dev'" in marts["description"]
    owned = next(j for j in databricks.jobs.values() if j["job_id"] != foreign)["settings"]
    assert [t["dbt_platform_task"]["dbt_platform_job_id"] for t in owned["tasks"]] == [str(DBT_JOB)]
    text = config.read_text()
    assert 'task_type = "dbt_platform"' in text and f'dbt_platform_connection = "{CONNECTION}"' in text
    assert text.startswith("# keep me: the team's config")
    databricks.reset_log()
    plan = json.loads(invoke("plan", "--json").stdout)
    assert {c["action"] for c in plan["changes"]} == {"no-op"}
    assert any(
        "kept until `dbtwf destroy`" in c["reason"] for c in plan["changes"] if c["resource"] == "notebook"
    )

    again = invoke("migrate", "--to", "dbt_platform", "--yes")
    assert again.exit_code == 2 and "already uses task_type 'dbt_platform'" in again.stderr

    monkeypatch.setenv("DBT_CLOUD_API_TOKEN", DBT_CLOUD_TOKEN)  # back to notebook: the secret's token
    databricks.reset_log()
    back = invoke("migrate", "--to", "notebook", "--yes")
    assert back.exit_code == 0, back.output
    assert len(writes(databricks, "/jobs/reset")) == 1
    (update,) = writes(databricks, "/jobs/update")
    assert [t["task_key"] for t in update.json()["new_settings"]["tasks"]] == ["dbt_marts"]
    assert not writes(databricks, "/secrets/put")  # the same token is still stored
    settings = databricks.jobs[foreign]["settings"]
    assert [t for t in settings["tasks"] if t["task_key"] != "dbt_marts"] == others_before
    marts = next(t for t in settings["tasks"] if t["task_key"] == "dbt_marts")
    assert "dbt_platform_task" not in marts and marts["max_retries"] == 2
    assert marts["notebook_task"]["base_parameters"] == {"job_id": str(DBT_JOB)}
    assert 'task_type = "dbt_platform"' not in config.read_text()
    plan = json.loads(invoke("plan", "--json").stdout)
    assert {c["action"] for c in plan["changes"]} == {"no-op"}

    ran = invoke("run", "--poll-interval", "0.05")  # the restored notebook tasks still work
    assert ran.exit_code == 0, ran.output
    outputs = there.output + back.output + ran.output + added.output
    assert DBT_CLOUD_TOKEN not in outputs
    assert DBT_CLOUD_TOKEN not in json.dumps([j["settings"] for j in databricks.jobs.values()])
    assert DBT_CLOUD_TOKEN not in config.read_text()


def test_migrate_bad_input_is_exit_2_before_any_request(
    cli: Callable[..., Any], tmp_path: Path, databricks: Any, dbt_cloud: Any
) -> None:
    write_config(tmp_path / "dbtwf.toml", dbt_cloud.url, {"dev": {"nightly": DBT_JOB}})
    for args, expected in [
        (("--to", "dbt_platform"), "names no dbt_platform_connection"),
        (("--to", "notebook"), "already uses task_type 'notebook'"),
        (("--to", "dbt-cloud"), "is not a task type"),
        (("--to", "dbt_platform", "--connection", "a.b"), "not a valid --connection"),
    ]:
        result = cli("migrate", *args, "--yes")
        assert result.exit_code == 2, (args, result.output)
        assert expected in result.stderr
    assert databricks.requests == []


# --- the emulator --------------------------------------------------------------------------------


def test_emulator_connections_follow_the_sdk_and_never_answer_the_token(databricks: Any) -> None:
    from databricks.sdk.service import catalog

    ws = make_workspace(databricks)
    client = ws._client
    created = client.connections.create(
        name="dbt_cloud",
        connection_type=catalog.ConnectionType.HTTP,
        options={"host": "http://127.0.0.1:9", "account_id": "1", "token": "dbtc_not_answered"},
    )
    assert created.name == "dbt_cloud" and created.options == {
        "host": "http://127.0.0.1:9",
        "account_id": "1",
    }
    found = ws.get_connection("dbt_cloud")
    assert found is not None and found["connection_type"] == "HTTP"
    assert "dbtc_not_answered" not in json.dumps(found)
    assert ws.get_connection("nope") is None  # 404 -> None, through the gateway
    with pytest.raises(Exception, match="already exists"):
        client.connections.create(name="DBT_CLOUD", connection_type=catalog.ConnectionType.HTTP, options={})


def test_emulator_rejects_a_dbt_platform_task_without_its_fields(databricks: Any) -> None:
    from provision.errors import RemoteError

    ws = make_workspace(databricks)
    task = {"task_key": "t", "dbt_platform_task": {"connection_resource_name": CONNECTION}}
    with pytest.raises(RemoteError, match="dbt_platform_job_id"):
        ws.create_job({"name": "x", "tasks": [task]})
    task["dbt_platform_task"]["dbt_platform_job_id"] = 42  # the SDK's field is a string
    with pytest.raises(RemoteError, match="must be a string"):
        ws.create_job({"name": "x", "tasks": [task]})


def test_destroy_after_migrate_removes_the_switched_task_and_the_unused_notebook_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, databricks: Any, dbt_cloud: Any
) -> None:
    """The record names the task as migrate wrote it, so destroy still knows it for dbtwf's."""
    write_config(tmp_path / "dbtwf.toml", dbt_cloud.url, {"dev": {"nightly": DBT_JOB}})
    invoke, ws = applied_on_the_notebook(tmp_path, monkeypatch, databricks, dbt_cloud)
    foreign = ws.create_job(
        {
            "name": "ETL",
            "tasks": [{"task_key": "ingest", "notebook_task": {"notebook_path": "/Shared/ingest"}}],
        }
    )
    assert invoke("add-task", "--workflow", str(foreign), "--dbt-job", str(DBT_JOB), "--yes").exit_code == 0
    seed_connection(databricks, dbt_cloud)
    assert invoke("migrate", "--to", "dbt_platform", "--connection", CONNECTION, "--yes").exit_code == 0

    destroyed = invoke("destroy", "--yes")
    assert destroyed.exit_code == 0, destroyed.output
    assert [t["task_key"] for t in databricks.jobs[foreign]["settings"]["tasks"]] == ["ingest"]
    assert list(databricks.jobs) == [foreign]  # the owned workflow is gone too
    assert ws.list_scopes() == []  # scope and secret, unused since the migrate, removed
    assert databricks.workspace_file(f"/Users/{databricks.user_name}/.dbtwf/dev/run_dbt_cloud_job") is None


def test_migrate_to_notebook_creates_the_notebook_backend_and_needs_the_token(
    cli: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, databricks: Any, dbt_cloud: Any
) -> None:
    platform_config(tmp_path / "dbtwf.toml", dbt_cloud.url)
    dbt_cloud.add_job(DBT_JOB, scenario=Scenario(outcome="success", polls=1))
    assert cli("apply", "--yes").exit_code == 0

    databricks.reset_log()
    refused = cli("migrate", "--to", "notebook", "--yes")  # no token anywhere
    assert refused.exit_code == 2 and "token" in refused.stderr
    assert databricks.requests == []

    monkeypatch.setenv("DBT_CLOUD_API_TOKEN", DBT_CLOUD_TOKEN)
    back = cli("--env", "dev", "migrate", "--to", "notebook", "--yes")
    assert back.exit_code == 0, back.output
    # Said as a migrate, and the next step names the environment it was given (a bare
    # `dbtwf plan` fails when the config has several and none is dev).
    assert "migrated environment 'dev' to notebook" in back.stdout
    assert "`dbtwf --env dev plan` now shows nothing to do" in back.stderr
    (put,) = writes(databricks, "/secrets/put")  # the token reaches Databricks only here
    assert put.json()["string_value"] == DBT_CLOUD_TOKEN
    assert databricks.secret_value("dbtwf-dev", "dbt-cloud-api-token") == DBT_CLOUD_TOKEN
    (task,) = the_job(databricks)["tasks"]
    assert "dbt_platform_task" not in task and task["notebook_task"]["notebook_path"].endswith(
        "run_dbt_cloud_job"
    )
    assert cli("run", "--poll-interval", "0.05").exit_code == 0
    assert DBT_CLOUD_TOKEN not in back.output


def test_a_saved_plan_of_dbt_platform_tasks_applies_without_a_token(
    cli: Callable[..., Any], tmp_path: Path, databricks: Any, dbt_cloud: Any
) -> None:
    platform_config(tmp_path / "dbtwf.toml", dbt_cloud.url)
    saved = tmp_path / "dev.plan.json"
    assert cli("plan", "--out", str(saved)).exit_code == 0
    applied = cli("apply", "--plan", str(saved), "--yes")
    assert applied.exit_code == 0, applied.output
    assert [t["task_key"] for t in the_job(databricks)["tasks"]] == ["nightly"]
