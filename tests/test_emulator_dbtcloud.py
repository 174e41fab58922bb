"""The dbt Cloud emulator over real HTTP: every endpoint, scenario, error and fault.

Every response the tests receive goes through `call`, which validates it against dbt Labs'
OpenAPI spec (or the real error envelope), so no response kind escapes the check.
"""

from __future__ import annotations

import http.client
import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from tests.conftest import DBT_ACCOUNT_ID, DBT_CLOUD_TOKEN
from tests.emulators.dbtcloud import DbtCloudEmulator, Scenario
from tests.emulators.openapi import load_spec, validate_error_body, validate_response

ACCOUNT = f"/api/v2/accounts/{DBT_ACCOUNT_ID}"
NOT_FOUND = "The requested resource was not found. Please check that you have the proper permissions."


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: Any

    @property
    def data(self) -> Any:
        return self.body["data"]


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def call(
    emu: DbtCloudEmulator,
    method: str,
    path: str,
    body: Any = None,
    *,
    query: dict[str, Any] | list[tuple[str, str]] | None = None,
    auth: str | None = f"Token {DBT_CLOUD_TOKEN}",
    raw: bytes | None = None,
    validate: bool = True,
) -> Reply:
    url = emu.url + path + (f"?{urlencode(query)}" if query else "")
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if auth is not None:
        request.add_header("Authorization", auth)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            reply = Reply(response.status, dict(response.headers), json.loads(response.read()))
    except urllib.error.HTTPError as error:
        reply = Reply(error.code, dict(error.headers), json.loads(error.read()))
    if validate:
        validate_response(method, path, reply.status, reply.body)
    return reply


def trigger(emu: DbtCloudEmulator, job_id: int, **body: Any) -> dict[str, Any]:
    reply = call(emu, "POST", f"{ACCOUNT}/jobs/{job_id}/run/", {"cause": "Triggered by a test", **body})
    assert reply.status == 200, reply.body
    return dict(reply.data)


def get_run(emu: DbtCloudEmulator, run_id: int, include: list[str] | None = None) -> dict[str, Any]:
    query = {"include_related": json.dumps(include)} if include else None
    reply = call(emu, "GET", f"{ACCOUNT}/runs/{run_id}/", query=query)
    assert reply.status == 200, reply.body
    return dict(reply.data)


def poll_statuses(emu: DbtCloudEmulator, run_id: int, times: int) -> list[int]:
    return [get_run(emu, run_id)["status"] for _ in range(times)]


# --- the validator itself can fail ------------------------------------------------------


def test_the_spec_validator_rejects_wrong_shapes() -> None:
    ok = {"code": 200, "is_success": True, "user_message": "Success!", "developer_message": ""}
    with pytest.raises(AssertionError, match="status"):
        validate_response("GET", f"{ACCOUNT}/runs/1/", 200, {"data": {"created_at": "x", "updated_at": "x"}})
    with pytest.raises(AssertionError, match="not of type"):
        body = {"status": ok, "data": {"id": 1, "status": "10", "created_at": "x", "updated_at": "x"}}
        validate_response("GET", f"{ACCOUNT}/runs/1/", 200, body)
    with pytest.raises(AssertionError, match="required"):
        validate_response("GET", f"{ACCOUNT}/jobs/", 200, {"status": ok, "data": []})  # no `extra`
    with pytest.raises(AssertionError, match="differs"):
        validate_error_body(404, {"status": {**ok, "code": 400, "is_success": False}, "data": None})
    with pytest.raises(AssertionError):
        validate_error_body(404, {"status": {**ok, "code": 404}, "data": None})  # is_success must be false
    with pytest.raises(AssertionError, match="no operation"):
        validate_response("DELETE", f"{ACCOUNT}/runs/1/", 200, {})


# --- auth and account ---------------------------------------------------------------------


def test_account(dbt_cloud: DbtCloudEmulator) -> None:
    reply = call(dbt_cloud, "GET", f"{ACCOUNT}/")
    assert reply.status == 200
    assert reply.data["id"] == DBT_ACCOUNT_ID
    assert reply.body["status"] == {
        "code": 200,
        "is_success": True,
        "user_message": "Success!",
        "developer_message": "",
    }


@pytest.mark.parametrize("scheme", ["Token", "Bearer", "token", "bearer"])
def test_token_and_bearer_are_both_accepted(dbt_cloud: DbtCloudEmulator, scheme: str) -> None:
    assert call(dbt_cloud, "GET", f"{ACCOUNT}/", auth=f"{scheme} {DBT_CLOUD_TOKEN}").status == 200


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        (None, "Authentication credentials were not provided."),
        ("Token wrong-token", "Invalid token."),
        (f"Basic {DBT_CLOUD_TOKEN}", "Invalid token."),
        (DBT_CLOUD_TOKEN, "Invalid token."),
    ],
)
def test_bad_or_missing_token_is_401(dbt_cloud: DbtCloudEmulator, auth: str | None, message: str) -> None:
    dbt_cloud.add_job(1)
    for method, path in [
        ("GET", f"{ACCOUNT}/"),
        ("GET", f"{ACCOUNT}/jobs/1/"),
        ("POST", f"{ACCOUNT}/jobs/1/run/"),
    ]:
        reply = call(dbt_cloud, method, path, {"cause": "x"} if method == "POST" else None, auth=auth)
        assert reply.status == 401
        assert reply.body == {
            "status": {"code": 401, "is_success": False, "user_message": message, "developer_message": None},
            "data": None,
        }
    assert dbt_cloud.runs == {}


def test_the_token_is_never_echoed(dbt_cloud: DbtCloudEmulator) -> None:
    replies = [
        call(dbt_cloud, "GET", f"{ACCOUNT}/jobs/99/"),
        call(dbt_cloud, "GET", f"{ACCOUNT}/", auth=f"Token {DBT_CLOUD_TOKEN}x"),
        call(dbt_cloud, "POST", f"{ACCOUNT}/jobs/99/run/", {"cause": DBT_CLOUD_TOKEN[:5]}),
    ]
    for reply in replies:
        assert DBT_CLOUD_TOKEN not in json.dumps(reply.body)


