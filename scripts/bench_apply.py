"""Fresh apply, then a no-op apply, against the in-process Databricks emulator.

Prints a markdown table: requests by kind (reads/writes) and wall time, medians of several
runs, plus the one-off cost of importing databricks.sdk (paid once per CLI process).

    .venv/bin/python scripts/bench_apply.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs

    started = time.perf_counter()
    import databricks.sdk  # noqa: F401 - measured: the import is most of a CLI run's cost

    sdk_import = time.perf_counter() - started

    from provision.apply import apply_changes
    from provision.plan import plan_environment
    from tests.conftest import DATABRICKS_TOKEN
    from tests.emulators.databricks import DatabricksEmulator
    from tests.provision_helpers import make_env, make_workspace

    token = "dbtc_bench_token_value"
    rows: dict[str, list[tuple[int, int, float]]] = {"fresh apply": [], "no-op apply": []}
    with DatabricksEmulator(token=DATABRICKS_TOKEN) as emulator:
        for _ in range(runs):
            emulator.reset()
            ws = make_workspace(emulator)
            env = make_env()
            for label in rows:
                with emulator.recording() as requests:
                    began = time.perf_counter()
                    apply_changes(ws, env, plan_environment(ws, env, token), token)
                    elapsed = time.perf_counter() - began
                write_count = sum(1 for r in requests if r.is_write)
                rows[label].append((len(requests) - write_count, write_count, elapsed))

    print(
        f"Median of {runs} runs against the local emulator "
        f"(databricks-sdk import: {sdk_import:.2f} s, once).\n"
    )
    print("| operation | reads | writes | wall time | per request |")
    print("|---|---:|---:|---:|---:|")
    for label, samples in rows.items():
        reads = statistics.median(s[0] for s in samples)
        writes = statistics.median(s[1] for s in samples)
        wall = statistics.median(s[2] for s in samples)
        print(
            f"| {label} | {reads:g} | {writes:g} | {wall * 1000:.0f} ms "
            f"| {wall * 1000 / (reads + writes):.1f} ms |"
        )


if __name__ == "__main__":
    main()
