"""`make bench`: dbtwf's figures beside the alternatives, against the local emulators.

    python scripts/bench.py [--quick] [--runs N] [--latencies 0,150] [--out DIR] [--update-readme]

Writes DIR/bench.md and DIR/bench.json (default bench-results/) and prints the markdown.
Every timed figure is taken with no added latency and with 150 ms per request (the emulators'
``latency_ms``: what a laptop sees to a cloud workspace), interleaved run by run:

1. dbtwf beside the legacy `databricks` CLI (databricks-cli 0.18), side by side in one run,
   each command a fresh process: a fresh `dbtwf onboard --yes` beside the guide's five steps,
   a no-op `dbtwf apply` beside two legacy commands, `dbtwf add-task` on a workflow of 100
   tasks beside `jobs get` + `jobs reset`. For each: requests, writes and the round trips on
   the critical path (the depth: the longest chain of requests each sent after the previous
   one was answered, from the emulators' request spans).
2. `add-task` on workflows of 10, 100 and 500 tasks beside a jobs/reset that resends them all.
3. `apply --all` for 1, 5 and 10 environments.
4. The runner's detection lag and requests on a simulated clock beside the guide's 5 s loop,
   and the peak request rate of 50 runners on one account (scripts/bench_runner.py).
5. Start-up of `dbtwf --help` and `dbtwf plan`, and the share of `import databricks.sdk`.

Times are medians of --runs runs; request counts do not vary between runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

README_START = "<!-- bench:start -->"
README_END = "<!-- bench:end -->"
BIN = Path(sys.executable).parent
#: dbt Cloud jobs on the emulator: the environment's, and the one add-task adds.
DBT_JOB, ADDED_DBT_JOB = 1, 2


@dataclass(frozen=True)
class Sizes:
    runs: int
    latencies: tuple[float, ...]
    versus_tasks: int
    add_task_tasks: tuple[int, ...]
    apply_all_environments: tuple[int, ...]
    runner_durations: tuple[tuple[str, float], ...]
    runner_trials: int
    shared_runners: int

    @classmethod
    def full(cls, runs: int, latencies: tuple[float, ...]) -> Sizes:
        from bench_runner import DURATIONS

        return cls(runs, latencies, 100, (10, 100, 500), (1, 5, 10), DURATIONS, 5, 50)

    @classmethod
    def quick(cls, latencies: tuple[float, ...]) -> Sizes:
        return cls(1, latencies, 10, (10,), (1,), (("10 s", 10.0),), 1, 2)


# --- helpers -------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def key(latency: float) -> str:
    """A latency as a JSON key: "0", "150"."""
    return f"{latency:g}"


def run_process(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Wall time and stdout of one process; it must succeed."""
    began = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    elapsed = time.perf_counter() - began
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command[:3])}... exited {result.returncode}: {result.stdout[-1000:]}"
            f"{result.stderr[-2000:]}"
        )
    return elapsed, result.stdout


def timed(command: list[str], env: dict[str, str]) -> float:
    return run_process(command, env)[0]


def dbtwf_command(*args: str) -> list[str]:
    script = BIN / "dbtwf"
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-c", "from provision.cli import main; main()", *args]


def legacy_command(*args: str) -> list[str]:
    return [str(BIN / "databricks"), *args]


def counts(requests: list[Any]) -> dict[str, int]:
    from tests.emulators.base import round_trip_depth

    writes = [r for r in requests if r.is_write]
    return {
        "requests": len(requests),
        "reads": len(requests) - len(writes),
        "writes": len(writes),
        "workflow_writes": sum(1 for r in writes if "/jobs/" in r.path),
        "bytes_sent": sum(len(r.body) for r in requests),
        "depth": round_trip_depth(requests),
    }