def test_another_account_is_hidden_as_not_found(dbt_cloud: DbtCloudEmulator) -> None:
    dbt_cloud.add_job(1)
    run = trigger(dbt_cloud, 1)
    other = f"/api/v2/accounts/{DBT_ACCOUNT_ID + 1}"
    for method, path in [
        ("GET", f"{other}/"),
        ("GET", f"{other}/jobs/"),
        ("GET", f"{other}/jobs/1/"),
        ("POST", f"{other}/jobs/1/run/"),
        ("GET", f"{other}/runs/"),
        ("GET", f"{other}/runs/{run['id']}/"),
        ("POST", f"{other}/runs/{run['id']}/cancel/"),
    ]:
        reply = call(dbt_cloud, method, path, {"cause": "x"} if method == "POST" else None)
        assert (reply.status, reply.body["status"]["user_message"]) == (404, NOT_FOUND), path
    assert len(dbt_cloud.runs) == 1


def test_unknown_endpoint_and_wrong_method(dbt_cloud: DbtCloudEmulator) -> None:
    reply = call(dbt_cloud, "GET", f"{ACCOUNT}/nothing-here/", validate=False)
    assert reply.status == 404
    validate_error_body(404, reply.body)
    reply = call(dbt_cloud, "DELETE", f"{ACCOUNT}/runs/1/", validate=False)
    assert reply.status == 405
    validate_error_body(405, reply.body)


# --- jobs ---------------------------------------------------------------------------------


def test_get_job(dbt_cloud: DbtCloudEmulator) -> None:
    added = dbt_cloud.add_job(42, name="Nightly", project_id=7, environment_id=9)
    reply = call(dbt_cloud, "GET", f"{ACCOUNT}/jobs/42/")
    assert reply.status == 200
    assert reply.data == added
    assert (reply.data["id"], reply.data["name"], reply.data["project_id"]) == (42, "Nightly", 7)
    assert reply.data["execute_steps"] == ["dbt deps", "dbt build"]
    assert reply.data["environment"] is None
    with_env = call(dbt_cloud, "GET", f"{ACCOUNT}/jobs/42/", query={"include_related": '["environment"]'})
    assert with_env.data["environment"]["id"] == 9
    assert dbt_cloud.job_url(42) == f"{dbt_cloud.url}/deploy/{DBT_ACCOUNT_ID}/projects/7/jobs/42"


def test_get_unknown_job_is_404(dbt_cloud: DbtCloudEmulator) -> None:
    reply = call(dbt_cloud, "GET", f"{ACCOUNT}/jobs/404/")
    assert reply.status == 404
    assert reply.body["status"]["user_message"] == NOT_FOUND
    assert reply.body["data"] is None


def test_list_jobs_filters_order_and_pages(dbt_cloud: DbtCloudEmulator) -> None:
    dbt_cloud.add_job(3, name="c", project_id=1, environment_id=10)
    dbt_cloud.add_job(1, name="a", project_id=1, environment_id=11)
    dbt_cloud.add_job(2, name="b", project_id=2, environment_id=10)
    every = call(dbt_cloud, "GET", f"{ACCOUNT}/jobs/")
    assert [job["id"] for job in every.data] == [1, 2, 3]
    assert every.body["extra"] == {
        "filters": {"account_id": DBT_ACCOUNT_ID, "limit": 100, "offset": 0},
        "order_by": "id",
        "pagination": {"count": 3, "total_count": 3},
    }
    by_project = call(dbt_cloud, "GET", f"{ACCOUNT}/jobs/", query={"project_id": 1, "order_by": "-id"})
    assert [job["id"] for job in by_project.data] == [3, 1]
    assert by_project.body["extra"]["filters"]["project_id"] == 1
    by_env = call(dbt_cloud, "GET", f"{ACCOUNT}/jobs/", query={"environment_id": 10, "order_by": "name"})
    assert [job["id"] for job in by_env.data] == [2, 3]
    page = call(dbt_cloud, "GET", f"{ACCOUNT}/jobs/", query={"limit": 1, "offset": 1})
    assert [job["id"] for job in page.data] == [2]
    assert page.body["extra"]["pagination"] == {"count": 1, "total_count": 3}


@pytest.mark.parametrize(
    "query", [{"limit": "ten"}, {"offset": "-1"}, {"order_by": "secret"}, {"project_id": "x"}]
)
def test_list_jobs_rejects_bad_parameters(dbt_cloud: DbtCloudEmulator, query: dict[str, str]) -> None:
    reply = call(dbt_cloud, "GET", f"{ACCOUNT}/jobs/", query=query)
    assert reply.status == 400
    assert set(reply.body["data"]) == set(query)


# --- triggering ---------------------------------------------------------------------------


def test_trigger_returns_a_queued_run_with_its_trigger(dbt_cloud: DbtCloudEmulator) -> None:
    dbt_cloud.add_job(5, project_id=3, environment_id=4)
    run = trigger(dbt_cloud, 5)
    assert run["status"] == 1
    assert run["status_humanized"] == "Queued"
    assert (run["in_progress"], run["is_complete"], run["is_success"]) == (True, False, False)
    assert (run["job_definition_id"], run["job_id"], run["project_id"], run["environment_id"]) == (5, 5, 3, 4)
    assert run["href"] == f"{dbt_cloud.url}/deploy/{DBT_ACCOUNT_ID}/projects/3/runs/{run['id']}/"
    assert run["trigger"]["cause"] == "Triggered by a test"
    assert run["trigger"]["cause_category"] == "api"
    assert run["job"]["id"] == 5
    assert run["finished_at"] is None
    assert dbt_cloud.runs[run["id"]]["status"] == 1
    assert [r["id"] for r in dbt_cloud.runs_of(5)] == [run["id"]]


