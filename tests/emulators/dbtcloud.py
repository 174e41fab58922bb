"""A local dbt Cloud (Administrative API v2) on 127.0.0.1, faithful on the wire.

Shapes follow dbt Labs' public OpenAPI spec (`spec/dbt-cloud-openapi-v2.yaml`) and responses
captured from the real service (dbt-cloud-cli's README, Airflow/kestra/terraform provider
tests): the `{"data", "status"}` envelope with `"Success!"`, run timestamps like
`2021-11-26 16:48:41.431645+00:00`, `trigger`/`job`/`environment` null and `run_steps` empty
unless asked for with `include_related`, step names like ``Invoke dbt with `dbt build` ``,
`"Cancelled by user."` on a cancelled run, 401 `"Invalid token."`, 404 "The requested
resource was not found. Please check that you have the proper permissions.".

Each job has a :class:`Scenario` that scripts how its runs progress (1 queued, 2 starting,
3 running, then 10 success / 20 error / 30 cancelled), either per GET of the run or by the
injected clock, so tests never sleep. Faults (429, 5xx, a trigger whose response is lost)
come from the base class's seeded FaultInjector.

Behaviours modelled on evidence (and where it is missing, said so):
- A path without its trailing slash is answered 308 to the slashed path (the real API does:
  airbytehq/airbyte#18147 "Without a trailing `/` the dbt Cloud API returns a 308"). The
  Location is relative, as Django's APPEND_SLASH builds it (unverified for dbt Cloud).
- Cancel of a queued run answers it cancelled at once: status 30, `finished_at` set, never
  started (the real answer captured in data-mie/dbt-cloud-cli tests/data/run_cancel_response.json);
  cancel of a finished run changes nothing and answers its final state (dbt-cloud-cli README:
  "has no effect if the run has already completed"). A starting or running run answers its
  current status and is cancelled on the next look (asynchronous: unverified).
- 429/503 carry no `Retry-After` unless a test sets ``retry_after_header`` (dbt's rate-limit
  page documents none).
- Rerun/retry refuse a failed run for each reason of the spec's RetryNotSupportedReasonEnum:
  not failed, not the job's latest run, dbt older than 1.6 and a failing command `dbt retry`
  does not support (docs.getdbt.com/docs/deploy/retry-jobs, /reference/commands/retry), and a
  step that failed before writing run results (``Scenario(run_results=False)``). The refusal
  is a 400 whose message names the reason (its wording is unverified). `retrying_run_id` is
  in the spec but its meaning is not documented: the emulator leaves it null.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, TypeVar
from urllib.parse import urlencode

from tests.emulators.base import Emulator, HttpError, Request, Response

Outcome = Literal["success", "error", "cancelled", "never"]

QUEUED, STARTING, RUNNING, SUCCESS, ERROR, CANCELLED = 1, 2, 3, 10, 20, 30
TERMINAL = frozenset({SUCCESS, ERROR, CANCELLED})
STATUS_HUMANIZED = {
    QUEUED: "Queued",
    STARTING: "Starting",
    RUNNING: "Running",
    SUCCESS: "Success",
    ERROR: "Error",
    CANCELLED: "Cancelled",
}
STEP_COLOR = {
    SUCCESS: "#1ec22b",
    ERROR: "#ee4b2b",
    CANCELLED: "#ff9e42",
    RUNNING: "#047377",
    QUEUED: "#ffbc00",
}

NOT_FOUND_MESSAGE = "The requested resource was not found. Please check that you have the proper permissions."
INVALID_REQUEST_MESSAGE = "The request was invalid. Please double check the provided data and try again."
CANCELLED_MESSAGE = "Cancelled by user."
MAX_PAGE = 100
JOB_ORDERING_FIELDS = ("id", "name", "created_at", "updated_at", "project_id", "environment_id")
_Item = TypeVar("_Item")  # a job (dict) or a run, in a list answer
DBT_VERSION = "latest"
# Steps dbt Cloud runs before the job's own commands (their names, as the real runs show them).
SYSTEM_STEPS = ("Clone git repository", "Create profile from connection Databricks")
# The commands `dbt retry` can resume (docs.getdbt.com/reference/commands/retry); a job whose
# failing step is another one (`dbt deps`, `dbt source freshness`, ...) cannot be rerun from it.
RETRY_COMMANDS = frozenset(
    {"build", "compile", "clone", "docs generate", "seed", "snapshot", "test", "run", "run-operation"}
)
# "You must be using dbt version 1.6 or newer" (docs.getdbt.com/docs/deploy/retry-jobs).
RETRY_MIN_VERSION = (1, 6)

DEFAULT_ERROR_LOGS = """\
09:14:02  Running with dbt=1.9.4
09:14:03  Registered adapter: databricks=1.9.7
09:14:05  Found 7 models, 14 data tests, 3 seeds, 4 sources, 612 macros
09:14:05
09:14:07  Concurrency: 4 threads (target='default')
09:14:07
09:14:08  1 of 7 START sql view model analytics.stg_customers ........................... [RUN]
09:14:08  2 of 7 START sql view model analytics.stg_orders .............................. [RUN]
09:14:09  1 of 7 OK created sql view model analytics.stg_customers ...................... [OK in 1.12s]
09:14:09  2 of 7 ERROR creating sql view model analytics.stg_orders ..................... [ERROR in 1.31s]
09:14:09  3 of 7 SKIP relation analytics.orders ......................................... [SKIP]
09:14:10  Finished running 2 view models, 5 data tests in 0 hours 0 minutes and 4.87 seconds (4.87s).
09:14:10
09:14:10  Completed with 1 error, 0 partial successes, and 0 warnings:
09:14:10
09:14:10    Database Error in model stg_orders (models/staging/stg_orders.sql)
  [UNRESOLVED_COLUMN.WITH_SUGGESTION] A column, variable, or function parameter with name `order_dt` \
