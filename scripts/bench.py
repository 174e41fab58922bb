"""`make bench`: dbtwf's figures beside the alternatives, against the local emulators.

    python scripts/bench.py [--quick] [--runs N] [--out DIR] [--update-readme]

Writes DIR/bench.md and DIR/bench.json (default bench-results/) and prints the markdown:

1. `dbtwf apply` on an empty workspace and a second, no-op apply (the real CLI as a
   subprocess; requests counted from the emulator's log) beside the guide's manual steps
   done with the legacy `databricks` CLI (databricks-cli 0.18) against the same emulator.
2. `add-task` on workflows of 10, 100 and 500 tasks beside a jobs/reset that resends them all.
3. `apply --all` for 1, 5 and 10 environments.
4. The runner's detection lag and requests on a simulated clock beside the guide's 5 s loop,
   and the peak request rate of 50 runners on one account (scripts/bench_runner.py).
5. Start-up of `dbtwf --help` and `dbtwf plan`, and the share of `import databricks.sdk`.

Times are medians of --runs runs; request and byte counts do not vary between runs.
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

README_START = "<!-- bench:start -->"
README_END = "<!-- bench:end -->"
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Sizes:
    runs: int
    add_task_tasks: tuple[int, ...]
    apply_all_environments: tuple[int, ...]
    runner_durations: tuple[tuple[str, float], ...]
    runner_trials: int
    shared_runners: int

    @classmethod
    def full(cls, runs: int) -> Sizes:
        from bench_runner import DURATIONS

        return cls(runs, (10, 100, 500), (1, 5, 10), DURATIONS, 5, 50)

    @classmethod
    def quick(cls) -> Sizes:
        return cls(1, (10,), (1,), (("10 s", 10.0),), 1, 2)


# --- helpers -------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def timed(command: list[str], env: dict[str, str]) -> float:
    """Wall time of one process; it must succeed."""
    began = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    elapsed = time.perf_counter() - began
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])}... exited {result.returncode}: {result.stderr[-2000:]}")
    return elapsed


def dbtwf_command(*args: str) -> list[str]:
    script = BIN / "dbtwf"
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-c", "from provision.cli import main; main()", *args]


def counts(requests: list[Any]) -> dict[str, int]:
    writes = sum(1 for r in requests if r.is_write)
    return {
        "requests": len(requests),
        "reads": len(requests) - writes,
        "writes": writes,
        "bytes_sent": sum(len(r.body) for r in requests),
    }


@contextmanager
def databricks_emulator() -> Iterator[Any]:
    from tests.conftest import DATABRICKS_TOKEN
    from tests.emulators.databricks import DatabricksEmulator

    with DatabricksEmulator(token=DATABRICKS_TOKEN) as emulator:
        yield emulator


@contextmanager
def dbt_emulator() -> Iterator[Any]:
    """dbt Cloud with job 1: apply proves the token on the environment's jobs before storing it."""
    from tests.conftest import DBT_ACCOUNT_ID, DBT_CLOUD_TOKEN
    from tests.emulators.dbtcloud import DbtCloudEmulator

    with DbtCloudEmulator(token=DBT_CLOUD_TOKEN, account_id=DBT_ACCOUNT_ID) as emulator:
        emulator.add_job(1)
        yield emulator


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


# --- 1. apply, and the guide's steps with the legacy CLI ---------------------------------


def bench_apply(sizes: Sizes, work: Path) -> dict[str, Any]:
    from tests.provision_helpers import cli_env, write_config

    fresh: list[tuple[float, dict[str, int]]] = []
    noop: list[tuple[float, dict[str, int]]] = []
    with databricks_emulator() as emulator, dbt_emulator() as dbt:
        for run in range(sizes.runs):
            emulator.reset()
            folder = work / f"apply-{run}"
            folder.mkdir()
            write_config(folder / "dbtwf.toml", dbt.url, {"dev": {"nightly": 1}})
            env = {**os.environ, **cli_env(folder, emulator.url)}
            for samples in (fresh, noop):
                with emulator.recording() as requests:
                    elapsed = timed(dbtwf_command("apply", "--yes"), env)
                samples.append((elapsed, counts(requests)))
    return {
        "dbtwf apply (empty workspace)": _summary(fresh, processes=1),
        "dbtwf apply (no-op)": _summary(noop, processes=1),
        "legacy databricks CLI, the guide's 5 steps": bench_legacy_cli(sizes, work),
    }


