"""`dbtwf run`: run-now on the owned workflow and follow it, over real HTTP.

The Databricks emulator really executes the runner notebook, which triggers and follows the
job on the dbt Cloud emulator. The wait loop's sleep is injected: it waits for the emulator's
run to finish instead of sleeping, so these tests take as long as the runs themselves.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from provision.apply import apply_changes
from provision.errors import NotFoundError, RunFailedError, RunInterruptedError
from provision.model import DbtJobTask, Environment
from provision.plan import plan_environment
from provision.runs import (
    DbtRun,
    RunSnapshot,
    dbt_run_from_output,
    owned_workflow_id,
    run_workflow,
    snapshot,
)
from tests.conftest import DBT_CLOUD_TOKEN
from tests.emulators.dbtcloud import Scenario
from tests.provision_helpers import configured_cli, make_env, make_workspace

DBT_JOB = 42


@pytest.fixture
def ws(databricks: Any) -> Any:
    return make_workspace(databricks)


@pytest.fixture
def env(dbt_cloud: Any) -> Environment:
    return make_env(dbt_host=dbt_cloud.url, dbt_jobs=(DbtJobTask("nightly", DBT_JOB),))


def provision(ws: Any, env: Environment) -> None:
    apply_changes(ws, env, plan_environment(ws, env, DBT_CLOUD_TOKEN), DBT_CLOUD_TOKEN)


class FakeTime:
    """A clock that moves only when the wait loop sleeps; sleeping waits for the emulator's run."""

    def __init__(self, databricks: Any, snapshots: list[RunSnapshot]) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self._databricks = databricks
        self._snapshots = snapshots

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        self._databricks.wait_for_run(self._snapshots[0].run_id, timeout=30)


def follow(
    ws: Any, env: Environment, databricks: Any, **options: Any
) -> tuple[Any, list[RunSnapshot], FakeTime]:
    snapshots: list[RunSnapshot] = []
    fake = FakeTime(databricks, snapshots)
    options.setdefault("wait", True)
    outcome = run_workflow(
        ws, env, on_update=snapshots.append, clock=fake.clock, sleep=fake.sleep, poll_interval=5.0, **options
    )
    return outcome, snapshots, fake


def test_success_follows_the_run_to_the_end(
    databricks: Any, dbt_cloud: Any, ws: Any, env: Environment
) -> None:
    dbt_cloud.add_job(DBT_JOB, scenario=Scenario(outcome="success", polls=1))
    provision(ws, env)

    outcome, snapshots, fake = follow(ws, env, databricks)

    assert outcome.succeeded and outcome.result_state == "SUCCESS"
    outcome.raise_for_failure()  # does not raise
    assert (
        snapshots[0].run_page_url.startswith(databricks.url)
        and str(outcome.run_id) in snapshots[0].run_page_url
    )
    assert snapshots[-1].finished and [t.state for t in snapshots[-1].tasks] == ["SUCCESS"]
    assert fake.sleeps == [5.0] and snapshots[-1].elapsed_seconds == 5.0
    assert len(dbt_cloud.runs_of(DBT_JOB)) == 1  # the notebook really triggered the dbt job


def test_success_names_each_tasks_dbt_run_from_its_notebook_output(
    databricks: Any, dbt_cloud: Any, ws: Any, env: Environment
) -> None:
    dbt_cloud.add_job(DBT_JOB, scenario=Scenario(outcome="success", polls=1))
    provision(ws, env)

    with databricks.recording() as requests:
        outcome, snapshots, _ = follow(ws, env, databricks)

    (dbt_run,) = dbt_cloud.runs_of(DBT_JOB)
    expected = DbtRun(run_id=dbt_run["id"], status="Success", url=dbt_run["href"])
    assert [t.dbt_run for t in outcome.tasks] == [expected]
    assert snapshots[-1].tasks[0].dbt_run == expected  # shown as the task ends, not only at the end
    (task_run_id,) = [t.run_id for t in outcome.tasks]
    outputs = [r for r in requests if r.path.endswith("/runs/get-output")]
    assert [r.query.get("run_id") for r in outputs] == [[str(task_run_id)]]  # one per task run


def test_a_failed_task_has_no_dbt_run_and_one_output_read(
    databricks: Any, dbt_cloud: Any, ws: Any, env: Environment
) -> None:
    dbt_cloud.add_job(DBT_JOB, scenario=Scenario(outcome="error", polls=1))
    provision(ws, env)

    with databricks.recording() as requests:
        outcome, _, _ = follow(ws, env, databricks)

    assert [t.dbt_run for t in outcome.tasks] == [None]  # notebook.exit is never called on failure
    assert dbt_cloud.runs_of(DBT_JOB)[0]["href"] in (outcome.error or "")
    assert len([r for r in requests if r.path.endswith("/runs/get-output")]) == 1