@contextmanager
def recording(*emulators: Any) -> Iterator[list[Any]]:
    """The requests every emulator received inside the block, joined (one process, one clock)."""
    captured: list[Any] = []
    with ExitStack() as stack:
        logs = [stack.enter_context(emulator.recording()) for emulator in emulators]
        try:
            yield captured
        finally:
            stack.close()
            captured.extend(request for log in logs for request in log)


@contextmanager
def latency(emulators: Sequence[Any], milliseconds: float) -> Iterator[None]:
    """The emulators answer after ``milliseconds`` inside the block; set-up outside it is free."""
    for emulator in emulators:
        emulator.latency_ms = milliseconds
    try:
        yield
    finally:
        for emulator in emulators:
            emulator.latency_ms = 0


@contextmanager
def emulators() -> Iterator[tuple[Any, Any]]:
    """Databricks and dbt Cloud (with the jobs the benchmarks use), no latency until asked."""
    from tests.conftest import DATABRICKS_TOKEN, DBT_ACCOUNT_ID, DBT_CLOUD_TOKEN
    from tests.emulators.databricks import DatabricksEmulator
    from tests.emulators.dbtcloud import DbtCloudEmulator

    databricks = DatabricksEmulator(token=DATABRICKS_TOKEN)
    dbt = DbtCloudEmulator(token=DBT_CLOUD_TOKEN, account_id=DBT_ACCOUNT_ID)
    with databricks, dbt:
        reset(databricks, dbt)
        yield databricks, dbt


def reset(databricks: Any, dbt: Any) -> None:
    databricks.reset()
    dbt.reset()
    dbt.add_job(DBT_JOB, name="Daily build")
    dbt.add_job(ADDED_DBT_JOB, name="Marts")


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def machine() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import databricks.sdk.version

    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "os": platform.platform(),
        "databricks_sdk": databricks.sdk.version.__version__,
    }


# --- 1. dbtwf beside the legacy CLI ----------------------------------------------------------

#: (dbtwf row, legacy row): each target says the first takes no longer than the second.
PAIRS = (
    ("onboard", "legacy_five"),
    ("noop_apply", "legacy_two"),
    ("add_task", "legacy_get_reset"),
)


def versus_labels(tasks: int) -> dict[str, str]:
    return {
        "onboard": "`dbtwf onboard --yes`, empty workspace",
        "legacy_five": "legacy CLI: the guide's 5 steps",
        "noop_apply": "`dbtwf apply`, nothing to change",
        "legacy_two": "legacy CLI: `secrets list-scopes` + `jobs get`",
        "add_task": f"`dbtwf add-task`, workflow of {tasks} tasks",
        "legacy_get_reset": "legacy CLI: `jobs get` + `jobs reset`",
    }


def bench_versus_legacy(sizes: Sizes, work: Path) -> dict[str, Any]:
    """Every command of one run at each latency, then the next run: side by side, same load.

    databricks-cli 0.18 drops the port of DATABRICKS_HOST, so it talks to http://127.0.0.1
    through a local forward proxy to the emulator (as tests/test_legacy_databricks_cli.py does).
    """
    from tests.conftest import DATABRICKS_TOKEN
    from tests.emulators.proxy import ForwardProxy, legacy_cli_env

    if not (BIN / "databricks").exists():
        return {"skipped": f"databricks-cli is not installed next to {sys.executable}"}
    samples: dict[str, dict[str, list[tuple[float, dict[str, int]]]]] = {
        key(ms): {name: [] for pair in PAIRS for name in pair} for ms in sizes.latencies
    }
    with emulators() as (databricks, dbt), ForwardProxy(databricks.port) as proxy:
        legacy_env = legacy_cli_env(proxy, work, DATABRICKS_TOKEN)
        for run in range(sizes.runs):
            for ms in sizes.latencies:
                folder = work / f"versus-{key(ms)}-{run}"
                folder.mkdir()
                _versus_once(databricks, dbt, legacy_env, folder, ms, sizes.versus_tasks, samples[key(ms)])
    return {
        "tasks": sizes.versus_tasks,
        "processes": {"onboard": 1, "legacy_five": 5, "noop_apply": 1, "legacy_two": 2, "add_task": 1}
        | {"legacy_get_reset": 2},
        "latencies": {
            ms: {name: _summary(rows) for name, rows in by_name.items()} for ms, by_name in samples.items()
        },
    }


