#!/usr/bin/env python3
"""Serve the local Databricks and dbt Cloud emulators on 127.0.0.1 until interrupted.

Prints shell-ready settings on stdout, one per line, so a user can paste them (or a parent
process can read them through a pipe):

    export DATABRICKS_HOST=http://127.0.0.1:PORT
    export DATABRICKS_TOKEN=...
    export DBT_CLOUD_HOST=http://127.0.0.1:PORT
    export DBT_CLOUD_ACCOUNT_ID=...
    export DBT_CLOUD_API_TOKEN=...
    # example dbt job URL: http://127.0.0.1:PORT/deploy/ACCOUNT/projects/1/jobs/JOB

The dbt Cloud emulator holds example jobs: one that succeeds a few seconds after it is
triggered, one that fails with a dbt error log, one that runs until cancelled, and a second
one that succeeds (so a demo can add it as a task to another workflow). The tokens
are test tokens, valid only against these emulators. `--latency-ms N` makes every request
wait N ms before it is answered, as a round trip to a cloud service would (150 is what a
laptop sees). SIGINT or SIGTERM: a clean exit 0.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

# Runnable as `python scripts/serve_emulators.py` from anywhere: the emulators live in tests/.
REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.emulators.base import Emulator  # noqa: E402 - needs the path above
from tests.emulators.dbtcloud import DbtCloudEmulator, Scenario  # noqa: E402

if TYPE_CHECKING:
    from tests.emulators.databricks import DatabricksEmulator

DATABRICKS_TOKEN = "dapi-emulator-token"
DBT_CLOUD_TOKEN = "dbtc_emulator_token"
DBT_ACCOUNT_ID = 70403
PROJECT_ID = 1
ENVIRONMENT_ID = 1

SUCCEEDING_JOB = 1001
FAILING_JOB = 1002
ENDLESS_JOB = 1003
SECOND_SUCCEEDING_JOB = 1004


def seed_dbt_jobs(dbt: DbtCloudEmulator) -> None:
    """Example jobs whose runs progress in real time (the emulator's clock is time.monotonic)."""
    common = {"project_id": PROJECT_ID, "environment_id": ENVIRONMENT_ID}
    dbt.add_job(
        SUCCEEDING_JOB, name="Daily build (succeeds)", scenario=Scenario("success", seconds=6), **common
    )
    dbt.add_job(FAILING_JOB, name="Orders model (fails)", scenario=Scenario("error", seconds=4), **common)
    dbt.add_job(
        ENDLESS_JOB, name="Backfill (runs until cancelled)", scenario=Scenario("never", seconds=3), **common
    )
    dbt.add_job(
        SECOND_SUCCEEDING_JOB,
        name="Hourly marts (succeeds)",
        scenario=Scenario("success", seconds=4),
        **common,
    )


def settings_lines(databricks_url: str, dbt: DbtCloudEmulator) -> list[str]:
    values = [
        ("DATABRICKS_HOST", databricks_url),
        ("DATABRICKS_TOKEN", DATABRICKS_TOKEN),
        ("DBT_CLOUD_HOST", dbt.url),
        ("DBT_CLOUD_ACCOUNT_ID", str(dbt.account_id)),
        ("DBT_CLOUD_API_TOKEN", dbt.token),
    ]
    lines = [f"export {name}={shlex.quote(value)}" for name, value in values]
    lines.append(f"# example dbt job URL: {dbt.job_url(SUCCEEDING_JOB)}")
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--databricks-port", type=int, default=0, help="port for Databricks (default: a free one)"
    )
    parser.add_argument("--dbt-port", type=int, default=0, help="port for dbt Cloud (default: a free one)")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed for the emulators' generated ids and faults"
    )
    parser.add_argument(
        "--latency-ms",
        type=_milliseconds,
        default=0.0,
        metavar="N",
        help="every request waits N ms before it is answered, like a network round trip (default: 0)",
    )
    return parser.parse_args(argv)


def _milliseconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of milliseconds: {text!r}") from None
    if not 0 <= value <= 60_000:
        raise argparse.ArgumentTypeError(f"must be between 0 and 60000 ms, not {text}")
    return value


class CannotListen(Exception):
    """A port is taken: the one-line message names the service and the port."""


def start_emulators(args: argparse.Namespace) -> tuple[DbtCloudEmulator, DatabricksEmulator]:
    """Both emulators listening, with the example dbt jobs; CannotListen when a port is busy."""
    dbt = DbtCloudEmulator(
        port=args.dbt_port,
        token=DBT_CLOUD_TOKEN,
        account_id=DBT_ACCOUNT_ID,
        seed=args.seed,
        latency_ms=args.latency_ms,
    )
    try:
        dbt.start()
    except OSError as error:
        raise CannotListen(f"cannot listen on the dbt Cloud port {args.dbt_port}: {error}") from None
    # Imported only now: it loads databricks-sdk's dataclasses, which takes a moment.
    from tests.emulators.databricks import DatabricksEmulator

    databricks = DatabricksEmulator(
        port=args.databricks_port, token=DATABRICKS_TOKEN, seed=args.seed, latency_ms=args.latency_ms
    )
    try:
        databricks.start()
    except OSError as error:
        dbt.stop()
        raise CannotListen(f"cannot listen on the Databricks port {args.databricks_port}: {error}") from None
    seed_dbt_jobs(dbt)
    return dbt, databricks


def stop_emulators(*emulators: Emulator) -> None:
    # Each server takes up to half a second to notice a shutdown: stop them all at once.
    stoppers = [threading.Thread(target=emulator.stop) for emulator in emulators]
    for stopper in stoppers:
        stopper.start()
    for stopper in stoppers:
        stopper.join()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    try:
        dbt, databricks = start_emulators(args)
    except CannotListen as error:
        print(f"serve_emulators: {error}", file=sys.stderr)
        return 1
    try:
        print("\n".join(settings_lines(databricks.url, dbt)), flush=True)
        latency = f", {args.latency_ms:g} ms per request" if args.latency_ms else ""
        print(
            f"# serving until interrupted (Ctrl-C){latency}; failing dbt job: {dbt.job_url(FAILING_JOB)}, "
            f"endless dbt job: {dbt.job_url(ENDLESS_JOB)}, "
            f"second succeeding dbt job: {dbt.job_url(SECOND_SUCCEEDING_JOB)}",
            file=sys.stderr,
            flush=True,
        )
        # A short wait in a loop: the signal handler runs between waits on every platform.
        while not stop.wait(0.2):
            pass
    finally:
        stop_emulators(dbt, databricks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