def _summary(samples: list[tuple[float, dict[str, int]]], processes: int) -> dict[str, Any]:
    return {
        "processes": processes,
        **samples[0][1],
        "wall_s": round(median([s[0] for s in samples]), 3),
    }


def bench_legacy_cli(sizes: Sizes, work: Path) -> dict[str, Any]:
    """create-scope, put, mkdirs, import, jobs create: one process each, as the guide does them.

    databricks-cli 0.18 drops the port of DATABRICKS_HOST, so it talks to http://127.0.0.1
    through a local forward proxy to the emulator (as tests/test_legacy_databricks_cli.py does).
    """
    from provision.desired import render_runner_notebook, workflow_settings
    from tests.conftest import DATABRICKS_TOKEN
    from tests.emulators.proxy import ForwardProxy, legacy_cli_env
    from tests.provision_helpers import make_env

    legacy = BIN / "databricks"
    if not legacy.exists():
        return {"skipped": f"databricks-cli is not installed next to {sys.executable}"}
    target = make_env()
    notebook = work / "run_dbt_cloud_job.py"
    notebook.write_text(render_runner_notebook(target), encoding="utf-8")
    job = work / "job.json"
    job.write_text(json.dumps(workflow_settings(target)), encoding="utf-8")
    steps = [
        ["secrets", "create-scope", "--scope", target.secret_scope, "--initial-manage-principal", "users"],
        ["secrets", "put", "--scope", target.secret_scope, "--key", target.secret_key, "--string-value", "x"],
        ["workspace", "mkdirs", target.notebook_folder],
        [
            "workspace",
            "import",
            "--language",
            "PYTHON",
            "--format",
            "SOURCE",
            str(notebook),
            target.notebook_path,
        ],
        ["jobs", "create", "--json-file", str(job), "--version=2.1"],
    ]
    samples: list[tuple[float, dict[str, int]]] = []
    with databricks_emulator() as emulator, ForwardProxy(emulator.port) as proxy:
        env = legacy_cli_env(proxy, work, DATABRICKS_TOKEN)
        for _ in range(sizes.runs):
            emulator.reset()
            with emulator.recording() as requests:
                elapsed = sum(timed([str(legacy), *step], env) for step in steps)
            samples.append((elapsed, counts(requests)))
    return _summary(samples, processes=len(steps))


# --- 2. add-task beside a reset that resends every task -----------------------------------


def bench_add_task(sizes: Sizes) -> list[dict[str, Any]]:
    from provision.add_task import AddTaskRequest, add_task, build_task
    from provision.apply import apply_changes
    from provision.model import default_task_key
    from provision.plan import plan_environment
    from tests.conftest import DBT_ACCOUNT_ID, DBT_CLOUD_TOKEN
    from tests.emulators.dbtcloud import DbtCloudEmulator
    from tests.provision_helpers import make_env, make_workspace

    rows = []
    dbt = DbtCloudEmulator(token=DBT_CLOUD_TOKEN, account_id=DBT_ACCOUNT_ID)
    with databricks_emulator() as emulator, dbt:
        dbt.add_job(2, name="Marts")
        env = make_env(dbt_host=dbt.url)
        for tasks in sizes.add_task_tasks:
            ours: list[tuple[float, dict[str, int], int]] = []
            theirs: list[tuple[float, dict[str, int], int]] = []
            for _ in range(sizes.runs):
                emulator.reset()
                ws = make_workspace(emulator)
                apply_changes(ws, env, plan_environment(ws, env, DBT_CLOUD_TOKEN), DBT_CLOUD_TOKEN)
                settings = _foreign_settings(tasks)
                job_id = ws.create_job(settings)
                copy_id = ws.create_job(settings)

                with emulator.recording() as requests:
                    began = time.perf_counter()
                    add_task(
                        ws,
                        env,
                        AddTaskRequest(workflow=str(job_id), dbt_job="2"),
                        DBT_CLOUD_TOKEN,
                        confirm_bundle=lambda warning: True,
                    )
                    elapsed = time.perf_counter() - began
                update = next(r for r in requests if r.path.endswith("/jobs/update"))
                ours.append((elapsed, counts(requests), len(update.body)))

                # The alternative: read the whole job, send all of it back with the task appended.
                with emulator.recording() as requests:
                    began = time.perf_counter()
                    current = ws.get_job(copy_id) or {}
                    new_settings = dict(current.get("settings") or {})
                    new_task = build_task(env, task_key=default_task_key(2), dbt_job_id=2)
                    new_settings["tasks"] = [*new_settings.get("tasks", []), new_task]
                    ws.reset_job(copy_id, new_settings)
                    elapsed = time.perf_counter() - began
                reset = next(r for r in requests if r.path.endswith("/jobs/reset"))
                theirs.append((elapsed, counts(requests), len(reset.body)))
                _check_same_tasks(emulator, job_id, copy_id)
            rows.append(
                {
                    "tasks": tasks,
                    "add_task": {**ours[0][1], "write_body_bytes": ours[0][2], "wall_s": _med(ours)},
                    "reset": {**theirs[0][1], "write_body_bytes": theirs[0][2], "wall_s": _med(theirs)},
                }
            )
    return rows


