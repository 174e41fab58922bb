"""dbtwf.toml: shared `[defaults]` merged under each `[environments.NAME]`, validated.

    [defaults]
    dbt_cloud_host = "ab123.us1.dbt.com"
    dbt_cloud_account_id = 70403

    [environments.prod]
    databricks_profile = "prod"
    failure_emails = ["data@example.com"]

    [environments.prod.dbt_jobs]
    nightly = 1234                                        # task key = dbt job id
    marts = { job_id = 1235, depends_on = ["nightly"] }

    [environments.prod.schedule]
    quartz_cron = "0 0 6 * * ?"
    timezone = "Europe/Amsterdam"

Everything but the dbt host, account and jobs has a per-environment default, so a newcomer
types nothing else: scope `dbtwf-<env>`, key `dbt-cloud-api-token`, notebook
`~/.dbtwf/<env>/run_dbt_cloud_job` (`~` is the deploying identity's home folder,
/Users/<user name>: only it and admins can edit it), workflow `dbt Cloud jobs (<env>)`,
serverless compute. `{env}` in a string value stands for the environment's name, so
`[defaults]` can say `notebook_path = "~/etl/{env}/dbt"`. The host and account fall back to
`DBT_CLOUD_HOST` / `DBT_CLOUD_ACCOUNT_ID` (dbt-cloud-cli's names) when the file has none.

Every error names the file, the table and the key. The token never goes in this file.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provision.errors import ConfigError, UsageError
from provision.model import (
    HOME_PREFIX,
    Compute,
    DbtJobTask,
    Environment,
    Schedule,
    default_notebook_path,
    normalize_host,
)

HOST_ENVVAR = "DBT_CLOUD_HOST"
ACCOUNT_ENVVAR = "DBT_CLOUD_ACCOUNT_ID"

#: Every key an environment (or `[defaults]`) may hold.
ENVIRONMENT_KEYS = (
    "databricks_profile",
    "databricks_host",
    "dbt_cloud_host",
    "dbt_cloud_account_id",
    "secret_scope",
    "secret_key",
    "notebook_path",
    "workflow_name",
    "dbt_jobs",
    "schedule",
    "cluster_id",
    "job_cluster",
    "failure_emails",
    "run_timeout_seconds",
    "scope_readers",
)
SCHEDULE_KEYS = ("quartz_cron", "timezone", "paused")
DBT_JOB_KEYS = ("job_id", "depends_on")
_TOP_LEVEL_KEYS = ("defaults", "environments")
# Tables whose keys merge with `[defaults]` one by one; any other value replaces it whole.
_MERGED_TABLES = ("schedule", "job_cluster")
_COMPUTE_KEYS = ("cluster_id", "job_cluster")

_SECRET_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")
# Scope names may also hold "@" (docs.databricks.com, security/secrets/workspace-secret-scopes).
_SCOPE_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,128}")
_ENV_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_TASK_KEY = re.compile(r"[A-Za-z0-9_-]{1,100}")  # the Jobs API's task_key rule
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_MAX_WORKFLOW_NAME = 4096  # the Jobs API's limit on a job name


@dataclass(frozen=True)
class Config:
    path: Path
    environments: dict[str, Environment]


# --- defaults ---------------------------------------------------------------------------


def environment_defaults(name: str) -> dict[str, Any]:
    """The values an environment gets when neither it nor `[defaults]` sets them."""
    return {
        "secret_scope": f"dbtwf-{name}",
        "secret_key": "dbt-cloud-api-token",
        "notebook_path": default_notebook_path(name),
        "workflow_name": f"dbt Cloud jobs ({name})",
        "run_timeout_seconds": Environment.run_timeout_seconds,
    }


def default_task_key(dbt_job_id: int) -> str:
    """The task key of a dbt job nobody named: `dbt_job_<id>`."""
    return f"dbt_job_{dbt_job_id}"


# --- validators shared with the CLI's flags (UsageError, exit 2) ---------------------------


def _q(value: object) -> str:
    return json.dumps(value) if isinstance(value, str) else repr(value)


def validate_secret_name(value: str, what: str) -> None:
    """A Databricks secret key name: letters, digits, -, _, . up to 128."""
    if not isinstance(value, str) or not _SECRET_NAME.fullmatch(value):
        raise UsageError(f"{_q(value)} is not a valid {what} (letters, digits, -, _, . up to 128)")


def validate_scope_name(value: str, what: str) -> None:
    """A Databricks secret scope name: letters, digits, -, _, ., @ up to 128 (compared
    case-insensitively by Databricks)."""
    if not isinstance(value, str) or not _SCOPE_NAME.fullmatch(value):
        raise UsageError(f"{_q(value)} is not a valid {what} (letters, digits, -, _, ., @ up to 128)")


def validate_databricks_host(value: str) -> None:
    """A workspace URL: https://HOST (a bare host means https), plain http only for loopback."""
    from urllib.parse import urlsplit

    text = value.strip() if isinstance(value, str) else ""
    parts = urlsplit(text if "://" in text else f"https://{text}")
    example = "like https://adb-1234567890123456.7.azuredatabricks.net"
    try:
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise UsageError(f"{_q(value)} is not a workspace URL ({example})") from None
    if (
        not parts.hostname
        or any(char.isspace() for char in text)
        or parts.query
        or parts.fragment
        or parts.path.strip("/")
    ):
        raise UsageError(f"{_q(value)} is not a workspace URL ({example})")
    if parts.scheme == "http" and parts.hostname not in ("localhost", "127.0.0.1", "::1"):
        raise UsageError(f"{_q(value)} uses plain http; use https (http only for a loopback host)")
    if parts.scheme not in ("http", "https"):
        raise UsageError(f"{_q(value)} is not a workspace URL ({example})")


