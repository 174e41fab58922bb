"""The runner against the dbt Cloud emulator over real HTTP, on a simulated clock.

The runner's clock/sleep and the emulator's clock are one fake clock, so an hour of dbt run
takes milliseconds and no test waits for real.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from runner.core import (
    DbtCloudAuthError,
    DbtCloudClient,
    DbtCloudNotFoundError,
    DbtRunCancelledError,
    DbtRunFailedError,
    DbtRunTimeoutError,
    RunnerInputError,
    RunResult,
    RunSettings,
    run_dbt_job,
    run_from_notebook,
)
from tests.conftest import DBT_ACCOUNT_ID, DBT_CLOUD_TOKEN
from tests.emulators.databricks_notebook import EntryPoint
from tests.emulators.dbtcloud import DbtCloudEmulator, Scenario
from tests.fake_dbutils import FakeDBUtils
from tests.test_emulator_dbtcloud import UNRETRYABLE

JOB = 555
RUN_PATH = rf"/api/v2/accounts/{DBT_ACCOUNT_ID}/runs/\d+/"
TRIGGER_PATH = rf"/api/v2/accounts/{DBT_ACCOUNT_ID}/jobs/{JOB}/run/"


class FakeClock:
    """Monotonic time that only moves when someone sleeps."""

    def __init__(self) -> None:
        self.t = time.monotonic()
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.t += seconds


@pytest.fixture
def clock(dbt_cloud: DbtCloudEmulator) -> Iterator[FakeClock]:
    fake = FakeClock()
    previous = dbt_cloud.clock
    dbt_cloud.clock = fake.now
    yield fake
    dbt_cloud.clock = previous


class Output:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.task_values: dict[str, Any] = {}

    def __call__(self, line: str) -> None:
        self.lines.append(line)

    def set_task_value(self, key: str, value: Any) -> None:
        self.task_values[key] = value

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def assert_no_token(*texts: str) -> None:
    for text in texts:
        assert DBT_CLOUD_TOKEN not in text
        assert DBT_CLOUD_TOKEN[-4:] not in text


def run(
    emu: DbtCloudEmulator,
    clock: FakeClock,
    out: Output,
    *,
    token: str = DBT_CLOUD_TOKEN,
    job_id: object = JOB,
    **changes: Any,
) -> RunResult:
    settings = RunSettings.build(host=emu.url, account_id=DBT_ACCOUNT_ID, job_id=job_id, **changes)
    return run_dbt_job(
        settings,
        token,
        clock=clock.now,
        sleep=clock.sleep,
        out=out,
        task_values=out.set_task_value,
        rng=random.Random(7),
        request_timeout=5.0,
    )


def run_requests(emu: DbtCloudEmulator) -> list[Any]:
    return [r for r in emu.requests if r.method == "GET" and "/runs/" in r.path and r.path.count("/") > 6]


def _id(run: dict[str, Any]) -> int:
    return int(run["id"])


def triggers(emu: DbtCloudEmulator) -> list[Any]:
    return [r for r in emu.requests if r.method == "POST" and r.path.endswith("/run/")]


# --- outcomes -----------------------------------------------------------------------------


def test_success_prints_the_run_at_once_then_one_line_per_status_change(
    dbt_cloud: DbtCloudEmulator, clock: FakeClock
) -> None:
    dbt_cloud.add_job(JOB, scenario=Scenario(outcome="success", seconds=40))
    out = Output()
    result = run(dbt_cloud, clock, out)

    (dbt_run,) = dbt_cloud.runs_of(JOB)
    assert (result.run_id, result.status, result.how) == (dbt_run["id"], 10, "triggered")
    assert result.url == dbt_run["href"]
    assert f"dbt run {result.run_id} triggered: {dbt_run['href']}" in out.lines[1]
    changes = [line.split(": ", 1)[1] for line in out.lines if f"dbt run {result.run_id}: " in line]
    assert changes == ["Queued", "Starting", "Running", "Success"]
    assert out.task_values == {
        "dbt_run_id": result.run_id,
        "dbt_run_url": result.url,
        "dbt_run_status": "Success",
    }
    # Seen within 10% of the run's length (plus jitter), with a handful of requests.
    assert 40 <= result.elapsed_seconds <= 40 + 4.4 + 0.5
    assert len(run_requests(dbt_cloud)) <= 30
    assert_no_token(out.text)


def test_a_run_that_ends_after_a_second_is_seen_within_about_a_second(
    dbt_cloud: DbtCloudEmulator, clock: FakeClock
) -> None:
    dbt_cloud.add_job(JOB, scenario=Scenario(outcome="success", seconds=1))
    result = run(dbt_cloud, clock, Output())
    assert result.elapsed_seconds <= 1 + 1.1 + 0.1


def test_an_hour_long_run_is_seen_within_fifteen_seconds_with_few_requests(
    dbt_cloud: DbtCloudEmulator, clock: FakeClock
) -> None:
    dbt_cloud.add_job(JOB, scenario=Scenario(outcome="success", seconds=3600))
    result = run(dbt_cloud, clock, Output())
    assert 3600 <= result.elapsed_seconds <= 3600 + 16.5
    assert max(clock.sleeps) <= 16.5
    assert len(run_requests(dbt_cloud)) < 300  # the guide's 5 s loop needs 720


def test_an_error_raises_with_the_failing_step_its_log_tail_and_the_run_url(
    dbt_cloud: DbtCloudEmulator, clock: FakeClock
) -> None:
    dbt_cloud.add_job(JOB, scenario=Scenario(outcome="error", polls=3, failing_step="dbt build"))
    out = Output()
    with pytest.raises(DbtRunFailedError) as caught:
        run(dbt_cloud, clock, out)
    error = caught.value
    (dbt_run,) = dbt_cloud.runs_of(JOB)
    message = str(error)
    assert "Invoke dbt with `dbt build`" in message
    assert error.step_name == "Invoke dbt with `dbt build`"
    assert "UNRESOLVED_COLUMN" in message and "Done. PASS=1 WARN=0 ERROR=1" in message
    assert dbt_run["href"] in message and error.run_url == dbt_run["href"]
    assert out.task_values["dbt_run_status"] == "Error"
    assert_no_token(message, out.text)


def test_a_cancelled_run_raises_its_own_exception(dbt_cloud: DbtCloudEmulator, clock: FakeClock) -> None:
    dbt_cloud.add_job(JOB, scenario=Scenario(outcome="cancelled", polls=2))
    with pytest.raises(DbtRunCancelledError, match="was cancelled: Cancelled by user") as caught:
        run(dbt_cloud, clock, Output())
    assert not isinstance(caught.value, DbtRunFailedError)


def test_a_run_that_never_ends_is_cancelled_when_the_timeout_expires(
    dbt_cloud: DbtCloudEmulator, clock: FakeClock
) -> None:
    dbt_cloud.add_job(JOB, scenario=Scenario(outcome="never", seconds=10))
    out = Output()
    started = clock.now()
    with pytest.raises(DbtRunTimeoutError, match="did not finish within 10m00s") as caught:
        run(dbt_cloud, clock, out, timeout_seconds=600)
    (dbt_run,) = dbt_cloud.runs_of(JOB)
    assert dbt_cloud.cancel_requests == [dbt_run["id"]]
    assert dbt_run["status"] == 30
    assert caught.value.status == 30  # the runner saw the cancel land
    assert 600 <= clock.now() - started <= 600 + 10
    assert out.task_values["dbt_run_status"] == "Cancelled"


def test_an_interrupt_cancels_the_dbt_run_before_exiting(
    dbt_cloud: DbtCloudEmulator, clock: FakeClock
) -> None:
    dbt_cloud.add_job(JOB, scenario=Scenario(outcome="never", seconds=10))

    def interrupted_sleep(seconds: float) -> None:
        clock.sleep(seconds)
        if len(clock.sleeps) == 3:
            raise KeyboardInterrupt

    settings = RunSettings.build(host=dbt_cloud.url, account_id=DBT_ACCOUNT_ID, job_id=JOB)
    out = Output()
    with pytest.raises(KeyboardInterrupt):
        run_dbt_job(settings, DBT_CLOUD_TOKEN, clock=clock.now, sleep=interrupted_sleep, out=out)
    (dbt_run,) = dbt_cloud.runs_of(JOB)
    assert dbt_cloud.cancel_requests == [dbt_run["id"]]
    assert "interrupted: cancelling dbt run" in out.text


def test_an_interrupt_while_the_trigger_is_unconfirmed_still_cancels_the_run(
    dbt_cloud: DbtCloudEmulator, clock: FakeClock
) -> None:
    dbt_cloud.add_job(JOB, scenario=Scenario(outcome="never", seconds=10))
    dbt_cloud.faults.inject("drop_after_write", path=TRIGGER_PATH, method="POST", times=1)

    def interrupted_sleep(seconds: float) -> None:
        raise KeyboardInterrupt  # the first sleep is the wait before looking for the lost run

    settings = RunSettings.build(host=dbt_cloud.url, account_id=DBT_ACCOUNT_ID, job_id=JOB)
    with pytest.raises(KeyboardInterrupt):
        run_dbt_job(settings, DBT_CLOUD_TOKEN, clock=clock.now, sleep=interrupted_sleep, out=Output())
    (dbt_run,) = dbt_cloud.runs_of(JOB)
    assert dbt_cloud.cancel_requests == [dbt_run["id"]]


def test_sigterm_cancels_the_dbt_run_and_the_previous_handler_comes_back(
    dbt_cloud: DbtCloudEmulator, clock: FakeClock
) -> None:
    dbt_cloud.add_job(JOB, scenario=Scenario(outcome="never", seconds=10))
    previous = signal.getsignal(signal.SIGTERM)

    def terminated_sleep(seconds: float) -> None:
        clock.sleep(seconds)
        if len(clock.sleeps) == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    settings = RunSettings.build(host=dbt_cloud.url, account_id=DBT_ACCOUNT_ID, job_id=JOB)
    with pytest.raises(KeyboardInterrupt):
        run_dbt_job(settings, DBT_CLOUD_TOKEN, clock=clock.now, sleep=terminated_sleep, out=Output())
    assert len(dbt_cloud.cancel_requests) == 1
    assert signal.getsignal(signal.SIGTERM) == previous


# --- cancel: queued, racing the end, unknown codes -----------------------------------------------


def test_a_run_still_queued_at_the_timeout_is_cancelled_by_the_answer_itself(
    dbt_cloud: DbtCloudEmulator, clock: FakeClock
) -> None:
    """dbt cancels a queued run on the spot and says so (status 30): no waiting for it to stop."""
    dbt_cloud.add_job(JOB, scenario=Scenario(outcome="never", seconds=10_000))  # queued for 1,000 s
    out = Output()
    with pytest.raises(DbtRunTimeoutError, match="did not finish within 1m00s") as caught:
        run(dbt_cloud, clock, out, timeout_seconds=60)
    (dbt_run,) = dbt_cloud.runs_of(JOB)
    assert (dbt_run["status"], dbt_run["started_at"]) == (30, None)
    assert caught.value.status == 30
    cancel_at = next(i for i, r in enumerate(dbt_cloud.requests) if r.path.endswith("/cancel/"))
    assert dbt_cloud.requests[cancel_at + 1 :] == []  # the cancel's answer said it all
    assert f"dbt run {dbt_run['id']} is cancelled" in out.text
    assert out.task_values["dbt_run_status"] == "Cancelled"


def test_an_interrupt_while_queued_publishes_the_cancelled_run(
    dbt_cloud: DbtCloudEmulator, clock: FakeClock
) -> None:
    dbt_cloud.add_job(JOB, scenario=Scenario(outcome="never", seconds=10_000))

    def interrupted_sleep(seconds: float) -> None:
        clock.sleep(seconds)
        raise KeyboardInterrupt

    settings = RunSettings.build(host=dbt_cloud.url, account_id=DBT_ACCOUNT_ID, job_id=JOB)
    out = Output()
    with pytest.raises(KeyboardInterrupt):
        run_dbt_job(
            settings,
            DBT_CLOUD_TOKEN,
            clock=clock.now,
            sleep=interrupted_sleep,
            out=out,
            task_values=out.set_task_value,
        )
    (dbt_run,) = dbt_cloud.runs_of(JOB)
    assert dbt_run["status"] == 30 and dbt_run["dequeued_at"] is None
    assert out.task_values["dbt_run_status"] == "Cancelled"


@pytest.fixture
def slow_cancel(dbt_cloud: DbtCloudEmulator, clock: FakeClock) -> Iterator[None]:
    """The cancel POST takes 5 simulated seconds to reach dbt Cloud (the emulator's latency
    fault waits on the shared fake clock), so a run can end while it is on its way."""
    dbt_cloud.faults.inject("latency", path=r".*/cancel/", method="POST", times=1, delay=5.0)
    dbt_cloud.sleep = clock.sleep
    yield
    dbt_cloud.sleep = time.sleep


def test_a_run_that_succeeds_while_the_timeout_cancel_is_on_its_way_succeeds(
    dbt_cloud: DbtCloudEmulator, clock: FakeClock, slow_cancel: None
) -> None:
    dbt_cloud.add_job(JOB, scenario=Scenario(outcome="success", seconds=62))
    out = Output()
    result = run(dbt_cloud, clock, out, timeout_seconds=60)
    (dbt_run,) = dbt_cloud.runs_of(JOB)
    assert dbt_cloud.cancel_requests == [dbt_run["id"]]
    assert (result.run_id, result.status, dbt_run["status"]) == (dbt_run["id"], 10, 10)
    assert "had already ended: Success" in out.text and "ended before the cancel could stop it" in out.text
    assert out.task_values["dbt_run_status"] == "Success"


def test_a_run_that_fails_while_the_timeout_cancel_is_on_its_way_reports_its_failure(
    dbt_cloud: DbtCloudEmulator, clock: FakeClock, slow_cancel: None
) -> None:
    dbt_cloud.add_job(JOB, scenario=Scenario(outcome="error", seconds=62))
    with pytest.raises(DbtRunFailedError, match="UNRESOLVED_COLUMN") as caught:
        run(dbt_cloud, clock, Output(), timeout_seconds=60)
    assert caught.value.status == 20 and caught.value.step_name == "Invoke dbt with `dbt build`"


def test_an_interrupt_racing_the_runs_end_publishes_the_end(
    dbt_cloud: DbtCloudEmulator, clock: FakeClock, slow_cancel: None
) -> None:
    dbt_cloud.add_job(JOB, scenario=Scenario(outcome="success", seconds=4))

    def interrupted_sleep(seconds: float) -> None:
        clock.sleep(seconds)
        if clock.now() - started >= 2:
            raise KeyboardInterrupt

    settings = RunSettings.build(host=dbt_cloud.url, account_id=DBT_ACCOUNT_ID, job_id=JOB)
    out = Output()
    started = clock.now()
    with pytest.raises(KeyboardInterrupt):
        run_dbt_job(
            settings,
            DBT_CLOUD_TOKEN,
            clock=clock.now,
            sleep=interrupted_sleep,
            out=out,
            task_values=out.set_task_value,
        )
    assert out.task_values["dbt_run_status"] == "Success"  # not "Cancelled": it was not


def test_an_undocumented_running_code_is_followed_to_the_end(
    dbt_cloud: DbtCloudEmulator, clock: FakeClock
) -> None:
    dbt_cloud.add_job(JOB, scenario=Scenario(outcome="success", polls=4, running_code=4))
    out = Output()
    result = run(dbt_cloud, clock, out)
    assert (result.status, result.succeeded) == (10, True)
    assert "unknown status 4 (Running)" in out.text


@pytest.mark.parametrize(
    ("outcome", "raised"),
    [("success", None), ("error", DbtRunFailedError), ("cancelled", DbtRunCancelledError)],
)
def test_an_undocumented_final_code_is_judged_by_the_runs_flags(
    dbt_cloud: DbtCloudEmulator, clock: FakeClock, outcome: Any, raised: type[Exception] | None
) -> None:
    dbt_cloud.add_job(JOB, scenario=Scenario(outcome=outcome, polls=2, final_code=40))
    out = Output()
    if raised is None:
        result = run(dbt_cloud, clock, out)
        assert (result.status, result.succeeded) == (10, True)
        assert result.status_humanized == "unknown status 40 (Success)"
    else:
        with pytest.raises(raised) as caught:
            run(dbt_cloud, clock, out)
        assert caught.value.status == 40  # type: ignore[attr-defined]
    (dbt_run,) = dbt_cloud.runs_of(JOB)
    assert dbt_run["status"] == 40 and len(run_requests(dbt_cloud)) <= 3  # seen as over at once


def test_every_request_the_runner_sends_has_its_trailing_slash(
    dbt_cloud: DbtCloudEmulator, clock: FakeClock
) -> None:
    """dbt Cloud redirects a path without it (308); the runner never depends on that redirect."""
    dbt_cloud.add_job(JOB, scenario=Scenario(outcome="error", polls=1))
    with pytest.raises(DbtRunFailedError):
        run(dbt_cloud, clock, Output())
    dbt_cloud.set_scenario(JOB, Scenario(outcome="never", polls=1))
    dbt_cloud.faults.inject("drop_after_write", path=r".*/rerun/", method="POST", times=1)
    run(dbt_cloud, clock, Output(), rerun_failed=True, wait=False)
    with pytest.raises(DbtRunTimeoutError):
        run(dbt_cloud, clock, Output(), reuse_running=True, timeout_seconds=5)
    account = f"/api/v2/accounts/{DBT_ACCOUNT_ID}"
    endpoints = {
        (r.method, re.sub(r"/\d+/", "/{id}/", r.path.removeprefix(account))) for r in dbt_cloud.requests
    }
    assert endpoints == {  # every endpoint of DbtCloudClient, each with its slash
        ("GET", "/jobs/{id}/"),
        ("POST", "/jobs/{id}/run/"),
        ("POST", "/jobs/{id}/rerun/"),
        ("GET", "/runs/"),
        ("GET", "/runs/{id}/"),
        ("POST", "/runs/{id}/cancel/"),
    }
    assert 308 not in {r.status for r in dbt_cloud.requests}


# --- transient failures -----------------------------------------------------------------------


def test_a_429_with_retry_after_waits_what_it_says_then_polls_as_usual(
    dbt_cloud: DbtCloudEmulator, clock: FakeClock
) -> None:
    dbt_cloud.retry_after_header = True
    dbt_cloud.add_job(JOB, scenario=Scenario(outcome="success", seconds=20))
    dbt_cloud.faults.inject("429", path=RUN_PATH, method="GET", times=3, retry_after=1.0)
    out = Output()
    result = run(dbt_cloud, clock, out)
    assert result.status == 10
    limited = [r for r in dbt_cloud.requests if r.status == 429]
    assert len(limited) == 3
    # Each 429 is followed by a wait of what Retry-After said plus at most a second of jitter:
    # no 30 s floor, no doubling, and no five minutes of slow polling afterwards.
    assert all(1.0 <= seconds <= 2.0 for seconds in clock.sleeps[1:4])
    assert result.elapsed_seconds <= 20 + 2.2 + 0.1
    assert sum(1 for line in out.lines if "did not answer" in line) == 1  # reported once, not per retry
    assert "answers again after 3 failed poll(s)" in out.text


def test_a_429_without_retry_after_backs_off_exponentially_from_a_few_seconds(
    dbt_cloud: DbtCloudEmulator, clock: FakeClock
) -> None:
    dbt_cloud.add_job(JOB, scenario=Scenario(outcome="success", seconds=60))
    dbt_cloud.faults.inject("429", path=RUN_PATH, method="GET", times=3)
    result = run(dbt_cloud, clock, Output())
    assert result.status == 10
    assert [r.status for r in dbt_cloud.requests if r.method == "GET" and r.status == 429] == [429] * 3
    low_high = [(2.0, 4.0), (4.0, 8.0), (8.0, 16.0)]  # doubling from 2-4 s, jittered
    backoff = clock.sleeps[1:4]  # the first sleep is the first poll's
    assert all(low <= seconds <= high for seconds, (low, high) in zip(backoff, low_high, strict=True))
    assert result.elapsed_seconds <= 60 + 6.6 + 0.1  # then seen within a tenth of the run, as usual


def test_flaky_5xx_and_dropped_connections_on_reads_are_retried(
    dbt_cloud: DbtCloudEmulator, clock: FakeClock
) -> None:
    dbt_cloud.add_job(JOB, scenario=Scenario(outcome="success", seconds=30))
    dbt_cloud.faults.inject(
        "503", path=rf"/api/v2/accounts/{DBT_ACCOUNT_ID}/jobs/{JOB}/", method="GET", times=2
    )
    dbt_cloud.faults.inject("500", path=RUN_PATH, method="GET", times=2)
    dbt_cloud.faults.inject("drop_before", path=RUN_PATH, method="GET", times=1)
    result = run(dbt_cloud, clock, Output())
    assert result.status == 10
    assert len(triggers(dbt_cloud)) == 1


def test_a_slow_answer_times_out_and_the_poll_is_retried(
    dbt_cloud: DbtCloudEmulator, clock: FakeClock
) -> None:
    dbt_cloud.add_job(JOB, scenario=Scenario(outcome="success", seconds=5))
    dbt_cloud.faults.inject("latency", path=RUN_PATH, method="GET", times=1, delay=0.4)
    settings = RunSettings.build(host=dbt_cloud.url, account_id=DBT_ACCOUNT_ID, job_id=JOB)
    out = Output()
    result = run_dbt_job(
        settings, DBT_CLOUD_TOKEN, clock=clock.now, sleep=clock.sleep, out=out, request_timeout=0.1
    )
    assert result.status == 10
    assert "timed out" in out.text


@pytest.mark.parametrize("fault", ["drop_after_write", "500", "drop_before", "429"])
def test_a_trigger_with_an_unknown_outcome_never_starts_a_second_run(
    dbt_cloud: DbtCloudEmulator, clock: FakeClock, fault: str
) -> None:
    dbt_cloud.add_job(JOB, scenario=Scenario(outcome="success", polls=2))
    dbt_cloud.faults.inject(fault, path=TRIGGER_PATH, method="POST", times=1)  # type: ignore[arg-type]
    out = Output()
    result = run(dbt_cloud, clock, out)
    runs = dbt_cloud.runs_of(JOB)
    assert len(runs) == 1
    assert result.run_id == runs[0]["id"] and result.status == 10
    # Whether the first POST landed decides whether a second one was needed.
    landed = fault == "drop_after_write"
    assert len(triggers(dbt_cloud)) == (1 if landed else 2)
    assert ("the trigger did land" in out.text) == landed


def test_a_trigger_committed_after_the_first_look_is_still_found_not_sent_again(
    dbt_cloud: DbtCloudEmulator, clock: FakeClock
) -> None:
    """dbt Cloud may commit a run whose answer was lost a few seconds late: the runner keeps
    looking over a window before it dares trigger again."""
    dbt_cloud.add_job(JOB, scenario=Scenario(outcome="success", polls=2))
    dbt_cloud.faults.inject("drop_before", path=TRIGGER_PATH, method="POST", times=1)
    late = DbtCloudClient(dbt_cloud.url, DBT_ACCOUNT_ID, DBT_CLOUD_TOKEN)

    def sleep_then_commit_late(seconds: float) -> None:
        clock.sleep(seconds)
        if len(clock.sleeps) == 2:  # after the first look found nothing: the lost POST lands now
            (lost,) = [r for r in dbt_cloud.requests if r.fault == "drop_before"]
            late.trigger_run(JOB, json.loads(lost.body)["cause"])

    settings = RunSettings.build(host=dbt_cloud.url, account_id=DBT_ACCOUNT_ID, job_id=JOB)
    out = Output()
    result = run_dbt_job(
        settings,
        DBT_CLOUD_TOKEN,
        clock=clock.now,
        sleep=sleep_then_commit_late,
        out=out,
        rng=random.Random(7),
    )
    (only,) = dbt_cloud.runs_of(JOB)
    assert result.run_id == only["id"] and result.status == 10
    assert len(triggers(dbt_cloud)) == 2  # the lost one and the late commit; the runner sent no third
    assert "the trigger did land" in out.text


def test_the_marker_in_the_cause_tells_our_run_from_someone_elses(
    dbt_cloud: DbtCloudEmulator, clock: FakeClock
) -> None:
    dbt_cloud.add_job(JOB, scenario=Scenario(outcome="success", seconds=30))
    someone_else = DbtCloudClient(dbt_cloud.url, DBT_ACCOUNT_ID, DBT_CLOUD_TOKEN)
    theirs = someone_else.trigger_run(JOB, "Triggered by a colleague")
    dbt_cloud.faults.inject("drop_before", path=TRIGGER_PATH, method="POST", times=1)
    result = run(dbt_cloud, clock, Output())
    # Their run was the newest when ours went missing; it is not mistaken for ours.
    assert result.run_id != theirs["id"]
    assert sorted(r["id"] for r in dbt_cloud.runs_of(JOB)) == [theirs["id"], result.run_id]


# --- refusals -----------------------------------------------------------------------------


def test_a_wrong_token_fails_before_triggering_and_is_never_shown(
    dbt_cloud: DbtCloudEmulator, clock: FakeClock
) -> None:
    dbt_cloud.add_job(JOB)
    wrong = "dbtc_wrong_token_value_abcd"
    out = Output()
    with pytest.raises(DbtCloudAuthError, match=r"401.*Invalid token") as caught:
        run(dbt_cloud, clock, out, token=wrong)
    assert triggers(dbt_cloud) == []
    assert wrong not in str(caught.value) and "abcd" not in str(caught.value)
    assert_no_token(str(caught.value), out.text)


def test_an_unknown_job_fails_with_not_found_before_triggering(
    dbt_cloud: DbtCloudEmulator, clock: FakeClock
) -> None:
    with pytest.raises(DbtCloudNotFoundError, match=f"404 to GET /jobs/{JOB}/"):
        run(dbt_cloud, clock, Output())
    assert triggers(dbt_cloud) == []


# --- modes and pass-through ---------------------------------------------------------------------


def test_no_wait_returns_the_queued_run_after_two_requests(
    dbt_cloud: DbtCloudEmulator, clock: FakeClock
) -> None:
    dbt_cloud.add_job(JOB, scenario=Scenario(outcome="never", seconds=100))
    out = Output()
    result = run(dbt_cloud, clock, out, wait=False)
    assert result.status == 1 and result.status_humanized == "Queued"
    assert [(r.method, r.path.rsplit("/", 2)[-2]) for r in dbt_cloud.requests] == [
        ("GET", str(JOB)),
        ("POST", "run"),
    ]
    assert out.task_values["dbt_run_id"] == result.run_id
    assert clock.sleeps == []


def test_reuse_running_follows_the_run_in_progress_instead_of_starting_one(
    dbt_cloud: DbtCloudEmulator, clock: FakeClock
) -> None:
    dbt_cloud.add_job(JOB, scenario=Scenario(outcome="success", seconds=60))
    first = run(dbt_cloud, clock, Output(), wait=False)
    clock.sleep(20)
    result = run(dbt_cloud, clock, Output(), reuse_running=True)
    assert (result.run_id, result.how, result.status) == (first.run_id, "reused", 10)
    assert len(triggers(dbt_cloud)) == 1
    # Nothing in progress: a new run is triggered as usual.
    assert run(dbt_cloud, clock, Output(), reuse_running=True).how == "triggered"


def test_rerun_failed_retries_from_the_failing_step_only_when_the_last_run_failed(
    dbt_cloud: DbtCloudEmulator, clock: FakeClock
) -> None:
    dbt_cloud.add_job(
        JOB, scenario=Scenario(outcome="error", polls=2, steps=("dbt seed", "dbt build", "dbt test"))
    )
    with pytest.raises(DbtRunFailedError):
        run(dbt_cloud, clock, Output())
    dbt_cloud.set_scenario(JOB, Scenario(outcome="success", polls=2))
    out = Output()
    result = run(dbt_cloud, clock, out, rerun_failed=True)
    assert (result.how, result.status) == ("rerun", 10)
    rerun = dbt_cloud.runs[result.run_id]
    assert [step["name"] for step in rerun["run_steps"]][2:] == [
        "Invoke dbt with `dbt build`",
        "Invoke dbt with `dbt test`",
    ]
    assert [r.path.rsplit("/", 2)[-2] for r in dbt_cloud.requests if r.method == "POST"] == ["run", "rerun"]
    # The last run succeeded now: rerun_failed triggers a fresh run.
    assert run(dbt_cloud, clock, Output(), rerun_failed=True).how == "triggered"


@pytest.mark.parametrize(("scenario", "trigger_body", "reason"), UNRETRYABLE)
def test_when_dbt_refuses_a_rerun_the_job_is_triggered_from_the_start_saying_why(
    dbt_cloud: DbtCloudEmulator,
    clock: FakeClock,
    scenario: Scenario,
    trigger_body: dict[str, Any],
    reason: str,
) -> None:
    dbt_cloud.add_job(JOB, scenario=scenario)
    someone = DbtCloudClient(dbt_cloud.url, DBT_ACCOUNT_ID, DBT_CLOUD_TOKEN)
    failed = someone.trigger_run(JOB, "the nightly run", trigger_body)
    assert someone.get_run(_id(failed))["status"] == 20
    dbt_cloud.set_scenario(JOB, Scenario(outcome="success", polls=1))
    out = Output()
    result = run(dbt_cloud, clock, out, rerun_failed=True)
    assert (result.how, result.status) == ("triggered", 10)
    assert f"will not rerun run {_id(failed)} from the failure" in out.text and reason in out.text
    assert "triggering the job from the start instead" in out.text
    posts = [(r.path.rsplit("/", 2)[-2], r.status) for r in dbt_cloud.requests if r.method == "POST"]
    assert posts == [("run", 200), ("rerun", 400), ("run", 200)]
    assert "[dbtwf:" in dbt_cloud.runs[result.run_id]["trigger"]["cause"]  # our own, findable trigger


def test_a_lost_rerun_response_is_found_without_retrying_run_id(
    dbt_cloud: DbtCloudEmulator, clock: FakeClock
) -> None:
    dbt_cloud.add_job(JOB, scenario=Scenario(outcome="error", polls=1))
    with pytest.raises(DbtRunFailedError):
        run(dbt_cloud, clock, Output())
    dbt_cloud.set_scenario(JOB, Scenario(outcome="success", polls=1))
    dbt_cloud.faults.inject("drop_after_write", path=r".*/rerun/", method="POST", times=1)
    out = Output()
    result = run(dbt_cloud, clock, out, rerun_failed=True)
    assert result.how == "rerun" and "the rerun did land" in out.text
    assert len(dbt_cloud.runs_of(JOB)) == 2  # the lost rerun was found, not sent again
    assert all(r["retrying_run_id"] is None for r in dbt_cloud.runs_of(JOB))


def test_a_lost_rerun_is_told_from_a_run_someone_started_just_before_it(
    dbt_cloud: DbtCloudEmulator, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A colleague's run lands between the runner's look at the job and its rerun POST, whose
    answer is lost: the runner follows the run its POST made (cause_category "rerun")."""
    dbt_cloud.add_job(JOB, scenario=Scenario(outcome="error", polls=1))
    with pytest.raises(DbtRunFailedError):
        run(dbt_cloud, clock, Output())
    dbt_cloud.set_scenario(JOB, Scenario(outcome="never", polls=1))
    dbt_cloud.faults.inject("drop_after_write", path=r".*/rerun/", method="POST", times=1)
    colleague = DbtCloudClient(dbt_cloud.url, DBT_ACCOUNT_ID, DBT_CLOUD_TOKEN)
    theirs: list[dict[str, Any]] = []
    record = dbt_cloud.record

    def record_then_race(entry: Any) -> None:
        record(entry)
        if entry.method == "GET" and entry.path.endswith("/runs/") and not theirs:
            theirs.append(colleague.trigger_run(JOB, "Triggered by a colleague"))  # before our POST

    monkeypatch.setattr(dbt_cloud, "record", record_then_race)
    result = run(dbt_cloud, clock, Output(), rerun_failed=True, wait=False)
    ours = [r for r in dbt_cloud.runs_of(JOB) if r["trigger"]["cause_category"] == "rerun"]
    assert len(ours) == 1 and result.run_id == ours[0]["id"] != _id(theirs[0]) < result.run_id
    assert len(dbt_cloud.runs_of(JOB)) == 3  # failed, theirs, ours: nothing sent twice