def test_the_default_polling_starts_quick_and_backs_off_to_a_cap(
    databricks: Any, dbt_cloud: Any, ws: Any, env: Environment
) -> None:
    dbt_cloud.add_job(DBT_JOB, scenario=Scenario(outcome="never", polls=1))
    provision(ws, env)
    now = [1000.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:  # a minute passes per poll; the fifth poll is interrupted
        if len(sleeps) == 4:
            raise KeyboardInterrupt
        sleeps.append(seconds)
        now[0] += 60.0

    with pytest.raises(RunInterruptedError):
        run_workflow(ws, env, wait=True, on_update=lambda _: None, clock=lambda: now[0], sleep=sleep)

    # 1 s while the run is young, then 10% of its age (60 s -> 6 s), never more than 10 s.
    assert sleeps == [1.0, 6.0, 10.0, 10.0]


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (
            '{"dbt_run_id": 5, "dbt_run_url": "https://h/runs/5/", "dbt_run_status": "Queued"}',
            DbtRun(5, "Queued", "https://h/runs/5/"),
        ),
        ("", None),  # a notebook task that never called exit
        ("done", None),  # another notebook's plain exit value
        ('{"dbt_run_id": "5", "dbt_run_url": "u", "dbt_run_status": "Success"}', None),
        ('["dbt_run_id"]', None),
    ],
)
def test_dbt_run_from_output_reads_only_the_runners_exit_value(result: str, expected: DbtRun | None) -> None:
    assert dbt_run_from_output({"notebook_output": {"result": result, "truncated": False}}) == expected
    assert dbt_run_from_output({"notebook_output": {"result": result, "truncated": True}}) is None
    assert dbt_run_from_output({"error": "boom"}) is None


def test_failed_dbt_run_names_the_task_and_the_dbt_error(
    databricks: Any, dbt_cloud: Any, ws: Any, env: Environment
) -> None:
    dbt_cloud.add_job(
        DBT_JOB, scenario=Scenario(outcome="error", polls=1, logs="Database Error in model orders")
    )
    provision(ws, env)

    outcome, _, _ = follow(ws, env, databricks)

    assert not outcome.succeeded and outcome.result_state == "FAILED"
    assert outcome.failed_task == "nightly"
    with pytest.raises(RunFailedError) as caught:
        outcome.raise_for_failure()
    assert "task 'nightly'" in caught.value.message
    # The error stays one line naming the step; the step's log comes as details above it.
    assert "dbt build" in caught.value.message and "\n" not in caught.value.message
    assert "Database Error in model orders" in (caught.value.details or "")
    assert outcome.run_page_url in (caught.value.hint or "")


def test_no_wait_returns_after_starting(databricks: Any, dbt_cloud: Any, ws: Any, env: Environment) -> None:
    dbt_cloud.add_job(DBT_JOB, scenario=Scenario(outcome="success", polls=1))
    provision(ws, env)

    outcome, snapshots, fake = follow(ws, env, databricks, wait=False)

    assert not outcome.waited and outcome.result_state is None and fake.sleeps == []
    assert len(snapshots) == 1 and outcome.run_page_url == snapshots[0].run_page_url
    outcome.raise_for_failure()  # not waited: nothing to judge


def test_interrupt_cancels_the_databricks_run(
    databricks: Any, dbt_cloud: Any, ws: Any, env: Environment
) -> None:
    dbt_cloud.add_job(DBT_JOB, scenario=Scenario(outcome="never", polls=1))
    provision(ws, env)

    def interrupted(_: float) -> None:
        raise KeyboardInterrupt

    with databricks.recording() as requests, pytest.raises(RunInterruptedError) as caught:
        run_workflow(ws, env, wait=True, on_update=lambda _: None, sleep=interrupted)

    assert caught.value.exit_code == 1 and "cancelled Databricks run" in caught.value.message
    assert [r.path for r in requests if r.path.endswith("/runs/cancel")]
    run_id = int(caught.value.message.rsplit(" ", 1)[-1])
    assert databricks.wait_for_run(run_id, timeout=30)["state"]["result_state"] == "CANCELED"


