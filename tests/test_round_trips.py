"""Round trips on the critical path: independent requests go out together, nothing is read twice.

The depth of a command is counted from the emulators' request spans (tests.emulators.base.
round_trip_depth): the longest chain of requests each sent after the previous one was
answered. For the spans of requests sent together to overlap, the emulators answer after a
real 50 ms here (their latency_ms); no test asserts a time, only depths and request counts.
Sequentially the same commands were 34 (onboard), 12 (no-op apply) and 23 (add-task) deep.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from provision.cli import app
from provision.errors import RemoteError
from provision.observe import Reader, location_paths
from tests.emulators.base import round_trip_depth
from tests.provision_helpers import cli_env, make_workspace

ROOT = Path(__file__).resolve().parents[1]
#: Long enough that requests sent together overlap even when the machine is busy: the SDK
#: spends a few ms of CPU (under the GIL) building each request, so at 50 ms a wave of six
#: threads on a loaded 2-CPU machine could stretch past the first answer and count twice.
LATENCY_MS = 150
DBT_JOB, SECOND_DBT_JOB = 1, 2


@pytest.fixture
def cli(tmp_path: Path, databricks: Any, dbt_cloud: Any) -> Any:
    dbt_cloud.add_job(DBT_JOB)
    dbt_cloud.add_job(SECOND_DBT_JOB, name="Marts")
    env = cli_env(tmp_path, databricks.url)

    def invoke(*args: str) -> Any:
        result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result

    return invoke


def measured(databricks: Any, dbt_cloud: Any, run: Any) -> list[Any]:
    """The requests both emulators received while ``run()`` ran, each answered after LATENCY_MS."""
    databricks.latency_ms = dbt_cloud.latency_ms = LATENCY_MS
    with databricks.recording() as on_databricks, dbt_cloud.recording() as on_dbt:
        run()
    databricks.latency_ms = dbt_cloud.latency_ms = 0
    return [*on_databricks, *on_dbt]


def reads_before_the_lock(requests: list[Any]) -> Counter[str]:
    """Each read sent before the lock was taken (or all of them, when none was), as a string."""
    ordered = sorted(requests, key=lambda r: r.started)
    lock = next((r for r in ordered if r.is_write and ".dbtwf-lock-" in str(r.json().get("path"))), None)
    return Counter(
        f"{r.method} {r.path} {sorted(r.query.items())}"
        for r in ordered
        if not r.is_write and (lock is None or r.finished < lock.started)
    )


def test_fresh_onboard_then_a_noop_apply(cli: Any, databricks: Any, dbt_cloud: Any) -> None:
    onboard = measured(
        databricks, dbt_cloud, lambda: cli("onboard", "--dbt-job-url", dbt_cloud.job_url(DBT_JOB), "--yes")
    )
    # The dbt check, the SDK's host probe and SCIM Me, two rounds of plan reads, mkdirs, the
    # lock, the check under it, then the record, the scope, the secret and its time, the
    # record and the unlock (the notebook and the workflow go beside the scope).
    assert round_trip_depth(onboard) <= 14
    assert sum(r.is_write for r in onboard) == 9
    assert len(onboard) <= 30
    assert max(reads_before_the_lock(onboard).values()) == 1, "a read was made twice before the lock"

    noop = measured(databricks, dbt_cloud, lambda: cli("apply", "--yes"))
    # The host probe, SCIM Me, and the plan's two rounds of reads.
    assert round_trip_depth(noop) <= 4
    assert not [r for r in noop if r.is_write] and len(noop) <= 12
    assert max(reads_before_the_lock(noop).values()) == 1, "a read was made twice"


def test_add_task_reads_the_dbt_job_the_workflow_and_the_environment_together(
    cli: Any, databricks: Any, dbt_cloud: Any
) -> None:
    cli("onboard", "--dbt-job-url", dbt_cloud.job_url(DBT_JOB), "--yes")
    job_id = make_workspace(databricks).create_job(
        {"name": "Foreign", "tasks": [{"task_key": "etl", "notebook_task": {"notebook_path": "/Shared/etl"}}]}
    )
    requests = measured(
        databricks,
        dbt_cloud,
        lambda: cli("add-task", "--workflow", str(job_id), "--dbt-job", str(SECOND_DBT_JOB), "--yes"),
    )
    # Host probe, Me, {dbt job, workflow, record, scopes, paths}, {secrets, ACLs, permissions},
    # lock, check under it, record, the one jobs/update, unlock.
    assert round_trip_depth(requests) <= 9
    assert [r.path for r in requests if r.is_write and "/jobs/" in r.path] == ["/api/2.2/jobs/update"]
    assert max(reads_before_the_lock(requests).values()) == 1


def test_a_read_several_threads_ask_for_is_made_once(databricks: Any) -> None:
    reader = Reader(make_workspace(databricks))
    databricks.reset_log()
    start = threading.Barrier(4)
    seen: list[frozenset[str]] = []

    def ask() -> None:
        start.wait()
        seen.append(reader.scope_names())

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert seen == [frozenset()] * 4
    assert [r.path for r in databricks.requests] == ["/api/2.0/secrets/scopes/list"]


def test_a_prefetched_read_that_failed_raises_where_it_is_used(databricks: Any) -> None:
    reader = Reader(make_workspace(databricks))
    databricks.reset_log()
    databricks.faults.inject("500", path="/api/2.0/secrets/scopes/list", times=1)
    reader.prefetch(reader.scope_names, lambda: reader.status("/Shared"))  # raises nothing
    assert reader.status("/Shared") is not None
    with pytest.raises(RemoteError, match="listing secret scopes"):
        reader.has_scope("dbtwf-dev")
    with pytest.raises(RemoteError):  # the same answer again: not a second request
        reader.scope_names()
    assert sorted(r.path for r in databricks.requests) == [
        "/api/2.0/secrets/scopes/list",
        "/api/2.0/workspace/get-status",
    ]


def test_the_folders_read_at_once_stop_below_the_top_folder() -> None:
    assert location_paths("/Users/me@example.com/.dbtwf/dev/run") == [
        "/Users/me@example.com/.dbtwf/dev/run",
        "/Users/me@example.com/.dbtwf/dev",
        "/Users/me@example.com/.dbtwf",
        "/Users/me@example.com",
    ]
    assert location_paths("/Workspace/Shared/dbtwf/run") == [
        "/Workspace/Shared/dbtwf/run",
        "/Workspace/Shared/dbtwf",
    ]
    assert location_paths("/top/run") == ["/top/run"]


def test_the_sdk_loads_while_the_work_runs_and_is_loaded_after() -> None:
    code = (
        "import sys\n"
        "from provision.databricks import while_importing_sdk\n"
        "print(while_importing_sdk(lambda: 'done'), 'databricks.sdk' in sys.modules)\n"
        "try:\n"
        "    while_importing_sdk(lambda: 1 / 0)\n"
        "except ZeroDivisionError:\n"
        "    print('raised')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.split() == ["done", "True", "raised"]


def test_gather_waits_for_every_task_and_raises_the_first_error_in_order() -> None:
    from provision.parallel import gather, run_all

    finished: list[str] = []
    both_running = threading.Barrier(2, timeout=10)  # they run at the same time, or this breaks

    def task(name: str, error: Exception | None = None) -> Any:
        def run() -> str:
            if name in ("a", "b"):
                both_running.wait()
            finished.append(name)
            if error is not None:
                raise error
            return name

        return run

    assert gather([task("a"), task("b")]) == ["a", "b"]
    finished.clear()
    with pytest.raises(ValueError, match="first"):
        gather([task("ok"), task("x", ValueError("first")), task("y", KeyError("second"))])
    assert sorted(finished) == ["ok", "x", "y"]  # nothing was abandoned half-way
    outcomes = run_all([task("z", RuntimeError("kept"))])
    assert isinstance(outcomes[0].error, RuntimeError) and outcomes[0].value is None
