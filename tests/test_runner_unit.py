"""The runner's pure parts: input checks, cause, polling schedule, retries, outcomes, rendering."""

from __future__ import annotations

import ast
import random
from typing import Any

import pytest

from runner import core
from runner.core import (
    CAUSE_MAX_CHARS,
    DbtCloudError,
    DbtCloudRateLimitError,
    DbtCloudTransientError,
    DbtRunStatus,
    PollPolicy,
    RunnerInputError,
    RunSettings,
    build_cause,
    parse_overrides,
    parse_steps,
    retry_delay,
    run_outcome,
)
from runner.notebook import CELL_SEPARATOR, NotebookDefaults, core_source, render_notebook


def settings(**changes: Any) -> RunSettings:
    raw: dict[str, Any] = {"host": "acme.us1.dbt.com", "account_id": "70403", "job_id": "42"}
    raw.update(changes)
    return RunSettings.build(**raw)


# --- inputs -----------------------------------------------------------------------------


@pytest.mark.parametrize("placeholder", ["Enter the Job ID", "  Enter the Job ID "])
def test_the_guides_placeholder_gets_a_message_that_says_what_to_type(placeholder: str) -> None:
    with pytest.raises(RunnerInputError, match=r"placeholder 'Enter the Job ID'.*number after /jobs/"):
        settings(job_id=placeholder)


@pytest.mark.parametrize("job_id", ["", "abc", "0", "-3", "4.5", "12 13"])
def test_a_job_id_that_is_not_a_positive_integer_is_refused(job_id: str) -> None:
    with pytest.raises(RunnerInputError, match="job_id"):
        settings(job_id=job_id)


def test_a_pasted_job_url_gives_host_account_and_job() -> None:
    built = settings(job_id="https://acme.eu1.dbt.com/deploy/9/projects/8/jobs/7", host="", account_id="")
    assert (built.host, built.account_id, built.job_id) == ("acme.eu1.dbt.com", 9, 7)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"host": ""}, "no dbt Cloud host"),
        ({"host": "ftp://x"}, "not an http"),
        ({"host": "bad host"}, "not a host name"),
        ({"account_id": ""}, "account id"),
        ({"account_id": "x1"}, "account id"),
        ({"timeout_seconds": "soon"}, "timeout_seconds"),
        ({"timeout_seconds": "-5"}, "timeout_seconds"),
        ({"wait": "maybe"}, "wait must be true or false"),
    ],
)
def test_bad_settings_are_refused_before_any_request(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(RunnerInputError, match=message):
        settings(**changes)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("acme.us1.dbt.com", "https://acme.us1.dbt.com"),
        ("https://acme.us1.dbt.com/", "https://acme.us1.dbt.com"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("http://127.8.9.10:1", "http://127.8.9.10:1"),
        ("http://[::1]:8000", "http://[::1]:8000"),
        ("http://localhost:8000", "http://localhost:8000"),
        ("http://LocalHost.", "http://LocalHost."),
    ],
)
def test_https_anywhere_and_plain_http_only_to_a_loopback_host(host: str, expected: str) -> None:
    assert core.base_url(host) == expected


@pytest.mark.parametrize(
    "host",
    [
        "http://dbt.example.invalid",
        "http://acme.us1.dbt.com",
        "http://10.0.0.5:8000",
        "http://[::ffff:7f00:1]",  # an IPv4-mapped address is not treated as loopback
        "http://localhost.example.invalid",
        "http://127.0.0.1.example.invalid",
    ],
)
def test_plain_http_to_another_host_is_refused_before_any_request(host: str) -> None:
    with pytest.raises(RunnerInputError, match=r"plain http.*https://"):
        core.base_url(host)
    with pytest.raises(RunnerInputError, match="plain http"):
        core.parse_job_url(f"{host}/deploy/1/projects/2/jobs/3")
    with pytest.raises(RunnerInputError, match="plain http"):
        settings(host=host)
    with pytest.raises(RunnerInputError, match="plain http"):
        core.DbtCloudClient(host, 1, "dbtc_not_sent_anywhere")


def test_credentials_in_the_host_url_are_refused() -> None:
    with pytest.raises(RunnerInputError, match="user info"):
        core.base_url("https://user:pass@acme.us1.dbt.com")