def validate_notebook_path(path: str) -> None:
    """An absolute workspace path such as /Users/me@example.com/dbt/run_dbt_cloud_job, or one
    under the deploying identity's home folder: ~/.dbtwf/prod/run_dbt_cloud_job."""
    in_home = isinstance(path, str) and path.startswith(HOME_PREFIX)
    if not isinstance(path, str) or not (path.startswith("/") or in_home):
        raise UsageError(
            f"{_q(path)} is not an absolute workspace path; give it from the root, like "
            "/Users/me@example.com/dbtwf/run_dbt_cloud_job, or under your home folder: "
            "~/.dbtwf/prod/run_dbt_cloud_job"
        )
    parts = path.split("/")[1:]
    if path in ("/", HOME_PREFIX) or any(part in ("", ".", "..") for part in parts):
        raise UsageError(
            f"{_q(path)} is not a notebook path: no empty, '.' or '..' parts and no trailing '/'"
        )
    if any(ord(char) < 32 for char in path):
        raise UsageError(f"{_q(path)} contains control characters")


def validate_timezone(name: str) -> None:
    """A time zone the scheduler knows (IANA names, as Java's ZoneId accepts them)."""
    import zoneinfo

    if not isinstance(name, str) or not name:
        raise UsageError(f"{_q(name)} is not a time zone; use an IANA name like Europe/Amsterdam or UTC")
    if name == "UTC":
        return
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        if not zoneinfo.available_timezones():
            return  # no tz database on this machine: leave the check to Databricks
        raise UsageError(
            f"{_q(name)} is not a known time zone; use an IANA name like Europe/Amsterdam or UTC"
        ) from None


# Quartz: seconds minutes hours day-of-month month day-of-week [year].
_MONTHS = {
    name: i
    for i, name in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), 1
    )
}
_DAYS = {name: i for i, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), 1)}


@dataclass(frozen=True)
class _CronField:
    name: str
    low: int
    high: int
    names: Mapping[str, int]


_CRON_FIELDS = (
    _CronField("seconds", 0, 59, {}),
    _CronField("minutes", 0, 59, {}),
    _CronField("hours", 0, 23, {}),
    _CronField("day-of-month", 1, 31, {}),
    _CronField("month", 1, 12, _MONTHS),
    _CronField("day-of-week", 1, 7, _DAYS),
    _CronField("year", 1970, 2099, {}),
)
_CRON_EXAMPLE = '"0 0 6 * * ?" (every day at 06:00) or "0 30 7 ? * MON-FRI"'


class _CronFieldError(ValueError):
    pass


def _cron_value(text: str, field: _CronField) -> int:
    upper = text.upper()
    if upper in field.names:
        return field.names[upper]
    if not text.isdigit():
        known = f" or {next(iter(field.names))}-style names" if field.names else ""
        raise _CronFieldError(f"{text!r} is not a number{known}")
    value = int(text)
    if not field.low <= value <= field.high:
        raise _CronFieldError(f"{value} is outside {field.low}-{field.high}")
    return value