def _versus_once(
    databricks: Any,
    dbt: Any,
    legacy_env: dict[str, str],
    folder: Path,
    ms: float,
    tasks: int,
    samples: dict[str, list[tuple[float, dict[str, int]]]],
) -> None:
    from tests.provision_helpers import cli_env, make_env, make_workspace

    both = (databricks, dbt)
    reset(databricks, dbt)
    env = {**os.environ, **cli_env(folder, databricks.url)}

    def measure(
        name: str, *commands: Callable[[], list[str]], environment: dict[str, str] = env
    ) -> list[str]:
        """Runs the commands one after another (each built once the previous one ended), timing
        only the processes; returns their outputs."""
        outputs: list[str] = []
        elapsed = 0.0
        with latency(both, ms), recording(*both) as requests:
            for command in commands:
                seconds, output = run_process(command(), environment)
                elapsed += seconds
                outputs.append(output)
        samples[name].append((elapsed, counts(requests)))
        return outputs

    measure("onboard", lambda: dbtwf_command("onboard", "--dbt-job-url", dbt.job_url(DBT_JOB), "--yes"))
    measure("noop_apply", lambda: dbtwf_command("apply", "--yes"))

    ws = make_workspace(databricks)  # set-up, outside the latency
    foreign = _foreign_settings(tasks)
    job_id, copy_id = ws.create_job(foreign), ws.create_job(foreign)
    measure(
        "add_task",
        lambda: dbtwf_command(
            "add-task", "--workflow", str(job_id), "--dbt-job", str(ADDED_DBT_JOB), "--yes"
        ),
    )
    known = {task["task_key"] for task in foreign["tasks"]}
    (added,) = [t for t in databricks.jobs[job_id]["settings"]["tasks"] if t["task_key"] not in known]

    # The guide's steps for another environment's names, so nothing collides with dbtwf's.
    target = make_env(name="legacy")
    notebook, job_file, reset_file = folder / "legacy.py", folder / "job.json", folder / "reset.json"
    from provision.desired import render_runner_notebook, workflow_settings

    notebook.write_text(render_runner_notebook(target), encoding="utf-8")
    job_file.write_text(json.dumps(workflow_settings(target)), encoding="utf-8")
    scope, key_name = target.secret_scope, target.secret_key
    *_, created = measure(
        "legacy_five",
        lambda: legacy_command(
            "secrets", "create-scope", "--scope", scope, "--initial-manage-principal", "users"
        ),
        lambda: legacy_command("secrets", "put", "--scope", scope, "--key", key_name, "--string-value", "x"),
        lambda: legacy_command("workspace", "mkdirs", target.notebook_folder),
        lambda: legacy_command(
            "workspace",
            "import",
            "--language",
            "PYTHON",
            "--format",
            "SOURCE",
            str(notebook),
            target.notebook_path,
        ),
        lambda: legacy_command("jobs", "create", "--json-file", str(job_file), "--version=2.1"),
        environment=legacy_env,
    )
    legacy_job = str(json.loads(created)["job_id"])
    measure(
        "legacy_two",
        lambda: legacy_command("secrets", "list-scopes"),
        lambda: legacy_command("jobs", "get", "--job-id", legacy_job, "--version=2.1"),
        environment=legacy_env,
    )

    def reset_command(previous: list[str]) -> list[str]:
        # What a person does between the two: append the task to the settings read.
        settings = json.loads(previous[0])["settings"]
        settings["tasks"] = [*settings["tasks"], added]
        reset_file.write_text(json.dumps({"new_settings": settings}), encoding="utf-8")
        return legacy_command(
            "jobs", "reset", "--job-id", str(copy_id), "--json-file", str(reset_file), "--version=2.1"
        )

    got: list[str] = []
    with latency(both, ms), recording(*both) as requests:
        seconds, output = run_process(
            legacy_command("jobs", "get", "--job-id", str(copy_id), "--version=2.1"), legacy_env
        )
        got.append(output)
        more, _ = run_process(reset_command(got), legacy_env)
    samples["legacy_get_reset"].append((seconds + more, counts(requests)))
    _check_same_tasks(databricks, job_id, copy_id)


