"""`python -m runner`: trigger a dbt Cloud job from a shell and follow it to the end.

Exit codes: 0 the dbt run succeeded (or started, with --no-wait); 1 it failed, was
cancelled or timed out, or dbt Cloud could not be used; 2 bad input (nothing was sent).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from runner.core import (
    OVERRIDE_NAMES,
    DbtCloudError,
    DbtRunError,
    RunnerInputError,
    RunSettings,
    check_token,
    run_dbt_job,
)

TOKEN_VARIABLE = "DBT_CLOUD_API_TOKEN"  # noqa: S105 - the variable's name, not a token


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m runner",
        description="Trigger a dbt Cloud job and follow the run to its end. "
        f"The API token is read from {TOKEN_VARIABLE}, never from the command line.",
        epilog="examples:\n"
        "  python -m runner --job-url https://ab123.us1.dbt.com/deploy/1/projects/2/jobs/3\n"
        "  python -m runner --job-id 3 --host ab123.us1.dbt.com --account-id 1 --no-wait\n"
        "  python -m runner --job-id 3 --step 'dbt build -s tag:daily' --timeout 3600",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        # No prefixes: `--timeout-seconds 3600` must not quietly become --timeout-seconds-override.
        allow_abbrev=False,
    )
    where = parser.add_argument_group("which job")
    where.add_argument("--job-id", help="dbt job id (env DBT_CLOUD_JOB_ID)")
    where.add_argument("--host", help="dbt Cloud host or URL (env DBT_CLOUD_HOST)")
    where.add_argument("--account-id", help="dbt Cloud account id (env DBT_CLOUD_ACCOUNT_ID)")
    where.add_argument("--job-url", help="the dbt job URL instead of the three above")
    how = parser.add_argument_group("how")
    how.add_argument("--timeout", help="give up after this many seconds and cancel the run (default 4 h)")
    how.add_argument("--cause", help="why the run was triggered, shown in dbt Cloud")
    how.add_argument("--no-wait", action="store_true", help="trigger and print the run id, do not wait")
    how.add_argument("--reuse-running", action="store_true", help="follow a run already in progress")
    how.add_argument("--rerun-failed", action="store_true", help="rerun from failure if the last run failed")
    overrides = parser.add_argument_group("overrides passed to dbt Cloud")
    overrides.add_argument(
        "--step", dest="steps_override", action="append", help="a dbt command; repeat for several"
    )
    for name in OVERRIDE_NAMES[1:]:  # steps_override is --step above
        overrides.add_argument("--" + name.replace("_", "-"), dest=name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.job_url and (args.job_id or args.host or args.account_id):
            raise RunnerInputError("give either --job-url or --job-id/--host/--account-id, not both")
        settings = RunSettings.build(
            host=args.host or os.environ.get("DBT_CLOUD_HOST", ""),
            account_id=args.account_id or os.environ.get("DBT_CLOUD_ACCOUNT_ID", ""),
            job_id=args.job_url or args.job_id or os.environ.get("DBT_CLOUD_JOB_ID", ""),
            timeout_seconds=args.timeout,
            cause=args.cause,
            overrides={name: getattr(args, name) for name in OVERRIDE_NAMES},
            wait=not args.no_wait,
            reuse_running=args.reuse_running,
            rerun_failed=args.rerun_failed,
        )
        token = check_token(os.environ.get(TOKEN_VARIABLE, ""), f"set {TOKEN_VARIABLE}")
    except RunnerInputError as error:
        # Two lines, not parser.error(): its usage block buries the one line that matters.
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        print(f"hint: see `{parser.prog} --help`", file=sys.stderr, flush=True)
        return 2
    try:
        result = run_dbt_job(settings, token)
    except (DbtRunError, DbtCloudError) as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted; the dbt run was asked to cancel", file=sys.stderr, flush=True)
        return 1
    print(f"dbt run {result.run_id}: {result.status_humanized} {result.url}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
