"""How quickly the runner notices a dbt run's end, and what it costs, beside the guide's 5 s loop.

Everything runs against the local dbt Cloud emulator over real HTTP on one simulated clock:
the emulator's runs end at exact simulated times and the loops' sleeps advance the clock, so
an hour of dbt run takes a fraction of a second.

    python scripts/bench_runner.py [--trials N] [--json PATH]

Detection lag = the moment the loop learns the run is over minus the moment the run ended.
Each duration is tried with N run lengths D + u (u uniform in [0, 5) s, seeded) so the fixed
loop's phase is not flattered by round numbers; both loops see the same lengths.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Callable
from pathlib import Path
from statistics import mean
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runner.core import DbtCloudClient, RunSettings, run_dbt_job
from tests.emulators.base import RecordedRequest
from tests.emulators.dbtcloud import DbtCloudEmulator, Scenario

TOKEN = "dbtc_bench_token"
ACCOUNT = 70403
JOB = 1
DURATIONS = (("10 s", 10.0), ("1 min", 60.0), ("10 min", 600.0), ("1 h", 3600.0))
RATE_LIMIT_PER_MINUTE = 5000
GUIDE_INTERVAL = 5.0


class SimClock:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


class Bench:
    def __init__(self, emu: DbtCloudEmulator) -> None:
        self.emu = emu
        self.clock = SimClock()
        self.stamps: list[float] = []
        emu.clock = self.clock.now
        original = emu.record

        def record(entry: RecordedRequest) -> None:
            self.stamps.append(self.clock.now())
            original(entry)

        emu.record = record  # type: ignore[method-assign]

    def fresh(self, seconds: float) -> None:
        self.emu.reset()  # also puts back the emulator's own clock
        self.clock.t = 0.0
        self.emu.clock = self.clock.now
        self.emu.add_job(JOB, scenario=Scenario(outcome="success", seconds=seconds))
        self.stamps = []

    def runner(self, seconds: float, seed: int) -> tuple[float, int]:
        self.fresh(seconds)
        settings = RunSettings.build(host=self.emu.url, account_id=ACCOUNT, job_id=JOB)
        result = run_dbt_job(
            settings,
            TOKEN,
            clock=self.clock.now,
            sleep=self.clock.sleep,
            out=lambda line: None,
            rng=random.Random(seed),
        )
        assert result.status == 10
        return self.clock.now() - seconds, len(self.stamps)

    def guide(self, seconds: float) -> tuple[float, int]:
        """The seed guide's loop: trigger, then sleep 5 s and GET the run until it is terminal."""
        self.fresh(seconds)
        client = DbtCloudClient(self.emu.url, ACCOUNT, TOKEN)
        run_id = int(client.trigger_run(JOB, "Triggered by Databricks Workflows.")["id"])
        while True:
            self.clock.sleep(GUIDE_INTERVAL)
            if client.get_run(run_id, retries=0)["status"] in (10, 20, 30):
                return self.clock.now() - seconds, len(self.stamps)

    def peak_per_minute(self, runners: int, loop: Callable[[int], None]) -> int:
        """Max requests in any 60 s window when ``runners`` loops start together on one account."""
        merged: list[float] = []
        for index in range(runners):
            loop(index)
            merged.extend(self.stamps)
        merged.sort()
        best, start = 0, 0
        for end, stamp in enumerate(merged):
            while stamp - merged[start] >= 60.0:
                start += 1
            best = max(best, end - start + 1)
        return best


def measure(
    trials: int = 5, runners: int = 50, durations: tuple[tuple[str, float], ...] = DURATIONS
) -> dict[str, Any]:
    """The figures as a dict (what --json writes); scripts/bench.py calls this too."""
    rows: list[dict[str, Any]] = []
    with DbtCloudEmulator(token=TOKEN, account_id=ACCOUNT) as emu:
        bench = Bench(emu)
        lengths = random.Random(0)
        for label, duration in durations:
            ours, guide = [], []
            for trial in range(trials):
                seconds = duration + lengths.uniform(0, 5)
                ours.append(bench.runner(seconds, seed=trial))
                guide.append(bench.guide(seconds))
            rows.append(
                {
                    "duration": label,
                    "runner_lag_mean_s": round(mean(lag for lag, _ in ours), 2),
                    "runner_lag_max_s": round(max(lag for lag, _ in ours), 2),
                    "runner_requests": round(mean(count for _, count in ours), 1),
                    "guide_lag_mean_s": round(mean(lag for lag, _ in guide), 2),
                    "guide_lag_max_s": round(max(lag for lag, _ in guide), 2),
                    "guide_requests": round(mean(count for _, count in guide), 1),
                }
            )
        hour = 3600.0
        runner_peak = bench.peak_per_minute(runners, lambda i: (bench.runner(hour, seed=i), None)[1])
        guide_peak = bench.peak_per_minute(runners, lambda i: (bench.guide(hour), None)[1])
    return {
        "trials": trials,
        "durations": rows,
        "shared_account": {
            "runners": runners,
            "runner_peak_per_minute": runner_peak,
            "guide_peak_per_minute": guide_peak,
            "limit_per_minute": RATE_LIMIT_PER_MINUTE,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5, help="run lengths tried per duration")
    parser.add_argument("--runners", type=int, default=50, help="runners sharing one account")
    parser.add_argument("--json", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args(argv)
    report = measure(args.trials, args.runners)
    rows = report["durations"]
    runner_peak = report["shared_account"]["runner_peak_per_minute"]
    guide_peak = report["shared_account"]["guide_peak_per_minute"]

    print(
        "| dbt run | runner lag mean / max | runner requests | guide (5 s) lag mean / max | guide requests |"
    )
    print("|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['duration']} | {row['runner_lag_mean_s']} s / {row['runner_lag_max_s']} s "
            f"| {row['runner_requests']} | {row['guide_lag_mean_s']} s / {row['guide_lag_max_s']} s "
            f"| {row['guide_requests']} |"
        )
    print()
    print(
        f"Peak requests in any 60 s window, {args.runners} runners started together on one account "
        f"(1 h runs): runner {runner_peak}, guide loop {guide_peak}; limit {RATE_LIMIT_PER_MINUTE}/min."
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