def test_trigger_stores_every_override_on_the_run(dbt_cloud: DbtCloudEmulator) -> None:
    dbt_cloud.add_job(5)
    overrides = {
        "git_sha": "abc123",
        "git_branch": "feature/x",
        "schema_override": "dbt_ci",
        "dbt_version_override": "1.8.0",
        "threads_override": 8,
        "target_name_override": "ci",
        "generate_docs_override": True,
        "timeout_seconds_override": 600,
        "steps_override": ["dbt seed", "dbt run --select tag:nightly"],
        "github_pull_request_id": 12,
    }
    run = trigger(dbt_cloud, 5, **overrides)
    for name, value in overrides.items():
        assert run["trigger"][name] == value, name
    assert run["dbt_version"] == "1.8.0"
    for _ in range(3):  # the default scenario ends on the third poll
        done = get_run(dbt_cloud, run["id"], ["run_steps", "trigger"])
    assert done["status"] == 10
    assert (done["git_sha"], done["git_branch"]) == ("abc123", "feature/x")
    assert [step["name"] for step in done["run_steps"]][-2:] == [
        "Invoke dbt with `dbt seed`",
        "Invoke dbt with `dbt run --select tag:nightly`",
    ]
    assert dbt_cloud.runs[run["id"]]["trigger"]["steps_override"] == overrides["steps_override"]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({}, "cause", "This field is required."),
        ({"cause": None}, "cause", "This field may not be null."),
        ({"cause": ""}, "cause", "This field may not be blank."),
        ({"cause": "x" * 256}, "cause", "Ensure this field has no more than 255 characters."),
        ({"cause": 5}, "cause", "Not a valid string."),
        ({"cause": "ok", "threads_override": "8"}, "threads_override", "A valid integer is required."),
        (
            {"cause": "ok", "steps_override": "dbt run"},
            "steps_override",
            'Expected a list of items but got type "str".',
        ),
        ({"cause": "ok", "steps_override": [""]}, "steps_override", "This field may not be blank."),
        (
            {"cause": "ok", "generate_docs_override": "yes"},
            "generate_docs_override",
            "Must be a valid boolean.",
        ),
        ({"cause": "ok", "git_branch": ""}, "git_branch", "This field may not be blank."),
    ],
)
def test_trigger_validates_its_body(
    dbt_cloud: DbtCloudEmulator, body: dict[str, Any], field: str, message: str
) -> None:
    dbt_cloud.add_job(5)
    reply = call(dbt_cloud, "POST", f"{ACCOUNT}/jobs/5/run/", body)
    assert reply.status == 400
    assert reply.body["data"] == {field: [message]}
    assert dbt_cloud.runs == {}


def test_a_cause_of_exactly_255_characters_is_fine(dbt_cloud: DbtCloudEmulator) -> None:
    dbt_cloud.add_job(5)
    assert trigger(dbt_cloud, 5, cause="x" * 255)["trigger"]["cause"] == "x" * 255


def test_trigger_with_malformed_json_is_400(dbt_cloud: DbtCloudEmulator) -> None:
    dbt_cloud.add_job(5)
    reply = call(dbt_cloud, "POST", f"{ACCOUNT}/jobs/5/run/", raw=b"{not json")
    assert reply.status == 400
    assert dbt_cloud.runs == {}


def test_trigger_of_an_unknown_job_is_404(dbt_cloud: DbtCloudEmulator) -> None:
    reply = call(dbt_cloud, "POST", f"{ACCOUNT}/jobs/77/run/", {"cause": "x"})
    assert reply.status == 404
    assert reply.body["status"]["user_message"] == NOT_FOUND
    assert dbt_cloud.runs == {}


# --- scenarios: polls --------------------------------------------------------------------


def test_success_after_three_polls_walks_every_state(dbt_cloud: DbtCloudEmulator) -> None:
    dbt_cloud.add_job(1, scenario=Scenario("success", polls=3))
    run = trigger(dbt_cloud, 1)
    assert poll_statuses(dbt_cloud, run["id"], 4) == [2, 3, 10, 10]
    done = get_run(dbt_cloud, run["id"], ["run_steps", "job", "trigger"])
    assert (done["status_humanized"], done["is_complete"], done["is_success"], done["in_progress"]) == (
        "Success",
        True,
        True,
        False,
    )
    assert (
        done["finished_at"] is not None and done["started_at"] is not None and done["dequeued_at"] is not None
    )
    assert done["status_message"] is None
    assert [(step["index"], step["name"], step["status"]) for step in done["run_steps"]] == [
        (1, "Clone git repository", 10),
        (2, "Create profile from connection Databricks", 10),
        (3, "Invoke dbt with `dbt deps`", 10),
        (4, "Invoke dbt with `dbt build`", 10),
    ]
    assert "Completed successfully" in done["run_steps"][-1]["logs"]
    assert done["job"]["schedule"]["date"] == "every_day"  # the flat schedule of an embedded job
    assert done["can_retry"] is False and done["retry_not_supported_reason"] == "RETRY_NOT_FAILED_RUN"


def test_without_include_related_the_related_objects_are_null(dbt_cloud: DbtCloudEmulator) -> None:
    dbt_cloud.add_job(1)
    run = get_run(dbt_cloud, trigger(dbt_cloud, 1)["id"])
    assert (run["trigger"], run["job"], run["environment"], run["run_steps"]) == (None, None, None, [])


@pytest.mark.parametrize(
    "include",
    ['["run_steps","trigger"]', "run_steps,trigger", "['run_steps', 'trigger']"],
)
def test_include_related_in_every_spelling(dbt_cloud: DbtCloudEmulator, include: str) -> None:
    dbt_cloud.add_job(1, scenario=Scenario(polls=1))
    run_id = trigger(dbt_cloud, 1)["id"]
    reply = call(dbt_cloud, "GET", f"{ACCOUNT}/runs/{run_id}/", query={"include_related": include})
    assert reply.data["trigger"]["cause"] == "Triggered by a test"
    assert len(reply.data["run_steps"]) == 4


@pytest.mark.parametrize(
    ("polls", "expected"),
    [(1, [10]), (2, [3, 10]), (4, [1, 2, 3, 10]), (6, [1, 2, 3, 3, 3, 10])],
)
def test_poll_counts(dbt_cloud: DbtCloudEmulator, polls: int, expected: list[int]) -> None:
    dbt_cloud.add_job(1, scenario=Scenario(polls=polls))
    run = trigger(dbt_cloud, 1)
    assert poll_statuses(dbt_cloud, run["id"], polls) == expected