def _cron_item(item: str, field: _CronField) -> None:
    """One comma-separated item: *, a value, a range a-b (Quartz lets it wrap), each with /step."""
    base, slash, step = item.partition("/")
    if slash:
        if not step.isdigit() or not 1 <= int(step) <= field.high - field.low + 1:
            raise _CronFieldError(f"step {step!r} must be a number from 1 to {field.high - field.low + 1}")
        if base == "":
            return  # Quartz reads "/5" as "0/5"
    if base == "*":
        return
    if base == "?":
        raise _CronFieldError("'?' must stand alone")
    start, dash, stop = base.partition("-")
    _cron_value(start, field)
    if dash:
        _cron_value(stop, field)


def _cron_special(text: str, field: _CronField) -> bool:
    """Day fields' L, W and # forms (each must be the field's only item). True when matched."""
    upper = text.upper()
    if field.name == "day-of-month":
        if upper in ("L", "LW"):
            return True
        if match := re.fullmatch(r"L-(\d+)", upper):
            if not 0 <= int(match[1]) <= 30:
                raise _CronFieldError("the offset in L-n must be 0-30")
            return True
        if match := re.fullmatch(r"(\d+)W", upper):
            _cron_value(match[1], field)
            return True
    if field.name == "day-of-week":
        if upper == "L":
            return True
        if match := re.fullmatch(r"(\w+)L", upper):
            _cron_value(match[1], field)
            return True
        if match := re.fullmatch(r"(\w+)#(\d+)", upper):
            _cron_value(match[1], field)
            if not 1 <= int(match[2]) <= 5:
                raise _CronFieldError("the n in day#n must be 1-5")
            return True
    if field.name.startswith("day-of") and re.search(r"[LW#]", upper.replace("WED", "")):
        raise _CronFieldError("L, W and # forms must be the field's only item")
    return False


def validate_quartz_cron(expr: str) -> None:
    """A Quartz cron expression as Databricks schedules take them; UsageError otherwise."""
    if not isinstance(expr, str):
        raise UsageError(f"{_q(expr)} is not a Quartz cron expression; for example {_CRON_EXAMPLE}")
    fields = expr.split()
    if len(fields) not in (6, 7):
        raise UsageError(
            f"{_q(expr)} is not a Quartz cron expression: it has {len(fields)} fields, expected 6 or 7 "
            f"(seconds minutes hours day-of-month month day-of-week [year]); for example {_CRON_EXAMPLE}"
        )
    for text, field in zip(fields, _CRON_FIELDS[: len(fields)], strict=True):
        try:
            if text == "?":
                if field.name not in ("day-of-month", "day-of-week"):
                    raise _CronFieldError("'?' is only allowed in day-of-month or day-of-week")
                continue
            if _cron_special(text, field):
                continue
            for item in text.split(","):
                if not item:
                    raise _CronFieldError("empty list item")
                _cron_item(item, field)
        except _CronFieldError as error:
            raise UsageError(
                f"{_q(expr)} is not a Quartz cron expression: {field.name} {text!r}: {error}"
            ) from None
    if (fields[3] == "?") == (fields[5] == "?"):
        raise UsageError(
            f"{_q(expr)} is not a Quartz cron expression: exactly one of day-of-month and "
            f"day-of-week must be '?'; for example {_CRON_EXAMPLE}"
        )


# --- reading ----------------------------------------------------------------------------