def test_overrides_and_a_cause_within_255_characters_are_sent(
    dbt_cloud: DbtCloudEmulator, clock: FakeClock
) -> None:
    dbt_cloud.add_job(JOB, scenario=Scenario(outcome="success", polls=1))
    run(
        dbt_cloud,
        clock,
        Output(),
        cause="nightly " * 50,
        overrides={
            "steps_override": "dbt seed\ndbt build --select tag:nightly",
            "schema_override": "ci_123",
            "git_branch": "release",
            "target_name_override": "ci",
            "threads_override": "6",
            "timeout_seconds_override": "1800",
            "dbt_version_override": "1.9.0-latest",
            "generate_docs_override": "true",
        },
    )
    (body,) = [r.json() for r in triggers(dbt_cloud)]
    assert len(body["cause"]) <= 255 and body["cause"].startswith("nightly nightly")
    assert "[dbtwf:" in body["cause"]
    assert {k: v for k, v in body.items() if k != "cause"} == {
        "steps_override": ["dbt seed", "dbt build --select tag:nightly"],
        "schema_override": "ci_123",
        "git_branch": "release",
        "target_name_override": "ci",
        "threads_override": 6,
        "timeout_seconds_override": 1800,
        "dbt_version_override": "1.9.0-latest",
        "generate_docs_override": True,
    }
    (dbt_run,) = dbt_cloud.runs_of(JOB)
    assert dbt_run["trigger"]["steps_override"] == ["dbt seed", "dbt build --select tag:nightly"]


