"""Fault matrix: onboard, add-task, adopt, migrate and the runner under seeded faults on every endpoint.

Each case switches on one fault kind (429 with Retry-After, 500, 503, a connection dropped
after the write landed, one dropped before it, an answer slower than the client's timeout)
twice over: on one endpoint picked by the seed (so every endpoint meets every kind across
the seeds) and on every endpoint with a seeded probability. The operation may fail (exit 1
with a one-line message); whatever it did, afterwards:

- exactly one scope, secret, notebook and owned workflow; the foreign workflow untouched;
- exactly one dbt run per trigger, and the runner reports the run's real final status;
- with the faults off, a re-run converges and one more run changes nothing (no write at all).

adopt (a workspace as the guide leaves it): the secret, its scope and the foreign workflow
untouched, at most one backup, the hand-pasted code at the notebook's path or in the backup;
a failed adopt recovers as its error says (destroy then adopt once it stopped half-way, else
adopt again, which resumes), and destroy then gives the hand-made setup back exactly. migrate
there (dbt_platform) and back (notebook): a failed one converges when run again; each task
switched once, the foreign workflow's other tasks byte-equal, plan a no-op. Both read a lot
before they write, so odd seeds arm their faults only once the first write (the lock) went
out, and the write numbered by the seed fails once (``FaultPlan.during_writes``).

Then: an apply killed (SIGKILL) after each of its writes, re-applied; four concurrent applies.
Time is simulated wherever a client lets us inject a clock: the SDK's retry clock and the
runner's sleep advance a fake clock, so the only real waiting is the injected latency itself.

Seeds: the full matrix runs every fault kind under 14 seeds (DBTWF_FAULT_SEEDS=all; CI runs it
after `make test`). By default only the kinds whose outcome depends on the seed keep all 14;
the others run a few seeds picked to fault the writes that matter (see SAMPLED_SEEDS). The
summary counts the distinct outcomes per kind, so a full run shows when a sampled kind starts
to depend on its seed.
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import random
import re
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from typer.testing import CliRunner

from provision.change import has_changes
from provision.cli import app
from provision.config import load_config, select_environment
from provision.databricks import Workspace
from provision.desired import is_owned, render_runner_notebook
from provision.errors import ConflictError, DbtwfError
from provision.model import Environment, default_task_key
from provision.plan import plan_environment
from provision.state import load_state, lock_path
from runner.core import DbtCloudError, DbtRunFailedError, RunSettings, run_dbt_job
from tests.conftest import DATABRICKS_TOKEN, DBT_ACCOUNT_ID, DBT_CLOUD_TOKEN
from tests.emulators.base import FAULT_KINDS, Emulator, Fault, FaultKind
from tests.emulators.dbtcloud import Scenario
from tests.provision_helpers import cli_env, write_config

if TYPE_CHECKING:
    from tests.emulators.databricks import DatabricksEmulator
    from tests.emulators.dbtcloud import DbtCloudEmulator

ROOT = Path(__file__).resolve().parents[1]
#: A seed picks the endpoint that fails on its first hits (seed % the number of endpoints, so 14
#: seeds fault every Databricks endpoint) and seeds the random faults on every endpoint.
FULL_SEEDS = tuple(range(14))
#: Measured with all 14 seeds (the summary's "outcomes": exit code and error message of the
#: faulted run): onboard x 500 ends in 9 different ways and add-task x 500 in 8, one per write
#: or read that stops them; every other (operation, kind) pair in 1 (429, 503 and dropped or
#: slow answers are retried to the same end; the runner's 2 are a succeeding and a failing dbt
#: run, which its seed's parity picks on purpose).
SEED_DEPENDENT = {("onboard", "500"), ("add-task", "500")}
#: The seeds of the other kinds: the first-hit fault lands on these endpoints.
SAMPLED_SEEDS = {
    "onboard": (2, 5, 9),  # secrets/put, workspace/import (the notebook), jobs/create
    "add-task": (2, 5, 12),  # secrets/put, workspace/import, jobs/update (the task itself)
    "runner": (1, 2, 6),  # the trigger (a failing run), a poll, the trigger (a succeeding run)
    # adopt and migrate: every kind with a seed of its own; their 500s depend on the seed too
    # (adopt 6 outcomes, migrate 9 there and 8 back, over 14 seeds) but cost 0.5 s and 1 s a
    # case, so only DBTWF_FAULT_SEEDS=all runs them all.
    "adopt": (1, 12),  # secrets/list after the lock + the 2nd write (the backup); jobs/update (the tags)
    "migrate": (11,),  # jobs/reset (the owned workflow) after the lock + the 2nd write
}


#: Sampled with their first seed only: each real wait costs 0.45 s.
ONE_SEED = {("adopt", "latency")}


def _seed_choice(value: str) -> tuple[int, ...] | None:
    """DBTWF_FAULT_SEEDS: unset for the sampled matrix, `all` for every kind under all 14 seeds,
    or N for every kind under seeds 0..N-1."""
    if value in ("", "sampled"):
        return None
    if value == "all":
        return FULL_SEEDS
    if value.isdigit() and int(value) > 0:
        return tuple(range(int(value)))
    raise ValueError(f"DBTWF_FAULT_SEEDS must be 'all' or a number of seeds, got {value!r}")


EVERY_KIND_SEEDS = _seed_choice(os.environ.get("DBTWF_FAULT_SEEDS", "").strip().lower())


def cases(operation: str) -> list[Any]:
    """(kind, seed) parameters of one operation's matrix, with ids like `latency-5`."""
    params = []
    for kind in FAULT_KINDS:
        if EVERY_KIND_SEEDS is not None:
            seeds = EVERY_KIND_SEEDS
        elif (operation, kind) in SEED_DEPENDENT:
            seeds = FULL_SEEDS
        else:
            seeds = SAMPLED_SEEDS[operation][: 1 if (operation, kind) in ONE_SEED else None]
        params += [pytest.param(kind, seed, id=f"{kind}-{seed}") for seed in seeds]
    return params