def _summary(samples: list[tuple[float, dict[str, int]]]) -> dict[str, Any]:
    return {
        **samples[0][1],
        "depth": int(statistics.median_low([s[1]["depth"] for s in samples])),
        "wall_s": round(median([s[0] for s in samples]), 3),
    }


# --- 2. add-task beside a reset that resends every task -----------------------------------


def bench_add_task(sizes: Sizes) -> list[dict[str, Any]]:
    """In one process (no start-up), so the requests alone make the difference."""
    from provision.add_task import AddTaskRequest, add_task
    from provision.apply import apply_changes
    from provision.foreign_task import build_task
    from provision.model import default_task_key
    from provision.plan import plan_environment
    from tests.conftest import DBT_CLOUD_TOKEN
    from tests.provision_helpers import make_env, make_workspace

    rows = []
    with emulators() as (databricks, dbt):
        both = (databricks, dbt)
        env = make_env(dbt_host=dbt.url, dbt_jobs=_one_job())
        for tasks in sizes.add_task_tasks:
            ours: dict[str, list[tuple[float, dict[str, int], int]]] = {key(ms): [] for ms in sizes.latencies}
            theirs: dict[str, list[tuple[float, dict[str, int], int]]] = {
                key(ms): [] for ms in sizes.latencies
            }
            for _ in range(sizes.runs):
                for ms in sizes.latencies:
                    reset(databricks, dbt)
                    ws = make_workspace(databricks)
                    apply_changes(ws, env, plan_environment(ws, env, DBT_CLOUD_TOKEN), DBT_CLOUD_TOKEN)
                    settings = _foreign_settings(tasks)
                    job_id = ws.create_job(settings)
                    copy_id = ws.create_job(settings)

                    with latency(both, ms), recording(*both) as requests:
                        began = time.perf_counter()
                        add_task(
                            ws,
                            env,
                            AddTaskRequest(workflow=str(job_id), dbt_job=str(ADDED_DBT_JOB)),
                            DBT_CLOUD_TOKEN,
                            confirm_bundle=lambda warning: True,
                        )
                        elapsed = time.perf_counter() - began
                    update = next(r for r in requests if r.path.endswith("/jobs/update"))
                    ours[key(ms)].append((elapsed, counts(requests), len(update.body)))

                    # The alternative: read the whole job, send all of it back with the task appended.
                    with latency(both, ms), recording(*both) as requests:
                        began = time.perf_counter()
                        current = ws.get_job(copy_id) or {}
                        new_settings = dict(current.get("settings") or {})
                        new_task = build_task(
                            env, task_key=default_task_key(ADDED_DBT_JOB), dbt_job_id=ADDED_DBT_JOB
                        )
                        new_settings["tasks"] = [*new_settings.get("tasks", []), new_task]
                        ws.reset_job(copy_id, new_settings)
                        elapsed = time.perf_counter() - began
                    reset_request = next(r for r in requests if r.path.endswith("/jobs/reset"))
                    theirs[key(ms)].append((elapsed, counts(requests), len(reset_request.body)))
                    _check_same_tasks(databricks, job_id, copy_id)
            top = key(max(sizes.latencies))
            rows.append(
                {
                    "tasks": tasks,
                    "add_task": _sized(ours, top),
                    "reset": _sized(theirs, top),
                }
            )
    return rows