def test_error_fails_the_named_step_with_its_logs(dbt_cloud: DbtCloudEmulator) -> None:
    logs = (
        "09:14:10  Database Error in model stg_orders\n09:14:10  Done. PASS=1 WARN=0 ERROR=1 SKIP=5 TOTAL=7\n"
    )
    dbt_cloud.add_job(
        1,
        scenario=Scenario(
            "error",
            polls=2,
            failing_step="dbt test",
            logs=logs,
            steps=("dbt seed", "dbt test", "dbt docs generate"),
        ),
    )
    run = trigger(dbt_cloud, 1)
    assert poll_statuses(dbt_cloud, run["id"], 2) == [3, 20]
    done = get_run(dbt_cloud, run["id"], ["run_steps"])
    assert (done["status_humanized"], done["is_error"], done["is_success"], done["is_complete"]) == (
        "Error",
        True,
        False,
        True,
    )
    steps = done["run_steps"]
    assert [(step["name"], step["status"]) for step in steps][2:] == [
        ("Invoke dbt with `dbt seed`", 10),
        ("Invoke dbt with `dbt test`", 20),
    ]
    assert steps[-1]["logs"] == logs
    assert steps[-1]["status_humanized"] == "Error"
    assert done["can_retry"] is True


def test_error_default_is_a_realistic_dbt_build_failure(dbt_cloud: DbtCloudEmulator) -> None:
    dbt_cloud.add_job(1, scenario=Scenario("error", polls=1))
    done = get_run(dbt_cloud, trigger(dbt_cloud, 1)["id"], ["run_steps"])
    failing = done["run_steps"][-1]
    assert failing["name"] == "Invoke dbt with `dbt build`"
    assert "Database Error in model stg_orders" in failing["logs"]
    assert "ERROR=1" in failing["logs"]


def test_cancelled_scenario_ends_in_30_as_if_cancelled_in_the_ui(dbt_cloud: DbtCloudEmulator) -> None:
    dbt_cloud.add_job(1, scenario=Scenario("cancelled", polls=3))
    run = trigger(dbt_cloud, 1)
    assert poll_statuses(dbt_cloud, run["id"], 3) == [2, 3, 30]
    done = get_run(dbt_cloud, run["id"], ["run_steps"])
    assert (done["is_cancelled"], done["is_complete"], done["status_message"]) == (
        True,
        True,
        "Cancelled by user.",
    )
    assert done["run_steps"][-1]["status"] == 30
    assert dbt_cloud.cancel_requests == []


def test_never_stays_running(dbt_cloud: DbtCloudEmulator) -> None:
    dbt_cloud.add_job(1, scenario=Scenario("never", polls=3))
    run = trigger(dbt_cloud, 1)
    assert poll_statuses(dbt_cloud, run["id"], 8) == [2, 3, 3, 3, 3, 3, 3, 3]
    assert dbt_cloud.runs[run["id"]]["in_progress"] is True


def test_looking_at_runs_does_not_count_as_a_poll(dbt_cloud: DbtCloudEmulator) -> None:
    dbt_cloud.add_job(1, scenario=Scenario(polls=2))
    run = trigger(dbt_cloud, 1)
    for _ in range(5):
        assert dbt_cloud.runs[run["id"]]["status"] == 1
        call(dbt_cloud, "GET", f"{ACCOUNT}/runs/")
    assert poll_statuses(dbt_cloud, run["id"], 2) == [3, 10]


def test_a_run_keeps_the_scenario_it_was_triggered_with(dbt_cloud: DbtCloudEmulator) -> None:
    dbt_cloud.add_job(1, scenario=Scenario("error", polls=1))
    first = trigger(dbt_cloud, 1)
    dbt_cloud.set_scenario(1, Scenario("success", polls=1, steps=("dbt run",)))
    second = trigger(dbt_cloud, 1)
    assert get_run(dbt_cloud, first["id"])["status"] == 20
    assert get_run(dbt_cloud, second["id"])["status"] == 10
    assert call(dbt_cloud, "GET", f"{ACCOUNT}/jobs/1/").data["execute_steps"] == ["dbt run"]
    with pytest.raises(KeyError):
        dbt_cloud.set_scenario(999, Scenario())


# --- scenarios: seconds on an injected clock ---------------------------------------------


@pytest.fixture
def clock(dbt_cloud: DbtCloudEmulator) -> FakeClock:
    """A fake clock driving the emulator's `seconds` scenarios; the fixture's reset restores the real one."""
    fake = FakeClock()
    dbt_cloud.clock = fake
    return fake


def test_seconds_scenario_follows_the_injected_clock(dbt_cloud: DbtCloudEmulator, clock: FakeClock) -> None:
    dbt_cloud.add_job(1, scenario=Scenario("success", seconds=100))
    run = trigger(dbt_cloud, 1)
    seen = []
    for at in (0, 5, 9.9, 10, 15, 20, 50, 99.9, 100, 500):
        clock.now = 1000.0 + at
        seen.append(get_run(dbt_cloud, run["id"])["status"])
    assert seen == [1, 1, 1, 2, 2, 3, 3, 3, 10, 10]
    done = get_run(dbt_cloud, run["id"])
    assert done["duration"] == "00:01:40"  # finished when the scenario said, not when it was looked at
    assert done["duration_humanized"] == "1 minute, 40 seconds"
    assert (done["queued_duration"], done["run_duration"]) == ("00:00:20", "00:01:20")


def test_seconds_scenario_needs_no_polls(dbt_cloud: DbtCloudEmulator, clock: FakeClock) -> None:
    dbt_cloud.add_job(1, scenario=Scenario("error", seconds=30))
    run = trigger(dbt_cloud, 1)
    clock.advance(31)
    assert dbt_cloud.runs[run["id"]]["status"] == 20
    listed = call(dbt_cloud, "GET", f"{ACCOUNT}/runs/", query={"job_definition_id": 1})
    assert listed.data[0]["status"] == 20


def test_never_with_seconds_stays_running(dbt_cloud: DbtCloudEmulator, clock: FakeClock) -> None:
    dbt_cloud.add_job(1, scenario=Scenario("never", seconds=10))
    run = trigger(dbt_cloud, 1)
    clock.advance(10_000)
    assert get_run(dbt_cloud, run["id"])["status"] == 3


def test_scenario_arguments_are_checked() -> None:
    assert Scenario(seconds=5).polls is None
    with pytest.raises(ValueError):
        Scenario(polls=None)
    with pytest.raises(ValueError):
        Scenario(polls=0)
    with pytest.raises(ValueError):
        Scenario(seconds=-1)
    with pytest.raises(ValueError):
        Scenario(steps=())
    with pytest.raises(ValueError):
        Scenario("exploded")  # type: ignore[arg-type]


# --- cancel -------------------------------------------------------------------------------