# --- from a notebook ----------------------------------------------------------------------------


# The context a job run's notebook sees on a cluster (read through dbutils.notebook.entry_point).
CLUSTER_CONTEXT = {
    "tags": {
        "jobId": "881",
        "multitaskParentRunId": "9912",
        "runId": "9913",
        "taskKey": "dbt_daily",
        "browserHostName": "adb-123.7.azuredatabricks.net",
    }
}


class _Notebook:
    """`dbutils.notebook` as far as the runner looks: the context's entry point, no exit."""

    def __init__(self) -> None:
        self.entry_point = EntryPoint(CLUSTER_CONTEXT)


def dbutils_for(widgets: dict[str, str]) -> FakeDBUtils:
    """Only what a Databricks job gives the runner; the token is under dbt-cloud/api-key."""
    return FakeDBUtils(widgets, {("dbt-cloud", "api-key"): DBT_CLOUD_TOKEN})


def notebook_widgets(**changes: str) -> dict[str, str]:
    widgets = {"job_id": str(JOB)}
    widgets.update(changes)
    return widgets


def run_notebook(
    emu: DbtCloudEmulator, dbutils: FakeDBUtils, clock: FakeClock, out: Output, **pinned: Any
) -> Any:
    """The entry point as the notebook's last cell calls it, with the environment's constants."""
    constants: dict[str, Any] = {
        "dbt_cloud_host": emu.url,
        "dbt_cloud_account_id": DBT_ACCOUNT_ID,
        "secret_scope": "dbt-cloud",
        "secret_key": "api-key",
    }
    constants.update(pinned)
    return run_from_notebook(dbutils, clock=clock.now, sleep=clock.sleep, out=out, **constants)