def test_a_queued_run_shows_as_queued_with_the_run_it_waits_for(
    databricks: Any, dbt_cloud: Any, ws: Any, env: Environment
) -> None:
    """dbtwf's workflow queues (queue.enabled, max_concurrent_runs 1): a run started while another
    is active waits for it instead of being skipped, and `dbtwf run` says which run that is."""
    dbt_cloud.add_job(DBT_JOB, scenario=Scenario(outcome="never", polls=1))
    provision(ws, env)
    job_id = owned_workflow_id(ws, env)
    assert databricks.jobs[job_id]["settings"]["queue"] == {"enabled": True}
    earlier = ws.run_now(job_id)  # someone's run, still going (its dbt run never ends)

    snapshots: list[RunSnapshot] = []
    fake = FakeTime(databricks, snapshots)

    def end_the_earlier_run_then_wait(seconds: float) -> None:
        if not fake.sleeps:
            dbt_cloud.set_scenario(DBT_JOB, Scenario(outcome="success", polls=1))
            ws.cancel_run(earlier)
        fake.sleep(seconds)  # returns when the queued run has run

    outcome = run_workflow(
        ws,
        env,
        wait=True,
        on_update=snapshots.append,
        clock=fake.clock,
        sleep=end_the_earlier_run_then_wait,
        poll_interval=5.0,
    )

    first = snapshots[0]
    assert first.queued and not first.finished and first.waiting_for == earlier
    assert f"run/{earlier}" in first.waiting_for_url
    assert [task.state for task in first.tasks] == ["QUEUED"]
    assert "maximum concurrent runs" in first.state_message
    assert outcome.succeeded and not snapshots[-1].queued and snapshots[-1].waiting_for is None
    assert databricks.wait_for_run(earlier)["state"]["result_state"] == "CANCELED"


def test_the_status_lines_say_a_run_is_queued_and_behind_which_run(
    invoke: Callable[..., Any], databricks: Any, dbt_cloud: Any, ws: Any, env: Environment
) -> None:
    dbt_cloud.add_job(DBT_JOB, scenario=Scenario(outcome="never", polls=1))
    assert invoke("apply", "--yes").exit_code == 0
    (job_id,) = [job["job_id"] for job in ws.list_jobs(name=env.workflow_name)]
    earlier = ws.run_now(job_id)  # someone's run, still going (its dbt run never ends)

    def ours_was_seen_queued() -> bool:
        """dbtwf has read its run's state while the earlier run was still going."""
        return any(
            r.path.endswith("/jobs/runs/get") and r.query.get("run_id") != [str(earlier)]
            for r in list(databricks.requests)
        )

    def end_the_earlier_run_once_ours_queues() -> None:
        deadline = time.monotonic() + 30
        while not ours_was_seen_queued() and time.monotonic() < deadline:
            time.sleep(0.01)
        dbt_cloud.set_scenario(DBT_JOB, Scenario(outcome="success", polls=1))
        ws.cancel_run(earlier)

    ender = threading.Thread(target=end_the_earlier_run_once_ours_queues, daemon=True)
    ender.start()
    result = invoke("run", "--poll-interval", "0.05")
    ender.join(timeout=30)
    assert result.exit_code == 0, result.output

    ours = int(result.stdout.split()[1].rstrip(":"))  # "run N: URL"
    waiting_for_url = ws.get_run(earlier)["run_page_url"]
    lines = result.stderr.splitlines()
    assert lines[:2] == [
        f"run {ours} is queued: it starts when run {earlier} of the same workflow ends ({waiting_for_url})",
        "  nightly: QUEUED (0s)",
    ]
    assert sum("is queued" in line for line in lines) == 1  # said once, not at every poll


def test_without_a_workflow_points_to_apply(databricks: Any, ws: Any, env: Environment) -> None:
    with pytest.raises(NotFoundError) as caught:
        run_workflow(ws, env, wait=True, on_update=lambda _: None)
    assert "dbtwf apply" in (caught.value.hint or "")
    assert databricks.writes() == []


def test_snapshot_reads_task_states() -> None:
    run = {
        "run_id": 7,
        "run_page_url": "https://x/#job/1/run/7",
        "state": {"life_cycle_state": "RUNNING"},
        "tasks": [
            {
                "task_key": "a",
                "run_id": 8,
                "state": {"life_cycle_state": "TERMINATED", "result_state": "SUCCESS"},
            },
            {"task_key": "b", "run_id": 9, "state": {"life_cycle_state": "PENDING"}},
        ],
    }
    shot = snapshot(run, 3.0)
    assert (shot.state, shot.finished) == ("RUNNING", False)
    assert [(t.task_key, t.state, t.finished) for t in shot.tasks] == [
        ("a", "SUCCESS", True),
        ("b", "PENDING", False),
    ]


# --- the command ---------------------------------------------------------------------------


@pytest.fixture
def invoke(
    tmp_path: Path, databricks: Any, dbt_cloud: Any, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Any]:
    return configured_cli(tmp_path, monkeypatch, databricks.url, dbt_cloud.url, DBT_JOB)