def _one_job() -> Any:
    from provision.model import DbtJobTask

    return (DbtJobTask("nightly", DBT_JOB),)


def _sized(samples: dict[str, list[tuple[float, dict[str, int], int]]], top: str) -> dict[str, Any]:
    first = samples[top][0]
    return {
        **first[1],
        "depth": first[1]["depth"],
        "write_body_bytes": first[2],
        "wall_s": {ms: round(median([s[0] for s in rows]), 4) for ms, rows in samples.items()},
    }


def _foreign_settings(tasks: int) -> dict[str, Any]:
    """A workflow someone else built: notebook tasks on a job cluster, chained in tens."""
    return {
        "name": f"Foreign workflow of {tasks} tasks",
        "tags": {"team": "data"},
        "job_clusters": [{"job_cluster_key": "etl", "new_cluster": {"spark_version": "15.4.x-scala2.12"}}],
        "tasks": [
            {
                "task_key": f"transform_{index:04d}",
                "job_cluster_key": "etl",
                "notebook_task": {
                    "notebook_path": f"/Shared/etl/transform_{index:04d}",
                    "base_parameters": {"table": f"silver.table_{index:04d}", "mode": "incremental"},
                },
                **({"depends_on": [{"task_key": f"transform_{index - 1:04d}"}]} if index % 10 else {}),
            }
            for index in range(tasks)
        ],
    }


def _check_same_tasks(emulator: Any, ours: int, theirs: int) -> None:
    """Both approaches must end with the same tasks, or the comparison means nothing."""
    jobs = emulator.jobs
    keys = [[t["task_key"] for t in jobs[i]["settings"]["tasks"]] for i in (ours, theirs)]
    if keys[0] != keys[1]:
        raise RuntimeError("add-task and the reset approach ended with different tasks")


# --- 3. apply --all -----------------------------------------------------------------------


def bench_apply_all(sizes: Sizes, work: Path) -> list[dict[str, Any]]:
    from tests.provision_helpers import cli_env, write_config

    rows = []
    with emulators() as (databricks, dbt):
        both = (databricks, dbt)
        for count in sizes.apply_all_environments:
            walls: dict[str, list[float]] = {key(ms): [] for ms in sizes.latencies}
            total: dict[str, int] = {}
            for run in range(sizes.runs):
                for ms in sizes.latencies:
                    reset(databricks, dbt)
                    folder = work / f"all-{count}-{run}-{key(ms)}"
                    folder.mkdir()
                    write_config(
                        folder / "dbtwf.toml",
                        dbt.url,
                        {f"env{i}": {"nightly": DBT_JOB} for i in range(count)},
                    )
                    env = {**os.environ, **cli_env(folder, databricks.url)}
                    with latency(both, ms), recording(*both) as requests:
                        walls[key(ms)].append(timed(dbtwf_command("apply", "--all", "--yes"), env))
                    if ms == max(sizes.latencies):
                        total = counts(requests)
            rows.append(
                {
                    "environments": count,
                    "wall_s": {ms: round(median(values), 3) for ms, values in walls.items()},
                    **total,
                }
            )
    return rows


# --- 4. the runner ------------------------------------------------------------------------


def bench_runner(sizes: Sizes) -> dict[str, Any]:
    from bench_runner import measure

    figures: dict[str, Any] = measure(sizes.runner_trials, sizes.shared_runners, sizes.runner_durations)
    return figures


# --- 5. start-up --------------------------------------------------------------------------