def test_the_guides_placeholder_stops_the_notebook_before_any_request(
    dbt_cloud: DbtCloudEmulator, clock: FakeClock
) -> None:
    dbt_cloud.add_job(JOB)
    dbutils = dbutils_for(notebook_widgets(job_id="Enter the Job ID"))
    with pytest.raises(RunnerInputError, match="placeholder 'Enter the Job ID'"):
        run_notebook(dbt_cloud, dbutils, clock, Output())
    assert dbt_cloud.requests == []
    assert dbutils.secrets.asked == []  # not even the secret was read


@pytest.mark.parametrize(
    "parameters",
    [
        {"dbt_cloud_host": "https://dbt.example.invalid"},
        {"dbt_cloud_account_id": "1"},
        {"secret_scope": "prod-db"},
        {"secret_key": "password"},
        {"secret_key": ""},  # present but empty is still a parameter of that name
    ],
)
def test_a_run_parameter_naming_a_notebook_constant_stops_before_anything_is_read_or_sent(
    dbt_cloud: DbtCloudEmulator, clock: FakeClock, parameters: dict[str, str]
) -> None:
    dbt_cloud.add_job(JOB)
    dbutils = dbutils_for(notebook_widgets(**parameters))
    (name,) = parameters
    with pytest.raises(RunnerInputError, match=rf"passes the parameter\(s\) {name}, which the runner"):
        run_notebook(dbt_cloud, dbutils, clock, Output())
    assert dbutils.secrets.asked == [] and dbt_cloud.requests == []