def test_cancel_is_asynchronous(dbt_cloud: DbtCloudEmulator) -> None:
    dbt_cloud.add_job(1, scenario=Scenario("never"))
    run = trigger(dbt_cloud, 1)
    get_run(dbt_cloud, run["id"])
    get_run(dbt_cloud, run["id"])
    reply = call(dbt_cloud, "POST", f"{ACCOUNT}/runs/{run['id']}/cancel/")
    assert reply.status == 200
    assert reply.data["status"] == 3  # not yet cancelled
    assert dbt_cloud.cancel_requests == [run["id"]]
    after = get_run(dbt_cloud, run["id"], ["run_steps"])
    assert (after["status"], after["status_humanized"], after["status_message"]) == (
        30,
        "Cancelled",
        "Cancelled by user.",
    )
    assert (after["is_cancelled"], after["is_complete"], after["in_progress"]) == (True, True, False)
    assert after["finished_at"] is not None
    assert after["run_steps"][-1]["status"] == 30


def test_cancel_of_a_queued_run_cancels_it_at_once_and_says_so(dbt_cloud: DbtCloudEmulator) -> None:
    """As the answer captured from the real service (dbt-cloud-cli tests/data/run_cancel_response.json):
    status 30, finished_at set, never dequeued nor started, "Cancelled by user."."""
    dbt_cloud.add_job(1)
    run = trigger(dbt_cloud, 1)
    reply = call(dbt_cloud, "POST", f"{ACCOUNT}/runs/{run['id']}/cancel/")
    answer = reply.data
    assert (answer["status"], answer["status_humanized"], answer["status_message"]) == (
        30,
        "Cancelled",
        "Cancelled by user.",
    )
    assert answer["finished_at"] is not None
    assert (answer["dequeued_at"], answer["started_at"], answer["git_sha"]) == (None, None, None)
    assert (answer["in_progress"], answer["is_complete"], answer["is_cancelled"]) == (False, True, True)
    assert answer["notifications_sent"] is False
    after = get_run(dbt_cloud, run["id"], ["run_steps"])
    assert (after["status"], after["finished_at"], after["run_steps"]) == (30, answer["finished_at"], [])
    assert call(dbt_cloud, "POST", f"{ACCOUNT}/runs/{run['id']}/cancel/").data["status"] == 30


@pytest.mark.parametrize(("outcome", "status"), [("success", 10), ("error", 20)])
def test_cancel_of_a_finished_run_answers_its_final_state(
    dbt_cloud: DbtCloudEmulator, outcome: Any, status: int
) -> None:
    dbt_cloud.add_job(1, scenario=Scenario(outcome, polls=1))
    run = trigger(dbt_cloud, 1)
    done = get_run(dbt_cloud, run["id"])
    assert done["status"] == status
    answer = call(dbt_cloud, "POST", f"{ACCOUNT}/runs/{run['id']}/cancel/").data
    assert (answer["status"], answer["finished_at"], answer["status_message"]) == (
        status,
        done["finished_at"],
        None,
    )
    assert get_run(dbt_cloud, run["id"])["status"] == status
    assert dbt_cloud.cancel_requests == [run["id"]]


def test_a_run_that_ends_while_the_cancel_is_on_its_way_answers_its_end(
    dbt_cloud: DbtCloudEmulator, clock: FakeClock
) -> None:
    dbt_cloud.add_job(1, scenario=Scenario("success", seconds=60))
    run = trigger(dbt_cloud, 1)
    clock.advance(59)
    assert get_run(dbt_cloud, run["id"])["status"] == 3
    clock.advance(2)  # the run ends before the cancel arrives
    answer = call(dbt_cloud, "POST", f"{ACCOUNT}/runs/{run['id']}/cancel/").data
    assert (answer["status"], answer["is_success"]) == (10, True)
    assert get_run(dbt_cloud, run["id"])["status"] == 10


def test_cancel_of_an_unknown_run_is_404(dbt_cloud: DbtCloudEmulator) -> None:
    reply = call(dbt_cloud, "POST", f"{ACCOUNT}/runs/12345/cancel/")
    assert reply.status == 404
    assert dbt_cloud.cancel_requests == []


def test_get_unknown_run_is_404(dbt_cloud: DbtCloudEmulator) -> None:
    reply = call(dbt_cloud, "GET", f"{ACCOUNT}/runs/12345/")
    assert (reply.status, reply.body["status"]["user_message"]) == (404, NOT_FOUND)


# --- list runs ----------------------------------------------------------------------------


@pytest.fixture
def three_runs(dbt_cloud: DbtCloudEmulator) -> list[int]:
    dbt_cloud.add_job(1, scenario=Scenario(polls=1))
    dbt_cloud.add_job(2, scenario=Scenario("error", polls=1), project_id=5)
    first = trigger(dbt_cloud, 1)["id"]
    second = trigger(dbt_cloud, 2)["id"]
    third = trigger(dbt_cloud, 1)["id"]
    get_run(dbt_cloud, first)
    get_run(dbt_cloud, second)
    return [first, second, third]


def ids(reply: Reply) -> list[int]:
    return [run["id"] for run in reply.data]


def test_list_runs_filters(dbt_cloud: DbtCloudEmulator, three_runs: list[int]) -> None:
    first, second, third = three_runs
    every = call(dbt_cloud, "GET", f"{ACCOUNT}/runs/")
    assert ids(every) == [first, second, third]
    assert every.body["extra"]["order_by"] == "id"
    assert every.body["extra"]["pagination"] == {"count": 3, "total_count": 3}
    assert ids(call(dbt_cloud, "GET", f"{ACCOUNT}/runs/", query={"job_definition_id": 1})) == [first, third]
    assert ids(call(dbt_cloud, "GET", f"{ACCOUNT}/runs/", query={"status": 20})) == [second]
    assert ids(call(dbt_cloud, "GET", f"{ACCOUNT}/runs/", query={"project_id": 5})) == [second]
    in_progress = call(dbt_cloud, "GET", f"{ACCOUNT}/runs/", query={"status__in": "[1,2,3]"})
    assert ids(in_progress) == [third]
    assert in_progress.body["extra"]["filters"] == {
        "account_id": DBT_ACCOUNT_ID,
        "limit": 100,
        "offset": 0,
        "status__in": [1, 2, 3],
    }
    assert ids(call(dbt_cloud, "GET", f"{ACCOUNT}/runs/", query={"status__in": "10,20"})) == [first, second]
    repeated = call(dbt_cloud, "GET", f"{ACCOUNT}/runs/", query=[("status__in", "10"), ("status__in", "1")])
    assert ids(repeated) == [first, third]


