"""Job runs in the Databricks emulator: notebooks really execute, with a small dbutils.

Facts taken from the real service: a failed task's state_message is "Workload failed, see run output
for details" and the run's is "Task <key> failed with message: <that>." (measured by databricks/cli's
test server); runs/get-output carries the exception line in `error` and the traceback in
`error_trace`; a multi-task run's own id is refused by get-output; job parameters override task
parameters of the same name (Databricks docs, "Configure job parameters").
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.clock import Clock
from databricks.sdk.core import Config
from databricks.sdk.errors import InternalError, InvalidParameterValue, ResourceDoesNotExist
from databricks.sdk.service import jobs, workspace

from tests.conftest import DATABRICKS_TOKEN
from tests.emulators.databricks import DatabricksEmulator

pytestmark = pytest.mark.slow  # each run starts notebook subprocesses


@pytest.fixture
def w(databricks: DatabricksEmulator) -> WorkspaceClient:
    return WorkspaceClient(host=databricks.url, token=DATABRICKS_TOKEN)


def upload(w: WorkspaceClient, path: str, *cells: str) -> str:
    source = "# Databricks notebook source\n" + "\n# COMMAND ----------\n".join(cells)
    w.workspace.mkdirs(path.rsplit("/", 1)[0])
    w.workspace.import_(
        path,
        content=base64.b64encode(source.encode()).decode(),
        format=workspace.ImportFormat.SOURCE,
        language=workspace.Language.PYTHON,
        overwrite=True,
    )
    return path


def task(key: str, path: str, params: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "task_key": key,
        "notebook_task": {"notebook_path": path, "base_parameters": params or {}},
        **extra,
    }


def create(w: WorkspaceClient, *tasks: dict[str, Any], **settings: Any) -> int:
    body = {"name": "wf", "tasks": list(tasks), **settings}
    return int(w.api_client.do("POST", "/api/2.2/jobs/create", body=body)["job_id"])  # type: ignore[index]


def run(databricks: DatabricksEmulator, w: WorkspaceClient, job_id: int, **run_now: Any) -> jobs.Run:
    run_id = w.jobs.run_now(job_id, **run_now).run_id
    databricks.wait_for_run(run_id, timeout=30)
    return w.jobs.get_run(run_id)


def task_run(r: jobs.Run, key: str) -> jobs.RunTask:
    return next(t for t in r.tasks or [] if t.task_key == key)


def test_notebook_runs_with_widgets_and_exit_value(
    databricks: DatabricksEmulator, w: WorkspaceClient
) -> None:
    path = upload(
        w,
        "/Shared/dbtwf/runner",
        "# MAGIC %md\n# MAGIC # Title cell, not run",
        'dbutils.widgets.text("job_id", "")\ndbutils.widgets.text("cause", "default cause")',
        'print("job", dbutils.widgets.get("job_id"), "cause", dbutils.widgets.get("cause"))',
        'dbutils.notebook.exit("dbt run 123 succeeded")\nprint("never")',
    )
    job_id = create(w, task("dbt", path, {"job_id": "70"}))
    result = run(databricks, w, job_id)
    assert result.state is not None and result.state.result_state == jobs.RunResultState.SUCCESS
    assert result.state.life_cycle_state == jobs.RunLifeCycleState.TERMINATED
    dbt = task_run(result, "dbt")
    assert dbt.state is not None and dbt.state.result_state == jobs.RunResultState.SUCCESS
    assert dbt.run_page_url and str(dbt.run_id) in dbt.run_page_url and result.run_page_url
    assert databricks.task_output(result.run_id or 0, "dbt") == "job 70 cause default cause\n"
    output = w.jobs.get_run_output(dbt.run_id or 0)
    assert output.notebook_output is not None and output.notebook_output.result == "dbt run 123 succeeded"
    body = w.api_client.do("GET", "/api/2.2/jobs/runs/get", query={"run_id": result.run_id})
    assert jobs.Run.from_dict(body).as_dict() == body  # type: ignore[arg-type]
    out = w.api_client.do("GET", "/api/2.2/jobs/runs/get-output", query={"run_id": dbt.run_id})
    assert jobs.RunOutput.from_dict(out).as_dict() == out  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterValue, match="multiple tasks"):
        create_two = create(w, task("a", path, {"job_id": "1"}), task("b", path, {"job_id": "1"}))
        w.jobs.get_run_output(run(databricks, w, create_two).run_id or 0)


def test_parameter_precedence(databricks: DatabricksEmulator, w: WorkspaceClient) -> None:
    path = upload(w, "/Shared/p", 'print(dbutils.widgets.get("job_id"), dbutils.widgets.get("only_task"))')
    job_id = create(
        w,
        task("t", path, {"job_id": "from-task", "only_task": "{{job.id}}/{{task.name}}"}),
        parameters=[{"name": "job_id", "default": "from-job-default"}],
    )
    first = run(databricks, w, job_id)
    assert databricks.task_output(first.run_id or 0, "t") == f"from-job-default {job_id}/t\n"
    second = run(databricks, w, job_id, job_parameters={"job_id": "from-run-now"})
    assert databricks.task_output(second.run_id or 0, "t") == f"from-run-now {job_id}/t\n"
    assert [(p.name, p.value) for p in second.job_parameters or []] == [("job_id", "from-run-now")]
    no_job_params = create(w, task("t", path, {"job_id": "from-task", "only_task": "x"}))
    third = run(databricks, w, no_job_params, notebook_params={"job_id": "from-notebook-params"})
    assert databricks.task_output(third.run_id or 0, "t") == "from-notebook-params x\n"


def test_undefined_widget_and_exception_fail_the_task(
    databricks: DatabricksEmulator, w: WorkspaceClient
) -> None:
    path = upload(w, "/Shared/fail", 'print("before")', 'raise ValueError("dbt run 5 failed: step 2")')
    result = run(databricks, w, create(w, task("dbt", path)))
    assert result.state is not None and result.state.result_state == jobs.RunResultState.FAILED
    assert (
        result.state.state_message
        == "Task dbt failed with message: Workload failed, see run output for details."
    )
    dbt = task_run(result, "dbt")
    assert dbt.state is not None and dbt.state.result_state == jobs.RunResultState.FAILED
    output = w.jobs.get_run_output(dbt.run_id or 0)
    assert output.error == "ValueError: dbt run 5 failed: step 2"
    assert (
        output.error_trace is not None
        and "Traceback" in output.error_trace
        and "<command-2>" in output.error_trace
    )
    assert databricks.task_output(result.run_id or 0, "dbt").startswith("before\n")
    missing = upload(w, "/Shared/widget", 'dbutils.widgets.get("job_id")')
    result = run(databricks, w, create(w, task("t", missing)))
    error = w.jobs.get_run_output(task_run(result, "t").run_id or 0).error
    assert error == "InputWidgetNotDefined: No input widget named job_id is defined"


def test_secrets_from_the_store_with_acls_and_redaction(
    databricks: DatabricksEmulator, w: WorkspaceClient
) -> None:
    w.secrets.create_scope("dbtwf")
    w.secrets.put_secret("dbtwf", "token", string_value="dbtc_s3cr3t")
    path = upload(w, "/Shared/s", 'token = dbutils.secrets.get("dbtwf", "token")\nprint(token, len(token))')
    job_id = create(w, task("t", path))
    result = run(databricks, w, job_id)
    assert task_run(result, "t").state.result_state == jobs.RunResultState.SUCCESS  # type: ignore[union-attr]
    assert databricks.task_output(result.run_id or 0, "t") == "[REDACTED] 11\n"
    # A job that runs as someone without READ on the scope fails, as on Databricks.
    other = create(w, task("t", path), run_as={"user_name": "robot@example.com"})
    denied = run(databricks, w, other)
    error = w.jobs.get_run_output(task_run(denied, "t").run_id or 0).error or ""
    assert "PERMISSION_DENIED" in error and "READ" in error
    w.secrets.put_acl("dbtwf", "robot@example.com", workspace.AclPermission.READ)
    assert run(databricks, w, other).state.result_state == jobs.RunResultState.SUCCESS  # type: ignore[union-attr]
    w.secrets.delete_secret("dbtwf", "token")
    gone = run(databricks, w, job_id)
    error = w.jobs.get_run_output(task_run(gone, "t").run_id or 0).error or ""
    assert (
        error.startswith("IllegalArgumentException")
        and "Secret does not exist with scope: dbtwf and key: token" in error
    )


def test_tasks_run_in_dependency_order_with_task_values_and_upstream_failure(
    databricks: DatabricksEmulator, w: WorkspaceClient
) -> None:
    produce = upload(w, "/Shared/produce", 'dbutils.jobs.taskValues.set("dbt_run_id", 42)\nprint("produce")')
    consume = upload(
        w, "/Shared/consume", 'print("consume", dbutils.jobs.taskValues.get("first", "dbt_run_id"))'
    )
    boom = upload(w, "/Shared/boom", 'raise RuntimeError("boom")')
    job_id = create(
        w,
        task("third", consume, depends_on=[{"task_key": "second"}]),
        task("second", consume, depends_on=[{"task_key": "first"}]),
        task("first", produce),
    )
    result = run(databricks, w, job_id)
    assert result.state.result_state == jobs.RunResultState.SUCCESS  # type: ignore[union-attr]
    starts = {t.task_key: t.start_time or 0 for t in result.tasks or []}
    assert starts["first"] <= starts["second"] <= starts["third"]
    assert databricks.task_output(result.run_id or 0, "third") == "consume 42\n"
    job_id = create(
        w,
        task("fail", boom),
        task("after", consume, depends_on=[{"task_key": "fail"}]),
        task("cleanup", produce, depends_on=[{"task_key": "after"}], run_if="ALL_DONE"),
    )
    result = run(databricks, w, job_id)
    assert result.state.result_state == jobs.RunResultState.FAILED  # type: ignore[union-attr]
    states = {t.task_key: t.state.result_state for t in result.tasks or [] if t.state}
    assert states == {
        "fail": jobs.RunResultState.FAILED,
        "after": jobs.RunResultState.UPSTREAM_FAILED,
        "cleanup": jobs.RunResultState.SUCCESS,
    }
    assert databricks.task_output(result.run_id or 0, "after") == ""


def test_tasks_that_cannot_start_are_internal_errors(
    databricks: DatabricksEmulator, w: WorkspaceClient
) -> None:
    path = upload(w, "/Shared/ok", "print(1)")
    result = run(databricks, w, create(w, task("t", "/Shared/missing")))
    assert result.state.life_cycle_state == jobs.RunLifeCycleState.INTERNAL_ERROR  # type: ignore[union-attr]
    assert "Notebook not found: /Shared/missing" in (result.state.state_message or "")  # type: ignore[union-attr]
    result = run(databricks, w, create(w, task("t", path, existing_cluster_id="0101-nope")))
    assert "Cluster 0101-nope does not exist" in (task_run(result, "t").state.state_message or "")  # type: ignore[union-attr]
    databricks.add_cluster("0101-yes")
    result = run(databricks, w, create(w, task("t", path, existing_cluster_id="0101-yes")))
    assert result.state.result_state == jobs.RunResultState.SUCCESS  # type: ignore[union-attr]
    serverless_job = create(w, task("t", path))
    databricks.serverless_enabled = False
    result = run(databricks, w, serverless_job)
    assert result.state.life_cycle_state == jobs.RunLifeCycleState.INTERNAL_ERROR  # type: ignore[union-attr]


def test_cancel_interrupts_the_notebook(databricks: DatabricksEmulator, w: WorkspaceClient) -> None:
    path = upload(
        w,
        "/Shared/slow",
        "import time\n"
        "try:\n"
        '    print("polling", flush=True)\n'
        "    time.sleep(60)\n"
        "except KeyboardInterrupt:\n"
        '    print("cancelling the dbt run", flush=True)\n'
        "    raise",
    )
    later = upload(w, "/Shared/later", 'print("should not run")')
    job_id = create(w, task("dbt", path), task("after", later, depends_on=[{"task_key": "dbt"}]))
    run_id = w.jobs.run_now(job_id).run_id
    databricks.wait_for_output(run_id, "dbt", "polling")
    w.jobs.cancel_run(run_id)
    final = databricks.wait_for_run(run_id, timeout=10)
    assert final["state"]["result_state"] == "CANCELED" and final["state"]["life_cycle_state"] == "TERMINATED"
    assert [t["state"]["result_state"] for t in final["tasks"]] == ["CANCELED", "CANCELED"]
    assert "cancelling the dbt run\n" in databricks.task_output(run_id, "dbt")
    assert databricks.task_output(run_id, "after") == ""


def test_cancel_kills_a_notebook_that_ignores_the_interrupt(
    databricks: DatabricksEmulator, w: WorkspaceClient
) -> None:
    databricks.cancel_grace_seconds = 0.2
    try:
        path = upload(
            w,
            "/Shared/stubborn",
            "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)",
            "print('up', flush=True)\ntime.sleep(60)",
        )
        run_id = w.jobs.run_now(create(w, task("t", path))).run_id
        databricks.wait_for_output(run_id, "t", "up")
        w.jobs.cancel_run(run_id)
        assert databricks.wait_for_run(run_id, timeout=5)["state"]["result_state"] == "CANCELED"
    finally:
        databricks.cancel_grace_seconds = DatabricksEmulator.cancel_grace_seconds


def test_run_now_idempotency_token_and_runs_list(databricks: DatabricksEmulator, w: WorkspaceClient) -> None:
    path = upload(w, "/Shared/i", "print(1)")
    job_id = create(w, task("t", path))
    token = str(uuid.uuid4())
    first = w.jobs.run_now(job_id, idempotency_token=token).run_id
    assert w.jobs.run_now(job_id, idempotency_token=token).run_id == first
    databricks.wait_for_run(first)
    second = w.jobs.run_now(job_id).run_id
    databricks.wait_for_run(second)
    assert [r.run_id for r in w.jobs.list_runs(job_id=job_id)] == [second, first]
    assert [r.run_id for r in w.jobs.list_runs(job_id=job_id, active_only=True)] == []
    page = w.api_client.do("GET", "/api/2.2/jobs/runs/list", query={"job_id": job_id, "limit": 1})
    assert page["has_more"] is True and jobs.ListRunsResponse.from_dict(page).as_dict() == page  # type: ignore[arg-type,index]
    with pytest.raises(ResourceDoesNotExist, match="Run 1 does not exist"):
        w.api_client.do("GET", "/api/2.1/jobs/runs/get", query={"run_id": 1})


def test_run_life_cycle_goes_through_running(databricks: DatabricksEmulator, w: WorkspaceClient) -> None:
    path = upload(w, "/Shared/gate", "import time\nprint('started', flush=True)\ntime.sleep(0.5)")
    run_id = w.jobs.run_now(create(w, task("t", path))).run_id
    seen = []
    databricks.wait_for_output(run_id, "t", "started")  # the notebook is in its half-second sleep
    seen.append(w.jobs.get_run(run_id).state)
    databricks.wait_for_run(run_id, timeout=10)
    seen.append(w.jobs.get_run(run_id).state)
    assert [state.life_cycle_state.value for state in seen if state and state.life_cycle_state] == [
        "RUNNING",
        "TERMINATED",
    ]


# -- faults ------------------------------------------------------------------------------------


class SimulatedSdkClock(Clock):
    """The SDK's own clock interface on simulated time: a retry's wait is recorded, not spent."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def sdk_clock() -> SimulatedSdkClock:
    return SimulatedSdkClock()


