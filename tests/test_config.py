"""dbtwf.toml: defaults, validation messages that name file/table/key, and comment-keeping writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from provision.config import load_config, parse_config, select_environment
from provision.config_writer import upsert_environment
from provision.errors import ConfigError, UsageError
from provision.model import Compute, DbtJobTask, Environment, Schedule, default_task_key, environment_defaults
from provision.names import (
    validate_databricks_host,
    validate_notebook_path,
    validate_scope_name,
    validate_secret_name,
)
from provision.quartz import validate_quartz_cron, validate_timezone

MINIMAL = """
[environments.dev]
dbt_cloud_host = "ab123.us1.dbt.com"
dbt_cloud_account_id = 70403

[environments.dev.dbt_jobs]
nightly = 1234
"""

FULL = """
# shared by every environment
[defaults]
dbt_cloud_host = "ab123.us1.dbt.com"
dbt_cloud_account_id = 70403
notebook_path = "/Shared/etl/{env}/dbt"

[environments.dev.dbt_jobs]
nightly = 11

[environments.prod]
databricks_profile = "prod"   # from ~/.databrickscfg
secret_scope = "prod.dbt"
failure_emails = ["data@example.com"]
scope_readers = ["data-engineers"]
run_timeout_seconds = 7200
cluster_id = "0101-123456-abcdefgh"

[environments.prod.dbt_jobs]
nightly = 1234
marts = { job_id = 1235, depends_on = ["nightly"] }

[environments.prod.schedule]
quartz_cron = "0 0 6 * * ?"
timezone = "Europe/Amsterdam"
paused = true
"""


@pytest.fixture(autouse=True)
def _no_dbt_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The emulator scripts export these; the fallback tests set them explicitly.
    monkeypatch.delenv("DBT_CLOUD_HOST", raising=False)
    monkeypatch.delenv("DBT_CLOUD_ACCOUNT_ID", raising=False)
    # Which workspace an environment acts on reads these (collisions); never the real ~/.databrickscfg.
    monkeypatch.delenv("DATABRICKS_HOST", raising=False)
    monkeypatch.delenv("DATABRICKS_CONFIG_PROFILE", raising=False)
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(tmp_path / "no-databrickscfg"))


def parse(text: str) -> dict:
    return parse_config(text, Path("dbtwf.toml")).environments


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse(text)
    return caught.value.message


# --- reading -------------------------------------------------------------------------------


def test_minimal_environment_gets_every_default_a_newcomer_never_types() -> None:
    env = parse(MINIMAL)["dev"]
    assert env.dbt_jobs == (DbtJobTask("nightly", 1234),)
    assert env.secret_scope == "dbtwf-dev"
    assert env.secret_key == "dbt-cloud-api-token"
    assert env.notebook_path == "~/.dbtwf/dev/run_dbt_cloud_job"  # the deploying identity's home
    assert env.workflow_name == "dbt Cloud jobs (dev)"
    assert env.compute == Compute()
    assert env.schedule is None
    assert env.databricks_profile is None
    assert env.state_path == "~/.dbtwf/dev/.dbtwf-state-dev.json"
    resolved = env.resolved("ana@example.com")
    assert resolved.notebook_path == "/Users/ana@example.com/.dbtwf/dev/run_dbt_cloud_job"
    assert resolved.state_path == "/Users/ana@example.com/.dbtwf/dev/.dbtwf-state-dev.json"


def test_an_environment_built_in_code_has_the_defaults_the_file_gives() -> None:
    """One source of the defaults: an Environment made without them (as plan, add-task and the
    tests make them) is the environment a dbtwf.toml that names none of them reads as."""
    from_file = parse(MINIMAL)["dev"]
    in_code = Environment(
        name="dev",
        dbt_cloud_host="ab123.us1.dbt.com",
        dbt_cloud_account_id=70403,
        dbt_jobs=from_file.dbt_jobs,
    )
    assert in_code == from_file
    assert {key: getattr(in_code, key) for key in environment_defaults("dev")} == environment_defaults("dev")


def test_defaults_merge_under_each_environment_and_env_placeholder_expands() -> None:
    envs = parse(FULL)
    dev, prod = envs["dev"], envs["prod"]
    assert dev.dbt_cloud_host == prod.dbt_cloud_host == "ab123.us1.dbt.com"
    assert dev.notebook_path == "/Shared/etl/dev/dbt"
    assert prod.notebook_path == "/Shared/etl/prod/dbt"
    assert prod.secret_scope == "prod.dbt"
    assert prod.databricks_profile == "prod"
    assert prod.dbt_jobs == (DbtJobTask("nightly", 1234), DbtJobTask("marts", 1235, ("nightly",)))
    assert prod.schedule == Schedule("0 0 6 * * ?", "Europe/Amsterdam", paused=True)
    assert prod.compute == Compute(kind="existing_cluster", existing_cluster_id="0101-123456-abcdefgh")
    assert prod.failure_emails == ("data@example.com",)
    assert prod.scope_readers == ("data-engineers",)
    assert prod.run_timeout_seconds == 7200
    assert dev.compute.kind == "serverless"


def test_job_cluster_spec_and_an_environment_overriding_the_default_compute() -> None:
    text = """