def test_defaults_are_a_generous_timeout_and_waiting() -> None:
    built = settings()
    assert built.timeout_seconds == 4 * 3600
    assert built.wait and not built.reuse_running and not built.rerun_failed
    assert built.overrides == {}


def test_overrides_are_typed_and_empty_ones_left_out() -> None:
    overrides = parse_overrides(
        {
            "steps_override": '["dbt seed", "dbt build --select tag:daily"]',
            "schema_override": " analytics_ci ",
            "git_branch": "main",
            "git_sha": "",
            "threads_override": "8",
            "timeout_seconds_override": "3600",
            "generate_docs_override": "false",
            "target_name_override": None,
        }
    )
    assert overrides == {
        "steps_override": ["dbt seed", "dbt build --select tag:daily"],
        "schema_override": "analytics_ci",
        "git_branch": "main",
        "threads_override": 8,
        "timeout_seconds_override": 3600,
        "generate_docs_override": False,
    }


def test_steps_may_be_one_per_line_and_must_be_dbt_commands() -> None:
    assert parse_steps("dbt seed\n\n  dbt run  \n") == ["dbt seed", "dbt run"]
    with pytest.raises(RunnerInputError, match="must start with 'dbt '"):
        parse_steps("rm -rf /")
    with pytest.raises(RunnerInputError, match="JSON list"):
        parse_steps('["dbt run", 3]')
    with pytest.raises(RunnerInputError, match="unknown override"):
        parse_overrides({"steps": "dbt run"})


def test_a_token_with_whitespace_is_refused_without_echoing_it() -> None:
    with pytest.raises(RunnerInputError) as caught:
        core.check_token("abc def-secret", "where")
    assert "secret" not in str(caught.value)
    with pytest.raises(RunnerInputError, match="no dbt Cloud API token"):
        core.check_token("", "set DBT_CLOUD_API_TOKEN")


# --- cause --------------------------------------------------------------------------------


def test_the_cause_says_where_the_run_came_from_and_ends_with_the_marker() -> None:
    context = {
        "job_id": "11",
        "run_id": "22",
        "task_key": "dbt",
        "workspace_url": "https://adb-1.azuredatabricks.net",
    }
    cause = build_cause(None, context, "[dbtwf:abc]")
    assert cause == (
        "Triggered by Databricks Workflows | Databricks job 11 run 22 task dbt | "
        "https://adb-1.azuredatabricks.net [dbtwf:abc]"
    )
    assert build_cause(None, {}, "[m]") == "Triggered by the dbtwf runner [m]"


def test_a_long_cause_is_cut_to_255_characters_keeping_the_marker() -> None:
    marker = core.new_marker()
    cause = build_cause("x" * 400, {"job_id": "1"}, marker)
    assert len(cause) == CAUSE_MAX_CHARS
    assert cause.endswith(marker)
    assert core.new_marker() != marker


# --- polling and retries -------------------------------------------------------------------


def test_polling_starts_every_second_and_backs_off_to_fifteen_seconds() -> None:
    policy = PollPolicy(jitter=0.0)
    rng = random.Random(0)
    assert policy.interval(0, rng) == 1.0
    assert policy.interval(9, rng) == 1.0
    assert policy.interval(60, rng) == 6.0
    assert policy.interval(3600, rng) == 15.0
    assert policy.interval(120, rng) == 12.0
    jittered = [PollPolicy().interval(100, rng) for _ in range(200)]
    assert 9.0 <= min(jittered) < max(jittered) <= 11.0


def test_retry_delays_grow_with_jitter_up_to_a_minute() -> None:
    rng = random.Random(1)
    transient = DbtCloudTransientError("503")
    first = [retry_delay(transient, 0, rng) for _ in range(50)]
    fourth = [retry_delay(transient, 3, rng) for _ in range(50)]
    assert min(first) >= 0.5 and max(first) <= 1.0
    assert min(fourth) >= 4.0 and max(fourth) <= 8.0
    assert len(set(first)) > 40  # jittered, so many runners do not retry in step
    assert min(retry_delay(transient, 20, rng) for _ in range(20)) >= 30.0  # capped at 60 s
    assert max(retry_delay(transient, 20, rng) for _ in range(20)) <= 60.0