def test_list_runs_order_and_pages(dbt_cloud: DbtCloudEmulator, three_runs: list[int]) -> None:
    first, second, third = three_runs
    newest = call(dbt_cloud, "GET", f"{ACCOUNT}/runs/", query={"order_by": "-id", "limit": 2})
    assert ids(newest) == [third, second]
    assert newest.body["extra"]["pagination"] == {"count": 2, "total_count": 3}
    assert ids(call(dbt_cloud, "GET", f"{ACCOUNT}/runs/", query={"order_by": "-id", "offset": 2})) == [first]
    assert ids(call(dbt_cloud, "GET", f"{ACCOUNT}/runs/", query={"order_by": "-created_at"})) == [
        third,
        second,
        first,
    ]
    # Unfinished runs sort last by finished_at, as NULLs do.
    assert ids(call(dbt_cloud, "GET", f"{ACCOUNT}/runs/", query={"order_by": "finished_at"}))[-1] == third
    # A limit over 100 is clamped, as the real pagination does.
    assert (
        call(dbt_cloud, "GET", f"{ACCOUNT}/runs/", query={"limit": 500}).body["extra"]["filters"]["limit"]
        == 100
    )


def test_list_runs_include_related(dbt_cloud: DbtCloudEmulator, three_runs: list[int]) -> None:
    plain = call(dbt_cloud, "GET", f"{ACCOUNT}/runs/")
    assert all(run["trigger"] is None for run in plain.data)
    related = call(dbt_cloud, "GET", f"{ACCOUNT}/runs/", query={"include_related": '["trigger","job"]'})
    assert all(run["trigger"]["cause"] == "Triggered by a test" for run in related.data)
    assert [run["job"]["id"] for run in related.data] == [1, 2, 1]


@pytest.mark.parametrize(
    "query",
    [{"status__in": "[1,x]"}, {"order_by": "status"}, {"limit": "many"}, {"job_definition_id": "one"}],
)
def test_list_runs_rejects_bad_parameters(dbt_cloud: DbtCloudEmulator, query: dict[str, str]) -> None:
    reply = call(dbt_cloud, "GET", f"{ACCOUNT}/runs/", query=query)
    assert reply.status == 400
    assert set(reply.body["data"]) == set(query)


# --- rerun and retry -----------------------------------------------------------------------


def test_rerun_restarts_the_last_failed_run_from_its_failed_step(dbt_cloud: DbtCloudEmulator) -> None:
    steps = ("dbt seed", "dbt build", "dbt docs generate")
    dbt_cloud.add_job(1, scenario=Scenario("error", polls=1, steps=steps))
    failed = trigger(dbt_cloud, 1)
    assert get_run(dbt_cloud, failed["id"])["status"] == 20
    dbt_cloud.set_scenario(1, Scenario("success", polls=1, steps=steps))
    reply = call(dbt_cloud, "POST", f"{ACCOUNT}/jobs/1/rerun/")
    assert reply.status == 200
    rerun = reply.data
    assert rerun["id"] > failed["id"]
    assert rerun["retrying_run_id"] is None  # in the spec, but what it points to is undocumented
    assert rerun["trigger"]["cause_category"] == "rerun"
    assert (rerun["trigger"]["git_sha"], rerun["trigger"]["git_branch"]) == (
        get_run(dbt_cloud, failed["id"])["git_sha"],
        "main",
    )
    done = get_run(dbt_cloud, rerun["id"], ["run_steps"])
    assert done["status"] == 10
    assert [step["name"] for step in done["run_steps"]][2:] == [
        "Invoke dbt with `dbt build`",
        "Invoke dbt with `dbt docs generate`",
    ]


def test_rerun_without_a_failure_triggers_a_new_run(dbt_cloud: DbtCloudEmulator) -> None:
    dbt_cloud.add_job(1, scenario=Scenario(polls=1))
    reply = call(dbt_cloud, "POST", f"{ACCOUNT}/jobs/1/rerun/")
    assert reply.status == 200
    assert reply.data["retrying_run_id"] is None
    assert len(get_run(dbt_cloud, reply.data["id"], ["run_steps"])["run_steps"]) == 4
    assert call(dbt_cloud, "POST", f"{ACCOUNT}/jobs/9/rerun/").status == 404


def test_retry_a_failed_run(dbt_cloud: DbtCloudEmulator) -> None:
    dbt_cloud.add_job(1, scenario=Scenario("error", polls=1, steps=("dbt seed", "dbt build", "dbt test")))
    failed = trigger(dbt_cloud, 1)
    get_run(dbt_cloud, failed["id"])
    details = call(dbt_cloud, "GET", f"{ACCOUNT}/runs/{failed['id']}/retry/")
    assert details.status == 200
    assert details.data == {"failed_step": "dbt build", "skipped_steps": ["dbt test"]}
    reply = call(dbt_cloud, "POST", f"{ACCOUNT}/runs/{failed['id']}/retry/")
    assert reply.status == 200
    assert reply.data["id"] > failed["id"] and reply.data["trigger"]["cause_category"] == "rerun"
    # The failed run is no longer the latest one: retrying it again is refused.
    again = call(dbt_cloud, "POST", f"{ACCOUNT}/runs/{failed['id']}/retry/")
    assert again.status == 400
    assert "RETRY_NOT_LATEST_RUN" in again.body["status"]["user_message"]
    assert get_run(dbt_cloud, failed["id"])["retry_not_supported_reason"] == "RETRY_NOT_LATEST_RUN"


def test_retry_of_a_run_that_did_not_fail_is_refused(dbt_cloud: DbtCloudEmulator) -> None:
    dbt_cloud.add_job(1, scenario=Scenario(polls=1))
    run = trigger(dbt_cloud, 1)
    get_run(dbt_cloud, run["id"])
    for method in ("GET", "POST"):
        reply = call(dbt_cloud, method, f"{ACCOUNT}/runs/{run['id']}/retry/")
        assert reply.status == 400
        assert "RETRY_NOT_FAILED_RUN" in reply.body["status"]["user_message"]
    assert call(dbt_cloud, "POST", f"{ACCOUNT}/runs/999/retry/").status == 404


