"""`dbtwf run`: run the environment's workflow now and follow it to the end.

The wait loop polls `runs/get` on an injected clock and sleep (tests do not wait), quickly at
first and less often as the run grows old (the runner's PollPolicy), and reports every change
of state through ``on_update``. It reads each finished task's `runs/get-output` once: a
succeeded runner notebook's exit value names its dbt Cloud run (id, status, URL), and a failed
task's error carries the dbt error, so the user sees more than "SUCCESS" or "FAILED".
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from provision.errors import DbtwfError, NotFoundError, RunFailedError, RunInterruptedError
from runner.core import PollPolicy

if TYPE_CHECKING:
    from provision.databricks import Workspace
    from provision.model import Environment

#: A notebook task starts in seconds on serverless, so look every second at first; a long run
#: is looked at every 10% of its age, at most every 10 s (a person is watching).
DEFAULT_POLL_POLICY = PollPolicy(first=1.0, fraction=0.1, cap=10.0, jitter=0.0)
#: Life cycle states after which a run or task changes no more (Jobs API RunLifeCycleState).
TERMINAL_LIFE_CYCLE_STATES = frozenset({"TERMINATED", "SKIPPED", "INTERNAL_ERROR"})
_SUCCESS_RESULTS = frozenset({"SUCCESS"})
#: The error text of a task can be long (a whole traceback); the CLI shows its end.
_ERROR_TAIL_CHARS = 2000


@dataclass(frozen=True)
class DbtRun:
    """The dbt Cloud run a runner notebook reported as its exit value (runner/core.py)."""

    run_id: int
    status: str
    url: str

    def describe(self) -> str:
        return f"dbt run {self.run_id} {self.status}: {self.url}"


def dbt_run_from_output(output: dict[str, Any]) -> DbtRun | None:
    """The dbt run in a `runs/get-output` answer, or None when the notebook did not report one
    (an older runner, another notebook, a truncated value)."""
    platform = output.get("dbt_platform_output") or {}
    if str(platform.get("dbt_platform_job_run_id") or "").isdigit() and platform.get(
        "dbt_platform_job_run_url"
    ):
        # A dbt platform task (Beta): Databricks names the dbt run it triggered; it succeeded.
        platform_url = str(platform["dbt_platform_job_run_url"])
        return DbtRun(run_id=int(platform["dbt_platform_job_run_id"]), status="Success", url=platform_url)
    notebook_output = output.get("notebook_output") or {}
    if notebook_output.get("truncated"):
        return None
    try:
        value = json.loads(str(notebook_output.get("result") or ""))
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    run_id, status, url = value.get("dbt_run_id"), value.get("dbt_run_status"), value.get("dbt_run_url")
    if type(run_id) is not int or not isinstance(status, str) or not isinstance(url, str):
        return None
    return DbtRun(run_id=run_id, status=status, url=url)


@dataclass(frozen=True)
class TaskSnapshot:
    task_key: str
    state: str  # the result state when finished (SUCCESS, FAILED, ...), else the life cycle state
    run_id: int | None = None
    state_message: str = ""
    notebook: bool = False  # a notebook or dbt platform task, whose output may name its dbt run
    dbt_run: DbtRun | None = None  # read from runs/get-output once the task succeeded

    @property
    def finished(self) -> bool:
        return self.state not in _ACTIVE_STATES


_ACTIVE_STATES = frozenset(
    {"PENDING", "QUEUED", "RUNNING", "TERMINATING", "BLOCKED", "WAITING", "WAITING_FOR_RETRY", "UNKNOWN"}
)


@dataclass(frozen=True)
class RunSnapshot:
    """What one `runs/get` says, reduced to what a status line shows."""

    run_id: int
    run_page_url: str
    state: str
    tasks: tuple[TaskSnapshot, ...]
    elapsed_seconds: float
    finished: bool
    state_message: str = ""
    #: A QUEUED run waits for this run of the same workflow to end (None: not queued, or unknown).
    waiting_for: int | None = None
    waiting_for_url: str = ""

    @property
    def queued(self) -> bool:
        return self.state == "QUEUED"


@dataclass(frozen=True)
class RunOutcome:
    run_id: int
    run_page_url: str
    job_id: int
    waited: bool
    #: The run's result state (SUCCESS, FAILED, CANCELED, TIMEDOUT, ...); None when not waited.
    result_state: str | None = None
    failed_task: str | None = None
    error: str | None = None
    tasks: tuple[TaskSnapshot, ...] = ()

    @property
    def succeeded(self) -> bool:
        return self.result_state in _SUCCESS_RESULTS

    def raise_for_failure(self) -> None:
        """RunFailedError naming the failing task and its error, unless the run succeeded."""
        if not self.waited or self.succeeded:
            return
        where = f"task {self.failed_task!r} " if self.failed_task else ""
        message = f"run {self.run_id} ended {self.result_state or 'without a result'}: {where}failed"
        # The error's first line says what failed; the rest (the dbt run link, the failing
        # step's log) is shown as details so the error itself stays one line.
        first_line, _, rest = (self.error or "").strip().partition("\n")
        if first_line:
            message += f": {first_line}"
        raise RunFailedError(message, f"see the run page: {self.run_page_url}", details=rest.strip() or None)


def snapshot(run: dict[str, Any], elapsed_seconds: float) -> RunSnapshot:
    """A `runs/get` response (SDK `Run.as_dict()` shape) as a RunSnapshot."""
    state = run.get("state") or {}
    status = run.get("status") or {}
    life_cycle = str(state.get("life_cycle_state") or status.get("state") or "PENDING")
    if status.get("state") == "QUEUED":  # the newer status block says so even where `state` lags
        life_cycle = "QUEUED"
    result = state.get("result_state")
    message = str(
        state.get("state_message")
        or state.get("queue_reason")
        or (status.get("queue_details") or {}).get("message")
        or ""
    )
    tasks = tuple(
        TaskSnapshot(
            task_key=str(task.get("task_key")),
            state=_task_state(task),
            run_id=task.get("run_id"),
            state_message=str((task.get("state") or {}).get("state_message") or ""),
            notebook="notebook_task" in task or "dbt_platform_task" in task,
        )
        for task in run.get("tasks") or []
    )
    return RunSnapshot(
        run_id=int(run["run_id"]),
        run_page_url=str(run.get("run_page_url") or ""),
        state=str(result) if result else life_cycle,
        tasks=tasks,
        elapsed_seconds=elapsed_seconds,
        finished=life_cycle in TERMINAL_LIFE_CYCLE_STATES,
        state_message=message,
    )


def _with_blocker(ws: Workspace, job_id: int, shot: RunSnapshot, known: RunSnapshot | None) -> RunSnapshot:
    """A queued snapshot with the run it waits for: the workflow's earliest other active run
    that is not itself queued (Databricks queues a run while the job is at max_concurrent_runs,
    and starts it when such a run ends). Asked once per stay in the queue."""
    if not shot.queued:
        return shot
    if known is not None and known.queued and known.waiting_for is not None:
        return replace(shot, waiting_for=known.waiting_for, waiting_for_url=known.waiting_for_url)
    try:
        active = ws.list_active_runs(job_id)
    except DbtwfError:
        return shot  # only a detail of the status line
    others = sorted(
        (run for run in active if int(run.get("run_id") or 0) != shot.run_id),
        key=lambda run: (
            ((run.get("state") or {}).get("life_cycle_state") == "QUEUED"),
            int(run.get("run_id") or 0),
        ),
    )
    if not others:
        return shot
    first = others[0]
    return replace(
        shot, waiting_for=int(first["run_id"]), waiting_for_url=str(first.get("run_page_url") or "")
    )


def _task_state(task: dict[str, Any]) -> str:
    state = task.get("state") or {}
    if state.get("result_state"):
        return str(state["result_state"])
    life_cycle = state.get("life_cycle_state") or (task.get("status") or {}).get("state") or "PENDING"
    return str(life_cycle)


def owned_workflow_id(ws: Workspace, env: Environment) -> int:
    """The job id of the workflow `dbtwf apply` created for the environment (state record)."""
    from provision.state import load_state

    record = load_state(ws, env)
    if record is None or record.workflow_job_id is None:
        raise NotFoundError(
            f"environment {env.name!r} has no workflow yet in {ws.host}",
            "run `dbtwf apply` first to create it",
        )
    return int(record.workflow_job_id)


def run_workflow(
    ws: Workspace,
    env: Environment,
    *,
    wait: bool,
    on_update: Callable[[RunSnapshot], None],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    poll_interval: float | None = None,
) -> RunOutcome:
    """Run-now the environment's workflow; with ``wait``, follow it until it ends.

    ``on_update`` gets the first snapshot at once (it carries the run page URL) and then
    every snapshot that differs from the previous one; a task that succeeded carries its
    dbt run. Ctrl-C while waiting cancels the Databricks run and raises RunInterruptedError.
    The workflow's own timeouts bound the wait; there is no second deadline here.
    ``poll_interval`` fixes the seconds between checks; by default DEFAULT_POLL_POLICY.
    """
    job_id = owned_workflow_id(ws, env)
    started = clock()
    try:
        # The SDK re-sends run-now when the answer is lost or late; the token makes the
        # service start one run however often the request lands.
        run_id = ws.run_now(job_id, idempotency_token=uuid.uuid4().hex)
    except NotFoundError:
        raise NotFoundError(
            f"workflow {job_id} of environment {env.name!r} no longer exists",
            "run `dbtwf apply` to create it again",
        ) from None
    current = _with_blocker(ws, job_id, snapshot(ws.get_run(run_id), clock() - started), None)
    on_update(current)
    if not wait:
        return RunOutcome(run_id=run_id, run_page_url=current.run_page_url, job_id=job_id, waited=False)
    outputs = _TaskOutputs(ws)

    def next_poll() -> float:
        if poll_interval is not None:
            return poll_interval
        return DEFAULT_POLL_POLICY.interval(clock() - started, _NO_JITTER)

    try:
        run = _follow(
            ws,
            job_id,
            run_id,
            current,
            on_update,
            outputs,
            clock=clock,
            sleep=sleep,
            started=started,
            poll=next_poll,
        )
    except KeyboardInterrupt:
        ws.cancel_run(run_id)
        raise RunInterruptedError(
            f"interrupted: cancelled Databricks run {run_id}",
            f"its tasks stop shortly; see {current.run_page_url}",
        ) from None
    final = outputs.with_dbt_runs(snapshot(run, clock() - started))
    failed_task, error = (None, None) if final.state in _SUCCESS_RESULTS else _first_failure(outputs, final)
    return RunOutcome(
        run_id=run_id,
        run_page_url=final.run_page_url,
        job_id=job_id,
        waited=True,
        result_state=final.state,
        failed_task=failed_task,
        error=error or final.state_message or None,
        tasks=final.tasks,
    )


def _follow(
    ws: Workspace,
    job_id: int,
    run_id: int,
    current: RunSnapshot,
    on_update: Callable[[RunSnapshot], None],
    outputs: _TaskOutputs,
    *,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    started: float,
    poll: Callable[[], float],
) -> dict[str, Any]:
    run: dict[str, Any] | None = None
    while not current.finished:
        sleep(poll())
        run = ws.get_run(run_id)
        latest = outputs.with_dbt_runs(snapshot(run, clock() - started))
        latest = _with_blocker(ws, job_id, latest, current)
        if (latest.state, latest.tasks, latest.waiting_for) != (
            current.state,
            current.tasks,
            current.waiting_for,
        ):
            on_update(latest)
        current = latest
    return run if run is not None else ws.get_run(run_id)


# PollPolicy draws its jitter from an rng; DEFAULT_POLL_POLICY's jitter is 0, so draws change nothing.
_NO_JITTER = random.Random(0)


class _TaskOutputs:
    """`runs/get-output` of each finished task run, asked once and kept (a multi-task run's
    own id has no output: Databricks answers only per task run)."""

    def __init__(self, ws: Workspace) -> None:
        self._ws = ws
        self._outputs: dict[int, dict[str, Any]] = {}

    def get(self, task_run_id: int) -> dict[str, Any]:
        if task_run_id not in self._outputs:
            try:
                self._outputs[task_run_id] = self._ws.get_run_output(task_run_id)
            except DbtwfError:
                # The output only adds detail to a state already known; not worth failing for.
                self._outputs[task_run_id] = {}
        return self._outputs[task_run_id]

    def with_dbt_runs(self, shot: RunSnapshot) -> RunSnapshot:
        """``shot`` with the dbt run of every notebook task that succeeded."""
        tasks = tuple(self._with_dbt_run(task) for task in shot.tasks)
        return shot if tasks == shot.tasks else replace(shot, tasks=tasks)

    def _with_dbt_run(self, task: TaskSnapshot) -> TaskSnapshot:
        if not task.notebook or task.state not in _SUCCESS_RESULTS or task.run_id is None:
            return task
        dbt_run = dbt_run_from_output(self.get(int(task.run_id)))
        return task if dbt_run is None else replace(task, dbt_run=dbt_run)


def _first_failure(outputs: _TaskOutputs, final: RunSnapshot) -> tuple[str | None, str | None]:
    """The first task that failed (not one skipped because of it) and its error message."""
    failed = [
        t for t in final.tasks if t.state not in _SUCCESS_RESULTS and not t.state.startswith("UPSTREAM_")
    ]
    if not failed:
        return None, None
    task = failed[0]
    error = task.state_message or None
    if task.run_id is not None:
        error = str(outputs.get(int(task.run_id)).get("error") or "").strip() or error
    if error and len(error) > _ERROR_TAIL_CHARS:
        error = "…" + error[-_ERROR_TAIL_CHARS:]
    return task.task_key, error