@pytest.mark.parametrize("told", [0.0, 1.0, 7.0, 45.0])
@pytest.mark.parametrize("error_type", [DbtCloudRateLimitError, DbtCloudTransientError])
def test_a_retry_after_is_honoured_as_given_plus_a_little_jitter(
    told: float, error_type: type[DbtCloudTransientError]
) -> None:
    rng = random.Random(2)
    error = error_type("429", 429, retry_after=told)
    for attempt in (0, 3, 9):  # the attempt number does not stretch what the server asked for
        delays = [retry_delay(error, attempt, rng) for _ in range(50)]
        assert told <= min(delays) and max(delays) <= told + max(1.0, told * 0.1)
        assert len(set(delays)) > 40


def test_a_retry_after_of_hours_is_read_as_ten_minutes() -> None:
    delay = retry_delay(DbtCloudRateLimitError("429", 429, retry_after=86_400.0), 0, random.Random(3))
    assert 600.0 <= delay <= 660.0


def test_a_429_without_retry_after_backs_off_exponentially_from_a_few_seconds() -> None:
    rng = random.Random(4)
    limited = DbtCloudRateLimitError("429", 429)
    ranges = [(2.0, 4.0), (4.0, 8.0), (8.0, 16.0), (16.0, 32.0), (30.0, 60.0), (30.0, 60.0)]
    for attempt, (low, high) in enumerate(ranges):
        delays = [retry_delay(limited, attempt, rng) for _ in range(50)]
        assert low <= min(delays) and max(delays) <= high, attempt
    # No hidden five-minute cooldown: never more than the 60 s cap.
    assert max(retry_delay(limited, 30, rng) for _ in range(50)) <= 60.0


def test_retry_after_may_be_seconds_or_a_date() -> None:
    assert core._retry_after("12") == 12.0
    assert core._retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert core._retry_after("soon") is None
    assert core._retry_after(None) is None


# --- outcomes ------------------------------------------------------------------------------


def test_status_enum_knows_which_statuses_are_final() -> None:
    assert [s for s in DbtRunStatus if s.is_terminal] == [
        DbtRunStatus.SUCCESS,
        DbtRunStatus.ERROR,
        DbtRunStatus.CANCELLED,
    ]
    assert DbtRunStatus.of(42) is None
    assert DbtRunStatus.of("3") is DbtRunStatus.RUNNING


@pytest.mark.parametrize(
    ("run", "outcome"),
    [
        ({"status": 1}, None),
        ({"status": 3}, None),
        ({"status": 10}, DbtRunStatus.SUCCESS),
        ({"status": 20}, DbtRunStatus.ERROR),
        ({"status": 30}, DbtRunStatus.CANCELLED),
        ({"status": 42, "is_complete": False}, None),
        ({"status": 42, "is_complete": True, "is_success": True}, DbtRunStatus.SUCCESS),
        ({"status": 42, "is_complete": True, "is_cancelled": True}, DbtRunStatus.CANCELLED),
        ({"status": 42, "is_complete": True}, DbtRunStatus.ERROR),
        ({"status": None}, None),
        ({"status": 4, "in_progress": True, "is_complete": False}, None),
    ],
)
def test_an_unknown_status_is_judged_by_the_runs_flags(run: dict[str, Any], outcome: Any) -> None:
    assert run_outcome(run) == outcome
    assert core.describe_status(run)  # never raises


def test_the_failing_steps_log_tail_is_kept_and_the_token_redacted() -> None:
    logs = "\n".join(f"line {n}" for n in range(100)) + "\nSECRET-TOKEN leaked"
    run = {
        "run_steps": [
            {"name": "Clone", "status": 10, "logs": "ok"},
            {"name": "dbt build", "status": 20, "logs": logs},
            {"name": "dbt docs", "status": 30, "logs": ""},
        ]
    }
    name, tail = core._failure_details(run, lambda text: text.replace("SECRET-TOKEN", "***"))
    assert name == "dbt build"
    assert tail.splitlines()[-1] == "*** leaked"
    assert len(tail.splitlines()) == core.LOG_TAIL_LINES
    assert "line 0\n" not in tail