[defaults]
dbt_cloud_host = "h.us1.dbt.com"
dbt_cloud_account_id = 1
cluster_id = "shared-cluster"
[environments.prod.dbt_jobs]
a = 1
[environments.prod.job_cluster]
spark_version = "15.4.x-scala2.12"
num_workers = 1
[environments.dev.dbt_jobs]
a = 1
"""
    envs = parse(text)
    assert envs["prod"].compute == Compute(
        kind="job_cluster", new_cluster={"spark_version": "15.4.x-scala2.12", "num_workers": 1}
    )
    assert envs["dev"].compute.existing_cluster_id == "shared-cluster"


def test_host_and_account_fall_back_to_dbt_cloud_cli_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    text = "[environments.dev.dbt_jobs]\na = 1\n"
    assert "dbt_cloud_host: missing" in error_of(text)
    monkeypatch.setenv("DBT_CLOUD_HOST", "http://127.0.0.1:8000")
    assert "dbt_cloud_account_id: missing" in error_of(text)
    monkeypatch.setenv("DBT_CLOUD_ACCOUNT_ID", "42")
    env = parse(text)["dev"]
    assert (env.dbt_cloud_host, env.dbt_cloud_account_id) == ("http://127.0.0.1:8000", 42)


def test_missing_file_points_to_onboard(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "dbtwf.toml")
    assert "no such config file" in caught.value.message
    assert "dbtwf onboard" in (caught.value.hint or "")
    assert caught.value.exit_code == 2


def test_toml_error_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "dbtwf.toml"
    path.write_text('[environments.dev]\ndbt_cloud_host = "x"\ndbt_cloud_account_id = = 3\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.message.startswith(f"{path}: TOML error at line 3")


def test_the_exact_scope_name_message() -> None:
    text = MINIMAL.replace("[environments.dev]", '[environments.prod]\nsecret_scope = "my scope"').replace(
        "environments.dev.", "environments.prod."
    )
    assert error_of(text) == (
        'dbtwf.toml: [environments.prod] secret_scope: "my scope" is not a valid scope name '
        "(letters, digits, -, _, ., @ up to 128)"
    )


def test_an_invalid_value_from_defaults_is_reported_in_defaults() -> None:
    text = '[defaults]\nsecret_key = "bad key!"\n' + MINIMAL
    assert error_of(text).startswith('dbtwf.toml: [defaults] secret_key: "bad key!" is not a valid')


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        (
            'scret_scope = "x"',
            'dbtwf.toml: [environments.dev] unknown key "scret_scope"; did you mean secret_scope?',
        ),
        ('token = "dbtc_x"', 'dbtwf.toml: [environments.dev] unknown key "token"'),
        (
            'notebook_path = "Shared/x"',
            'dbtwf.toml: [environments.dev] notebook_path: "Shared/x" is not an absolute',
        ),
        ('notebook_path = "/Shared/x/"', 'notebook_path: "/Shared/x/" is not a notebook path'),
        ('dbt_cloud_account_id = "70403"', 'dbt_cloud_account_id: must be a positive integer, got "70403"'),
        ("dbt_cloud_account_id = -1", "dbt_cloud_account_id: must be a positive integer, got -1"),
        ("dbt_cloud_account_id = true", "dbt_cloud_account_id: must be a positive integer, got True"),
        (
            'dbt_cloud_host = "not a host"',
            "dbt_cloud_host: the dbt Cloud host 'not a host' is not a host name",
        ),
        (
            'cluster_id = "c"\njob_cluster = { num_workers = 1 }',
            "cluster_id and job_cluster exclude each other",
        ),
        ('failure_emails = ["nobody"]', 'failure_emails: "nobody" is not an e-mail address'),
        ("run_timeout_seconds = 0", "run_timeout_seconds: must be a positive integer"),
        ('workflow_name = ""', "workflow_name: must be a non-empty string"),
        ('scope_readers = "users"', 'scope_readers: must be a list of non-empty strings, got "users"'),
    ],
)
def test_bad_environment_values(snippet: str, expected: str) -> None:
    # The environment's own value overrides the valid one in [defaults].
    text = (
        '[defaults]\ndbt_cloud_host = "ab123.us1.dbt.com"\ndbt_cloud_account_id = 70403\n'
        f"[environments.dev]\n{snippet}\n[environments.dev.dbt_jobs]\nnightly = 1234\n"
    )
    assert expected in error_of(text)


@pytest.mark.parametrize(
    ("jobs", "expected"),
    [
        ("", "dbt_jobs: no dbt jobs"),
        ('a = "12"', '[environments.dev.dbt_jobs] a: must be a positive integer, got "12"'),
        ("a = 0", "[environments.dev.dbt_jobs] a: must be a positive integer, got 0"),
        ('"bad key" = 1', '[environments.dev.dbt_jobs] "bad key": is not a valid task key'),
        ('"clé" = 1', '[environments.dev.dbt_jobs] "clé": is not a valid task key (1 to 100 ASCII'),
        ("a = { jobid = 1 }", '[environments.dev.dbt_jobs] a: unknown key "jobid"; did you mean job_id?'),
        ('a = { depends_on = ["b"] }', "[environments.dev.dbt_jobs] a: job_id is missing"),
        ('a = { job_id = 1, depends_on = ["zz"] }', '"zz" is not a task of this environment (known: a)'),
        ('a = { job_id = 1, depends_on = ["a"] }', "a.depends_on: a task cannot depend on itself"),
        ('a = { job_id = 1, depends_on = "b" }\nb = 2', 'a.depends_on: must be a list of task keys, got "b"'),
        (
            'a = { job_id = 1, depends_on = ["c"] }\nb = { job_id = 2, depends_on = ["a"] }\n'
            'c = { job_id = 3, depends_on = ["b"] }',
            "depends_on makes a cycle: a -> c -> b -> a",
        ),
    ],
)
def test_bad_dbt_jobs(jobs: str, expected: str) -> None:
    text = MINIMAL.replace("nightly = 1234", jobs)
    assert expected in error_of(text)


@pytest.mark.parametrize(
    ("appended", "table"),
    [
        ('cluster_id = "0101-123456-abcdefgh"', "[environments.dev.dbt_jobs]"),
        ('dbt_cloud_host = "ab123.us1.dbt.com"', "[environments.dev.dbt_jobs]"),  # before "missing"
        ("run_timeout_seconds = 3600", "[environments.dev.dbt_jobs]"),  # would pass as a dbt job id
        (
            '[environments.dev.schedule]\nquartz_cron = "0 0 6 * * ?"\nworkflow_name = "x"',
            "[environments.dev.schedule]",
        ),
        (
            '[environments.dev.job_cluster]\nspark_version = "15.4.x-scala2.12"\nsecret_key = "k"',
            "[environments.dev.job_cluster]",
        ),
        ('[defaults.schedule]\nquartz_cron = "0 0 6 * * ?"\nfailure_emails = []', "[defaults.schedule]"),
    ],
)
def test_a_setting_appended_into_a_sub_table_is_named_as_misplaced(appended: str, table: str) -> None:
    """TOML gives every line after a [table] header to that table: a setting appended at the end
    of the file lands in the last one. Say where it is, not "must be a positive integer"."""
    text = MINIMAL.replace('dbt_cloud_host = "ab123.us1.dbt.com"', "") if "host" in appended else MINIMAL
    setting = appended.rsplit("\n", 1)[-1].split(" =")[0]
    with pytest.raises(ConfigError) as caught:
        parse(f"{text}{appended}\n")
    assert caught.value.message == f"dbtwf.toml: {setting} is inside {table}; move it above that table"
    assert "[table] header" in (caught.value.hint or "")


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ('timezone = "UTC"', "[environments.dev.schedule] quartz_cron: missing"),
        ('quartz_cron = "0 6 * * *"', '[environments.dev.schedule] quartz_cron: "0 6 * * *" is not a Quartz'),
        (
            'quartz_cron = "0 0 6 * * ?"\ntimezone = "Mars/Olympus"',
            'timezone: "Mars/Olympus" is not a known time zone',
        ),
        ('quartz_cron = "0 0 6 * * ?"\npaused = "yes"', 'paused: must be true or false, got "yes"'),
        ('quartz_cron = "0 0 6 * * ?"\ncron = "x"', '[environments.dev.schedule] unknown key "cron"'),
    ],
)
def test_bad_schedules(schedule: str, expected: str) -> None:
    text = MINIMAL + f"\n[environments.dev.schedule]\n{schedule}\n"
    assert expected in error_of(text)


def test_unknown_top_level_key_and_bad_environment_name() -> None:
    assert 'unknown top-level key "enviroments"; did you mean environments?' in error_of(
        "[enviroments.dev]\nx = 1\n"
    )
    assert "is not a valid environment name" in error_of(
        MINIMAL.replace("environments.dev", 'environments."my env"')
    )


# --- Quartz ----------------------------------------------------------------------------------

GOOD_CRONS = [
    "0 0 6 * * ?",
    "0 15 10 ? * MON-FRI",
    "0 0/5 14,18 * * ?",
    "*/10 * * * * ?",
    "0 0 12 1/5 * ?",
    "0 11 11 11 11 ?",
    "0 15 10 * * ? 2030",
    "0 0 22-2 * * ?",  # Quartz lets a range wrap around
    "0 15 10 L * ?",
    "0 15 10 LW * ?",
    "0 15 10 L-3 * ?",
    "0 15 10 15W * ?",
    "0 15 10 ? * 6L",
    "0 15 10 ? * FRIL",
    "0 15 10 ? * 6#3",
    "0 15 10 ? * L",
    "0 0 0 ? JAN-MAR SUN",
    "0 0 0 ? jul mon,wed,fri",
    "0   0  6  *  *  ?",
]
BAD_CRONS = [
    ("", "0 fields"),
    ("0 6 * * *", "5 fields, expected 6 or 7"),
    ("0 0 6 * * ? 2030 x", "8 fields"),
    ("0 0 6 * * *", "exactly one of day-of-month and day-of-week must be '?'"),
    ("0 0 6 ? * ?", "exactly one of day-of-month and day-of-week must be '?'"),
    ("60 0 6 * * ?", "seconds '60': 60 is outside 0-59"),
    ("0 0 24 * * ?", "hours '24': 24 is outside 0-23"),
    ("0 0 6 32 * ?", "day-of-month '32': 32 is outside 1-31"),
    ("0 0 6 0 * ?", "day-of-month '0': 0 is outside 1-31"),
    ("0 0 6 * 13 ?", "month '13': 13 is outside 1-12"),
    ("0 0 6 ? * 8", "day-of-week '8': 8 is outside 1-7"),
    ("0 0 6 ? * FOO", "day-of-week 'FOO': 'FOO' is not a number or SUN-style names"),
    ("0 0 6 * JANUARY ?", "'JANUARY' is not a number"),
    ("0 0/0 6 * * ?", "step '0' must be a number from 1 to 60"),
    ("0 0/61 6 * * ?", "step '61'"),
    ("0 0 6 ? * 6#6", "the n in day#n must be 1-5"),
    ("0 0 6 L,5 * ?", "L, W and # forms must be the field's only item"),
    ("0 0 6 L-31 * ?", "the offset in L-n must be 0-30"),
    ("? 0 6 * * ?", "'?' is only allowed in day-of-month or day-of-week"),
    ("0 0 6 1,,2 * ?", "empty list item"),
    ("0 0 6 * * ? 1969", "year '1969': 1969 is outside 1970-2099"),
    ("0 0 L * * ?", "'L' is not a number"),
    ("0 0 6 5-? * ?", "'?' is not a number"),
]


@pytest.mark.parametrize("expr", GOOD_CRONS)
def test_valid_quartz_expressions(expr: str) -> None:
    validate_quartz_cron(expr)


@pytest.mark.parametrize(("expr", "expected"), BAD_CRONS)
def test_invalid_quartz_expressions(expr: str, expected: str) -> None:
    with pytest.raises(UsageError) as caught:
        validate_quartz_cron(expr)
    assert expected in caught.value.message
    assert caught.value.message.startswith(f'"{expr}" is not a Quartz cron expression')


def test_small_validators() -> None:
    validate_secret_name("dbtwf-prod.v2_x", "scope name")
    validate_notebook_path("/Users/a@b.com/dbt runner")
    validate_notebook_path("~/.dbtwf/prod/run_dbt_cloud_job")
    validate_timezone("America/New_York")
    for bad in ("", "a" * 129, "with space", "slash/no"):
        with pytest.raises(UsageError):
            validate_secret_name(bad, "secret key name")
    for bad in ("relative/path", "/", "/a/../b", "/a//b", "~", "~/", "~other/x", "~/../x"):
        with pytest.raises(UsageError):
            validate_notebook_path(bad)
    assert default_task_key(42) == "dbt_job_42"


# --- choosing ---------------------------------------------------------------------------------


def test_select_environment_rules() -> None:
    only = parse_config(MINIMAL.replace("environments.dev", "environments.qa"), Path("c.toml"))
    assert select_environment(only, None).name == "qa"
    both = parse_config(FULL, Path("c.toml"))
    assert select_environment(both, None).name == "dev"
    assert select_environment(both, "prod").name == "prod"
    with pytest.raises(ConfigError) as caught:
        select_environment(both, "staging")
    assert caught.value.message == 'c.toml: no environment "staging" (known: dev, prod)'
    no_dev = parse_config(FULL.replace("environments.dev", "environments.qa"), Path("c.toml"))
    with pytest.raises(ConfigError, match="several environments and none is called dev"):
        select_environment(no_dev, None)
    with pytest.raises(ConfigError, match="no environments defined"):
        select_environment(parse_config("", Path("c.toml")), None)


# --- writing ----------------------------------------------------------------------------------

ONBOARD_VALUES = {
    "dbt_cloud_host": "ab123.us1.dbt.com",
    "dbt_cloud_account_id": 70403,
    "dbt_jobs": {"dbt_job_1234": 1234},
    "secret_scope": "dbtwf-prod",  # the default: not written
    "notebook_path": "~/.dbtwf/prod/run_dbt_cloud_job",  # the default: not written
    "schedule": {"quartz_cron": "0 0 6 * * ?", "timezone": "UTC"},
}


def test_upsert_creates_a_minimal_file(tmp_path: Path) -> None:
    path = tmp_path / "dbtwf.toml"
    env = upsert_environment(path, "prod", ONBOARD_VALUES)
    assert env.dbt_jobs == (DbtJobTask("dbt_job_1234", 1234),)
    text = path.read_text()
    assert "[environments.prod]" in text
    assert "secret_scope" not in text and "notebook_path" not in text
    assert 'quartz_cron = "0 0 6 * * ?"' in text
    assert load_config(path).environments["prod"] == env


def test_upsert_keeps_comments_and_layout_and_writes_only_differences(tmp_path: Path) -> None:
    path = tmp_path / "dbtwf.toml"
    path.write_text(FULL)
    env = upsert_environment(
        path,
        "prod",
        {
            "secret_scope": "dbtwf-prod",  # back to the default: the explicit entry goes
            "workflow_name": "Nightly dbt",
            "dbt_jobs": {"dbt_job_1234": 1234, "dbt_job_77": 77},  # 1234 already runs as "nightly"
            "job_cluster": {"spark_version": "15.4.x-scala2.12", "num_workers": 1},
        },
    )
    text = path.read_text()
    assert "# shared by every environment" in text
    assert 'databricks_profile = "prod"   # from ~/.databrickscfg' in text
    assert "secret_scope" not in text
    assert 'workflow_name = "Nightly dbt"' in text
    assert "cluster_id" not in text
    assert [task.task_key for task in env.dbt_jobs] == ["nightly", "marts", "dbt_job_77"]
    assert env.compute.kind == "job_cluster"
    assert env.secret_scope == "dbtwf-prod"
    # the rest of the file is byte-identical
    assert text.split("[environments.prod]")[0] == FULL.split("[environments.prod]")[0]


def test_upsert_validates_before_writing(tmp_path: Path) -> None:
    path = tmp_path / "dbtwf.toml"
    path.write_text(FULL)
    for values in (
        {"secret_scope": "my scope"},
        {"schedule": {"quartz_cron": "0 6 * * *"}},
        {"token": "dbtc_secret"},
        {"dbt_jobs": {"x": {"job_id": 1, "depends_on": ["nope"]}}},
    ):
        with pytest.raises(UsageError):
            upsert_environment(path, "prod", values)
    with pytest.raises(UsageError, match="not a valid environment name"):
        upsert_environment(path, "my env", {})
    assert path.read_text() == FULL
    assert [p.name for p in tmp_path.iterdir()] == ["dbtwf.toml"]  # no temporary files left


def test_upsert_onto_a_broken_file_reports_the_toml_error(tmp_path: Path) -> None:
    path = tmp_path / "dbtwf.toml"
    path.write_text("[environments.dev\n")
    with pytest.raises(ConfigError, match="TOML error at line 1"):
        upsert_environment(path, "dev", ONBOARD_VALUES)
    assert path.read_text() == "[environments.dev\n"


def test_upsert_depends_on_is_written_inline(tmp_path: Path) -> None:
    path = tmp_path / "dbtwf.toml"
    upsert_environment(
        path, "dev", ONBOARD_VALUES | {"dbt_jobs": {"a": 1, "b": {"job_id": 2, "depends_on": ["a"]}}}
    )
    assert 'b = {job_id = 2, depends_on = ["a"]}' in path.read_text()
    assert load_config(path).environments["dev"].dbt_jobs[1] == DbtJobTask("b", 2, ("a",))


# --- which workspace: databricks_host and environments that collide --------------------------------

TWO = """
[defaults]
dbt_cloud_host = "ab123.us1.dbt.com"
dbt_cloud_account_id = 70403