def test_a_job_id_url_must_name_the_notebooks_host_and_account(
    dbt_cloud: DbtCloudEmulator, clock: FakeClock
) -> None:
    dbt_cloud.add_job(JOB, scenario=Scenario(outcome="success", polls=1))
    for other in (
        f"http://127.0.0.1:9/deploy/{DBT_ACCOUNT_ID}/projects/1/jobs/{JOB}",
        f"{dbt_cloud.url}/deploy/{DBT_ACCOUNT_ID + 1}/projects/1/jobs/{JOB}",
    ):
        dbutils = dbutils_for(notebook_widgets(job_id=other))
        with pytest.raises(RunnerInputError, match="this notebook runs jobs of account"):
            run_notebook(dbt_cloud, dbutils, clock, Output())
        assert dbutils.secrets.asked == [] and dbt_cloud.requests == []
    dbutils = dbutils_for(notebook_widgets(job_id=dbt_cloud.job_url(JOB)))  # its own: fine
    assert run_notebook(dbt_cloud, dbutils, clock, Output()).succeeded


def test_a_missing_secret_names_the_scope_and_key(dbt_cloud: DbtCloudEmulator, clock: FakeClock) -> None:
    dbutils = dbutils_for(notebook_widgets())
    with pytest.raises(RunnerInputError, match="secret scope 'dbt-cloud', key 'nope'"):
        run_notebook(dbt_cloud, dbutils, clock, Output(), secret_key="nope")
    assert dbt_cloud.requests == []


def test_the_notebook_entry_point_tells_dbt_where_the_run_came_from(
    dbt_cloud: DbtCloudEmulator, clock: FakeClock
) -> None:
    dbt_cloud.add_job(JOB, scenario=Scenario(outcome="success", polls=2))
    dbutils = dbutils_for(notebook_widgets(wait="true", git_branch="main", timeout_seconds="900"))
    dbutils.notebook = _Notebook()  # type: ignore[attr-defined] - only on a real cluster
    out = Output()
    result = run_notebook(dbt_cloud, dbutils, clock, out)
    (dbt_run,) = dbt_cloud.runs_of(JOB)
    cause = dbt_run["trigger"]["cause"]
    assert cause.startswith(
        "Triggered by Databricks Workflows | Databricks job 881 run 9912 task dbt_daily | "
        "https://adb-123.7.azuredatabricks.net [dbtwf:"
    )
    assert dbt_run["trigger"]["git_branch"] == "main"
    assert dbutils.jobs.taskValues.values == {
        "dbt_run_id": result.run_id,
        "dbt_run_url": dbt_run["href"],
        "dbt_run_status": "Success",
    }
    assert_no_token(out.text, repr(result))