#: The SDK gives up on an answer after this long and retries; injected latency is longer.
CLIENT_TIMEOUT_SECONDS = 0.2
LATENCY_SECONDS = 0.45
DBT_JOB, SECOND_DBT_JOB = 1, 2

#: Every Databricks endpoint onboarding, apply and add-task touch (regex of the path).
DATABRICKS_ENDPOINTS = (
    r"/api/2\.0/secrets/scopes/create",
    r"/api/2\.0/secrets/scopes/list",
    r"/api/2\.0/secrets/put",
    r"/api/2\.0/secrets/list",
    r"/api/2\.0/workspace/mkdirs",
    r"/api/2\.0/workspace/import",
    r"/api/2\.0/workspace/export",
    r"/api/2\.0/workspace/get-status",
    r"/api/2\.0/workspace/delete",
    r"/api/2\.[12]/jobs/create",
    r"/api/2\.[12]/jobs/get",
    r"/api/2\.[12]/jobs/list",
    r"/api/2\.[12]/jobs/update",
    r"/api/2\.[12]/jobs/reset",
)
_ACCOUNT = rf"/api/v2/accounts/{DBT_ACCOUNT_ID}"
#: Every dbt Cloud endpoint the runner touches.
DBT_ENDPOINTS = (
    _ACCOUNT + r"/jobs/\d+/",
    _ACCOUNT + r"/jobs/\d+/run/",
    _ACCOUNT + r"/runs/\d+/",
    _ACCOUNT + r"/runs/",
    _ACCOUNT + r"/runs/\d+/cancel/",
)


# --- tallies, reported at the end of the module ----------------------------------------------


@dataclass
class Tally:
    cases: Counter[str] = field(default_factory=Counter)
    failed_under_faults: Counter[str] = field(default_factory=Counter)
    faults_fired: Counter[str] = field(default_factory=Counter)
    outcomes: dict[str, set[str]] = field(default_factory=dict)

    def note(self, operation: str, kind: str, failed: bool, fired: int, outcome: str = "") -> None:
        """``outcome``: how the faulted run ended (numbers masked), to count distinct ones."""
        self.cases[f"{operation} x {kind}"] += 1
        self.failed_under_faults[f"{operation} x {kind}"] += int(failed)
        self.faults_fired[f"{operation} x {kind}"] += fired
        self.outcomes.setdefault(f"{operation} x {kind}", set()).add(re.sub(r"\d+", "N", outcome))

    def to_dict(self) -> dict[str, Any]:
        """Plain data, for a pytest-xdist worker to hand to the controller."""
        return {
            "cases": dict(self.cases),
            "failed_under_faults": dict(self.failed_under_faults),
            "faults_fired": dict(self.faults_fired),
            "outcomes": {key: sorted(values) for key, values in self.outcomes.items()},
        }

    def add(self, data: dict[str, Any]) -> None:
        self.cases.update(data["cases"])
        self.failed_under_faults.update(data["failed_under_faults"])
        self.faults_fired.update(data["faults_fired"])
        for key, values in data["outcomes"].items():
            self.outcomes.setdefault(key, set()).update(values)

    def summary(self) -> list[str]:
        """The lines conftest.py prints in pytest's terminal summary (output written during a
        passing test is captured and dropped)."""
        if not self.cases:
            return []
        lines = [
            "",
            f"fault matrix: {sum(self.cases.values())} cases (seeds x fault kinds x operations), "
            f"{sum(self.faults_fired.values())} faults fired, "
            f"{sum(self.failed_under_faults.values())} operations failed cleanly under faults "
            "and re-converged; "
            + (
                "seeds: DBTWF_FAULT_SEEDS"
                if EVERY_KIND_SEEDS is not None
                else "seeds sampled where the outcome does not depend on them (DBTWF_FAULT_SEEDS=all: 14)"
            ),
        ]
        for key in sorted(self.cases):
            lines.append(
                f"  {key:<32} cases {self.cases[key]:>3}  faults fired {self.faults_fired[key]:>4}  "
                f"failed under faults {self.failed_under_faults[key]:>3}  "
                f"outcomes {len(self.outcomes[key]):>2}"
            )
        return lines


TALLY = Tally()


# --- faults and simulated time ------------------------------------------------------------


class FaultPlan:
    """The rules of one case on one emulator, and a way to wait out injected latency."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.rules: list[GatedFault] = []
        #: Delayed requests served before this plan (an earlier plan's on the same emulator).
        self.served_before = self._served()

    def add(self, kind: FaultKind, path: str, **options: Any) -> None:
        options.setdefault("retry_after", 0)
        options.setdefault("delay", LATENCY_SECONDS if kind == "latency" else 0.0)
        self.rules.append(self.emulator.faults.add(GatedFault(kind, path=path, **options)))

    def seeded(self, kind: FaultKind, seed: int, endpoints: tuple[str, ...]) -> None:
        """One endpoint picked by the seed fails on its first hits; every endpoint fails now and then."""
        rng = random.Random(seed)
        self.emulator.faults.seed(seed)
        slow = kind == "latency"  # each one really waits; keep them few
        self.add(kind, endpoints[seed % len(endpoints)], times=1 if slow else rng.choice((1, 2)))
        self.add(kind, ".*", times=2 if slow else None, probability=rng.choice((0.05, 0.1, 0.2)))

    def during_writes(self, kind: FaultKind, seed: int, endpoints: tuple[str, ...], writes: int) -> None:
        """For a run that reads a lot before it writes (adopt, migrate): even seeds as
        ``seeded``; odd seeds the same rules armed only once the first write went out (the
        lock), so they meet the re-reads under the lock and the writes, not only the planning.
        Either way the write numbered by the seed fails once, checked before the other rules."""
        gate = WriteGate(kind, times=0)
        self.emulator.faults.add(gate)
        self.seeded(kind, seed, endpoints)
        if seed % 2:
            for rule in self.rules:
                rule.gate = gate
        if kind == "latency":
            return  # each one really waits: the seeded ones are enough
        nth = NthWrite(kind, nth=seed % writes + 1, retry_after=0)
        self.emulator.faults._rules.insert(0, nth)
        self.rules.append(nth)

    @property
    def fired(self) -> int:
        return sum(rule.fired for rule in self.rules)

    def _served(self) -> int:
        return sum(1 for r in list(self.emulator.requests) if r.fault == "latency")

    def off(self) -> None:
        self.settle()
        self.emulator.faults.clear()

    def settle(self, limit: float = 5.0) -> None:
        """Wait until every delayed request has been served, as a real retry delay (>= 1 s) would."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            fired = sum(rule.fired for rule in self.rules if rule.kind == "latency")
            if self._served() - self.served_before >= fired:
                return
            time.sleep(0.01)