cannot be resolved. Did you mean one of the following? [`order_date`, `order_id`, `customer_id`]. \
SQLSTATE: 42703; line 12 pos 8
09:14:10    compiled code at target/run/jaffle_shop/models/staging/stg_orders.sql
09:14:10
09:14:10  Done. PASS=1 WARN=0 ERROR=1 SKIP=5 NO-OP=0 TOTAL=7
"""


def success_logs(command: str) -> str:
    """What a successful step's log tail looks like."""
    if command.startswith("dbt deps"):
        return (
            "09:13:51  Running with dbt=1.9.4\n"
            "09:13:52  Installing dbt-labs/dbt_utils\n"
            "09:13:53  Installed from version 1.3.0\n"
            "09:13:53  Up to date!\n"
        )
    return (
        "09:14:02  Running with dbt=1.9.4\n"
        "09:14:03  Registered adapter: databricks=1.9.7\n"
        "09:14:05  Found 7 models, 14 data tests, 3 seeds, 4 sources, 612 macros\n"
        "09:14:07  Concurrency: 4 threads (target='default')\n"
        f"09:14:07  Running `{command}`\n"
        "09:14:19  Finished running 7 view models, 14 data tests in 0 hours 0 minutes and 12.08 seconds"
        " (12.08s).\n"
        "09:14:19\n"
        "09:14:19  Completed successfully\n"
        "09:14:19\n"
        "09:14:19  Done. PASS=21 WARN=0 ERROR=0 SKIP=0 NO-OP=0 TOTAL=21\n"
    )


@dataclass(frozen=True)
class Scenario:
    """How the runs of one job progress.

    ``polls``: the run turns terminal on the Nth GET of the run; the GETs before walk
    queued -> starting -> running (the trigger's own answer is queued). ``seconds``: the run
    turns terminal once ``clock() - triggered_at >= seconds`` (queued for the first 10%,
    starting for the next 10%, then running). When ``seconds`` is given it drives and
    ``polls`` becomes None. ``never`` walks the same way and then stays running.
    For ``error``, ``failing_step`` (a command such as ``"dbt build"``) is the step that fails
    with ``logs``; the ones after it never run. ``steps`` are the job's commands.
    ``run_results=False``: the failing step fails before any node ran (a connection error), so
    it writes no run_results.json and dbt cannot retry it.
    ``running_code`` / ``final_code``: a status code this API version does not document, shown
    instead of 3 while the run is running / instead of 10, 20 or 30 once it is over (the
    `is_*` flags and `in_progress` still tell the truth), as a status dbt adds later would be.
    """

    outcome: Outcome = "success"
    polls: int | None = 3
    seconds: float | None = None
    failing_step: str = "dbt build"
    logs: str = DEFAULT_ERROR_LOGS
    steps: tuple[str, ...] = ("dbt deps", "dbt build")
    run_results: bool = True
    running_code: int | None = None
    final_code: int | None = None

    def __post_init__(self) -> None:
        if self.outcome not in ("success", "error", "cancelled", "never"):
            raise ValueError(f"unknown outcome {self.outcome!r}")
        if self.seconds is not None:
            if self.seconds < 0:
                raise ValueError("seconds must be >= 0")
            object.__setattr__(self, "polls", None)
        elif self.polls is None:
            raise ValueError("a Scenario needs polls or seconds")
        elif self.polls < 1:
            raise ValueError("polls must be >= 1")
        if not self.steps:
            raise ValueError("a Scenario needs at least one step")
        object.__setattr__(self, "steps", tuple(self.steps))


class ApiError(HttpError):
    """An error answered in dbt Cloud's envelope; ``data`` carries field errors for a 400."""

    def __init__(self, status: int, message: str, data: Any = None, headers: dict[str, str] | None = None):
        super().__init__(status, str(status), message, headers)
        self.data = data


@dataclass
class _Run:
    id: int
    job_id: int
    project_id: int
    environment_id: int
    trigger: dict[str, Any]
    scenario: Scenario
    steps: list[str]
    triggered_clock: float
    created_at: datetime
    git_sha: str
    git_branch: str
    dbt_version: str
    gets: int = 0
    status: int = QUEUED
    status_clock: dict[int, float] = field(default_factory=dict)  # status -> clock() when reached
    cancel_requested: bool = False
    status_message: str | None = None


def _copy(value: dict[str, Any]) -> dict[str, Any]:
    """A deep copy that is exactly what goes over the wire."""
    copied: dict[str, Any] = json.loads(json.dumps(value))
    return copied


def _duration(seconds: float) -> str:
    whole = max(0, int(seconds))
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def _humanized(seconds: float) -> str:
    whole = max(0, int(seconds))
    minutes, secs = divmod(whole, 60)
    if whole == 0:
        return "0 minutes"
    parts = []
    if minutes:
        parts.append(f"{minutes} minute{'s' if minutes != 1 else ''}")
    if secs:
        parts.append(f"{secs} second{'s' if secs != 1 else ''}")
    return ", ".join(parts)


def _run_time(value: datetime | None) -> str | None:
    # Runs print timestamps as Python's str(datetime) does (a space, microseconds, +00:00).
    return None if value is None else value.isoformat(sep=" ", timespec="microseconds")


def _job_time(value: datetime) -> str:
    return value.isoformat(timespec="microseconds")


def _parse_include(request: Request) -> set[str]:
    """`include_related` as clients send it: `["run_steps","job"]`, `run_steps,job` or repeated."""
    names: set[str] = set()
    for raw in request.query.get("include_related", []):
        text = raw.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError:
                value = text.strip("[]").replace("'", "").split(",")
            names.update(str(item).strip() for item in value)
        else:
            names.update(part.strip() for part in text.split(","))
    return {name for name in names if name}


def _version(text: str) -> tuple[int, int]:
    """(major, minor) of a dbt version such as `1.5.0-latest`; a release track (`latest`,
    `versionless`, `compatible`, ...) counts as current."""
    parts = text.split("-")[0].split(".")
    if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
        return int(parts[0]), int(parts[1])
    return (99, 0)