def _med(samples: list[tuple[float, dict[str, int], int]]) -> float:
    return round(median([s[0] for s in samples]), 4)


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
    with databricks_emulator() as emulator, dbt_emulator() as dbt:
        for count in sizes.apply_all_environments:
            walls: list[float] = []
            total: dict[str, int] = {}
            for run in range(sizes.runs):
                emulator.reset()
                folder = work / f"all-{count}-{run}"
                folder.mkdir()
                write_config(
                    folder / "dbtwf.toml", dbt.url, {f"env{i}": {"nightly": 1} for i in range(count)}
                )
                env = {**os.environ, **cli_env(folder, emulator.url)}
                with emulator.recording() as requests:
                    walls.append(timed(dbtwf_command("apply", "--all", "--yes"), env))
                total = counts(requests)
            rows.append({"environments": count, "wall_s": round(median(walls), 3), **total})
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
    with databricks_emulator() as emulator, dbt_emulator() as dbt:
        write_config(work / "dbtwf.toml", dbt.url, {"dev": {"nightly": 1}})
        env = {**os.environ, **cli_env(work, emulator.url)}
        timed(dbtwf_command("apply", "--yes"), env)
        plan_wall = runs(dbtwf_command("plan"), env)
    sdk_import = max(0.0, sdk - python)
    return {
        "python_start_s": python,
        "sdk_import_s": round(sdk_import, 3),
        "help_s": help_wall,
        "plan_s": plan_wall,
        "plan_sdk_share": round(sdk_import / plan_wall, 3) if plan_wall else None,
        "help_imports_sdk": _help_imports_sdk(base_env),
    }