@dataclass
class GatedFault(Fault):
    """A rule that fires only once its gate (if any) has opened."""

    gate: WriteGate | None = None

    def matches(self, method: str, path: str) -> bool:
        if self.gate is not None and not self.gate.opened:
            return False
        return super().matches(method, path)


@dataclass
class WriteGate(Fault):
    """Never fires: opens when the first write (POST) comes by."""

    opened: bool = False

    def matches(self, method: str, path: str) -> bool:
        self.opened = self.opened or method == "POST"
        return False


@dataclass
class NthWrite(GatedFault):
    """Fires on the ``nth`` write (POST) the emulator sees, once."""

    nth: int = 1
    seen: int = 0

    def matches(self, method: str, path: str) -> bool:
        if method != "POST" or self.fired:
            return False
        self.seen += 1
        return self.seen == self.nth


class SimulatedClock:
    """A clock for the SDK's retry loop and the runner: sleeping moves time on at once."""

    def __init__(self, plans: list[FaultPlan]) -> None:
        self.now = 1_700_000_000.0
        self.plans = plans

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        for plan in self.plans:
            plan.settle()
        self.now += max(0.0, seconds)


def fast_workspace(emulator: DatabricksEmulator, clock: SimulatedClock | None = None) -> Workspace:
    """A Workspace whose SDK gives up on an answer after CLIENT_TIMEOUT_SECONDS and retries on
    the simulated clock (the SDK's own Clock interface), so retries cost no real time."""
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.clock import Clock
    from databricks.sdk.core import Config

    simulated = clock or SimulatedClock([])

    class _SdkClock(Clock):
        def time(self) -> float:
            return simulated.time()

        def sleep(self, seconds: float) -> None:
            simulated.sleep(seconds)

    config = Config(
        host=emulator.url,
        token=DATABRICKS_TOKEN,
        http_timeout_seconds=CLIENT_TIMEOUT_SECONDS,
        retry_timeout_seconds=600,  # simulated seconds
        clock=_SdkClock(),
    )
    return Workspace(WorkspaceClient(config=config))


# --- running the CLI in-process against the emulators ---------------------------------------


@dataclass
class Cli:
    tmp_path: Path
    env_vars: dict[str, str]
    workspace: Workspace
    clock: SimulatedClock

    def __call__(self, *args: str) -> Any:
        result = CliRunner().invoke(app, list(args), env=self.env_vars)
        text = result.output + (result.stderr if result.stderr_bytes is not None else "")
        assert DBT_CLOUD_TOKEN not in text, "the dbt Cloud token was printed"
        assert "Traceback" not in text, text
        assert result.exit_code in (0, 1), f"exit {result.exit_code}: {text}"
        if result.exit_code == 1:
            assert "error:" in text, text
        result.text = text
        return result

    def ok(self, *args: str) -> Any:
        result = self(*args)
        assert result.exit_code == 0, result.text
        return result

    @property
    def environment(self) -> Environment:
        """The environment as the CLI sees it once connected (`~` is the user's home folder)."""
        from provision.location import resolve_location

        return resolve_location(
            self.workspace, select_environment(load_config(self.tmp_path / "dbtwf.toml"), "dev")
        )


def outcome_of(result: Any) -> str:
    """Exit code and last line (the error, when it failed) of a CLI run."""
    lines = result.text.strip().splitlines()
    return f"exit {result.exit_code}: {lines[-1] if result.exit_code and lines else ''}"


@pytest.fixture
def cli(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    databricks: DatabricksEmulator,
    dbt_cloud: DbtCloudEmulator,
) -> Cli:
    """The CLI with the SDK client given a short timeout and the simulated retry clock."""
    clock = SimulatedClock([])
    workspace = fast_workspace(databricks, clock)
    monkeypatch.setattr("provision.commands.shell.connect_workspace", lambda environment: workspace)
    dbt_cloud.add_job(DBT_JOB, scenario=Scenario(outcome="success", polls=1))
    dbt_cloud.add_job(SECOND_DBT_JOB, name="Marts", scenario=Scenario(outcome="success", polls=1))
    return Cli(tmp_path, cli_env(tmp_path, databricks.url), workspace, clock)


def foreign_workflow(
    ws: Workspace, databricks: DatabricksEmulator, tasks: int = 3
) -> tuple[int, dict[str, Any]]:
    """A workflow dbtwf did not create: job clusters, dependencies, a tag, a schedule."""
    settings: dict[str, Any] = {
        "name": "Nightly ETL",
        "tags": {"team": "data"},
        "schedule": {"quartz_cron_expression": "0 0 3 * * ?", "timezone_id": "UTC"},
        "job_clusters": [{"job_cluster_key": "etl", "new_cluster": {"spark_version": "15.4.x-scala2.12"}}],
        "tasks": [
            {
                "task_key": f"step_{index}",
                "job_cluster_key": "etl",
                "notebook_task": {"notebook_path": f"/Shared/etl/step_{index}"},
                **({"depends_on": [{"task_key": f"step_{index - 1}"}]} if index else {}),
            }
            for index in range(tasks)
        ],
    }
    job_id = ws.create_job(settings)
    return job_id, databricks.jobs[job_id]["settings"]


def jobs_named(emulator: DatabricksEmulator, name: str) -> dict[int, dict[str, Any]]:
    return {
        job_id: job
        for job_id, job in emulator.jobs.items()
        if job["settings"].get("name", "").lower() == name.lower()
    }