@pytest.fixture
def fast_retry_client(
    databricks: DatabricksEmulator, sdk_clock: SimulatedSdkClock
) -> Iterator[WorkspaceClient]:
    yield WorkspaceClient(
        config=Config(host=databricks.url, token=DATABRICKS_TOKEN, retry_timeout_seconds=20, clock=sdk_clock)
    )


def test_sdk_retries_429_and_503_honouring_retry_after(
    databricks: DatabricksEmulator, fast_retry_client: WorkspaceClient, sdk_clock: SimulatedSdkClock
) -> None:
    databricks.faults.inject("429", path="/api/2.0/secrets/scopes/create", retry_after=3, times=1)
    databricks.faults.inject("503", path="/api/2.0/secrets/scopes/create", retry_after=7, times=1)
    fast_retry_client.secrets.create_scope("s")
    # Each wait is the answer's Retry-After plus the SDK's jitter of under a second.
    assert len(sdk_clock.sleeps) == 2
    assert 3 <= sdk_clock.sleeps[0] < 4 and 7 <= sdk_clock.sleeps[1] < 8
    calls = [(r.status, r.fault) for r in databricks.requests if r.path == "/api/2.0/secrets/scopes/create"]
    assert calls == [(429, "429"), (503, "503"), (200, None)]
    first = databricks.requests[-3]
    assert first.status == 429