def _help_imports_sdk(env: dict[str, str]) -> bool:
    """Whether `--help` pays for the SDK: `-X importtime` lists every module it imports."""
    command = [sys.executable, "-X", "importtime", "-c", "from provision.cli import main; main()", "--help"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    return "databricks.sdk" in result.stderr


# --- the report ---------------------------------------------------------------------------


def render(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"Measured {report['date']} on {m['cpus']} CPU(s) ({m['cpu_model']}), Python {m['python']}, "
        f"{m['os']}, databricks-sdk {m['databricks_sdk']}; medians of {report['runs']} run(s), "
        "against the local emulators over real HTTP on 127.0.0.1.",
        "",
        "**Provisioning one environment** (each command a fresh process)",
        "",
        "| how | processes | requests | reads | writes | wall time |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, row in report["apply"].items():
        if "skipped" in row:
            lines.append(f"| {label} | skipped: {row['skipped']} | | | | |")
            continue
        lines.append(
            f"| {label} | {row['processes']} | {row['requests']} | {row['reads']} | {row['writes']} "
            f"| {row['wall_s']:.2f} s |"
        )
    lines += [
        "",
        "The legacy CLI does the guide's five steps and nothing else: no check that anything is "
        "already there, no state, the token on the command line.",
        "",
        "**Adding a task to a foreign workflow**: `add-task` (one `jobs/update` holding only the new "
        "task) beside `jobs/get` + `jobs/reset` resending every task",
        "",
        "| tasks in the workflow | add-task requests (reads / writes) | add-task bytes sent "
        "| its jobs/update body | reset requests | reset bytes sent |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["add_task"]:
        ours, theirs = row["add_task"], row["reset"]
        lines.append(
            f"| {row['tasks']} | {ours['requests']} ({ours['reads']} / {ours['writes']}) "
            f"| {ours['bytes_sent']:,} | {ours['write_body_bytes']:,} B | {theirs['requests']} "
            f"| {theirs['bytes_sent']:,} |"
        )
    lines += [
        "",
        "add-task's count includes its checks (the dbt job on dbt Cloud is not counted here, the "
        "workspace state record and lock are); its write does not grow with the workflow.",
        "",
        "**`dbtwf apply --all`** (environments applied concurrently, one process)",
        "",
        "| environments | wall time | requests | writes |",
        "|---:|---:|---:|---:|",
    ]
    for row in report["apply_all"]:
        lines.append(
            f"| {row['environments']} | {row['wall_s']:.2f} s | {row['requests']} | {row['writes']} |"
        )
    runner = report["runner"]
    shared = runner["shared_account"]
    lines += [
        "",
        "**The runner** beside the guide's fixed 5 s loop (simulated clock; lag = how late the end "
        f"of the dbt run is noticed; {runner['trials']} run length(s) each)",
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
    lines += [
        "",
        f"{shared['runners']} runners started together on one account (1 h runs), peak requests in any "
        f"60 s window: runner {shared['runner_peak_per_minute']:,}, guide loop "
        f"{shared['guide_peak_per_minute']:,}; dbt Cloud's limit is {shared['limit_per_minute']:,}/min.",
        "",
    ]
    start = report["startup"]
    share = start["plan_sdk_share"]
    lines += [
        "**Start-up**",
        "",
        "| command | wall time |",
        "|---|---:|",
        f"| `python -c pass` | {start['python_start_s']:.2f} s |",
        f"| `dbtwf --help` | {start['help_s']:.2f} s |",
        f"| `dbtwf plan` (against the emulator) | {start['plan_s']:.2f} s |",
        f"| `import databricks.sdk` alone | {start['sdk_import_s']:.2f} s |",
        "",
        f"`import databricks.sdk` is {share:.0%} of `dbtwf plan`; `--help` "
        + ("imports it (a regression)." if start["help_imports_sdk"] else "does not import it at all."),
    ]
    return "\n".join(lines) + "\n"


def update_readme(readme: Path, markdown: str) -> None:
    """Rewrites only what lies between the bench markers."""
    text = readme.read_text(encoding="utf-8")
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        raise SystemExit(f"{readme}: no {README_START} ... {README_END} markers to fill")
    head = text[: start + len(README_START)]
    readme.write_text(f"{head}\n{markdown}{text[end:]}", encoding="utf-8")


def run_all(sizes: Sizes, log: Callable[[str], None]) -> dict[str, Any]:
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "runs": sizes.runs,
        "machine": machine(),
    }
    with tempfile.TemporaryDirectory(prefix="dbtwf-bench-") as scratch:
        work = Path(scratch)
        steps: list[tuple[str, Callable[[], Any]]] = [
            ("apply", lambda: bench_apply(sizes, work / "apply")),
            ("add_task", lambda: bench_add_task(sizes)),
            ("apply_all", lambda: bench_apply_all(sizes, work / "all")),
            ("runner", lambda: bench_runner(sizes)),
            ("startup", lambda: bench_startup(sizes, work / "startup")),
        ]
        for folder in ("apply", "all", "startup"):
            (work / folder).mkdir()
        for name, step in steps:
            began = time.perf_counter()
            report[name] = step()
            log(f"{name}: {time.perf_counter() - began:.1f} s")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and one run (the smoke test)")
    parser.add_argument("--runs", type=int, default=5, help="runs per figure (medians)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results", help="where bench.md/.json go")
    parser.add_argument("--update-readme", action="store_true", help="fill README.md's Performance section")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    sizes = Sizes.quick() if args.quick else Sizes.full(args.runs)
    report = run_all(sizes, lambda line: print(line, file=sys.stderr, flush=True))
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