def assert_converged(
    databricks: DatabricksEmulator, ws: Workspace, env: Environment, *, stale_lock_ok: bool = False
) -> None:
    """Exactly one of everything, what plan wants, and no lock left behind (unless told)."""
    assert env.secret_scope in {s["name"] for s in ws.list_scopes()}
    assert databricks.secret_value(env.secret_scope, env.secret_key) == DBT_CLOUD_TOKEN
    keys = [s["key"] for s in ws.list_secrets(env.secret_scope)]
    assert keys.count(env.secret_key) == 1
    assert ws.export_source(env.notebook_path) == render_runner_notebook(env)
    owned = {i: j for i, j in jobs_named(databricks, env.workflow_name).items() if is_owned(j, env)}
    assert len(owned) == 1, f"owned workflows: {sorted(owned)}"
    assert len([j for j in databricks.jobs.values() if is_owned(j, env)]) == 1
    state = load_state(ws, env)
    assert state is not None and state.workflow_job_id in owned
    if not stale_lock_ok:
        assert databricks.workspace_file(lock_path(env)) is None, "the lock was left behind"
    assert not has_changes(plan_environment(ws, env, DBT_CLOUD_TOKEN))


def assert_foreign_untouched(
    databricks: DatabricksEmulator, job_id: int, before: dict[str, Any], added: str | None = None
) -> None:
    after = databricks.jobs[job_id]["settings"]
    assert {k: v for k, v in after.items() if k != "tasks"} == {
        k: v for k, v in before.items() if k != "tasks"
    }
    kept = [t for t in after["tasks"] if t["task_key"] != added]
    assert kept == before["tasks"], "a foreign task was lost or changed"
    assert [t["task_key"] for t in after["tasks"]].count(added) <= 1


# --- onboarding under faults ------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "seed"), cases("onboard"))
def test_onboard_under_faults_converges(
    kind: FaultKind, seed: int, cli: Cli, databricks: DatabricksEmulator, dbt_cloud: DbtCloudEmulator
) -> None:
    foreign_id, foreign_before = foreign_workflow(cli.workspace, databricks)
    plan = FaultPlan(databricks)
    cli.clock.plans.append(plan)
    plan.seeded(kind, seed, DATABRICKS_ENDPOINTS)

    onboard = ("onboard", "--dbt-job-url", dbt_cloud.job_url(DBT_JOB), "--yes")
    first = cli(*onboard)
    plan.off()
    TALLY.note("onboard", kind, first.exit_code != 0, plan.fired, outcome_of(first))
    if not (cli.tmp_path / "dbtwf.toml").exists():
        # Stopped while planning, before the plan was confirmed: nothing written anywhere.
        assert first.exit_code != 0 and not databricks.jobs.keys() - {foreign_id}
        cli.ok(*onboard)
    env = cli.environment
    if first.exit_code == 0:  # a success must be true: nothing left to do
        assert_converged(databricks, cli.workspace, env)
    assert len([j for j in databricks.jobs.values() if is_owned(j, env)]) <= 1
    assert_foreign_untouched(databricks, foreign_id, foreign_before)

    cli.ok("apply", "--yes")
    assert_converged(databricks, cli.workspace, env)
    with databricks.recording() as requests:
        cli.ok("apply", "--yes")
    assert not [r for r in requests if r.is_write], "a converged apply still wrote"
    assert_foreign_untouched(databricks, foreign_id, foreign_before)


# --- add-task under faults --------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "seed"), cases("add-task"))
def test_add_task_under_faults_keeps_foreign_tasks(
    kind: FaultKind, seed: int, cli: Cli, databricks: DatabricksEmulator, dbt_cloud: DbtCloudEmulator
) -> None:
    write_config(cli.tmp_path / "dbtwf.toml", dbt_cloud.url, {"dev": {"nightly": DBT_JOB}})
    job_id, before = foreign_workflow(cli.workspace, databricks, tasks=3 + seed % 4)
    plan = FaultPlan(databricks)
    cli.clock.plans.append(plan)
    plan.seeded(kind, seed, DATABRICKS_ENDPOINTS)
    add = ("add-task", "--workflow", str(job_id), "--dbt-job", str(SECOND_DBT_JOB), "--yes")

    first = cli(*add)
    plan.off()
    TALLY.note("add-task", kind, first.exit_code != 0, plan.fired, outcome_of(first))
    key = default_task_key(SECOND_DBT_JOB)
    assert_foreign_untouched(databricks, job_id, before, added=key)
    if first.exit_code == 0:
        assert key in [t["task_key"] for t in databricks.jobs[job_id]["settings"]["tasks"]]

    cli.ok(*add)
    with databricks.recording() as requests:
        again = cli.ok(*add)
    assert "already in" in again.output
    assert not [r for r in requests if r.is_write], "a repeated add-task still wrote"

    env = cli.environment
    tasks = databricks.jobs[job_id]["settings"]["tasks"]
    assert [t["task_key"] for t in tasks].count(key) == 1
    assert_foreign_untouched(databricks, job_id, before, added=key)
    state = load_state(cli.workspace, env)
    assert state is not None
    assert [(t.job_id, t.task_key) for t in state.added_tasks] == [(job_id, key)]
    assert databricks.secret_value(env.secret_scope, env.secret_key) == DBT_CLOUD_TOKEN
    assert cli.workspace.export_source(env.notebook_path) == render_runner_notebook(env)
    assert databricks.workspace_file(lock_path(env)) is None, "the lock was left behind"
    assert not has_changes(plan_environment(cli.workspace, env, DBT_CLOUD_TOKEN, include_workflow=False))