def load_config(path: Path) -> Config:
    """Read, merge and validate the config file; ConfigError naming file, table and key."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such config file",
            hint="run `dbtwf onboard --dbt-job-url URL` to create it, or point --config / DBTWF_CONFIG at it",
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read the config file: {error}") from None
    return parse_config(text, path)


def parse_config(text: str, path: Path) -> Config:
    """Validate config text as if it were the file at ``path`` (which names it in errors)."""
    document = _parse_toml(text, path)
    _reject_unknown(document, _TOP_LEVEL_KEYS, f"{path}:", "top-level key")
    defaults = _table(document.get("defaults", {}), f"{path}: [defaults]")
    environments = _table(document.get("environments", {}), f"{path}: [environments]")
    _reject_unknown(defaults, ENVIRONMENT_KEYS, f"{path}: [defaults]", "key")
    resolved: dict[str, Environment] = {}
    for name, values in environments.items():
        where = f"{path}: [environments.{name}]"
        if not _ENV_NAME.fullmatch(name):
            raise ConfigError(
                f"{path}: [environments.{_q(name)}] is not a valid environment name "
                "(letters, digits, -, _ up to 64, starting with a letter or digit)"
            )
        table = _table(values, where)
        _reject_unknown(table, ENVIRONMENT_KEYS, where, "key")
        resolved[name] = _resolve_environment(path, name, defaults, table)
    check_collisions(path, resolved)
    return Config(path=path, environments=resolved)


def _parse_toml(text: str, path: Path) -> dict[str, Any]:
    import tomlkit
    import tomlkit.exceptions

    try:
        document = tomlkit.parse(text)
    except tomlkit.exceptions.TOMLKitError as error:
        line, col = getattr(error, "line", None), getattr(error, "col", None)
        detail = re.sub(r" at line \d+ col \d+$", "", str(error))
        where = f" at line {line}, column {col}" if line is not None else ""
        raise ConfigError(f"{path}: TOML error{where}: {detail}", hint="fix the file's syntax") from None
    return dict(document.unwrap())


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a table, got {_q(value)}")
    return value


def _reject_unknown(table: Mapping[str, Any], known: tuple[str, ...], where: str, what: str) -> None:
    for key in table:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            suggestion = f"; did you mean {close[0]}?" if close else ""
            raise ConfigError(
                f"{where} unknown {what} {_q(key)}{suggestion}",
                hint=f"known {what}s: {', '.join(known)}",
            )


def _merge(defaults: dict[str, Any], table: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """The environment's values over `[defaults]`, and which keys came from `[defaults]`."""
    merged = dict(defaults)
    from_defaults = set(defaults)
    if any(key in table for key in _COMPUTE_KEYS):
        # An environment naming its compute overrides whatever compute the defaults name.
        for key in _COMPUTE_KEYS:
            merged.pop(key, None)
            from_defaults.discard(key)
    for key, value in table.items():
        if key in _MERGED_TABLES and isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
        from_defaults.discard(key)
    return merged, from_defaults