# A failed run dbt cannot resume, for each remaining reason of the spec's enum.
UNRETRYABLE = [
    (Scenario("error", polls=1, failing_step="dbt deps"), {}, "RETRY_UNSUPPORTED_CMD"),
    (
        Scenario("error", polls=1, failing_step="dbt source freshness", steps=("dbt source freshness",)),
        {},
        "RETRY_UNSUPPORTED_CMD",
    ),
    (Scenario("error", polls=1), {"dbt_version_override": "1.5.0-latest"}, "RETRY_UNSUPPORTED_VERSION"),
    (Scenario("error", polls=1, run_results=False), {}, "RETRY_NO_RUN_RESULTS"),
]


@pytest.mark.parametrize(("scenario", "trigger_body", "reason"), UNRETRYABLE)
def test_a_failed_run_dbt_cannot_resume_is_refused_with_its_reason(
    dbt_cloud: DbtCloudEmulator, scenario: Scenario, trigger_body: dict[str, Any], reason: str
) -> None:
    dbt_cloud.add_job(1, scenario=scenario)
    failed = trigger(dbt_cloud, 1, **trigger_body)
    done = get_run(dbt_cloud, failed["id"])
    assert done["status"] == 20
    assert (done["can_retry"], done["retry_not_supported_reason"]) == (False, reason)
    for method, path in (
        ("GET", f"{ACCOUNT}/runs/{failed['id']}/retry/"),
        ("POST", f"{ACCOUNT}/runs/{failed['id']}/retry/"),
        ("POST", f"{ACCOUNT}/jobs/1/rerun/"),
    ):
        reply = call(dbt_cloud, method, path)
        assert reply.status == 400, (method, path)
        assert reason in reply.body["status"]["user_message"]
    assert len(dbt_cloud.runs_of(1)) == 1  # nothing was started


@pytest.mark.parametrize(
    "failing_step", ["dbt build --select orders+", "dbt docs generate", "dbt run-operation x"]
)
def test_every_command_dbt_retry_supports_can_be_resumed(
    dbt_cloud: DbtCloudEmulator, failing_step: str
) -> None:
    dbt_cloud.add_job(
        1, scenario=Scenario("error", polls=1, failing_step=failing_step, steps=(failing_step,))
    )
    failed = trigger(dbt_cloud, 1, dbt_version_override="1.6.0-latest")
    assert get_run(dbt_cloud, failed["id"])["can_retry"] is True
    assert call(dbt_cloud, "POST", f"{ACCOUNT}/jobs/1/rerun/").status == 200


def test_every_reason_of_the_spec_is_modelled() -> None:
    """The spec's RetryNotSupportedReasonEnum: the two reasons tested further up (a run that did
    not fail, a run that is not the latest) and those of UNRETRYABLE."""
    enum = set(load_spec()["components"]["schemas"]["RetryNotSupportedReasonEnum"]["enum"])
    modelled = {reason for _, _, reason in UNRETRYABLE} | {"RETRY_NOT_FAILED_RUN", "RETRY_NOT_LATEST_RUN"}
    assert modelled == enum


# --- faults -------------------------------------------------------------------------------


@pytest.mark.parametrize("header", [False, True])
def test_rate_limit_answers_429_with_or_without_retry_after(
    dbt_cloud: DbtCloudEmulator, header: bool
) -> None:
    """dbt documents no Retry-After: none by default; a test can switch it on."""
    dbt_cloud.add_job(1)
    run = trigger(dbt_cloud, 1)
    if header:
        dbt_cloud.retry_after_header = True
    dbt_cloud.faults.inject("429", path=r"/api/v2/accounts/\d+/runs/\d+/", retry_after=7, times=2)
    path = f"{ACCOUNT}/runs/{run['id']}/"
    first, second, third = (call(dbt_cloud, "GET", path) for _ in range(3))
    assert (first.status, second.status, third.status) == (429, 429, 200)
    assert first.headers.get("Retry-After") == ("7" if header else None)
    assert first.body["status"]["code"] == 429 and first.body["data"] is None
    # A rate-limited GET never reached the API, so it was not a poll either.
    assert third.data["status"] == 2
    assert [r.status for r in dbt_cloud.requests if r.path == path] == [429, 429, 200]


@pytest.mark.parametrize("kind", ["500", "503"])
def test_flaky_server_errors(dbt_cloud: DbtCloudEmulator, kind: str) -> None:
    dbt_cloud.add_job(1)
    dbt_cloud.faults.inject(kind, path=r".*/jobs/1/run/", method="POST")  # type: ignore[arg-type]
    failed = call(dbt_cloud, "POST", f"{ACCOUNT}/jobs/1/run/", {"cause": "x"})
    assert failed.status == int(kind)
    assert dbt_cloud.runs == {}  # the request never reached the API
    assert call(dbt_cloud, "POST", f"{ACCOUNT}/jobs/1/run/", {"cause": "x"}).status == 200
    assert len(dbt_cloud.runs) == 1


def test_a_trigger_can_create_the_run_and_lose_the_response(dbt_cloud: DbtCloudEmulator) -> None:
    dbt_cloud.add_job(1)
    dbt_cloud.faults.inject("drop_after_write", path=r".*/jobs/1/run/", method="POST")
    with pytest.raises((urllib.error.URLError, http.client.HTTPException, ConnectionError)):
        call(dbt_cloud, "POST", f"{ACCOUNT}/jobs/1/run/", {"cause": "lost"})
    runs = dbt_cloud.runs_of(1)
    assert [run["trigger"]["cause"] for run in runs] == ["lost"]
    assert [(r.method, r.status, r.fault) for r in dbt_cloud.requests] == [("POST", 0, "drop_after_write")]
    # A client that looks before triggering again finds the run.
    listed = call(dbt_cloud, "GET", f"{ACCOUNT}/runs/", query={"job_definition_id": 1, "order_by": "-id"})
    assert ids(listed) == [runs[0]["id"]]