# --- the runner under faults ------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "seed"), cases("runner"))
def test_runner_under_faults_triggers_once_and_reports_truly(
    kind: FaultKind, seed: int, dbt_cloud: DbtCloudEmulator
) -> None:
    outcome = "success" if seed % 2 == 0 else "error"
    dbt_cloud.add_job(DBT_JOB, scenario=Scenario(outcome=outcome, seconds=20.0 + seed * 7))
    plan = FaultPlan(dbt_cloud)
    clock = SimulatedClock([plan])
    dbt_cloud.clock = clock.monotonic
    plan.seeded(kind, seed, DBT_ENDPOINTS)
    settings = RunSettings.build(host=dbt_cloud.url, account_id=DBT_ACCOUNT_ID, job_id=DBT_JOB)

    result: Any = None
    error: BaseException | None = None
    try:
        result = run_dbt_job(
            settings,
            DBT_CLOUD_TOKEN,
            clock=clock.monotonic,
            sleep=clock.sleep,
            out=lambda line: None,
            rng=random.Random(seed),
            request_timeout=CLIENT_TIMEOUT_SECONDS,
        )
    except (DbtRunFailedError, DbtCloudError) as raised:
        error = raised
    plan.off()
    runs = dbt_cloud.runs_of(DBT_JOB)
    TALLY.note("runner", kind, isinstance(error, DbtCloudError), plan.fired, type(error).__name__)
    assert len(runs) <= 1, f"{len(runs)} dbt runs for one trigger"
    assert DBT_CLOUD_TOKEN not in str(error or "")
    if isinstance(error, DbtCloudError):
        return  # dbt Cloud could not be used; legitimately failed, nothing duplicated
    assert len(runs) == 1
    run = runs[0]
    assert run["status"] == (10 if outcome == "success" else 20)
    if outcome == "success":
        assert result is not None and result.succeeded and result.run_id == run["id"]
    else:
        assert isinstance(error, DbtRunFailedError) and error.run_id == run["id"]


# --- an apply killed after each of its writes ------------------------------------------------