def bench_startup(sizes: Sizes, work: Path) -> dict[str, Any]:
    from tests.provision_helpers import cli_env, write_config

    def runs(command: list[str], env: dict[str, str]) -> float:
        return round(median([timed(command, env) for _ in range(sizes.runs)]), 3)

    base_env = dict(os.environ)
    python = runs([sys.executable, "-c", "pass"], base_env)
    sdk = runs([sys.executable, "-c", "import databricks.sdk"], base_env)
    help_wall = runs(dbtwf_command("--help"), base_env)
    plan_walls: dict[str, float] = {}
    with emulators() as (databricks, dbt):
        write_config(work / "dbtwf.toml", dbt.url, {"dev": {"nightly": DBT_JOB}})
        env = {**os.environ, **cli_env(work, databricks.url)}
        timed(dbtwf_command("apply", "--yes"), env)
        for ms in sizes.latencies:
            with latency((databricks, dbt), ms):
                plan_walls[key(ms)] = runs(dbtwf_command("plan"), env)
    plan_wall = plan_walls[key(min(sizes.latencies))]
    sdk_import = max(0.0, sdk - python)
    return {
        "python_start_s": python,
        "sdk_import_s": round(sdk_import, 3),
        "help_s": help_wall,
        "plan_s": plan_walls,
        "plan_sdk_share": round(sdk_import / plan_wall, 3) if plan_wall else None,
        "help_imports_sdk": _help_imports_sdk(base_env),
    }