def test_probabilistic_faults_are_deterministic_under_the_seed(dbt_cloud: DbtCloudEmulator) -> None:
    def pattern(seed: int) -> list[int]:
        dbt_cloud.seed = seed  # reset() reseeds the fault injector and the run generator
        dbt_cloud.reset()
        dbt_cloud.faults.inject("503", path=r".*/accounts/\d+/", probability=0.5, times=None)
        return [call(dbt_cloud, "GET", f"{ACCOUNT}/").status for _ in range(16)]

    try:
        assert pattern(3) == pattern(3)
        assert set(pattern(3)) == {200, 503}
        assert pattern(3) != pattern(4)
    finally:
        dbt_cloud.seed = 0


def test_runs_are_deterministic_under_the_seed(dbt_cloud: DbtCloudEmulator) -> None:
    def shas(seed: int) -> list[str]:
        dbt_cloud.seed = seed
        dbt_cloud.reset()
        dbt_cloud.add_job(1, scenario=Scenario(polls=1))
        made = [trigger(dbt_cloud, 1)["id"] for _ in range(2)]
        return [get_run(dbt_cloud, run_id)["git_sha"] for run_id in made]

    try:
        assert shas(1) == shas(1)
        assert shas(1) != shas(2)
    finally:
        dbt_cloud.seed = 0
    fresh = DbtCloudEmulator(seed=1)  # never started: only its first run id is looked at
    assert (
        fresh._next_run_id == DbtCloudEmulator(seed=1)._next_run_id != DbtCloudEmulator(seed=2)._next_run_id
    )


# --- the test API ---------------------------------------------------------------------------


def test_reset_forgets_everything_but_keeps_run_ids_increasing(dbt_cloud: DbtCloudEmulator) -> None:
    dbt_cloud.add_job(1)
    before = trigger(dbt_cloud, 1)["id"]
    call(dbt_cloud, "POST", f"{ACCOUNT}/runs/{before}/cancel/")
    dbt_cloud.faults.inject("500", times=None)
    dbt_cloud.clock = FakeClock()
    dbt_cloud.reset()
    assert (dbt_cloud.runs, dbt_cloud.cancel_requests, dbt_cloud.requests) == ({}, [], [])
    assert call(dbt_cloud, "GET", f"{ACCOUNT}/jobs/1/").status == 404  # no fault, no job
    assert not isinstance(dbt_cloud.clock, FakeClock)
    dbt_cloud.add_job(1)
    assert trigger(dbt_cloud, 1)["id"] > before


def test_every_timestamp_is_in_the_real_format(dbt_cloud: DbtCloudEmulator) -> None:
    dbt_cloud.add_job(1, scenario=Scenario(polls=1))
    run = get_run(dbt_cloud, trigger(dbt_cloud, 1)["id"], ["run_steps", "trigger"])
    pattern = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{6}\+00:00$"
    for name in ("created_at", "updated_at", "dequeued_at", "started_at", "finished_at"):
        assert run[name] and re.match(pattern, run[name]), name
    job = call(dbt_cloud, "GET", f"{ACCOUNT}/jobs/1/").data
    assert "T" in job["created_at"] and job["created_at"].endswith("+00:00")


def raw(emu: DbtCloudEmulator, method: str, path: str, body: bytes | None = None) -> http.client.HTTPResponse:
    """One request, no redirect followed: the answer exactly as the emulator sent it."""
    connection = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=5)
    headers = {"Authorization": f"Token {DBT_CLOUD_TOKEN}"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


@pytest.mark.parametrize(
    ("method", "path", "location"),
    [
        ("GET", f"{ACCOUNT}/jobs/1", f"{ACCOUNT}/jobs/1/"),
        (
            "GET",
            f"{ACCOUNT}/jobs/1?include_related=environment",
            f"{ACCOUNT}/jobs/1/?include_related=environment",
        ),
        (
            "GET",
            f"{ACCOUNT}/runs?job_definition_id=1&status=10",
            f"{ACCOUNT}/runs/?job_definition_id=1&status=10",
        ),
        ("POST", f"{ACCOUNT}/jobs/1/run", f"{ACCOUNT}/jobs/1/run/"),
    ],
)
def test_a_path_without_its_trailing_slash_is_redirected_308(
    dbt_cloud: DbtCloudEmulator, method: str, path: str, location: str
) -> None:
    """The real API answers 308 (airbytehq/airbyte#18147), so clients that drop the slash work."""
    dbt_cloud.add_job(1)
    response = raw(dbt_cloud, method, path, b'{"cause": "x"}' if method == "POST" else None)
    assert (response.status, response.getheader("Location")) == (308, location)
    assert dbt_cloud.runs == {}  # the redirect itself did nothing
    assert [r.status for r in dbt_cloud.requests] == [308]


def test_a_redirected_get_lands_on_the_resource_and_a_bad_path_stays_404(dbt_cloud: DbtCloudEmulator) -> None:
    dbt_cloud.add_job(1)
    with urllib.request.urlopen(  # urllib follows a 308 for a GET, keeping the header
        urllib.request.Request(
            dbt_cloud.url + f"{ACCOUNT}/jobs/1", headers={"Authorization": f"Token {DBT_CLOUD_TOKEN}"}
        ),
        timeout=5,
    ) as response:
        assert json.loads(response.read())["data"]["id"] == 1
    assert [r.status for r in dbt_cloud.requests] == [308, 200]
    assert raw(dbt_cloud, "GET", f"{ACCOUNT}/nothing").status == 404
    assert raw(dbt_cloud, "GET", f"{ACCOUNT}/jobs/x").status == 404  # the slashed path would not route either


def test_an_undocumented_status_code_keeps_the_runs_flags_true(dbt_cloud: DbtCloudEmulator) -> None:
    dbt_cloud.add_job(1, scenario=Scenario("error", polls=3, running_code=4, final_code=25))
    run = trigger(dbt_cloud, 1)
    running = [get_run(dbt_cloud, run["id"]) for _ in range(2)][-1]
    assert (running["status"], running["in_progress"], running["is_complete"]) == (4, True, False)
    done = get_run(dbt_cloud, run["id"])
    assert (done["status"], done["is_complete"], done["is_error"], done["in_progress"]) == (
        25,
        True,
        True,
        False,
    )


def test_paths_with_a_quoted_id_are_not_routed(dbt_cloud: DbtCloudEmulator) -> None:
    reply = call(dbt_cloud, "GET", f"{ACCOUNT}/runs/{quote('1 OR 1=1')}/", validate=False)
    assert reply.status == 404
    validate_error_body(404, reply.body)