class _Reader:
    """Typed access to one environment's merged values, with errors that say where."""

    def __init__(self, path: Path, name: str, values: dict[str, Any], from_defaults: set[str]) -> None:
        self.path, self.name, self.values, self.from_defaults = path, name, values, from_defaults

    def table(self, key: str | None = None) -> str:
        """`dbtwf.toml: [environments.prod]`, or `[environments.prod.schedule]` for a key."""
        table = "defaults" if key in self.from_defaults else f"environments.{self.name}"
        return f"{self.path}: [{table}{'.' + key if key else ''}]"

    def where(self, key: str, sub: str | None = None) -> str:
        """Where a value lives: `... [environments.prod] key:` or `... [environments.prod.key] sub:`."""
        if sub is None:
            table = "defaults" if key in self.from_defaults else f"environments.{self.name}"
            return f"{self.path}: [{table}] {key}:"
        return f"{self.table(key)} {sub}:"

    def fail(self, key: str, message: str, sub: str | None = None, hint: str | None = None) -> ConfigError:
        return ConfigError(f"{self.where(key, sub)} {message}", hint=hint)

    def check(self, key: str, value: Any, validator: Callable[[Any], None], sub: str | None = None) -> None:
        try:
            validator(value)
        except UsageError as error:
            raise self.fail(key, error.message, sub) from None

    def string(self, key: str, default: str | None = None) -> str | None:
        value = self.values.get(key, default)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"must be a non-empty string, got {_q(value)}")
        return value.replace("{env}", self.name).strip()

    def positive_int(self, key: str, value: Any, sub: str | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise self.fail(key, f"must be a positive integer, got {_q(value)}", sub)
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.values.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise self.fail(key, f"must be a list of non-empty strings, got {_q(value)}")
        return tuple(v.strip() for v in value)


def _resolve_environment(
    path: Path, name: str, defaults: dict[str, Any], table: dict[str, Any]
) -> Environment:
    merged, from_defaults = _merge(defaults, table)
    read = _Reader(path, name, merged, from_defaults)
    fallback = environment_defaults(name)

    host = read.string("dbt_cloud_host") or os.environ.get(HOST_ENVVAR, "").strip()
    if not host:
        raise ConfigError(
            f"{path}: [environments.{name}] dbt_cloud_host: missing",
            hint=f"set it (like ab123.us1.dbt.com, from the dbt job URL) or export {HOST_ENVVAR}",
        )
    read.check("dbt_cloud_host", host, _validate_host)

    account: Any = merged.get("dbt_cloud_account_id")
    if account is None and os.environ.get(ACCOUNT_ENVVAR, "").strip():
        account = os.environ[ACCOUNT_ENVVAR].strip()
        if not account.isdigit():
            raise ConfigError(f"{ACCOUNT_ENVVAR}: must be a positive integer, got {_q(account)}")
        account = int(account)
    if account is None:
        raise ConfigError(
            f"{path}: [environments.{name}] dbt_cloud_account_id: missing",
            hint=f"set it (the number after /deploy/ in the dbt job URL) or export {ACCOUNT_ENVVAR}",
        )
    account_id = read.positive_int("dbt_cloud_account_id", account)

    secret_scope = read.string("secret_scope", fallback["secret_scope"]) or ""
    read.check("secret_scope", secret_scope, lambda v: validate_scope_name(v, "scope name"))
    secret_key = read.string("secret_key", fallback["secret_key"]) or ""
    read.check("secret_key", secret_key, lambda v: validate_secret_name(v, "secret key name"))
    notebook_path = read.string("notebook_path", fallback["notebook_path"]) or ""
    read.check("notebook_path", notebook_path, validate_notebook_path)
    workflow_name = read.string("workflow_name", fallback["workflow_name"]) or ""
    if len(workflow_name) > _MAX_WORKFLOW_NAME:
        raise read.fail("workflow_name", f"is longer than {_MAX_WORKFLOW_NAME} characters")

    databricks_host = read.string("databricks_host")
    if databricks_host is not None:
        read.check("databricks_host", databricks_host, validate_databricks_host)
        databricks_host = normalize_host(databricks_host)

    timeout = read.positive_int(
        "run_timeout_seconds", merged.get("run_timeout_seconds", fallback["run_timeout_seconds"])
    )
    emails = read.strings("failure_emails")
    for email in emails:
        if not _EMAIL.fullmatch(email):
            raise read.fail("failure_emails", f"{_q(email)} is not an e-mail address")

    return Environment(
        name=name,
        dbt_cloud_host=host.rstrip("/"),
        dbt_cloud_account_id=account_id,
        dbt_jobs=_read_dbt_jobs(read),
        databricks_profile=read.string("databricks_profile"),
        databricks_host=databricks_host,
        secret_scope=secret_scope,
        secret_key=secret_key,
        notebook_path=notebook_path,
        workflow_name=workflow_name,
        schedule=_read_schedule(read),
        compute=_read_compute(read),
        failure_emails=emails,
        run_timeout_seconds=timeout,
        scope_readers=read.strings("scope_readers"),
    )


def _validate_host(host: str) -> None:
    from runner.core import RunnerInputError, base_url

    try:
        base_url(host)
    except RunnerInputError as error:
        raise UsageError(str(error)) from None


def _read_dbt_jobs(read: _Reader) -> tuple[DbtJobTask, ...]:
    raw = read.values.get("dbt_jobs")
    if raw is None or raw == {}:
        raise ConfigError(
            f"{read.path}: [environments.{read.name}] dbt_jobs: no dbt jobs",
            hint=f"add [environments.{read.name}.dbt_jobs] with a line like nightly = 1234 (the dbt job id)",
        )
    if not isinstance(raw, dict):
        raise read.fail("dbt_jobs", f"must be a table of task_key = dbt job id, got {_q(raw)}")
    tasks: list[DbtJobTask] = []
    for task_key, spec in raw.items():
        if not _TASK_KEY.fullmatch(task_key):
            raise read.fail(
                "dbt_jobs", "is not a valid task key (letters, digits, -, _ up to 100)", sub=_q(task_key)
            )
        if isinstance(spec, dict):
            _reject_unknown(spec, DBT_JOB_KEYS, read.where("dbt_jobs", task_key), "key")
            if "job_id" not in spec:
                raise read.fail("dbt_jobs", "job_id is missing", sub=task_key)
            job_id = read.positive_int("dbt_jobs", spec["job_id"], sub=f"{task_key}.job_id")
            depends_on = spec.get("depends_on", [])
            if not isinstance(depends_on, list) or not all(isinstance(d, str) for d in depends_on):
                raise read.fail(
                    "dbt_jobs",
                    f"must be a list of task keys, got {_q(depends_on)}",
                    sub=f"{task_key}.depends_on",
                )
        else:
            job_id = read.positive_int("dbt_jobs", spec, sub=task_key)
            depends_on = []
        tasks.append(DbtJobTask(task_key=task_key, job_id=job_id, depends_on=tuple(depends_on)))
    keys = {task.task_key for task in tasks}
    for task in tasks:
        for upstream in task.depends_on:
            if upstream == task.task_key:
                raise read.fail(
                    "dbt_jobs", "a task cannot depend on itself", sub=f"{task.task_key}.depends_on"
                )
            if upstream not in keys:
                raise read.fail(
                    "dbt_jobs",
                    f"{_q(upstream)} is not a task of this environment (known: {', '.join(sorted(keys))})",
                    sub=f"{task.task_key}.depends_on",
                )
    cycle = _find_cycle({task.task_key: task.depends_on for task in tasks})
    if cycle:
        raise read.fail("dbt_jobs", f"depends_on makes a cycle: {' -> '.join(cycle)}", sub=cycle[0])
    return tuple(tasks)


def _find_cycle(graph: Mapping[str, tuple[str, ...]]) -> list[str] | None:
    """A dependency cycle as a path that returns to its start, or None."""
    visiting: list[str] = []
    done: set[str] = set()

    def visit(node: str) -> list[str] | None:
        if node in visiting:
            return [*visiting[visiting.index(node) :], node]
        if node in done:
            return None
        visiting.append(node)
        for upstream in graph.get(node, ()):
            if found := visit(upstream):
                return found
        visiting.pop()
        done.add(node)
        return None

    for node in graph:
        if found := visit(node):
            return found
    return None


def _read_schedule(read: _Reader) -> Schedule | None:
    raw = read.values.get("schedule")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise read.fail("schedule", f"must be a table with quartz_cron, timezone, paused; got {_q(raw)}")
    _reject_unknown(raw, SCHEDULE_KEYS, read.table("schedule"), "key")
    if "quartz_cron" not in raw:
        raise read.fail("schedule", 'missing; for example quartz_cron = "0 0 6 * * ?"', sub="quartz_cron")
    cron = raw["quartz_cron"]
    read.check("schedule", cron, validate_quartz_cron, sub="quartz_cron")
    timezone = raw.get("timezone", "UTC")
    read.check("schedule", timezone, validate_timezone, sub="timezone")
    paused = raw.get("paused", False)
    if not isinstance(paused, bool):
        raise read.fail("schedule", f"must be true or false, got {_q(paused)}", sub="paused")
    return Schedule(quartz_cron=" ".join(cron.split()), timezone=timezone, paused=paused)


def _read_compute(read: _Reader) -> Compute:
    cluster_id = read.values.get("cluster_id")
    job_cluster = read.values.get("job_cluster")
    if cluster_id is not None and job_cluster is not None:
        raise read.fail(
            "job_cluster",
            "cluster_id and job_cluster exclude each other",
            hint="keep one: an existing cluster's id, a new job cluster spec, or neither for serverless",
        )
    if cluster_id is not None:
        return Compute(kind="existing_cluster", existing_cluster_id=read.string("cluster_id"))
    if job_cluster is not None:
        if not isinstance(job_cluster, dict) or not job_cluster:
            raise read.fail(
                "job_cluster", f"must be a table (a Jobs API new_cluster spec), got {_q(job_cluster)}"
            )
        return Compute(kind="job_cluster", new_cluster=dict(job_cluster))
    return Compute()


# --- which workspace ----------------------------------------------------------------------

DATABRICKS_HOST_ENVVAR = "DATABRICKS_HOST"
DATABRICKS_PROFILE_ENVVAR = "DATABRICKS_CONFIG_PROFILE"
DATABRICKS_CONFIG_FILE_ENVVAR = "DATABRICKS_CONFIG_FILE"


def databricks_config_file() -> Path:
    """Where the Databricks profiles live: DATABRICKS_CONFIG_FILE, else ~/.databrickscfg (as the SDK)."""
    return Path(os.environ.get(DATABRICKS_CONFIG_FILE_ENVVAR) or "~/.databrickscfg").expanduser()


def read_databricks_profile(name: str) -> dict[str, str] | None:
    """One profile's settings as the SDK reads them (its own keys, `[DEFAULT]` not merged in,
    values raw), or None when the file or the profile is missing or unreadable."""
    import configparser

    # A default_section nobody names keeps [DEFAULT] an ordinary section, as the SDK treats it.
    parser = configparser.ConfigParser(default_section="\x00none", interpolation=None)
    try:
        parser.read(databricks_config_file(), encoding="utf-8")
    except (OSError, UnicodeDecodeError, configparser.Error):
        return None
    if not parser.has_section(name):
        return None
    return dict(parser.items(name))


def _workspace_keys(env: Environment, profiles: dict[str, dict[str, str] | None]) -> dict[str, str]:
    """What identifies the workspace an environment acts on, each key with how to say it: two
    environments that share a key share a workspace (same profile, same host, or both on the
    DATABRICKS_* variables). A pinned host is the workspace of an environment on the variables
    (connect() refuses any other)."""
    keys: dict[str, str] = {}

    def add_host(host: str | None) -> None:
        if host:
            keys[f"host {normalize_host(host)}"] = f"workspace {normalize_host(host)}"

    add_host(env.databricks_host)
    profile = env.databricks_profile
    if profile is None and env.databricks_host is None:
        # On the variables and not pinned: wherever they point, now or in the next shell.
        keys["env"] = "the DATABRICKS_* environment variables"
        add_host(os.environ.get(DATABRICKS_HOST_ENVVAR, "").strip() or None)
        profile = os.environ.get(DATABRICKS_PROFILE_ENVVAR, "").strip() or None
    if profile is not None:
        keys[f"profile {profile}"] = f"profile {profile!r}"
        if profile not in profiles:
            profiles[profile] = read_databricks_profile(profile)
        add_host((profiles[profile] or {}).get("host"))
    return keys


def _workspace_path(path: str) -> str:
    """`/Workspace/Shared/x` and `/Shared/x` name the same workspace object."""
    return path.removeprefix("/Workspace") if path.startswith("/Workspace/") else path


def _owned_names(env: Environment) -> list[tuple[str, object, str, str]]:
    """What an environment writes and later deletes: (what, comparable key, as shown, the key to change)."""
    return [
        (
            "secret",
            (env.secret_scope.casefold(), env.secret_key),  # scope names are case-insensitive
            f"{env.secret_scope}/{env.secret_key}",
            "secret_scope or secret_key",
        ),
        ("notebook", _workspace_path(env.notebook_path), env.notebook_path, "notebook_path"),
        ("state record", _workspace_path(env.state_path), env.state_path, "notebook_path"),
        # jobs/list matches names case-insensitively
        ("workflow name", env.workflow_name.casefold(), env.workflow_name, "workflow_name"),
    ]


def check_collisions(path: Path, environments: Mapping[str, Environment]) -> None:
    """Refuse two environments in one workspace that would write (and destroy) the same secret,
    notebook, state record or workflow: `destroy` of one would delete the other's."""
    if len(environments) < 2:
        return
    profiles: dict[str, dict[str, str] | None] = {}
    keys = {name: _workspace_keys(env, profiles) for name, env in environments.items()}
    names = list(environments)
    for index, first in enumerate(names):
        for second in names[index + 1 :]:
            shared = [keys[first][key] for key in keys[first] if key in keys[second]]
            if not shared:
                continue
            theirs = {what: key for what, key, _, _ in _owned_names(environments[second])}
            for what, key, shown, setting in _owned_names(environments[first]):
                if theirs[what] == key:
                    raise ConfigError(
                        f"{path}: environments {_q(first)} and {_q(second)} both use the {what} "
                        f"{_q(shown)} in the same workspace ({shared[0]})",
                        hint=f"give one of them its own {setting} (destroying one would delete the "
                        "other's), or point it at another workspace with databricks_profile",
                    )


# --- choosing an environment ------------------------------------------------------------


def select_environment(config: Config, name: str | None) -> Environment:
    """The named environment; without a name, the only one, else `dev`."""
    known = ", ".join(sorted(config.environments)) or "none"
    if name is not None:
        if name in config.environments:
            return config.environments[name]
        raise ConfigError(
            f"{config.path}: no environment {_q(name)} (known: {known})",
            hint=f"pick one with --env, or add it with `dbtwf onboard --env {name} --dbt-job-url URL`",
        )
    if len(config.environments) == 1:
        return next(iter(config.environments.values()))
    if "dev" in config.environments:
        return config.environments["dev"]
    if not config.environments:
        raise ConfigError(
            f"{config.path}: no environments defined",
            hint="run `dbtwf onboard --dbt-job-url URL` to add one",
        )
    raise ConfigError(
        f"{config.path}: several environments and none is called dev (known: {known})",
        hint="pick one with --env NAME or DBTWF_ENV",
    )


# --- writing ----------------------------------------------------------------------------

_NEW_FILE_HEADER = (
    "# dbtwf configuration: one [environments.NAME] table per environment, shared settings in\n"
    "# [defaults]. Edit freely; `dbtwf onboard` keeps your comments. Never put the token here.\n"
)


def upsert_environment(path: Path, name: str, values: dict[str, Any]) -> Environment:
    """Create or update `[environments.NAME]`, keeping the file's comments and layout.

    ``values`` uses the file's keys. A value equal to what would apply anyway (the
    environment's default or `[defaults]`) is not written, and removes an explicit entry;
    None removes the key. `dbt_jobs` merges by task key; a job given under its derived key
    (`dbt_job_<id>`) that the environment already runs under another key is not added twice.
    `schedule` merges key by key. Setting cluster_id drops job_cluster and vice versa.
    The whole file is validated before anything is written.
    """
    import tomlkit

    if not _ENV_NAME.fullmatch(name):
        raise UsageError(
            f"{_q(name)} is not a valid environment name (letters, digits, -, _ up to 64, "
            "starting with a letter or digit)"
        )
    _reject_unknown(values, ENVIRONMENT_KEYS, f"{path}: [environments.{name}]", "key")
    if path.exists():
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"{path}: cannot read the config file: {error}") from None
        _parse_toml(text, path)  # a TOML error is reported as such, with its line
        document = tomlkit.parse(text)
    else:
        document = tomlkit.parse(_NEW_FILE_HEADER)

    found_defaults = document.get("defaults")
    defaults: Mapping[str, Any] = found_defaults if isinstance(found_defaults, Mapping) else {}
    environments = document.get("environments")
    if environments is None:
        environments = tomlkit.table(is_super_table=True)
        document["environments"] = environments
    if name not in environments:
        environments[name] = tomlkit.table(is_super_table=False)  # keep its own [header]
    table = environments[name]

    for key, value in values.items():
        inherited = _plain(defaults.get(key, environment_defaults(name).get(key)))
        if isinstance(inherited, str):
            inherited = inherited.replace("{env}", name)
        if key == "dbt_jobs" and value is not None:
            _upsert_dbt_jobs(table, value)
        elif key == "schedule" and value is not None:
            _upsert_schedule(table, value)
        elif value is None or (key not in _COMPUTE_KEYS and _plain(value) == _plain(inherited)):
            if key in table:
                del table[key]
        else:
            table[key] = value
        if key in _COMPUTE_KEYS and value is not None:
            other = "job_cluster" if key == "cluster_id" else "cluster_id"
            if other in table:
                del table[other]

    text = tomlkit.dumps(document)
    config = parse_config(text, path)  # validate everything before writing a byte
    _write_atomically(path, text)
    return config.environments[name]