@functools.cache
def _forkserver() -> Any:
    """Forks processes from a server that has imported the CLI and the SDK once: a fresh
    `python` pays about 1.2 s of CPU importing databricks.sdk, for every apply."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["databricks.sdk", "provision.cli", "tests.test_fault_matrix"])
    return context


def _apply_in_child(cwd: str, variables: dict[str, str], output: str) -> None:
    """`dbtwf apply --yes`, as the console script runs it, in a forked child with its own
    working directory, environment and stdout/stderr files."""
    os.chdir(cwd)
    os.environ.update(variables)
    for fd, suffix in ((1, ".out"), (2, ".err")):
        handle = os.open(output + suffix, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(handle, fd)
        os.close(handle)
    sys.argv = ["dbtwf", "apply", "--yes"]
    from provision.cli import main

    main()  # exits with dbtwf's exit code


class ApplyProcess:
    """`dbtwf apply --yes` in a process of its own (forked, see _forkserver)."""

    def __init__(self, url: str, folder: Path) -> None:
        self.output = folder / f"apply-{uuid.uuid4().hex}"
        self.process = _forkserver().Process(
            target=_apply_in_child, args=(str(ROOT), cli_env(folder, url), str(self.output))
        )
        self.process.start()
        self._waiting = threading.Lock()  # the emulator's thread and the test both wait

    @property
    def pid(self) -> int:
        return int(self.process.pid or 0)

    @property
    def returncode(self) -> int | None:
        """The exit code, or minus the signal that ended it (as Popen's)."""
        return self.process.exitcode

    def wait(self, timeout: float | None = None) -> int | None:
        with self._waiting:
            self.process.join(timeout)
            return self.process.exitcode

    @property
    def stderr(self) -> str:
        path = self.output.with_suffix(".err")
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


def _kill_after_writes(emulator: DatabricksEmulator, writes: int, process: list[ApplyProcess]) -> None:
    """SIGKILL the apply as its Nth write is answered: the write landed, the answer never arrives."""
    original = emulator.record
    seen = [0]

    def record(entry: Any) -> None:
        original(entry)
        if entry.is_write:
            seen[0] += 1
            if seen[0] == writes and process:
                os.kill(process[0].pid, signal.SIGKILL)
                process[0].wait()

    emulator.record = record  # type: ignore[method-assign]


def test_apply_killed_after_each_write_converges_on_reapply(
    tmp_path: Path, dbt_cloud: DbtCloudEmulator
) -> None:
    from tests.emulators.databricks import DatabricksEmulator

    # How many writes a whole apply makes, measured on a clean workspace.
    dbt_cloud.add_job(DBT_JOB)  # apply proves the token on the environment's dbt job first
    write_config(tmp_path / "dbtwf.toml", dbt_cloud.url, {"dev": {"nightly": DBT_JOB}})
    with DatabricksEmulator(token=DATABRICKS_TOKEN) as probe:
        env = select_environment(load_config(tmp_path / "dbtwf.toml"), "dev").resolved(probe.user_name)
        from provision.apply import apply_changes

        ws = fast_workspace(probe)
        apply_changes(ws, env, plan_environment(ws, env, DBT_CLOUD_TOKEN), DBT_CLOUD_TOKEN)
        total_writes = len(probe.writes())
    assert total_writes >= 6

    # One emulator and one process per step, all at once.
    steps = list(range(1, total_writes + 1))
    emulators = [DatabricksEmulator(token=DATABRICKS_TOKEN).start() for _ in steps]
    try:
        processes: list[list[ApplyProcess]] = []
        for step, emulator in zip(steps, emulators, strict=True):
            folder = tmp_path / f"step{step}"
            folder.mkdir()
            write_config(folder / "dbtwf.toml", dbt_cloud.url, {"dev": {"nightly": DBT_JOB}})
            holder: list[ApplyProcess] = []
            _kill_after_writes(emulator, step, holder)
            holder.append(ApplyProcess(emulator.url, folder))
            processes.append(holder)
        for holder in processes:
            holder[0].wait(timeout=60)
        failures = []
        for step, emulator, holder in zip(steps, emulators, processes, strict=True):
            code = holder[0].returncode
            if step < total_writes and code != -signal.SIGKILL:
                failures.append(f"step {step}: apply was not killed (exit {code})")
                continue
            del emulator.record  # back to the class's own logging
            ws = fast_workspace(emulator)
            try:
                _reapply(ws, env)
                # Killed after its last change, before unlocking: the re-apply has nothing to do
                # and takes no lock, so the dead one stays until a changing apply breaks it.
                assert_converged(emulator, ws, env, stale_lock_ok=step == total_writes - 1)
            except (AssertionError, DbtwfError) as error:
                failures.append(
                    f"step {step} ({_nth_write(emulator, step)}): {type(error).__name__}: {error}"
                )
        TALLY.note("apply killed at write N", "SIGKILL", False, len(steps))
        assert not failures, "\n".join(failures)
    finally:
        for emulator in emulators:
            emulator.stop()


def _nth_write(emulator: DatabricksEmulator, n: int) -> str:
    writes = emulator.writes()
    return f"{writes[n - 1].method} {writes[n - 1].path}" if len(writes) >= n else "?"


def _reapply(ws: Workspace, env: Environment) -> None:
    """What a user does after a crash: apply; when it says the crashed run's lock is held, --break-lock."""
    from provision.apply import apply_changes

    try:
        apply_changes(ws, env, plan_environment(ws, env, DBT_CLOUD_TOKEN), DBT_CLOUD_TOKEN)
    except ConflictError as error:
        assert "--break-lock" in (error.hint or ""), error.message
        apply_changes(ws, env, plan_environment(ws, env, DBT_CLOUD_TOKEN), DBT_CLOUD_TOKEN, break_lock=True)


# --- concurrent applies -----------------------------------------------------------------------


@pytest.mark.parametrize("round_", range(8))
def test_four_concurrent_applies_leave_one_workflow(round_: int, databricks: DatabricksEmulator) -> None:
    from provision.apply import apply_changes
    from tests.provision_helpers import make_env

    env = make_env()
    start = threading.Barrier(4)
    outcomes: list[str] = []

    def apply_once() -> None:
        ws = fast_workspace(databricks)
        start.wait()
        try:
            apply_changes(ws, env, plan_environment(ws, env, DBT_CLOUD_TOKEN), DBT_CLOUD_TOKEN)
            outcomes.append("applied")
        except ConflictError as error:
            outcomes.append(f"refused: {error.message}")

    if round_ % 2:  # half the rounds make every request slow, so the applies overlap more
        databricks.faults.inject("latency", times=None, delay=0.01)
    threads = [threading.Thread(target=apply_once) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    databricks.faults.clear()
    assert len(outcomes) == 4
    assert "applied" in outcomes, outcomes
    assert all(o == "applied" or "locked by" in o for o in outcomes), outcomes
    ws = fast_workspace(databricks)
    _reapply(ws, env)
    assert_converged(databricks, ws, env)
    TALLY.note("4 concurrent applies", "race", outcomes.count("applied") < 4, 0)


def test_four_concurrent_apply_processes_leave_one_workflow(
    tmp_path: Path, databricks: DatabricksEmulator, dbt_cloud: DbtCloudEmulator
) -> None:
    dbt_cloud.add_job(DBT_JOB)  # apply proves the token on the environment's dbt job first
    write_config(tmp_path / "dbtwf.toml", dbt_cloud.url, {"dev": {"nightly": DBT_JOB}})
    processes = [ApplyProcess(databricks.url, tmp_path) for _ in range(4)]
    results = [(p.wait(timeout=60), p.stderr) for p in processes]
    assert all(code in (0, 1) for code, _ in results), results
    assert any(code == 0 for code, _ in results), results
    assert all("locked by" in err for code, err in results if code == 1), results
    ws = fast_workspace(databricks)
    env = select_environment(load_config(tmp_path / "dbtwf.toml"), "dev").resolved(databricks.user_name)
    assert_converged(databricks, ws, env)
    assert json.dumps(results).count(DBT_CLOUD_TOKEN) == 0


# --- `dbtwf run` under faults: the notebook really runs and triggers dbt Cloud ---------------

RUN_ENDPOINTS = (r"/api/2\.[12]/jobs/run-now", r"/api/2\.[12]/jobs/runs/get")


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_workflow_run_under_faults_starts_one_run(
    kind: FaultKind, seed: int, databricks: DatabricksEmulator, dbt_cloud: DbtCloudEmulator
) -> None:
    from databricks.sdk import WorkspaceClient

    from provision.apply import apply_changes
    from provision.runs import run_workflow
    from tests.provision_helpers import make_env

    dbt_cloud.add_job(DBT_JOB, scenario=Scenario(outcome="success", polls=1))
    env = make_env(dbt_host=dbt_cloud.url, dbt_jobs=(make_env().dbt_jobs[0].__class__("nightly", DBT_JOB),))
    plan = FaultPlan(databricks)
    clock = SimulatedClock([plan])
    ws = fast_workspace(databricks, clock)
    apply_changes(ws, env, plan_environment(ws, env, DBT_CLOUD_TOKEN), DBT_CLOUD_TOKEN)
    job_id = next(i for i, j in databricks.jobs.items() if is_owned(j, env))
    plan.add(kind, RUN_ENDPOINTS[seed % 2], times=1)

    outcome: Any = None
    try:
        outcome = run_workflow(
            ws,
            env,
            wait=True,
            on_update=lambda snapshot: None,
            sleep=lambda seconds: databricks.wait_for_all_runs(timeout=30),
        )
    except DbtwfError as error:
        assert DBT_CLOUD_TOKEN not in error.message
    plan.off()
    TALLY.note("dbtwf run", kind, outcome is None, plan.fired)
    listing = WorkspaceClient(host=databricks.url, token=DATABRICKS_TOKEN)
    runs = list(listing.jobs.list_runs(job_id=job_id))
    assert len(runs) <= 1, f"{len(runs)} Databricks runs for one `dbtwf run`"
    if outcome is None and not runs:
        return  # run-now failed (a 500 is not retried) and said so; nothing started
    assert len(runs) == 1
    finished = databricks.wait_for_run(int(runs[0].run_id or 0), timeout=30)
    assert len(dbt_cloud.runs_of(DBT_JOB)) == 1
    if outcome is not None:
        assert outcome.run_id == runs[0].run_id
        assert outcome.result_state == finished["state"]["result_state"] == "SUCCESS"


# --- adopt under faults -----------------------------------------------------------------------

#: Every Databricks endpoint adopt, its recovery and destroy touch (a lock's get-status, import
#: and delete included); `adopt --folder` lists the folder, `--notebook` does not.
ADOPT_ENDPOINTS = (
    r"/api/2\.0/secrets/scopes/list",
    r"/api/2\.0/secrets/list",
    r"/api/2\.0/secrets/acls/list",
    r"/api/2\.0/workspace/list",
    r"/api/2\.0/workspace/get-status",
    r"/api/2\.0/workspace/export",
    r"/api/2\.0/workspace/import",
    r"/api/2\.0/workspace/delete",
    r"/api/2\.0/permissions/.*",
    r"/api/2\.0/preview/scim/v2/Me",
    r"/api/2\.[12]/jobs/list",
    r"/api/2\.[12]/jobs/get",
    r"/api/2\.[12]/jobs/update",
)
#: The writes of an adopt without faults: the lock, the backup, the record, the notebook, the
#: record, the workflow's tags, the record, the lock's release (measured).
ADOPT_WRITES = 8
GUIDE_CLUSTER = "0101-guide-cluster"


def _backups(ws: Workspace, folder: str) -> list[str]:
    """Every file in the notebook's folder that looks like a backup."""
    return sorted(str(item["path"]) for item in ws.list_folder(folder) or [] if "backup" in str(item["path"]))


def _stamp(ws: Workspace, scope: str, key: str) -> Any:
    return {s["key"]: s.get("last_updated_timestamp") for s in ws.list_secrets(scope)}.get(key)


def _text(databricks: DatabricksEmulator, path: str) -> str | None:
    data = databricks.workspace_file(path)
    return None if data is None else bytes(data).decode("utf-8")


def assert_guide_safe(
    ws: Workspace, databricks: DatabricksEmulator, setup: Any, before: dict[str, Any]
) -> None:
    """Whatever adopt did: the secret and scope as they were, the foreign workflow's tasks as
    they were, at most one backup, and the hand-pasted code at the path or in the backup."""
    from provision.adopt.recognise import BACKUP_MARK, BACKUP_SUFFIX

    assert databricks.secret_value(setup.scope, setup.key) == DBT_CLOUD_TOKEN
    assert _stamp(ws, setup.scope, setup.key) == before["stamp"]
    assert ws.has_scope(setup.scope)
    assert databricks.jobs[setup.foreign_job_id]["settings"] == before["foreign"]
    folder = setup.notebook_path.rsplit("/", 1)[0]
    backups = _backups(ws, folder)
    assert backups in ([], [setup.notebook_path + BACKUP_SUFFIX]), backups
    at_path = _text(databricks, setup.notebook_path)
    kept = _text(databricks, setup.notebook_path + BACKUP_SUFFIX)
    in_backup = kept is not None and kept.startswith(BACKUP_MARK) and kept.split("\n", 1)[1] == setup.source
    assert at_path == setup.source or in_backup, "the hand-pasted code was lost"


def assert_adopted(cli: Cli, databricks: DatabricksEmulator, setup: Any, before: dict[str, Any]) -> None:
    from provision.adopt.recognise import BACKUP_MARK, BACKUP_SUFFIX

    env = cli.environment
    backup = setup.notebook_path + BACKUP_SUFFIX
    assert cli.workspace.export_source(setup.notebook_path) == render_runner_notebook(env)
    kept = _text(databricks, backup)
    assert kept is not None and kept.startswith(BACKUP_MARK) and kept.split("\n", 1)[1] == setup.source
    tags = databricks.jobs[setup.own_job_id]["settings"].get("tags") or {}
    assert tags == {**before["own"].get("tags", {}), "managed-by": "dbtwf", "dbtwf-env": env.name}
    state = load_state(cli.workspace, env)
    assert state is not None and state.backup_path == backup
    assert state.workflow_job_id == setup.own_job_id
    assert [w.job_id for w in state.adopted_workflows] == [setup.own_job_id]
    assert [(t.job_id, t.task_key) for t in state.added_tasks] == [(setup.foreign_job_id, "dbt_cloud")]
    assert databricks.workspace_file(lock_path(env)) is None, "the lock was left behind"


def _recover(cli: Cli, result: Any, *command: str) -> Any:
    """What the user does after a failed run: what its hint says (`--break-lock` when the
    failed run's lock is left)."""
    if result.exit_code and "--break-lock" in result.text:
        return cli(*command, "--break-lock")
    return result


@pytest.mark.parametrize(("kind", "seed"), cases("adopt"))
def test_adopt_under_faults_keeps_the_guide_setup_and_converges(
    kind: FaultKind,
    seed: int,
    cli: Cli,
    databricks: DatabricksEmulator,
    dbt_cloud: DbtCloudEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.guide_workspace import seed_guide_workspace

    cli.env_vars = cli_env(cli.tmp_path, databricks.url, token=None)  # adopt needs no dbt token
    monkeypatch.delenv("DBT_CLOUD_API_TOKEN", raising=False)
    databricks.add_cluster(GUIDE_CLUSTER)
    setup = seed_guide_workspace(
        cli.workspace,
        dbt_host=dbt_cloud.url,
        account_id=DBT_ACCOUNT_ID,
        dbt_job_id=DBT_JOB,
        token=DBT_CLOUD_TOKEN,
    )
    before = {
        "stamp": _stamp(cli.workspace, setup.scope, setup.key),
        "foreign": json.loads(json.dumps(databricks.jobs[setup.foreign_job_id]["settings"])),
        "own": json.loads(json.dumps(databricks.jobs[setup.own_job_id]["settings"])),
    }
    folder = setup.notebook_path.rsplit("/", 1)[0]
    where = (
        ("--folder", folder)
        if ADOPT_ENDPOINTS[seed % len(ADOPT_ENDPOINTS)].endswith("list")
        else (
            "--notebook",
            setup.notebook_path,
        )
    )
    adopt = ("adopt", *where, "--yes")
    plan = FaultPlan(databricks)
    cli.clock.plans.append(plan)
    plan.during_writes(kind, seed, ADOPT_ENDPOINTS, ADOPT_WRITES)

    first = cli(*adopt)
    plan.off()
    TALLY.note("adopt", kind, first.exit_code != 0, plan.fired, outcome_of(first))
    assert_guide_safe(cli.workspace, databricks, setup, before)
    if first.exit_code == 0:
        assert_adopted(cli, databricks, setup, before)
    else:
        # The recovery the error names: destroy then adopt once it stopped half-way, else
        # adopt again (which also resumes a run stopped before the notebook was replaced).
        if "destroy --yes" in first.text:
            undone = _recover(cli, cli("destroy", "--yes"), "destroy", "--yes")
            assert undone.exit_code == 0, undone.text
            assert_guide_safe(cli.workspace, databricks, setup, before)
        again = _recover(cli, cli(*adopt), *adopt)
        assert again.exit_code == 0, first.text + again.text
        assert_adopted(cli, databricks, setup, before)

    # destroy gives the hand-made setup back exactly.
    cli.ok("destroy", "--yes")
    assert _text(databricks, setup.notebook_path) == setup.source
    assert _backups(cli.workspace, folder) == []
    assert databricks.jobs[setup.own_job_id]["settings"] == before["own"]
    assert databricks.jobs[setup.foreign_job_id]["settings"] == before["foreign"]
    assert databricks.secret_value(setup.scope, setup.key) == DBT_CLOUD_TOKEN
    assert _stamp(cli.workspace, setup.scope, setup.key) == before["stamp"]


# --- migrate under faults ---------------------------------------------------------------------

#: Every Databricks endpoint migrate (both ways) touches; the connection is read going to dbt_platform.
MIGRATE_ENDPOINTS = (
    r"/api/2\.1/unity-catalog/connections/.*",
    r"/api/2\.0/secrets/scopes/list",
    r"/api/2\.0/secrets/list",
    r"/api/2\.0/secrets/acls/list",
    r"/api/2\.0/workspace/get-status",
    r"/api/2\.0/workspace/export",
    r"/api/2\.0/workspace/import",
    r"/api/2\.0/workspace/delete",
    r"/api/2\.0/permissions/.*",
    r"/api/2\.[12]/jobs/get",
    r"/api/2\.[12]/jobs/list",
    r"/api/2\.[12]/jobs/reset",
    r"/api/2\.[12]/jobs/update",
)
#: The writes of a migrate without faults: the lock, the owned workflow's reset, the record,
#: the foreign workflow's update, the lock's release (about; the seed picks one of them).
MIGRATE_WRITES = 5
CONNECTION = "dbt_platform_conn"


def _migrated(
    cli: Cli, databricks: DatabricksEmulator, foreign_id: int, others: list[Any], to: str, *, apply: bool
) -> None:
    """Converged on ``to``: every owned task and the one added task on that backend, the
    foreign workflow's other tasks byte-equal, the config saying so, and plan a no-op."""
    field = "dbt_platform_task" if to == "dbt_platform" else "notebook_task"
    env = cli.environment
    assert env.task_type == to
    owned = [j for j in databricks.jobs.values() if is_owned(j, env)]
    assert len(owned) == 1 and all(field in t for t in owned[0]["settings"]["tasks"])
    tasks = databricks.jobs[foreign_id]["settings"]["tasks"]
    added = [t for t in tasks if t["task_key"] == "dbt_marts"]
    assert len(added) == 1 and field in added[0], added
    assert [t for t in tasks if t["task_key"] != "dbt_marts"] == others
    assert databricks.workspace_file(lock_path(env)) is None, "the lock was left behind"
    token = DBT_CLOUD_TOKEN if to == "notebook" else None
    assert not has_changes(plan_environment(cli.workspace, env, token)), "plan is not a no-op"
    if not apply:
        return
    with databricks.recording() as requests:
        cli.ok("apply", "--yes")
    assert not [r for r in requests if r.is_write], "a converged apply still wrote"


@pytest.mark.parametrize(("kind", "seed"), cases("migrate"))
def test_migrate_under_faults_switches_each_task_once_and_converges(
    kind: FaultKind, seed: int, cli: Cli, databricks: DatabricksEmulator, dbt_cloud: DbtCloudEmulator
) -> None:
    write_config(cli.tmp_path / "dbtwf.toml", dbt_cloud.url, {"dev": {"nightly": DBT_JOB}})
    cli.ok("apply", "--yes")
    foreign_id, _ = foreign_workflow(cli.workspace, databricks, tasks=2 + seed % 3)
    add = ("add-task", "--workflow", str(foreign_id), "--dbt-job", str(SECOND_DBT_JOB))
    cli.ok(*add, "--task-key", "dbt_marts", "--depends-on", "step_0", "--yes")
    others = [t for t in databricks.jobs[foreign_id]["settings"]["tasks"] if t["task_key"] != "dbt_marts"]
    databricks.add_dbt_platform_connection(
        CONNECTION, dbt_url=dbt_cloud.url, account_id=DBT_ACCOUNT_ID, token=DBT_CLOUD_TOKEN
    )
    # There under faults, then back (to the notebook) under the same seed's faults.
    for to, extra in (("dbt_platform", ("--connection", CONNECTION)), ("notebook", ())):
        migrate = ("migrate", "--to", to, *extra, "--yes")
        plan = FaultPlan(databricks)
        cli.clock.plans.append(plan)
        plan.during_writes(kind, seed, MIGRATE_ENDPOINTS, MIGRATE_WRITES)
        first = cli(*migrate)
        plan.off()
        cli.clock.plans.remove(plan)
        TALLY.note(f"migrate to {to}", kind, first.exit_code != 0, plan.fired, outcome_of(first))
        assert [
            t for t in databricks.jobs[foreign_id]["settings"]["tasks"] if t["task_key"] != "dbt_marts"
        ] == others
        if first.exit_code:
            # The recovery: the same migrate again (the config changes last, so it still applies).
            again = _recover(cli, cli(*migrate), *migrate)
            assert again.exit_code == 0, first.text + again.text
        _migrated(cli, databricks, foreign_id, others, to, apply=to == "notebook")