[environments.dev]
{dev}

[environments.dev.dbt_jobs]
nightly = 1

[environments.prod]
{prod}

[environments.prod.dbt_jobs]
nightly = 2
"""


def two(dev: str = "", prod: str = "") -> str:
    return TWO.format(dev=dev, prod=prod)


def test_databricks_host_is_validated_and_normalised() -> None:
    envs = parse(two(dev='databricks_host = "HTTPS://Adb-123.4.AzureDatabricks.net/"'))
    assert envs["dev"].databricks_host == "https://adb-123.4.azuredatabricks.net"
    assert envs["prod"].databricks_host is None
    assert parse(two(dev='databricks_host = "dbc-1.cloud.databricks.com"'))["dev"].databricks_host == (
        "https://dbc-1.cloud.databricks.com"
    )
    assert parse(two(dev='databricks_host = "http://127.0.0.1:8080"'))["dev"].databricks_host == (
        "http://127.0.0.1:8080"
    )
    for bad, expected in [
        ('"http://adb-1.net"', "plain http"),
        ('"http://localhost.evil.invalid"', "plain http"),
        ('"https://adb-1.net/some/path"', "not a workspace URL"),
        ('"has space.net"', "not a workspace URL"),
        ('""', "must be a non-empty string"),
        ("42", "must be a non-empty string"),
    ]:
        message = error_of(two(dev=f"databricks_host = {bad}"))
        assert message.startswith("dbtwf.toml: [environments.dev] databricks_host:"), message
        assert expected in message
    with pytest.raises(UsageError):
        validate_databricks_host("ftp://adb-1.net")


@pytest.mark.parametrize(
    ("dev", "prod", "what", "value"),
    [
        # Both on the DATABRICKS_* variables; scope names compare case-insensitively.
        ('secret_scope = "Shared"', 'secret_scope = "shared"', "secret", "Shared/dbt-cloud-api-token"),
        # The same profile.
        (
            'databricks_profile = "ws"\nnotebook_path = "/Shared/dbt/runner"',
            'databricks_profile = "ws"\nnotebook_path = "/Workspace/Shared/dbt/runner"',
            "notebook",
            "/Shared/dbt/runner",
        ),
        # The same pinned host, spelled differently; workflow names compare case-insensitively.
        (
            'databricks_host = "https://adb-1.net"\nworkflow_name = "dbt"',
            'databricks_host = "ADB-1.net/"\ndatabricks_profile = "p"\nworkflow_name = "DBT"',
            "workflow name",
            "dbt",
        ),
    ],
)
def test_environments_sharing_a_workspace_may_not_share_what_dbtwf_owns(
    dev: str, prod: str, what: str, value: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(two(dev=dev, prod=prod))
    error = caught.value
    assert error.exit_code == 2
    assert error.message.startswith(
        f'dbtwf.toml: environments "dev" and "prod" both use the {what} "{value}"'
    )
    assert "same workspace" in error.message and error.hint and "destroying one" in error.hint


def test_the_state_record_is_compared_too() -> None:
    from provision.environments import check_collisions
    from tests.provision_helpers import make_env

    dev = make_env("dev", notebook_path="/Shared/x/run")
    same_folder = make_env("dev", notebook_path="/Shared/x/other", secret_scope="s2", workflow_name="w2")
    with pytest.raises(ConfigError, match=r'both use the state record "/Shared/x/\.dbtwf-state-dev\.json"'):
        check_collisions(Path("dbtwf.toml"), {"dev": dev, "dev2": same_folder})


def test_environments_in_other_workspaces_may_share_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = 'secret_scope = "s"\nnotebook_path = "/Shared/dbt"\nworkflow_name = "dbt"'
    profiles = tmp_path / "databrickscfg"
    profiles.write_text("[dev]\nhost = https://dev.invalid\n\n[prod]\nhost = https://prod.invalid\n")
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(profiles))
    parse(two(dev=f'databricks_profile = "dev"\n{shared}', prod=f'databricks_profile = "prod"\n{shared}'))
    parse(two(dev=f'databricks_host = "dev.invalid"\n{shared}', prod=shared))  # prod: the variables
    # A profile whose host is the one DATABRICKS_HOST names is the same workspace.
    monkeypatch.setenv("DATABRICKS_HOST", "https://PROD.invalid/")
    message = error_of(two(dev=shared, prod=f'databricks_profile = "prod"\n{shared}'))
    assert "same workspace (workspace https://prod.invalid)" in message


def test_a_colliding_config_stops_destroy_before_any_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, databricks: object
) -> None:
    """Today's failure: `destroy --env dev` deleted prod's secret. Now the config is refused first."""
    from typer.testing import CliRunner

    from provision.cli import app
    from tests.provision_helpers import cli_env

    for name, value in cli_env(tmp_path, databricks.url).items():  # type: ignore[attr-defined]
        monkeypatch.setenv(name, value)
    (tmp_path / "dbtwf.toml").write_text(two(dev='secret_scope = "s"', prod='secret_scope = "s"'))
    result = CliRunner().invoke(app, ["--env", "dev", "destroy", "--yes"])
    assert result.exit_code == 2, result.output
    assert 'environments "dev" and "prod" both use the secret "s/dbt-cloud-api-token"' in result.stderr
    assert databricks.requests == []  # type: ignore[attr-defined]


def test_scope_names_may_hold_an_at_sign() -> None:
    assert parse(two(dev='secret_scope = "team@example.com"'))["dev"].secret_scope == "team@example.com"
    validate_scope_name("a@b.c", "--secret-scope")
    with pytest.raises(UsageError, match=r"letters, digits, -, _, \., @ up to 128"):
        validate_scope_name("a b", "--secret-scope")
    with pytest.raises(UsageError):
        validate_secret_name("key@x", "secret key name")  # keys keep the narrower rule