def _help_imports_sdk(env: dict[str, str]) -> bool:
    """Whether `--help` pays for the SDK: `-X importtime` lists every module it imports."""
    command = [sys.executable, "-X", "importtime", "-c", "from provision.cli import main; main()", "--help"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    return "databricks.sdk" in result.stderr


# --- the report ---------------------------------------------------------------------------


def _ms(latencies: Sequence[str]) -> str:
    return " / ".join(f"{ms} ms" for ms in latencies)


def _walls(walls: dict[str, float], digits: int = 2) -> str:
    return " / ".join(f"{value:.{digits}f} s" for value in walls.values())


def render(report: dict[str, Any]) -> str:
    """The markdown of the sections the report holds."""
    m = report["machine"]
    latencies = [key(ms) for ms in report["latencies"]]
    load = report.get("load_average") or {}
    lines = [
        f"Measured {report['date']} on {m['cpus']} CPU(s) ({m['cpu_model']}), Python {m['python']}, "
        f"{m['os']}, databricks-sdk {m['databricks_sdk']}; medians of {report['runs']} run(s), "
        "against the local emulators over real HTTP on 127.0.0.1, each timed figure at "
        f"{_ms(latencies)} per request (the emulators' `--latency-ms`; runs interleaved); load "
        f"average {load.get('start')} at the start, {load.get('end')} at the end (a shared machine).",
        "",
    ]
    renderers: dict[str, Callable[[Any, list[str]], list[str]]] = {
        "versus_legacy": _render_versus,
        "add_task": _render_add_task,
        "apply_all": _render_apply_all,
        "runner": _render_runner,
        "startup": _render_startup,
    }
    for name, renderer in renderers.items():
        if name in report:
            lines += renderer(report[name], latencies)
    return "\n".join(lines).rstrip("\n") + "\n"


def _render_add_task(rows: list[dict[str, Any]], latencies: list[str]) -> list[str]:
    lines = [
        "**Adding a task to a foreign workflow**: `add-task` (one `jobs/update` holding only the new "
        "task) beside `jobs/get` + `jobs/reset` resending every task, in one process (no start-up)",
        "",
        f"| tasks in the workflow | add-task requests (reads / writes) | round trips | wall {_ms(latencies)} "
        f"| its jobs/update body | reset requests | reset bytes sent | reset wall {_ms(latencies)} |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        ours, theirs = row["add_task"], row["reset"]
        lines.append(
            f"| {row['tasks']} | {ours['requests']} ({ours['reads']} / {ours['writes']}) | {ours['depth']} "
            f"| {_walls(ours['wall_s'])} | {ours['write_body_bytes']:,} B | {theirs['requests']} "
            f"| {theirs['bytes_sent']:,} B | {_walls(theirs['wall_s'])} |"
        )
    return [
        *lines,
        "",
        "add-task's count includes its checks (the dbt job on dbt Cloud, the workspace state record "
        "and the lock); its write does not grow with the workflow.",
        "",
    ]


def _render_apply_all(rows: list[dict[str, Any]], latencies: list[str]) -> list[str]:
    lines = [
        "**`dbtwf apply --all`** (environments applied concurrently, one process)",
        "",
        f"| environments | wall {_ms(latencies)} | requests | writes | round trips |",
        "|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['environments']} | {_walls(row['wall_s'])} | {row['requests']} | {row['writes']} "
            f"| {row['depth']} |"
        )
    return [*lines, ""]


def _render_runner(runner: dict[str, Any], latencies: list[str]) -> list[str]:
    shared = runner["shared_account"]
    lines = [
        "**The runner** beside the guide's fixed 5 s loop (simulated clock, so no latency; lag = how "
        f"late the end of the dbt run is noticed; {runner['trials']} run length(s) each)",
        "",
        "| dbt run | runner lag mean / max | runner requests | guide lag mean / max | guide requests |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in runner["durations"]:
        lines.append(
            f"| {row['duration']} | {row['runner_lag_mean_s']} s / {row['runner_lag_max_s']} s "
            f"| {row['runner_requests']:g} | {row['guide_lag_mean_s']} s / {row['guide_lag_max_s']} s "
            f"| {row['guide_requests']:g} |"
        )
    return [
        *lines,
        "",
        f"{shared['runners']} runners started together on one account (1 h runs), peak requests in any "
        f"60 s window: runner {shared['runner_peak_per_minute']:,}, guide loop "
        f"{shared['guide_peak_per_minute']:,}; dbt Cloud's limit is {shared['limit_per_minute']:,}/min.",
        "",
    ]


def _render_startup(start: dict[str, Any], latencies: list[str]) -> list[str]:
    share = start["plan_sdk_share"]
    return [
        "**Start-up**",
        "",
        "| command | wall time |",
        "|---|---:|",
        f"| `python -c pass` | {start['python_start_s']:.2f} s |",
        f"| `dbtwf --help` | {start['help_s']:.2f} s |",
        f"| `dbtwf plan` (against the emulators, {_ms(latencies)}) | {_walls(start['plan_s'])} |",
        f"| `import databricks.sdk` alone | {start['sdk_import_s']:.2f} s |",
        "",
        f"`import databricks.sdk` is {share:.0%} of `dbtwf plan` at {latencies[0]} ms; `--help` "
        + ("imports it (a regression)." if start["help_imports_sdk"] else "does not import it at all."),
        "",
    ]


def _render_versus(versus: dict[str, Any], latencies: list[str]) -> list[str]:
    if "skipped" in versus:
        return [f"**dbtwf beside the legacy CLI**: skipped: {versus['skipped']}", ""]
    top = latencies[-1]
    labels = versus_labels(versus["tasks"])
    by_latency = versus["latencies"]
    lines = [
        "**dbtwf beside the legacy `databricks` CLI** (databricks-cli 0.18), side by side in one run, "
        "each command a fresh process (a legacy row is the sum of its processes)",
        "",
        f"| command | processes | wall {_ms(latencies)} | requests | writes "
        f"| round trips on the critical path |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    verdicts = []
    for ours, theirs in PAIRS:
        for name in (ours, theirs):
            row = by_latency[top][name]
            walls = {ms: by_latency[ms][name]["wall_s"] for ms in latencies}
            lines.append(
                f"| {labels[name]} | {versus['processes'][name]} | {_walls(walls)} | {row['requests']} "
                f"| {row['writes']} | {row['depth']} |"
            )
        a, b = by_latency[top][ours]["wall_s"], by_latency[top][theirs]["wall_s"]
        verdicts.append(f"{labels[ours]}: {a:.2f} s against {b:.2f} s ({'met' if a <= b else 'NOT met'})")
    lines += [
        "",
        f"At {top} ms per request (target: no longer than the legacy commands): " + "; ".join(verdicts) + ".",
        "Requests count both services (dbtwf checks the dbt job and token on dbt Cloud); round trips "
        f"are counted at {top} ms: the longest chain of requests each sent after the previous one was "
        "answered (onboard's count includes its dbt Cloud check, made while the SDK loads). The "
        "emulators serve plain http: against a real workspace each of the legacy CLI's processes "
        "also pays a TCP and a TLS handshake (two to three more round trips), as does each "
        "connection dbtwf opens; neither is added here. The legacy CLI does the guide's steps and "
        "nothing else: no check that anything is already there, no state, no lock, the token on the "
        "command line.",
        "",
    ]
    return lines


def update_readme(readme: Path, markdown: str) -> None:
    """Rewrites only what lies between the bench markers."""
    text = readme.read_text(encoding="utf-8")
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        raise SystemExit(f"{readme}: no {README_START} ... {README_END} markers to fill")
    head = text[: start + len(README_START)]
    readme.write_text(f"{head}\n{markdown}{text[end:]}", encoding="utf-8")


SECTIONS = ("versus_legacy", "add_task", "apply_all", "runner", "startup")


def run_all(sizes: Sizes, sections: Sequence[str], log: Callable[[str], None]) -> dict[str, Any]:
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "runs": sizes.runs,
        "latencies": list(sizes.latencies),
        "machine": machine(),
        "load_average": {"start": load_average()},
    }
    with tempfile.TemporaryDirectory(prefix="dbtwf-bench-") as scratch:
        work = Path(scratch)
        steps: list[tuple[str, Callable[[], Any]]] = [
            ("versus_legacy", lambda: bench_versus_legacy(sizes, work / "versus")),
            ("add_task", lambda: bench_add_task(sizes)),
            ("apply_all", lambda: bench_apply_all(sizes, work / "all")),
            ("runner", lambda: bench_runner(sizes)),
            ("startup", lambda: bench_startup(sizes, work / "startup")),
        ]
        for folder in ("versus", "all", "startup"):
            (work / folder).mkdir()
        for name, step in steps:
            if name not in sections:
                continue
            began = time.perf_counter()
            report[name] = step()
            log(f"{name}: {time.perf_counter() - began:.1f} s (load average {load_average()})")
    report["load_average"]["end"] = load_average()
    return report


def parse_latencies(text: str) -> tuple[float, ...]:
    try:
        values = tuple(sorted({float(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of milliseconds: {text!r}") from None
    if not values or values[0] < 0:
        raise argparse.ArgumentTypeError(f"not a list of milliseconds of 0 or more: {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and one run (the smoke test)")
    parser.add_argument("--runs", type=int, default=5, help="runs per figure (medians)")
    parser.add_argument(
        "--latencies",
        type=parse_latencies,
        default=None,
        help="milliseconds per request, comma-separated (default 0,150; --quick: 25)",
    )
    parser.add_argument(
        "--sections",
        type=lambda text: [part for part in text.split(",") if part],
        default=list(SECTIONS),
        help=f"measure only these (comma-separated, of {','.join(SECTIONS)}; default: all)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results", help="where bench.md/.json go")
    parser.add_argument("--update-readme", action="store_true", help="fill README.md's Performance section")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    if args.quick:
        sizes = Sizes.quick(args.latencies or (25.0,))
    else:
        sizes = Sizes.full(args.runs, args.latencies or (0.0, 150.0))
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown --sections: {', '.join(sorted(unknown))}")
    if args.update_readme and set(args.sections) != set(SECTIONS):
        parser.error("--update-readme needs every section")
    report = run_all(sizes, args.sections, lambda line: print(line, file=sys.stderr, flush=True))
    markdown = render(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (args.out / "bench.md").write_text(markdown, encoding="utf-8")
    print(markdown)
    if args.update_readme:
        update_readme(args.readme, markdown)
        print(f"updated {args.readme}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