def test_cli_run_success_and_failure_exit_codes(invoke: Callable[..., Any], dbt_cloud: Any) -> None:
    dbt_cloud.add_job(DBT_JOB, scenario=Scenario(outcome="success", polls=1))
    assert invoke("apply", "--yes").exit_code == 0

    ok = invoke("run", "--poll-interval", "0.05")
    assert ok.exit_code == 0, ok.output
    assert "succeeded" in ok.stdout and "#job/" in ok.stdout
    assert "nightly: SUCCESS" in ok.stderr
    (dbt_run,) = dbt_cloud.runs_of(DBT_JOB)
    assert f"nightly: dbt run {dbt_run['id']} Success: {dbt_run['href']}" in ok.stdout

    dbt_cloud.set_scenario(DBT_JOB, Scenario(outcome="error", polls=1, logs="Compilation Error in model x"))
    failed = invoke("run", "--poll-interval", "0.05")
    assert failed.exit_code == 1
    assert "task 'nightly'" in failed.stderr and "hint:" in failed.stderr
    assert DBT_CLOUD_TOKEN not in failed.output
    assert "Compilation Error in model x" in failed.stderr  # the dbt step's log, surfaced
    # ...above the error, which ends the output as the contract's one or two lines.
    *_, error_line, hint_line = failed.stderr.rstrip().splitlines()
    assert error_line.startswith("error: run ") and "dbt build" in error_line
    assert hint_line.startswith("hint: see the run page")
    failed_dbt_run = dbt_cloud.runs_of(DBT_JOB)[-1]
    assert failed_dbt_run["id"] != dbt_run["id"] and failed_dbt_run["href"] in failed.stderr


def test_cli_run_with_the_default_polling_names_the_dbt_run(
    invoke: Callable[..., Any], dbt_cloud: Any
) -> None:
    """No --poll-interval: the adaptive default (its schedule is checked on a fake clock above)."""
    dbt_cloud.add_job(DBT_JOB, scenario=Scenario(outcome="success", polls=1))
    assert invoke("apply", "--yes").exit_code == 0
    ok = invoke("run")
    assert ok.exit_code == 0, ok.output
    (dbt_run,) = dbt_cloud.runs_of(DBT_JOB)
    assert f"nightly: dbt run {dbt_run['id']} Success: {dbt_run['href']}" in ok.stdout


class _Terminal(io.StringIO):
    """What stderr is when `dbtwf run` is typed at a terminal."""

    def isatty(self) -> bool:
        return True


def test_the_live_table_on_a_terminal_shows_each_tasks_dbt_run(
    invoke: Callable[..., Any], dbt_cloud: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from provision.cli import main

    dbt_cloud.add_job(DBT_JOB, scenario=Scenario(outcome="success", polls=1))
    assert invoke("apply", "--yes").exit_code == 0
    # `dbtwf run > out.txt` at a terminal: stderr is the terminal, stdout a file.
    terminal, piped = _Terminal(), io.StringIO()
    for name in ("TTY_COMPATIBLE", "FORCE_COLOR", "NO_COLOR", "TERM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("sys.argv", ["dbtwf", "run", "--poll-interval", "0.05"])
    monkeypatch.setattr("sys.stderr", terminal)
    monkeypatch.setattr("sys.stdout", piped)
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 0, terminal.getvalue() + piped.getvalue()

    (dbt_run,) = dbt_cloud.runs_of(DBT_JOB)
    shown = f"dbt run {dbt_run['id']} Success: {dbt_run['href']}"
    assert "\x1b[" in terminal.getvalue()  # drawn as a live table, not as plain lines
    # The table folds a long URL to the terminal's width.
    assert "".join(shown.split()) in "".join(terminal.getvalue().split())
    # stdout is a file: the result is there too, once, after the table.
    assert piped.getvalue().count(f"nightly: {shown}") == 1
    assert "nightly: SUCCESS" not in piped.getvalue()


def test_cli_run_no_wait(invoke: Callable[..., Any], dbt_cloud: Any, databricks: Any) -> None:
    dbt_cloud.add_job(DBT_JOB, scenario=Scenario(outcome="success", polls=1))
    assert invoke("apply", "--yes").exit_code == 0
    result = invoke("run", "--no-wait")
    assert result.exit_code == 0, result.output
    assert "started run" in result.stdout
    run_id = int(result.stdout.split("started run ")[1].split(";")[0])
    assert databricks.wait_for_run(run_id, timeout=30)["state"]["result_state"] == "SUCCESS"


def test_cli_run_before_apply_exits_1(invoke: Callable[..., Any]) -> None:
    result = invoke("run")
    assert result.exit_code == 1
    assert "dbtwf apply" in result.stderr