def test_500_is_not_retried(databricks: DatabricksEmulator, fast_retry_client: WorkspaceClient) -> None:
    databricks.faults.inject("500", path="/api/2.0/secrets/scopes/list")
    with pytest.raises(InternalError):
        list(fast_retry_client.secrets.list_scopes())


def test_drop_after_write_applies_the_write_and_the_sdk_repeats_it(
    databricks: DatabricksEmulator, fast_retry_client: WorkspaceClient
) -> None:
    databricks.faults.inject("drop_after_write", path="/api/2.2/jobs/create", method="POST")
    job_id = create(fast_retry_client, task("t", "/Shared/x"))
    # The first create landed although its answer was lost; the SDK's retry made a second job.
    assert len(databricks.jobs) == 2 and job_id in databricks.jobs
    assert [r.status for r in databricks.requests if r.path == "/api/2.2/jobs/create"] == [0, 200]


def test_drop_before_and_latency(
    databricks: DatabricksEmulator, fast_retry_client: WorkspaceClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    databricks.faults.inject("drop_before", path="/api/2.0/secrets/put")
    fast_retry_client.secrets.create_scope("s")
    fast_retry_client.secrets.put_secret("s", "k", string_value="v")
    assert [r.status for r in databricks.requests if r.path == "/api/2.0/secrets/put"] == [0, 200]
    delays: list[float] = []
    monkeypatch.setattr(databricks, "sleep", delays.append)
    databricks.faults.inject("latency", path="/api/2.0/secrets/list", delay=0.3)
    list(fast_retry_client.secrets.list_secrets("s"))
    assert delays == [0.3]  # held before the answer, which then arrived normally
    assert [(r.status, r.fault) for r in databricks.requests if r.path == "/api/2.0/secrets/list"] == [
        (200, "latency")
    ]


def test_reset_clears_state_faults_log_and_kills_notebooks(
    databricks: DatabricksEmulator, w: WorkspaceClient
) -> None:
    w.secrets.create_scope("s")
    path = upload(w, "/Shared/forever", "import time\nprint('up', flush=True)\ntime.sleep(60)")
    run_id = w.jobs.run_now(create(w, task("t", path))).run_id
    databricks.wait_for_output(run_id, "t", "up")
    process = databricks.task_run(run_id, "t").process
    assert process is not None
    databricks.faults.inject("500")
    databricks.serverless_enabled = False
    databricks.reset()
    assert process.poll() is not None
    assert databricks.jobs == {} and databricks.requests == [] and databricks.serverless_enabled
    assert list(w.secrets.list_scopes()) == []
    assert databricks.workspace_file(path) is None


def test_a_run_over_max_concurrent_runs_is_skipped_without_the_queue(
    databricks: DatabricksEmulator, w: WorkspaceClient
) -> None:
    path = upload(w, "/Shared/c", "import time\ntime.sleep(0.5)")
    job_id = create(w, task("t", path), queue={"enabled": False})
    first = w.jobs.run_now(job_id).run_id
    second = w.jobs.run_now(job_id).run_id
    skipped = w.jobs.get_run(second).state
    assert skipped is not None and skipped.life_cycle_state == jobs.RunLifeCycleState.SKIPPED
    assert "maximum concurrent runs" in (skipped.state_message or "")
    assert databricks.wait_for_run(first)["state"]["result_state"] == "SUCCESS"


def test_jobs_created_through_api_22_queue_by_default(w: WorkspaceClient) -> None:
    # docs.databricks.com/jobs/jobs-api-updates ("Jobs are queued by default"): API 2.2 creates
    # jobs with queueing on, 2.0/2.1 without; `queue: {enabled: false}` turns it off.
    queued = create(w, task("t", "/Shared/x"))
    off = create(w, task("t", "/Shared/x"), queue={"enabled": False})
    legacy = int(
        w.api_client.do(
            "POST", "/api/2.1/jobs/create", body={"name": "old", "tasks": [task("t", "/Shared/x")]}
        )[  # type: ignore[index]
            "job_id"
        ]
    )
    settings = {job_id: w.jobs.get(job_id).settings for job_id in (queued, off, legacy)}
    assert [(s.queue.enabled if s and s.queue else None) for s in settings.values()] == [True, False, None]


def test_a_run_over_the_limit_waits_in_the_queue_then_runs(
    databricks: DatabricksEmulator, w: WorkspaceClient
) -> None:
    path = upload(
        w,
        "/Shared/q",
        'dbutils.widgets.text("hold", "0")\nimport time\nprint("up", flush=True)\n'
        'time.sleep(float(dbutils.widgets.get("hold")))',
    )
    job_id = create(w, task("t", path), parameters=[{"name": "hold", "default": "0"}])
    first = w.jobs.run_now(job_id, job_parameters={"hold": "60"}).run_id
    databricks.wait_for_output(first, "t", "up")
    second = w.jobs.run_now(job_id).run_id
    third = w.jobs.run_now(job_id).run_id

    waiting = w.jobs.get_run(second)
    assert waiting.state is not None and waiting.state.life_cycle_state == jobs.RunLifeCycleState.QUEUED
    assert waiting.state.queue_reason and "maximum concurrent runs" in waiting.state.queue_reason
    assert waiting.status is not None and waiting.status.state == jobs.RunLifecycleStateV2State.QUEUED
    assert waiting.status.queue_details is not None
    assert waiting.status.queue_details.code == jobs.QueueDetailsCodeCode.MAX_CONCURRENT_RUNS_REACHED
    assert [t.state.life_cycle_state for t in waiting.tasks or [] if t.state] == [
        jobs.RunLifeCycleState.QUEUED
    ]
    active = [r.run_id for r in w.jobs.list_runs(job_id=job_id, active_only=True)]
    assert active == [third, second, first]

    # A queued run cancelled ends at once without running; the others stay in line.
    w.jobs.cancel_run(third)
    cancelled = w.jobs.get_run(third)
    assert cancelled.state is not None and cancelled.state.result_state == jobs.RunResultState.CANCELED
    assert databricks.task_output(third, "t") == ""

    # The earlier run ends (cancelled here): the queued one starts and succeeds.
    w.jobs.cancel_run(first)
    done = databricks.wait_for_run(second, timeout=30)
    assert done["state"]["result_state"] == "SUCCESS"
    assert "up" in databricks.task_output(second, "t")
    assert done["tasks"][0]["start_time"] >= databricks.wait_for_run(first)["end_time"]
    assert done["queue_duration"] > 0