def test_elapsed_time_is_short_and_readable() -> None:
    assert [core.format_elapsed(s) for s in (0, 59.9, 61, 3725)] == ["0s", "59s", "1m01s", "1h02m05s"]


def test_client_repr_and_errors_never_show_the_token() -> None:
    token = "dbtc_very_secret_value_1234"
    client = core.DbtCloudClient("127.0.0.1:9", 1, token, timeout=0.5, max_retries=0)
    assert token not in repr(client) and "1234" not in repr(client)
    with pytest.raises(DbtCloudError) as caught:
        client.get_job(5)  # nothing listens on port 9
    assert isinstance(caught.value, DbtCloudTransientError)
    assert token not in str(caught.value) and "1234" not in str(caught.value)


# --- the notebook --------------------------------------------------------------------------

DEFAULTS = NotebookDefaults("acme.us1.dbt.com", 70403, "dbt-cloud", "api-key", 7200)


def test_the_notebook_is_core_py_verbatim_between_a_markdown_and_a_widgets_cell() -> None:
    text = render_notebook(DEFAULTS)
    assert text.startswith("# Databricks notebook source\n# MAGIC %md\n")
    cells = text.removeprefix("# Databricks notebook source\n").split(CELL_SEPARATOR)
    assert len(cells) == 3
    assert all(line.startswith("# MAGIC") for line in cells[0].splitlines())
    with open(core.__file__, encoding="utf-8") as handle:
        on_disk = handle.read()
    assert cells[1] == on_disk.rstrip("\n")
    assert core_source() == on_disk
    assert "dbt_run = run_from_notebook(\n    dbutils," in cells[2]


def _last_cell_calls(text: str) -> list[ast.Call]:
    cell = text.split(CELL_SEPARATOR)[-1]
    return [node for node in ast.walk(ast.parse(cell)) if isinstance(node, ast.Call)]


def _constants(text: str) -> dict[str, object]:
    (entry,) = [call for call in _last_cell_calls(text) if ast.unparse(call.func) == "run_from_notebook"]
    assert [ast.unparse(arg) for arg in entry.args] == ["dbutils"]
    return {kw.arg or "": ast.literal_eval(kw.value) for kw in entry.keywords}


def _widget_defaults(text: str) -> dict[str, str]:
    return {
        call.args[0].value: call.args[1].value  # type: ignore[attr-defined]
        for call in _last_cell_calls(text)
        if ast.unparse(call.func) == "dbutils.widgets.text"
    }


def test_rendering_is_deterministic_and_fixes_host_account_and_secret_as_constants() -> None:
    text = render_notebook(DEFAULTS)
    assert text == render_notebook(NotebookDefaults("acme.us1.dbt.com", 70403, "dbt-cloud", "api-key", 7200))
    assert text != render_notebook(NotebookDefaults("acme.us1.dbt.com", 70403, "dbt-cloud", "api-key", 3600))
    assert _constants(text) == {
        "dbt_cloud_host": "acme.us1.dbt.com",
        "dbt_cloud_account_id": 70403,
        "secret_scope": "dbt-cloud",
        "secret_key": "api-key",
    }
    widgets = _widget_defaults(text)
    assert list(widgets) == list(core.NOTEBOOK_WIDGETS)
    assert widgets["timeout_seconds"] == "7200" and widgets["job_id"] == ""
    # Where the token goes is no widget: a run's parameters cannot re-point it.
    assert not set(widgets) & set(core.PINNED_PARAMETERS)


def test_a_hostile_default_cannot_inject_code_into_the_notebook() -> None:
    hostile = NotebookDefaults("h\"');import os#\n# COMMAND ----------\nx", 1, "s'); os.system('x", "k\\", 60)
    text = render_notebook(hostile)
    assert len(text.split(CELL_SEPARATOR)) == 3  # the newline did not open a new cell
    names = {ast.unparse(call.func) for call in _last_cell_calls(text)}
    assert names == {"dbutils.widgets.text", "run_from_notebook"}
    constants = _constants(text)
    assert constants["dbt_cloud_host"] == hostile.dbt_cloud_host
    assert constants["secret_scope"] == hostile.secret_scope
    assert constants["secret_key"] == "k\\"
