"""add-task: one jobs/update holding only the new task, everything checked before it.

Pure decisions are tested directly; the rest over real HTTP against both emulators.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from provision.add_task import AddTaskRequest, AddTaskResult, add_task, check_request, parse_dbt_job
from provision.errors import AuthError, ConflictError, DbtwfError, UnknownNameError, UsageError
from provision.foreign_task import build_task, choose_compute, job_parameter_note, task_differences
from provision.model import Compute, DbtJobTask, Environment, default_task_key
from provision.onboard import OnboardOptions, prepare
from provision.state import AddedTask, load_state
from tests.conftest import DATABRICKS_TOKEN, DBT_ACCOUNT_ID, DBT_CLOUD_TOKEN
from tests.provision_helpers import cli_env, configured_cli, make_workspace, write_config, write_labels

if TYPE_CHECKING:
    from provision.databricks import Workspace
    from tests.emulators.databricks import DatabricksEmulator
    from tests.emulators.dbtcloud import DbtCloudEmulator

DBT_HOST = "ab123.us1.dbt.com"


def make_env(**overrides: Any) -> Environment:
    values: dict[str, Any] = {
        "name": "dev",
        "dbt_cloud_host": DBT_HOST,
        "dbt_cloud_account_id": 70403,
        "dbt_jobs": (DbtJobTask("dbt_cloud_1", 1),),
    }
    values.update(overrides)
    return Environment(**values)


# --- parsing the request -------------------------------------------------------------------


def test_dbt_job_from_id_or_url_of_the_environments_account() -> None:
    env = make_env()
    assert parse_dbt_job(" 456 ", env) == 456
    assert parse_dbt_job(f"https://{DBT_HOST}/deploy/70403/projects/2/jobs/789", env) == 789


@pytest.mark.parametrize(
    "value",
    [
        "abc",
        "0",
        "https://ab123.us1.dbt.com/deploy/70403/projects/2",
        f"https://{DBT_HOST}/deploy/99/projects/2/jobs/789",  # another account
        "https://zz999.eu1.dbt.com/deploy/70403/projects/2/jobs/789",  # another host
        f"http://{DBT_HOST}/deploy/70403/projects/2/jobs/789",  # http is another host than https
    ],
)
def test_bad_or_foreign_dbt_job_is_a_usage_error(value: str) -> None:
    with pytest.raises(UsageError):
        parse_dbt_job(value, make_env())


def test_local_host_with_scheme_matches_the_url() -> None:
    env = make_env(dbt_cloud_host="http://127.0.0.1:8123")
    assert parse_dbt_job("http://127.0.0.1:8123/deploy/70403/projects/1/jobs/5", env) == 5


@pytest.mark.parametrize(
    "request_",
    [
        AddTaskRequest(workflow="1", dbt_job="2", task_key="has space"),
        AddTaskRequest(workflow="1", dbt_job="2", task_key="x" * 101),
        AddTaskRequest(workflow="1", dbt_job="2", depends_on=("dbt_job_2",)),  # itself
        AddTaskRequest(workflow="1", dbt_job="2", task_key="clé"),  # the Jobs API's \w is ASCII
        AddTaskRequest(workflow="1", dbt_job="2", depends_on=("étape",)),
        AddTaskRequest(workflow="1", dbt_job="2", cluster_id="c", job_cluster_key="k"),
        AddTaskRequest(workflow=" ", dbt_job="2"),
    ],
)
def test_bad_requests_are_usage_errors(request_: AddTaskRequest) -> None:
    with pytest.raises(UsageError):
        check_request(request_, make_env())


def test_default_task_key_and_name_or_id() -> None:
    # One default for onboard (dbtwf.toml's dbt_jobs) and add-task: dbt_job_<id>.
    assert check_request(AddTaskRequest(workflow="12", dbt_job="34"), make_env()) == (34, 12, "dbt_job_34")
    assert default_task_key(34) == "dbt_job_34"
    assert prepare(OnboardOptions(f"https://{DBT_HOST}/deploy/70403/projects/1/jobs/34"), None).values[
        "dbt_jobs"
    ] == {"dbt_job_34": 34}
    assert check_request(AddTaskRequest(workflow="Nightly", dbt_job="34", task_key="k"), make_env()) == (
        34,
        "Nightly",
        "k",
    )


# --- the task and its compute --------------------------------------------------------------


def test_task_shape_serverless_by_default() -> None:
    task = build_task(make_env(), task_key="k", dbt_job_id=42, depends_on=("a", "b"))
    assert task["task_key"] == "k"
    assert task["notebook_task"] == {
        "notebook_path": "~/.dbtwf/dev/run_dbt_cloud_job",
        "source": "WORKSPACE",
        "base_parameters": {"job_id": "42"},
    }
    assert task["depends_on"] == [{"task_key": "a"}, {"task_key": "b"}]
    assert task["timeout_seconds"] > make_env().run_timeout_seconds
    assert not {"existing_cluster_id", "job_cluster_key", "new_cluster"} & task.keys()


def test_compute_flags_and_defaults() -> None:
    env = make_env()
    plain: dict[str, Any] = {"tasks": [{"task_key": "a"}]}
    assert choose_compute(plain, env, cluster_id=None, job_cluster_key=None, depends_on=()) == ({}, None)
    assert choose_compute(plain, env, cluster_id="c-1", job_cluster_key=None, depends_on=())[0] == {
        "existing_cluster_id": "c-1"
    }
    with pytest.raises(UsageError, match="no job cluster 'nope'"):
        choose_compute(plain, env, cluster_id=None, job_cluster_key="nope", depends_on=())
    on_cluster = make_env(compute=Compute(kind="existing_cluster", existing_cluster_id="env-c"))
    assert choose_compute(plain, on_cluster, cluster_id=None, job_cluster_key=None, depends_on=())[0] == {
        "existing_cluster_id": "env-c"
    }


def test_job_cluster_workflow_default_reuses_a_cluster_or_asks() -> None:
    env = make_env()
    one = {"job_clusters": [{"job_cluster_key": "main"}], "tasks": [{"task_key": "a"}]}
    compute, note = choose_compute(one, env, cluster_id=None, job_cluster_key=None, depends_on=())
    assert compute == {"job_cluster_key": "main"} and note and "main" in note
    two = {
        "job_clusters": [{"job_cluster_key": "small"}, {"job_cluster_key": "big"}],
        "tasks": [{"task_key": "a", "job_cluster_key": "big"}, {"task_key": "b"}],
    }
    compute, note = choose_compute(two, env, cluster_id=None, job_cluster_key=None, depends_on=("b", "a"))
    assert compute == {"job_cluster_key": "big"}
    with pytest.raises(UsageError, match="several job clusters"):
        choose_compute(two, env, cluster_id=None, job_cluster_key=None, depends_on=())


def test_task_differences_ignore_service_defaults() -> None:
    desired = build_task(make_env(), task_key="k", dbt_job_id=42, depends_on=("a",))
    as_served = {
        **desired,
        "run_if": "ALL_SUCCESS",
        "email_notifications": {},
        "depends_on": [{"task_key": "a"}],
    }
    as_served["notebook_task"] = {k: v for k, v in desired["notebook_task"].items() if k != "source"}
    assert task_differences(as_served, desired) == []
    other_job = build_task(make_env(), task_key="k", dbt_job_id=43, depends_on=("a",))
    assert task_differences(other_job, desired) == ["notebook_task.base_parameters"]
    on_cluster = {**desired, "existing_cluster_id": "c"}
    assert task_differences(on_cluster, desired) == ["existing_cluster_id"]


def test_job_level_job_id_parameter_overrides_the_task() -> None:
    assert job_parameter_note({"parameters": [{"name": "other", "default": "1"}]}, 42) is None
    note = job_parameter_note({"parameters": [{"name": "job_id", "default": "42"}]}, 42)
    assert note and "overrides" in note
    with pytest.raises(ConflictError, match="would run dbt job 7 instead of 42"):
        job_parameter_note({"parameters": [{"name": "job_id", "default": "7"}]}, 42)


# --- over real HTTP against both emulators ------------------------------------------------

TOKEN_FOR_TESTS = DBT_CLOUD_TOKEN
DBT_JOB = 4242


@pytest.fixture
def ws(databricks: DatabricksEmulator) -> Workspace:
    from databricks.sdk import WorkspaceClient

    from provision.databricks import Workspace

    return Workspace(WorkspaceClient(host=databricks.url, token=DATABRICKS_TOKEN))


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


def foreign_settings(tasks: int = 3, **extra: Any) -> dict[str, Any]:
    """A workflow someone else owns: job clusters, notifications, tags, a schedule."""
    settings: dict[str, Any] = {
        "name": "Nightly ETL",
        "tags": {"team": "data-eng"},
        "email_notifications": {"on_failure": ["oncall@example.com"]},
        "max_concurrent_runs": 2,
        "schedule": {"quartz_cron_expression": "0 0 3 * * ?", "timezone_id": "UTC"},
        "tasks": [
            {
                "task_key": f"step_{i:03d}",
                "notebook_task": {"notebook_path": f"/Repos/etl/step_{i}", "base_parameters": {"n": str(i)}},
                **({"depends_on": [{"task_key": f"step_{i - 1:03d}"}]} if i else {}),
            }
            for i in range(tasks)
        ],
    }
    settings.update(extra)
    return settings


def job_writes(emulator: DatabricksEmulator) -> list[Any]:
    return [w for w in emulator.writes() if "/jobs/" in w.path]


def run_add_task(ws: Workspace, env: Environment, **request: Any) -> AddTaskResult:
    return add_task(ws, env, AddTaskRequest(**request), TOKEN_FOR_TESTS, confirm_bundle=lambda _: True)


def test_adds_one_task_to_a_150_task_workflow_with_one_write(
    databricks: DatabricksEmulator, ws: Workspace, env: Environment
) -> None:
    job_id = ws.create_job(foreign_settings(tasks=150))
    before = databricks.jobs[job_id]["settings"]
    databricks.reset_log()

    result = run_add_task(ws, env, workflow="Nightly ETL", dbt_job=str(DBT_JOB), depends_on=("step_149",))

    assert (result.workflow_id, result.action, result.task_key) == (job_id, "create", f"dbt_job_{DBT_JOB}")
    updates = job_writes(databricks)
    assert [w.path.rsplit("/", 1)[-1] for w in updates] == ["update"]
    assert updates[0].json() == {"job_id": job_id, "new_settings": {"tasks": [result.task]}}
    # The reading joined pages: the 150 tasks came in two jobs/get pages.
    pages = [r for r in databricks.requests if r.path.endswith("/jobs/get")]
    assert any("page_token" in r.query for r in pages)
    after = databricks.jobs[job_id]["settings"]
    added = [t for t in after["tasks"] if t["task_key"] == result.task_key]
    assert len(added) == 1 and added[0]["notebook_task"]["base_parameters"] == {"job_id": str(DBT_JOB)}
    assert {**after, "tasks": [t for t in after["tasks"] if t["task_key"] != result.task_key]} == before
    # The prerequisites exist and the task is recorded for destroy.
    assert databricks.secret_value(env.secret_scope, env.secret_key) == TOKEN_FOR_TESTS
    assert databricks.workspace_file(env.notebook_path) is not None
    record = load_state(ws, env)
    assert record is not None and record.added_tasks == [AddedTask(job_id, result.task_key, DBT_JOB)]


def test_same_task_again_writes_nothing(
    databricks: DatabricksEmulator, ws: Workspace, env: Environment
) -> None:
    job_id = ws.create_job(foreign_settings())
    run_add_task(ws, env, workflow=str(job_id), dbt_job=str(DBT_JOB))
    databricks.reset_log()

    again = run_add_task(ws, env, workflow=str(job_id), dbt_job=str(DBT_JOB))

    assert again.action == "no-op"
    assert databricks.writes() == []


@pytest.mark.parametrize("earlier_key", ["nightly_dbt", "dbt_cloud_{job}"])
def test_a_dbt_job_the_workflow_runs_is_not_added_again_under_the_default_key(
    databricks: DatabricksEmulator, ws: Workspace, env: Environment, earlier_key: str
) -> None:
    """Without --task-key, the task that already runs the dbt job on this notebook is the one,
    whatever its key: one the user chose, or `dbt_cloud_<id>`, add-task's default before it
    became `dbt_job_<id>` (so re-running an old command adds no second task)."""
    job_id = ws.create_job(foreign_settings())
    earlier = run_add_task(
        ws, env, workflow=str(job_id), dbt_job=str(DBT_JOB), task_key=earlier_key.format(job=DBT_JOB)
    )
    databricks.reset_log()

    again = run_add_task(ws, env, workflow=str(job_id), dbt_job=str(DBT_JOB))

    assert (again.action, again.task_key) == ("no-op", earlier.task_key)
    assert databricks.writes() == []
    keys = [t["task_key"] for t in databricks.jobs[job_id]["settings"]["tasks"]]
    assert default_task_key(DBT_JOB) not in keys and earlier.task_key in keys
    # An explicit key still adds the job again, as asked.
    assert (
        run_add_task(ws, env, workflow=str(job_id), dbt_job=str(DBT_JOB), task_key="twice").action == "create"
    )


def test_other_task_under_the_key_needs_replace(
    databricks: DatabricksEmulator, ws: Workspace, env: Environment, dbt_cloud: DbtCloudEmulator
) -> None:
    job_id = ws.create_job(foreign_settings())
    run_add_task(ws, env, workflow=str(job_id), dbt_job=str(DBT_JOB), task_key="dbt")
    dbt_cloud.add_job(DBT_JOB + 1)
    databricks.reset_log()

    with pytest.raises(ConflictError, match=r"already has a task 'dbt'.*base_parameters") as caught:
        run_add_task(ws, env, workflow=str(job_id), dbt_job=str(DBT_JOB + 1), task_key="dbt")
    assert "--replace" in (caught.value.hint or "")
    assert databricks.writes() == []

    replaced = run_add_task(
        ws, env, workflow=str(job_id), dbt_job=str(DBT_JOB + 1), task_key="dbt", replace=True
    )
    assert replaced.action == "update"
    assert len(job_writes(databricks)) == 1
    tasks = {t["task_key"]: t for t in databricks.jobs[job_id]["settings"]["tasks"]}
    assert tasks["dbt"]["notebook_task"]["base_parameters"] == {"job_id": str(DBT_JOB + 1)}
    record = load_state(ws, env)
    assert record is not None and record.added_tasks == [AddedTask(job_id, "dbt", DBT_JOB + 1)]


def test_ambiguous_name_lists_candidates_and_stops(
    databricks: DatabricksEmulator, ws: Workspace, env: Environment
) -> None:
    from databricks.sdk import WorkspaceClient

    from provision.databricks import Workspace

    databricks.add_user("dapi-alice", "alice@example.com")
    mine = ws.create_job(foreign_settings())
    hers = Workspace(WorkspaceClient(host=databricks.url, token="dapi-alice")).create_job(foreign_settings())
    databricks.reset_log()

    with pytest.raises(ConflictError) as caught:
        run_add_task(ws, env, workflow="nightly etl", dbt_job=str(DBT_JOB))

    message = caught.value.message
    assert f"{mine} (created by {databricks.user_name})" in message
    assert f"{hers} (created by alice@example.com)" in message
    assert databricks.writes() == []


def test_missing_workflow_and_missing_dbt_job_write_nothing(
    databricks: DatabricksEmulator, ws: Workspace, env: Environment
) -> None:
    # A name the user gave that does not exist is bad input (exit 2), found before any write.
    with pytest.raises(UnknownNameError, match="workflow 987654 not found"):
        run_add_task(ws, env, workflow="987654", dbt_job=str(DBT_JOB))
    with pytest.raises(UnknownNameError, match="no workflow named 'nope'"):
        run_add_task(ws, env, workflow="nope", dbt_job=str(DBT_JOB))
    job_id = ws.create_job(foreign_settings())
    with pytest.raises(UnknownNameError, match="dbt job 777 not found"):
        run_add_task(ws, env, workflow=str(job_id), dbt_job="777")
    assert databricks.writes() == [w for w in databricks.writes() if w.path.endswith("/jobs/create")]


def test_rejected_dbt_token_is_an_auth_error_before_any_write(
    databricks: DatabricksEmulator, ws: Workspace, env: Environment
) -> None:
    job_id = ws.create_job(foreign_settings())
    databricks.reset_log()
    with pytest.raises(AuthError) as caught:
        add_task(
            ws,
            env,
            AddTaskRequest(workflow=str(job_id), dbt_job=str(DBT_JOB)),
            "dbtc_wrong_token_0000000000",
            confirm_bundle=lambda _: True,
        )
    assert "wrong_token" not in str(caught.value.message) + str(caught.value.hint)
    assert databricks.writes() == []


def test_bundle_workflow_warns_and_can_be_declined(
    databricks: DatabricksEmulator, ws: Workspace, env: Environment
) -> None:
    bundle = {
        "kind": "BUNDLE",
        "metadata_file_path": "/Workspace/Users/x/.bundle/etl/dev/state/metadata.json",
    }
    job_id = ws.create_job(foreign_settings(deployment=bundle))
    databricks.reset_log()
    warnings: list[str] = []

    def decline(warning: str) -> bool:
        warnings.append(warning)
        return False

    with pytest.raises(DbtwfError, match="nothing was changed"):
        add_task(ws, env, AddTaskRequest(str(job_id), str(DBT_JOB)), TOKEN_FOR_TESTS, confirm_bundle=decline)
    assert databricks.writes() == []
    assert len(warnings) == 1 and "bundle deploy" in warnings[0]

    result = run_add_task(ws, env, workflow=str(job_id), dbt_job=str(DBT_JOB))
    assert result.action == "create" and len(job_writes(databricks)) == 1


def test_job_level_job_id_parameter_stops_before_writing(
    databricks: DatabricksEmulator, ws: Workspace, env: Environment
) -> None:
    job_id = ws.create_job(foreign_settings(parameters=[{"name": "job_id", "default": "1"}]))
    databricks.reset_log()
    with pytest.raises(ConflictError, match="job-level parameter job_id"):
        run_add_task(ws, env, workflow=str(job_id), dbt_job=str(DBT_JOB))
    assert databricks.writes() == []


def test_workflow_with_one_job_cluster_shares_it(
    databricks: DatabricksEmulator, ws: Workspace, env: Environment
) -> None:
    cluster = {"spark_version": "15.4.x-scala2.12", "node_type_id": "i3.xlarge", "num_workers": 1}
    settings = foreign_settings(job_clusters=[{"job_cluster_key": "etl", "new_cluster": cluster}])
    for task in settings["tasks"]:
        task["job_cluster_key"] = "etl"
    job_id = ws.create_job(settings)

    result = run_add_task(ws, env, workflow=str(job_id), dbt_job=str(DBT_JOB))

    assert result.task["job_cluster_key"] == "etl"
    assert any("job cluster 'etl'" in note for note in result.notes)
    added = next(t for t in databricks.jobs[job_id]["settings"]["tasks"] if t["task_key"] == result.task_key)
    assert added["job_cluster_key"] == "etl"


def test_refuses_the_workflow_dbtwf_manages(
    databricks: DatabricksEmulator, ws: Workspace, env: Environment
) -> None:
    job_id = ws.create_job(foreign_settings(tags={"managed-by": "dbtwf", "dbtwf-env": "dev"}))
    databricks.reset_log()
    with pytest.raises(ConflictError, match="managed by dbtwf"):
        run_add_task(ws, env, workflow=str(job_id), dbt_job=str(DBT_JOB))
    assert databricks.writes() == []


def test_unknown_dependency_is_a_usage_error(
    databricks: DatabricksEmulator, ws: Workspace, env: Environment
) -> None:
    job_id = ws.create_job(foreign_settings())
    databricks.reset_log()
    with pytest.raises(UsageError, match="no task 'ghost'"):
        run_add_task(ws, env, workflow=str(job_id), dbt_job=str(DBT_JOB), depends_on=("ghost",))
    assert databricks.writes() == []


# --- the command ---------------------------------------------------------------------------


@pytest.fixture
def invoke(
    tmp_path: Path,
    databricks: DatabricksEmulator,
    dbt_cloud: DbtCloudEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., Any]:
    dbt_cloud.add_job(DBT_JOB)
    return configured_cli(tmp_path, monkeypatch, databricks.url, dbt_cloud.url, DBT_JOB, "add-task")


def test_cli_adds_the_task_and_says_so(invoke: Callable[..., Any], databricks: DatabricksEmulator) -> None:
    job_id = make_workspace(databricks).create_job(foreign_settings())
    result = invoke("--workflow", "Nightly ETL", "--dbt-job", str(DBT_JOB), "--depends-on", "step_002")
    assert result.exit_code == 0, result.output
    assert f"added task 'dbt_job_{DBT_JOB}' (dbt job {DBT_JOB}) in workflow {job_id}" in result.stdout
    again = invoke("--workflow", str(job_id), "--dbt-job", str(DBT_JOB), "--depends-on", "step_002")
    assert again.exit_code == 0 and "already in workflow" in again.stdout
    assert DBT_CLOUD_TOKEN not in result.output + again.output


def test_cli_exit_codes_follow_one_rule(invoke: Callable[..., Any], databricks: DatabricksEmulator) -> None:
    """A name the user gave that does not exist is bad input: exit 2, before any write. What
    exists but stands in the way (a task key taken by another task) is exit 1."""
    job_id = make_workspace(databricks).create_job(foreign_settings())
    databricks.reset_log()
    cases = [
        (["--workflow", "424242"], 2, "workflow 424242 not found"),
        (["--workflow", "No Such ETL"], 2, "no workflow named 'No Such ETL'"),
        (["--workflow", str(job_id), "--depends-on", "nope"], 2, f"workflow {job_id} has no task 'nope'"),
        (["--workflow", str(job_id), "--job-cluster-key", "nope"], 2, "has no job cluster 'nope'"),
        (["--workflow", str(job_id), "--dbt-job", "777"], 2, "dbt job 777 not found"),
        (["--workflow", str(job_id), "--task-key", "step_001"], 1, "already has a task 'step_001'"),
    ]
    for args, code, message in cases:
        dbt_job = [] if "--dbt-job" in args else ["--dbt-job", str(DBT_JOB)]
        result = invoke(*args, *dbt_job)
        assert (result.exit_code, message in result.stderr, "hint:" in result.stderr) == (code, True, True), (
            args,
            result.output,
        )
    assert databricks.writes() == []


def test_cli_ambiguous_name_exits_1(invoke: Callable[..., Any], databricks: DatabricksEmulator) -> None:
    ws = make_workspace(databricks)
    ids = [ws.create_job(foreign_settings()), ws.create_job(foreign_settings())]
    databricks.reset_log()
    result = invoke("--workflow", "Nightly ETL", "--dbt-job", str(DBT_JOB))
    assert result.exit_code == 1
    assert all(str(job_id) in result.stderr for job_id in ids)
    assert databricks.writes() == []


def test_cli_bundle_workflow_needs_yes_when_not_interactive(
    invoke: Callable[..., Any], databricks: DatabricksEmulator
) -> None:
    job_id = make_workspace(databricks).create_job(
        foreign_settings(deployment={"kind": "BUNDLE", "metadata_file_path": "/Workspace/b/metadata.json"})
    )
    databricks.reset_log()
    refused = invoke("--workflow", str(job_id), "--dbt-job", str(DBT_JOB))
    assert refused.exit_code == 2 and "--yes" in refused.stderr
    assert "bundle deploy" in refused.stderr
    assert databricks.writes() == []

    accepted = invoke("--workflow", str(job_id), "--dbt-job", str(DBT_JOB), "--yes")
    assert accepted.exit_code == 0, accepted.output
    assert "warning:" in accepted.stderr and "bundle deploy" in accepted.stderr
    assert len(job_writes(databricks)) == 1


def test_cli_bad_input_exits_2_without_the_sdk(tmp_path: Path, dbt_cloud: DbtCloudEmulator) -> None:
    """A URL of another account and conflicting flags are refused before databricks.sdk is imported."""
    write_config(tmp_path / "dbtwf.toml", dbt_cloud.url, {"dev": {"nightly": DBT_JOB}})
    script = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from provision.cli import app\n"
        "codes = [CliRunner().invoke(app, ['add-task', *args]).exit_code for args in (\n"
        "    ['--workflow', '1', '--dbt-job', 'https://other.us1.dbt.com/deploy/9/projects/1/jobs/2'],\n"
        "    ['--workflow', '1', '--dbt-job', 'not-a-job'],\n"
        "    ['--workflow', '1', '--dbt-job', '5', '--cluster-id', 'c', '--job-cluster-key', 'k'],\n"
        ")]\n"
        "print(codes, any(name.startswith('databricks.sdk') for name in sys.modules))\n"
    )
    environment = {**cli_env(tmp_path, "http://127.0.0.1:9"), "PATH": os.environ.get("PATH", "")}
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=environment,
        check=True,
        timeout=60,
    )
    assert done.stdout.strip() == "[2, 2, 2] False", done.stderr


def test_a_fresh_environment_and_the_task_are_written_under_one_lock(
    databricks: DatabricksEmulator, ws: Workspace, env: Environment
) -> None:
    job_id = ws.create_job(foreign_settings())
    databricks.reset_log()

    run_add_task(ws, env, workflow=str(job_id), dbt_job=str(DBT_JOB))

    writes = write_labels(databricks.writes())
    assert sorted(writes) == sorted(
        [
            "POST /api/2.0/workspace/mkdirs",
            "POST /api/2.0/workspace/import (lock)",  # taken once
            "POST /api/2.0/workspace/import (state)",  # the scope is dbtwf's
            "POST /api/2.0/secrets/scopes/create",
            "POST /api/2.0/secrets/put",
            "POST /api/2.0/workspace/import (notebook)",
            "POST /api/2.0/workspace/import (state)",  # the task, before it is written
            "POST /api/2.2/jobs/update",  # the one write to the foreign workflow
            "POST /api/2.0/workspace/delete",  # the lock released
        ]
    )
    # The lock before all but the folder; the scope's owner recorded before it is made, the
    # secret after its scope (the notebook beside them); then the task, recorded before the
    # one jobs/update that writes it, once everything it runs is there; then the unlock.
    assert writes[:2] == ["POST /api/2.0/workspace/mkdirs", "POST /api/2.0/workspace/import (lock)"]
    assert (
        writes.index("POST /api/2.0/workspace/import (state)")
        < writes.index("POST /api/2.0/secrets/scopes/create")
        < writes.index("POST /api/2.0/secrets/put")
    )
    assert writes[-3:] == [
        "POST /api/2.0/workspace/import (state)",
        "POST /api/2.2/jobs/update",
        "POST /api/2.0/workspace/delete",
    ]


def test_a_workflow_changed_after_its_reading_is_not_written(
    databricks: DatabricksEmulator, ws: Workspace, env: Environment, monkeypatch: pytest.MonkeyPatch
) -> None:
    import provision.add_task as module

    job_id = ws.create_job(foreign_settings())
    run_add_task(ws, env, workflow=str(job_id), dbt_job=str(DBT_JOB), task_key="first")
    planned = module.plan_add_task

    def edited_meanwhile(*args: Any, **kwargs: Any) -> Any:
        changes = planned(*args, **kwargs)
        ws.update_job(job_id, {"max_concurrent_runs": 9})  # someone edits the workflow right then
        return changes

    monkeypatch.setattr(module, "plan_add_task", edited_meanwhile)
    databricks.reset_log()
    with pytest.raises(ConflictError, match="changed since the plan"):
        run_add_task(ws, env, workflow=str(job_id), dbt_job=str(DBT_JOB), task_key="second")
    updates = [w.path for w in databricks.writes() if w.path.endswith("/jobs/update")]
    assert updates == ["/api/2.2/jobs/update"]  # only the other client's edit
    assert "second" not in [t["task_key"] for t in databricks.jobs[job_id]["settings"]["tasks"]]