def _plain(value: Any) -> Any:
    unwrap = getattr(value, "unwrap", None)
    return unwrap() if callable(unwrap) else value


def _upsert_dbt_jobs(table: Any, jobs: Mapping[str, Any]) -> None:
    import tomlkit

    if "dbt_jobs" not in table:
        table["dbt_jobs"] = tomlkit.table()
    current = table["dbt_jobs"]
    if not hasattr(current, "items"):
        current = table["dbt_jobs"] = tomlkit.table()
    existing_ids = {
        (spec.get("job_id") if isinstance(_plain(spec), dict) else _plain(spec))
        for _, spec in current.items()
    }
    for task_key, spec in jobs.items():
        plain = _plain(spec)
        job_id = plain.get("job_id") if isinstance(plain, dict) else plain
        derived_key = isinstance(job_id, int) and task_key == default_task_key(job_id)
        if derived_key and task_key not in current and job_id in existing_ids:
            continue  # the environment already runs this job under a name the user chose
        if isinstance(plain, dict) and plain.get("depends_on"):
            inline = tomlkit.inline_table()
            inline.update(plain)
            current[task_key] = inline
        else:
            current[task_key] = job_id


def _upsert_schedule(table: Any, schedule: Mapping[str, Any]) -> None:
    import tomlkit

    if "schedule" not in table or not hasattr(table["schedule"], "items"):
        table["schedule"] = tomlkit.table()
    current = table["schedule"]
    for key, value in schedule.items():
        if value is None:
            if key in current:
                del current[key]
        else:
            current[key] = value


def _write_atomically(path: Path, text: str) -> None:
    """Write next to the file, then rename: an interrupted write never leaves half a config."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise ConfigError(f"{path}: cannot write the config file: {error}") from None