def _verb(command: str) -> str:
    """`dbt build --select x` -> `build`; `dbt docs generate` -> `docs generate`."""
    words = [word for word in command.split() if not word.startswith("-")][1:]
    if words[:1] == ["docs"] or words[:1] == ["source"]:
        return " ".join(words[:2])
    return words[0] if words else ""


def _by_field_then_id(name: str) -> Callable[[dict[str, Any]], Any]:
    return lambda job: (job[name], job["id"])


def _int_list(values: list[str], name: str) -> list[int]:
    """`status__in=[1,2,3]`, `status__in=1,2,3` or the parameter repeated."""
    result: list[int] = []
    for raw in values:
        for part in raw.strip().strip("[]").split(","):
            part = part.strip().strip("'\"")
            if not part:
                continue
            if not part.lstrip("-").isdigit():
                raise ApiError(400, INVALID_REQUEST_MESSAGE, {name: ["A valid integer is required."]})
            result.append(int(part))
    return result


class DbtCloudEmulator(Emulator):
    """dbt Cloud's Administrative API v2 for one account, with scripted job runs."""

    def __init__(
        self,
        port: int = 0,
        token: str = "dbtc_emulator_token",  # noqa: S107 - a test credential
        account_id: int = 70403,
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
        latency_ms: float = 0.0,
    ) -> None:
        super().__init__(port=port, seed=seed, latency_ms=latency_ms)
        self.token = token
        self.account_id = account_id
        self.seed = seed
        self._default_clock = clock
        self.clock = clock
        self._random = random.Random(seed)
        self._jobs: dict[int, dict[str, Any]] = {}
        self._scenarios: dict[int, Scenario] = {}
        self._runs: dict[int, _Run] = {}
        self._next_run_id = 40_000_000 + random.Random(seed).randrange(1_000_000)
        self._created_at = datetime(2025, 3, 3, 9, 0, tzinfo=timezone.utc)
        self.cancel_requests: list[int] = []
        #: dbt documents no Retry-After: 429/503 carry one (the fault's `retry_after`) only when set.
        self.retry_after_header = False
        self._register_routes()

    # -- test API --------------------------------------------------------------------
    @property
    def clock(self) -> Callable[[], float]:
        """Drives `seconds` scenarios and run timestamps; tests share a fake clock with the runner."""
        return self._clock

    @clock.setter
    def clock(self, clock: Callable[[], float]) -> None:
        with self.state_lock:
            self._clock = clock
            # Anchor the new clock to the wall time, so timestamps advance with it.
            self._clock_origin = clock()
            self._wall_origin = datetime.now(timezone.utc)

    def reset(self) -> None:
        """No jobs, no runs, no faults, an empty request log, the constructor's clock.

        Run ids keep increasing across resets.
        """
        with self.state_lock:
            self._jobs.clear()
            self._scenarios.clear()
            self._runs.clear()
            self.cancel_requests.clear()
            self.retry_after_header = False
            self._random = random.Random(self.seed)
            self.clock = self._default_clock
        self.faults.clear()
        self.faults.seed(self.seed)
        self.reset_latency()
        self.reset_log()

    def add_job(
        self,
        job_id: int,
        *,
        name: str = "Daily dbt build",
        project_id: int = 1,
        environment_id: int = 1,
        scenario: Scenario | None = None,
    ) -> dict[str, Any]:
        """Create (or replace) a job; returns it as `GET .../jobs/{id}/` would."""
        scenario = scenario or Scenario()
        with self.state_lock:
            created = self._created_at + timedelta(minutes=len(self._jobs))
            self._jobs[job_id] = {
                "id": job_id,
                "account_id": self.account_id,
                "project_id": project_id,
                "environment_id": environment_id,
                "name": name,
                "dbt_version": None,
                "raw_dbt_version": DBT_VERSION,
                "deferring_environment_id": None,
                "deferring_job_definition_id": None,
                "description": "",
                "execute_steps": list(scenario.steps),
                "execution": {"timeout_seconds": 0},
                "generate_docs": False,
                "is_deferrable": False,
                "job_type": "scheduled",
                "lifecycle_webhooks": False,
                "lifecycle_webhooks_url": None,
                "run_compare_changes": False,
                "compare_changes_flags": "--select state:modified",
                "run_failure_count": 0,
                "run_generate_sources": False,
                "run_lint": False,
                "errors_on_lint_failure": True,
                "cost_optimization_features": [],
                "settings": {"threads": 4, "target_name": "default"},
                "state": 1,
                "triggers_on_draft_pr": False,
                "triggers": {
                    "github_webhook": False,
                    "schedule": False,
                    "git_provider_webhook": False,
                    "on_merge": False,
                    "custom_branch_only": False,
                },
                "job_completion_trigger_condition": None,
                "created_at": _job_time(created),
                "updated_at": _job_time(created),
                "account": None,
                "project": None,
                "environment": None,
                "fusion_readiness": None,
                "schedule": {
                    "cron": "0 6 * * *",
                    "date": {"type": "every_day"},
                    "time": {"type": "at_exact_hours", "hours": [6]},
                },
                "generate_sources": False,
                "cron_humanized": "At 06:00 AM",
                "next_run": None,
                "next_run_humanized": None,
            }
            self._scenarios[job_id] = scenario
            return _copy(self._jobs[job_id])

    def set_scenario(self, job_id: int, scenario: Scenario) -> None:
        """The scenario for the job's *future* runs (a run keeps the one it was triggered with)."""
        with self.state_lock:
            if job_id not in self._jobs:
                raise KeyError(f"no job {job_id}; add_job it first")
            self._scenarios[job_id] = scenario
            self._jobs[job_id]["execute_steps"] = list(scenario.steps)

    @property
    def runs(self) -> dict[int, dict[str, Any]]:
        """run id -> the run as the API returns it with `include_related=["trigger","run_steps"]`.

        Looking does not count as a poll and does not apply a pending cancel.
        """
        with self.state_lock:
            result = {}
            for run in self._runs.values():
                self._advance_by_clock(run)
                result[run.id] = self._render_run(run, {"trigger", "run_steps"})
            return result

    def runs_of(self, job_id: int) -> list[dict[str, Any]]:
        return [run for run in self.runs.values() if run["job_definition_id"] == job_id]

    def job_url(self, job_id: int) -> str:
        project_id = self._jobs[job_id]["project_id"] if job_id in self._jobs else 1
        return f"{self.url}/deploy/{self.account_id}/projects/{project_id}/jobs/{job_id}"

    # -- protocol --------------------------------------------------------------------
    def authenticate(self, request: Request) -> None:
        header = request.headers.get("authorization", "").strip()
        if not header:
            raise ApiError(401, "Authentication credentials were not provided.")
        scheme, _, credential = header.partition(" ")
        if scheme.lower() not in ("token", "bearer") or credential.strip() != self.token:
            raise ApiError(401, "Invalid token.")

    def error_response(self, error: HttpError) -> Response:
        data = error.data if isinstance(error, ApiError) else None
        message = error.message
        if not isinstance(error, ApiError):
            # Routing and injected faults from the base: say it the way dbt Cloud does.
            message = {
                404: NOT_FOUND_MESSAGE,
                405: f'Method "{error.message.split(" ")[0]}" not allowed.',
                429: "Too many requests. Please slow down and try again later.",
                500: "Internal server error.",
                503: "Service unavailable. Please try again later.",
            }.get(error.status, error.message)
        body = {
            "status": {
                "code": error.status,
                "is_success": False,
                "user_message": message,
                # The real 401 carries a null developer_message; other errors an empty one.
                "developer_message": None if error.status == 401 else "",
            },
            "data": data,
        }
        headers = dict(error.headers)
        if not self.retry_after_header:
            headers.pop("Retry-After", None)
        return Response(error.status, body, headers)

    def dispatch(self, request: Request) -> Response:
        """A known path without its trailing slash is redirected (308, method and body kept) to
        the slashed one, before authentication, as the real API does; anything else routes."""
        if not request.path.endswith("/"):
            slashed = request.path + "/"
            if any(pattern.fullmatch(slashed) for _, pattern, _ in self._routes):
                query = urlencode(request.query, doseq=True)
                location = slashed + (f"?{query}" if query else "")
                return Response(308, b"", {"Location": location, "Content-Type": "text/html; charset=utf-8"})
        return super().dispatch(request)

    @staticmethod
    def _ok(data: Any, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "status": {"code": 200, "is_success": True, "user_message": "Success!", "developer_message": ""},
            "data": data,
        }
        if extra is not None:
            body["extra"] = extra
        return body

    def _register_routes(self) -> None:
        account = r"/api/v2/accounts/(?P<account>\d+)"
        self.route("GET", account + "/", self._get_account)
        self.route("GET", account + "/jobs/", self._list_jobs)
        self.route("GET", account + r"/jobs/(?P<job>\d+)/", self._get_job)
        self.route("POST", account + r"/jobs/(?P<job>\d+)/run/", self._trigger)
        self.route("POST", account + r"/jobs/(?P<job>\d+)/rerun/", self._rerun_job)
        self.route("GET", account + "/runs/", self._list_runs)
        self.route("GET", account + r"/runs/(?P<run>\d+)/", self._get_run)
        self.route("POST", account + r"/runs/(?P<run>\d+)/cancel/", self._cancel)
        self.route("GET", account + r"/runs/(?P<run>\d+)/retry/", self._retry_details)
        self.route("POST", account + r"/runs/(?P<run>\d+)/retry/", self._retry)

    # -- lookups ---------------------------------------------------------------------
    def _check_account(self, request: Request) -> None:
        # A token only sees its own account; another id is hidden like any missing resource.
        if int(request.params["account"]) != self.account_id:
            raise ApiError(404, NOT_FOUND_MESSAGE)

    def _job(self, request: Request) -> dict[str, Any]:
        self._check_account(request)
        job = self._jobs.get(int(request.params["job"]))
        if job is None:
            raise ApiError(404, NOT_FOUND_MESSAGE)
        return job

    def _run(self, request: Request) -> _Run:
        self._check_account(request)
        run = self._runs.get(int(request.params["run"]))
        if run is None:
            raise ApiError(404, NOT_FOUND_MESSAGE)
        return run

    def _page(self, request: Request) -> tuple[int, int]:
        errors: dict[str, list[str]] = {}
        values = {}
        for name, default in (("limit", MAX_PAGE), ("offset", 0)):
            raw = request.arg(name)
            if raw is None or raw == "":
                values[name] = default
            elif raw.isdigit():
                values[name] = int(raw)
            else:
                errors[name] = ["A valid integer is required."]
        if errors:
            raise ApiError(400, INVALID_REQUEST_MESSAGE, errors)
        # Like DRF's LimitOffsetPagination with max_limit=100: a larger limit is clamped.
        limit = min(values["limit"], MAX_PAGE) or MAX_PAGE
        return limit, values["offset"]

    def _ordered_page(
        self,
        request: Request,
        items: list[_Item],
        sort_keys: dict[str, Callable[[_Item], Any]],
        filters: dict[str, Any],
        limit: int,
        offset: int,
        render: Callable[[_Item, set[str]], dict[str, Any]],
    ) -> dict[str, Any]:
        """A list answer: ordered by `order_by` (a leading "-" reverses), one page, DRF's `extra`."""
        order_by = request.arg("order_by") or "id"
        field_name = order_by.lstrip("-")
        if field_name not in sort_keys:
            raise ApiError(
                400, INVALID_REQUEST_MESSAGE, {"order_by": [f"Invalid ordering field: {order_by}"]}
            )
        items.sort(key=sort_keys[field_name], reverse=order_by.startswith("-"))
        page = items[offset : offset + limit]
        include = _parse_include(request)
        extra = {
            "filters": filters,
            "order_by": order_by,
            "pagination": {"count": len(page), "total_count": len(items)},
        }
        return self._ok([render(item, include) for item in page], extra)

    def _int_filter(self, request: Request, name: str) -> int | None:
        raw = request.arg(name)
        if raw is None or raw == "":
            return None
        if not raw.strip().isdigit():
            raise ApiError(400, INVALID_REQUEST_MESSAGE, {name: ["A valid integer is required."]})
        return int(raw)

    # -- handlers: account and jobs --------------------------------------------------
    def _get_account(self, request: Request) -> dict[str, Any]:
        self._check_account(request)
        created = _job_time(self._created_at - timedelta(days=400))
        return self._ok(
            {
                "id": self.account_id,
                "name": "Emulated Analytics",
                "state": 1,
                "plan": "enterprise",
                "run_slots": 5,
                "developer_seats": 10,
                "it_seats": 2,
                "explorer_seats": 0,
                "analyst_seats": 0,
                "read_only_seats": 5,
                "locked": False,
                "lock_reason": None,
                "lock_cause": None,
                "unlocked_at": None,
                "pending_cancel": False,
                "billing_email_address": None,
                "pod_memory_request_mebibytes": 600,
                "develop_pod_memory_request_mebibytes": 0,
                "run_duration_limit_seconds": 86400,
                "queue_limit": 50,
                "enterprise_login_slug": None,
                "business_critical": False,
                "starter_repo_url": None,
                "git_auth_level": "personal",
                "identifier": f"act_emulated{self.account_id}",
                "trial_end_date": None,
                "static_subdomain": f"em{self.account_id}",
                "vanity_subdomain": None,
                "run_locked_until": None,
                "docs_job_id": None,
                "freshness_job_id": None,
                "copilot_locked_until": None,
                "agent_credit_locked": False,
                "account_migration_events": [],
                "groups": [],
                "created_at": created,
                "updated_at": created,
            }
        )

    def _get_job(self, request: Request) -> dict[str, Any]:
        job = self._job(request)
        return self._ok(self._render_job(job, _parse_include(request)))

    def _render_job(self, job: dict[str, Any], include: set[str]) -> dict[str, Any]:
        rendered = _copy(job)
        if "environment" in include:
            rendered["environment"] = self._environment(job["environment_id"], job["project_id"])
        if "most_recent_run" in include or "most_recent_completed_run" in include:
            runs = sorted((r for r in self._runs.values() if r.job_id == job["id"]), key=lambda r: r.id)
            if "most_recent_run" in include:
                rendered["most_recent_run"] = self._render_run(runs[-1], set()) if runs else None
            if "most_recent_completed_run" in include:
                done = [r for r in runs if r.status in TERMINAL]
                rendered["most_recent_completed_run"] = self._render_run(done[-1], set()) if done else None
        return rendered

    def _environment(self, environment_id: int, project_id: int) -> dict[str, Any]:
        return {
            "id": environment_id,
            "account_id": self.account_id,
            "project_id": project_id,
            "name": "Production",
            "type": "deployment",
            "deployment_type": "production",
            "dbt_version": DBT_VERSION,
            "use_custom_branch": False,
            "custom_branch": None,
            "supports_docs": False,
            "state": 1,
        }

    def _list_jobs(self, request: Request) -> dict[str, Any]:
        self._check_account(request)
        limit, offset = self._page(request)
        filters: dict[str, Any] = {"account_id": self.account_id, "limit": limit, "offset": offset}
        jobs = list(self._jobs.values())
        for name in ("project_id", "environment_id", "pk"):
            value = self._int_filter(request, name)
            if value is not None:
                filters[name] = value
                key = "id" if name == "pk" else name
                jobs = [job for job in jobs if job[key] == value]
        contains = request.arg("name__icontains")
        if contains:
            filters["name__icontains"] = contains
            jobs = [job for job in jobs if contains.lower() in job["name"].lower()]
        sort_keys = {name: _by_field_then_id(name) for name in JOB_ORDERING_FIELDS}
        return self._ordered_page(request, jobs, sort_keys, filters, limit, offset, self._render_job)

    # -- handlers: triggering --------------------------------------------------------
    def _trigger(self, request: Request) -> dict[str, Any]:
        job = self._job(request)
        body = request.json()
        trigger = self._validate_trigger(body)
        run = self._create_run(job, trigger)
        return self._ok(self._render_run(run, {"trigger", "job"}))

    def _validate_trigger(self, body: dict[str, Any]) -> dict[str, Any]:
        """Validate like the real serializer (TriggerRunRequestRequest), DRF's messages and all."""
        errors: dict[str, list[str]] = {}
        cause = body.get("cause")
        if "cause" not in body or cause is None:
            errors["cause"] = [
                "This field is required." if "cause" not in body else "This field may not be null."
            ]
        elif not isinstance(cause, str):
            errors["cause"] = ["Not a valid string."]
        elif not cause.strip():
            errors["cause"] = ["This field may not be blank."]
        elif len(cause) > 255:
            errors["cause"] = ["Ensure this field has no more than 255 characters."]
        strings = ("git_sha", "git_branch", "schema_override", "dbt_version_override", "target_name_override")
        integers = (
            "threads_override",
            "timeout_seconds_override",
            "azure_pull_request_id",
            "github_pull_request_id",
            "gitlab_merge_request_id",
            "non_native_pull_request_id",
        )
        for name in strings:
            value = body.get(name)
            if value is None:
                continue
            if not isinstance(value, str):
                errors[name] = ["Not a valid string."]
            elif not value.strip():
                errors[name] = ["This field may not be blank."]
        for name in integers:
            value = body.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                errors[name] = ["A valid integer is required."]
        docs = body.get("generate_docs_override")
        if docs is not None and not isinstance(docs, bool):
            errors["generate_docs_override"] = ["Must be a valid boolean."]
        steps = body.get("steps_override")
        if steps is not None:
            if not isinstance(steps, list):
                errors["steps_override"] = [
                    f'Expected a list of items but got type "{type(steps).__name__}".'
                ]
            elif not all(isinstance(step, str) and step.strip() for step in steps):
                errors["steps_override"] = ["This field may not be blank."]
        if errors:
            raise ApiError(400, INVALID_REQUEST_MESSAGE, errors)
        trigger: dict[str, Any] = {"cause": cause}
        for name in (*strings, *integers, "generate_docs_override", "steps_override"):
            trigger[name] = body.get(name)
        return trigger

    def _create_run(
        self,
        job: dict[str, Any],
        given: dict[str, Any],
        *,
        cause_category: str = "api",
        steps: list[str] | None = None,
    ) -> _Run:
        run_id = self._next_run_id
        self._next_run_id += 1
        now = self.clock()
        trigger = {
            "id": run_id + 700_000,
            "cause": given["cause"],
            "job_definition_id": job["id"],
            "git_branch": given.get("git_branch"),
            "git_sha": given.get("git_sha"),
            "azure_pull_request_id": given.get("azure_pull_request_id"),
            "github_pull_request_id": given.get("github_pull_request_id"),
            "gitlab_merge_request_id": given.get("gitlab_merge_request_id"),
            "non_native_pull_request_id": given.get("non_native_pull_request_id"),
            "schema_override": given.get("schema_override"),
            "dbt_version_override": given.get("dbt_version_override"),
            "threads_override": given.get("threads_override"),
            "target_name_override": given.get("target_name_override"),
            "generate_docs_override": given.get("generate_docs_override"),
            "timeout_seconds_override": given.get("timeout_seconds_override"),
            "steps_override": given.get("steps_override"),
            "cause_category": cause_category,
            "created_at": _run_time(self._wall(now)),
        }
        run = _Run(
            id=run_id,
            job_id=job["id"],
            project_id=job["project_id"],
            environment_id=job["environment_id"],
            trigger=trigger,
            scenario=self._scenarios[job["id"]],
            steps=list(steps or given.get("steps_override") or job["execute_steps"]),
            triggered_clock=now,
            created_at=self._wall(now),
            git_sha=given.get("git_sha") or f"{self._random.getrandbits(160):040x}",
            git_branch=given.get("git_branch") or "main",
            dbt_version=given.get("dbt_version_override") or DBT_VERSION,
        )
        run.status_clock[QUEUED] = now
        self._runs[run_id] = run
        return run

    def _rerun_job(self, request: Request) -> dict[str, Any]:
        """Retry the job's latest run from its failure if it failed, else trigger a new run (the
        spec's words); a failed run that cannot be retried is refused with its reason."""
        job = self._job(request)
        runs = sorted((r for r in self._runs.values() if r.job_id == job["id"]), key=lambda r: r.id)
        last = runs[-1] if runs else None
        if last is not None:
            self._advance_by_clock(last)
        if last is None or last.status != ERROR:
            run = self._create_run(job, {"cause": "Triggered via API"}, cause_category="rerun")
        else:
            problem = self._retry_problem(last)
            if problem is not None:
                raise ApiError(400, f"This run cannot be retried: {problem}.")
            run = self._retry_run(job, last)
        return self._ok(self._render_run(run, {"trigger", "job"}))

    def _retry_run(self, job: dict[str, Any], failed: _Run) -> _Run:
        # Same commit, branch and dbt version; only the failed step and those after it run.
        remaining = failed.steps[self._failing_index(failed) :]
        given = {
            "cause": f"Rerun from failed step of run #{failed.id}",
            "git_sha": failed.git_sha,
            "git_branch": failed.git_branch,
            "dbt_version_override": failed.dbt_version if failed.dbt_version != DBT_VERSION else None,
        }
        return self._create_run(job, given, cause_category="rerun", steps=remaining)

    def _retry_problem(self, run: _Run) -> str | None:
        """Why `dbt retry` cannot resume this run (RetryNotSupportedReasonEnum), or None."""
        if run.status != ERROR:
            return "RETRY_NOT_FAILED_RUN"
        latest = max(r.id for r in self._runs.values() if r.job_id == run.job_id)
        if latest != run.id:
            return "RETRY_NOT_LATEST_RUN"
        if _version(run.dbt_version) < RETRY_MIN_VERSION:
            return "RETRY_UNSUPPORTED_VERSION"
        if _verb(run.steps[self._failing_index(run)]) not in RETRY_COMMANDS:
            return "RETRY_UNSUPPORTED_CMD"
        if not run.scenario.run_results:
            return "RETRY_NO_RUN_RESULTS"
        return None

    def _retryable_run(self, request: Request) -> _Run:
        """The run of the path, brought up to the clock; a 400 unless it is the job's latest, failed run."""
        run = self._run(request)
        self._advance_by_clock(run)
        problem = self._retry_problem(run)
        if problem is not None:
            raise ApiError(400, f"This run cannot be retried: {problem}.")
        return run

    def _retry(self, request: Request) -> dict[str, Any]:
        run = self._retryable_run(request)
        job = self._jobs.get(run.job_id)
        if job is None:
            raise ApiError(404, NOT_FOUND_MESSAGE)
        new_run = self._retry_run(job, run)
        return self._ok(self._render_run(new_run, {"trigger", "job"}))

    def _retry_details(self, request: Request) -> dict[str, Any]:
        run = self._retryable_run(request)
        index = self._failing_index(run)
        return self._ok({"failed_step": run.steps[index], "skipped_steps": run.steps[index + 1 :]})

    # -- handlers: runs --------------------------------------------------------------
    def _get_run(self, request: Request) -> dict[str, Any]:
        run = self._run(request)
        run.gets += 1
        self._advance(run, polled=True)
        return self._ok(self._render_run(run, _parse_include(request)))

    def _list_runs(self, request: Request) -> dict[str, Any]:
        self._check_account(request)
        limit, offset = self._page(request)
        filters: dict[str, Any] = {"account_id": self.account_id, "limit": limit, "offset": offset}
        runs = list(self._runs.values())
        for run in runs:
            self._advance(run, polled=False)
        for name, key in (
            ("job_definition_id", "job_id"),
            ("project_id", "project_id"),
            ("environment_id", "environment_id"),
            ("status", "status"),
            ("pk", "id"),
            ("id__gt", None),
        ):
            value = self._int_filter(request, name)
            if value is None:
                continue
            filters[name] = value
            if key is None:
                runs = [run for run in runs if run.id > value]
            else:
                runs = [run for run in runs if getattr(run, key) == value]
        for name, key in (("status__in", "status"), ("pk__in", "id"), ("project_id__in", "project_id")):
            if name in request.query:
                wanted = _int_list(request.query[name], name)
                filters[name] = wanted
                runs = [run for run in runs if getattr(run, key) in wanted]
        sort_keys: dict[str, Callable[[_Run], Any]] = {
            "id": lambda run: run.id,
            "created_at": lambda run: (run.triggered_clock, run.id),
            "finished_at": lambda run: (self._finished_clock(run) or float("inf"), run.id),
        }
        return self._ordered_page(request, runs, sort_keys, filters, limit, offset, self._render_run)

    def _cancel(self, request: Request) -> dict[str, Any]:
        run = self._run(request)
        self.cancel_requests.append(run.id)
        self._advance_by_clock(run)
        if run.status == QUEUED:
            # Never started: cancelled on the spot, and the answer says so (status 30, finished_at).
            run.status_message = CANCELLED_MESSAGE
            self._set_status(run, CANCELLED, self.clock())
        elif run.status not in TERMINAL:
            # Starting or running: it stops a moment later, seen on the next look.
            run.cancel_requested = True
        return self._ok(self._render_run(run, set()))

    # -- the run life cycle ----------------------------------------------------------
    def _wall(self, at_clock: float) -> datetime:
        return self._wall_origin + timedelta(seconds=at_clock - self._clock_origin)

    def _set_status(self, run: _Run, status: int, at_clock: float) -> None:
        # Pass through the intermediate states so every timestamp gets a value.
        for step in (STARTING, RUNNING):
            if (
                status >= step
                and step not in run.status_clock
                and not (status == CANCELLED and run.status < step)
            ):
                run.status_clock[step] = at_clock
        run.status = status
        run.status_clock.setdefault(status, at_clock)

    def _terminal_status(self, scenario: Scenario) -> int | None:
        return {"success": SUCCESS, "error": ERROR, "cancelled": CANCELLED, "never": None}[scenario.outcome]

    def _finish(self, run: _Run, at_clock: float) -> None:
        status = self._terminal_status(run.scenario)
        assert status is not None
        if status == CANCELLED:
            run.status_message = CANCELLED_MESSAGE
        self._set_status(run, status, at_clock)

    def _advance_by_clock(self, run: _Run) -> None:
        """Progress that depends only on the clock (a `seconds` scenario)."""
        seconds = run.scenario.seconds
        if run.status in TERMINAL or seconds is None:
            return
        now = self.clock()
        elapsed = now - run.triggered_clock
        start = run.triggered_clock
        if self._terminal_status(run.scenario) is not None and elapsed >= seconds:
            self._finish(run, start + seconds)
        elif elapsed >= 0.2 * seconds:
            self._set_status(run, RUNNING, start + 0.2 * seconds)
        elif elapsed >= 0.1 * seconds:
            self._set_status(run, STARTING, start + 0.1 * seconds)

    def _advance(self, run: _Run, *, polled: bool) -> None:
        if run.status in TERMINAL:
            return
        now = self.clock()
        if run.cancel_requested:
            run.status_message = CANCELLED_MESSAGE
            self._set_status(run, CANCELLED, now)
            return
        if run.scenario.seconds is not None:
            self._advance_by_clock(run)
            return
        if not polled:
            return
        polls = run.scenario.polls or 1
        if run.gets >= polls and self._terminal_status(run.scenario) is not None:
            self._finish(run, now)
            return
        before_terminal = polls - 1
        if before_terminal >= 3:
            walk = [QUEUED, STARTING] + [RUNNING] * (before_terminal - 2)
        else:
            walk = [STARTING, RUNNING][-max(before_terminal, 1) :]
        status = walk[run.gets - 1] if run.gets <= len(walk) else RUNNING
        if status > run.status:
            self._set_status(run, status, now)

    def _failing_index(self, run: _Run) -> int:
        """Index in run.steps of the command that fails (the last one if it is not there)."""
        wanted = run.scenario.failing_step.strip()
        for index, command in enumerate(run.steps):
            if command.strip() == wanted or command.strip().startswith(wanted + " "):
                return index
        return len(run.steps) - 1

    def _finished_clock(self, run: _Run) -> float | None:
        return run.status_clock.get(run.status) if run.status in TERMINAL else None

    # -- rendering -------------------------------------------------------------------
    def _render_steps(self, run: _Run) -> list[dict[str, Any]]:
        if run.status in (QUEUED, STARTING) or (run.status == CANCELLED and RUNNING not in run.status_clock):
            return []
        started = run.status_clock.get(RUNNING, run.triggered_clock)
        ended = self._finished_clock(run)
        commands = run.steps
        if run.status == ERROR:
            commands = run.steps[: self._failing_index(run) + 1]
        elif run.status in (RUNNING, CANCELLED):
            commands = run.steps[:1]
        entries: list[tuple[str, int, str]] = [(name, SUCCESS, f"{name}: done\n") for name in SYSTEM_STEPS]
        for position, command in enumerate(commands):
            last = position == len(commands) - 1
            status, logs = SUCCESS, success_logs(command)
            if last and run.status == ERROR:
                status, logs = ERROR, run.scenario.logs
            elif last and run.status == RUNNING:
                status, logs = RUNNING, "09:14:02  Running with dbt=1.9.4\n"
            elif last and run.status == CANCELLED:
                status, logs = CANCELLED, "09:14:02  Running with dbt=1.9.4\n" + CANCELLED_MESSAGE + "\n"
            entries.append((f"Invoke dbt with `{command}`", status, logs))
        steps = []
        for index, (name, status, logs) in enumerate(entries, start=1):
            step_start = self._wall(started)
            step_end = self._wall(ended) if ended is not None and status in TERMINAL else None
            length = ((step_end or step_start) - step_start).total_seconds()
            steps.append(
                {
                    "id": run.id * 10 + index,
                    "run_id": run.id,
                    "account_id": self.account_id,
                    "index": index,
                    "status": status,
                    "name": name,
                    "logs": logs,
                    "debug_logs": logs,
                    "log_path": None,
                    "debug_log_path": None,
                    "log_location": "db",
                    "truncated_debug_logs": logs,
                    "created_at": _run_time(step_start),
                    "updated_at": _run_time(step_end or step_start),
                    "started_at": _run_time(step_start),
                    "finished_at": _run_time(step_end),
                    "status_color": STEP_COLOR.get(status, "#047377"),
                    "status_humanized": STATUS_HUMANIZED[status],
                    "duration": _duration(length),
                    "duration_humanized": _humanized(length),
                }
            )
        return steps

    def _render_run(self, run: _Run, include: set[str]) -> dict[str, Any]:
        now = self.clock()
        status = run.status
        created = run.status_clock[QUEUED]
        dequeued = run.status_clock.get(STARTING)
        started = run.status_clock.get(RUNNING)
        finished = self._finished_clock(run)
        until = finished if finished is not None else now
        run_start = started if started is not None else until
        problem = self._retry_problem(run) if run.job_id in self._jobs else "RETRY_NOT_FAILED_RUN"
        job = self._jobs.get(run.job_id)
        href = f"{self.url}/deploy/{self.account_id}/projects/{run.project_id}/runs/{run.id}/"
        data: dict[str, Any] = {
            "id": run.id,
            "trigger_id": run.trigger["id"],
            "account_id": self.account_id,
            "environment_id": run.environment_id,
            "project_id": run.project_id,
            "job_definition_id": run.job_id,
            "status": self._code(run),
            "dbt_version": run.dbt_version,
            "git_branch": run.git_branch if started is not None else None,
            "git_sha": run.git_sha if started is not None else None,
            "status_message": run.status_message,
            "owner_thread_id": None,
            "executed_by_thread_id": f"dbt-run-{run.id}-emu0x" if dequeued is not None else None,
            "deferring_run_id": None,
            "artifacts_saved": status in (SUCCESS, ERROR),
            "artifact_s3_path": f"prod/runs/{run.id}/artifacts/target"
            if status in (SUCCESS, ERROR)
            else None,
            "has_docs_generated": False,
            "has_sources_generated": False,
            "notifications_sent": status in TERMINAL and started is not None,
            "blocked_by": [],
            "scribe_enabled": True,
            "created_at": _run_time(self._wall(created)),
            "updated_at": _run_time(self._wall(max(run.status_clock.values()))),
            "dequeued_at": _run_time(self._wall(dequeued)) if dequeued is not None else None,
            "started_at": _run_time(self._wall(started)) if started is not None else None,
            "finished_at": _run_time(self._wall(finished)) if finished is not None else None,
            "last_checked_at": None,
            "last_heartbeat_at": None,
            "should_start_at": None,
            "trigger": dict(run.trigger) if "trigger" in include else None,
            "job": self._internal_job(job) if "job" in include and job is not None else None,
            "environment": (
                self._environment(run.environment_id, run.project_id) if "environment" in include else None
            ),
            "run_steps": self._render_steps(run) if "run_steps" in include else [],
            "status_humanized": STATUS_HUMANIZED[status],
            "in_progress": status not in TERMINAL,
            "is_complete": status in TERMINAL,
            "is_success": status == SUCCESS,
            "is_error": status == ERROR,
            "is_cancelled": status == CANCELLED,
            "is_running": status == RUNNING,
            "href": href,
            "duration": _duration(until - created),
            "queued_duration": _duration(run_start - created),
            "run_duration": _duration(until - run_start),
            "duration_humanized": _humanized(until - created),
            "queued_duration_humanized": _humanized(run_start - created),
            "run_duration_humanized": _humanized(until - run_start),
            "created_at_humanized": f"{_humanized(now - created)} ago",
            "finished_at_humanized": f"{_humanized(now - finished)} ago" if finished is not None else None,
            "retrying_run_id": None,  # in the spec, meaning undocumented: never filled in
            "can_retry": problem is None,
            "retry_not_supported_reason": problem,
            "job_id": run.job_id,
            "used_repo_cache": None,
            "audit": None,
        }
        return data

    @staticmethod
    def _code(run: _Run) -> int:
        """The status code on the wire: the scenario may put an undocumented one in its place."""
        if run.status == RUNNING and run.scenario.running_code is not None:
            return run.scenario.running_code
        if run.status in TERMINAL and run.scenario.final_code is not None:
            return run.scenario.final_code
        return run.status

    @staticmethod
    def _internal_job(job: dict[str, Any]) -> dict[str, Any]:
        """The job as it is embedded in a run: its schedule in the flat InternalJobDefinition form."""
        fields = [
            "id",
            "account_id",
            "project_id",
            "environment_id",
            "name",
            "dbt_version",
            "deferring_environment_id",
            "deferring_job_definition_id",
            "description",
            "execute_steps",
            "execution",
            "generate_docs",
            "job_type",
            "lifecycle_webhooks",
            "run_compare_changes",
            "compare_changes_flags",
            "run_generate_sources",
            "run_lint",
            "errors_on_lint_failure",
            "cost_optimization_features",
            "settings",
            "state",
            "triggers_on_draft_pr",
            "triggers",
        ]
        embedded = {name: json.loads(json.dumps(job[name])) for name in fields}
        schedule = job["schedule"]
        embedded["schedule"] = {
            "cron": schedule["cron"],
            "date": schedule["date"]["type"],
            "time": schedule["time"]["type"],
        }
        return embedded
