"""`dbtwf run`: run the environment's workflow now and follow it to the end.

The wait loop polls `runs/get` on an injected clock and sleep (tests do not wait), reports
every change of state through ``on_update`` and, on failure, reads the failing task's
`runs/get-output` so the user sees the dbt error, not only "FAILED".
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from provision.errors import NotFoundError, RunFailedError

if TYPE_CHECKING:
    from provision.databricks import Workspace
    from provision.model import Environment

DEFAULT_POLL_INTERVAL = 5.0
#: Life cycle states after which a run or task changes no more (Jobs API RunLifeCycleState).
TERMINAL_LIFE_CYCLE_STATES = frozenset({"TERMINATED", "SKIPPED", "INTERNAL_ERROR"})
_SUCCESS_RESULTS = frozenset({"SUCCESS"})
#: The error text of a task can be long (a whole traceback); the CLI shows its end.
_ERROR_TAIL_CHARS = 2000


class RunInterruptedError(RunFailedError):
    """The user pressed Ctrl-C while waiting; the Databricks run was cancelled (exit 1, as the contract
    has only 0/1/2 and `python -m runner` also exits 1 when interrupted)."""


@dataclass(frozen=True)
class TaskSnapshot:
    task_key: str
    state: str  # the result state when finished (SUCCESS, FAILED, ...), else the life cycle state
    run_id: int | None = None
    state_message: str = ""

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
        if self.error:
            message += f": {self.error}"
        raise RunFailedError(message, f"see the run page: {self.run_page_url}")


def snapshot(run: dict[str, Any], elapsed_seconds: float) -> RunSnapshot:
    """A `runs/get` response (SDK `Run.as_dict()` shape) as a RunSnapshot."""
    state = run.get("state") or {}
    life_cycle = str(state.get("life_cycle_state") or (run.get("status") or {}).get("state") or "PENDING")
    result = state.get("result_state")
    tasks = tuple(
        TaskSnapshot(
            task_key=str(task.get("task_key")),
            state=_task_state(task),
            run_id=task.get("run_id"),
            state_message=str((task.get("state") or {}).get("state_message") or ""),
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
        state_message=str(state.get("state_message") or ""),
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
    poll_interval: float = DEFAULT_POLL_INTERVAL,
) -> RunOutcome:
    """Run-now the environment's workflow; with ``wait``, follow it until it ends.

    ``on_update`` gets the first snapshot at once (it carries the run page URL) and then
    every snapshot that differs from the previous one. Ctrl-C while waiting cancels the
    Databricks run and raises RunInterruptedError. The workflow's own timeouts bound the
    wait; there is no second deadline here.
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
    current = snapshot(ws.get_run(run_id), clock() - started)
    on_update(current)
    if not wait:
        return RunOutcome(run_id=run_id, run_page_url=current.run_page_url, job_id=job_id, waited=False)
    try:
        run = _follow(
            ws, run_id, current, on_update, clock=clock, sleep=sleep, started=started, poll=poll_interval
        )
    except KeyboardInterrupt:
        ws.cancel_run(run_id)
        raise RunInterruptedError(
            f"interrupted: cancelled Databricks run {run_id}",
            f"its tasks stop shortly; see {current.run_page_url}",
        ) from None
    final = snapshot(run, clock() - started)
    failed_task, error = (None, None) if final.state in _SUCCESS_RESULTS else _first_failure(ws, final)
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
    run_id: int,
    current: RunSnapshot,
    on_update: Callable[[RunSnapshot], None],
    *,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    started: float,
    poll: float,
) -> dict[str, Any]:
    run: dict[str, Any] | None = None
    while not current.finished:
        sleep(poll)
        run = ws.get_run(run_id)
        latest = snapshot(run, clock() - started)
        if (latest.state, latest.tasks) != (current.state, current.tasks):
            on_update(latest)
        current = latest
    return run if run is not None else ws.get_run(run_id)


def _first_failure(ws: Workspace, final: RunSnapshot) -> tuple[str | None, str | None]:
    """The first task that failed (not one skipped because of it) and its error message."""
    failed = [
        t for t in final.tasks if t.state not in _SUCCESS_RESULTS and not t.state.startswith("UPSTREAM_")
    ]
    if not failed:
        return None, None
    task = failed[0]
    error = task.state_message or None
    if task.run_id is not None:
        output = ws.get_run_output(int(task.run_id))
        error = str(output.get("error") or "").strip() or error
    if error and len(error) > _ERROR_TAIL_CHARS:
        error = "…" + error[-_ERROR_TAIL_CHARS:]
    return task.task_key, error
