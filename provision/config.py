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

This module reads, merges and validates. Around it: `names.py` (the rules for names and paths,
shared with the CLI's flags), `quartz.py` (the schedule's cron and time zone), `environments.py`
(which environment a command acts on; environments that would collide in one workspace) and
`config_writer.py` (the tomlkit writer `onboard` uses).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from provision.environments import check_collisions
from provision.environments import select_environment as select_environment  # with load_config
from provision.errors import ConfigError, UsageError
from provision.model import (
    DBT_PLATFORM,
    TASK_TYPES,
    Compute,
    Config,
    DbtJobTask,
    Environment,
    Schedule,
    environment_defaults,
    normalize_host,
)
from provision.names import (
    ENVIRONMENT_NAME,
    TASK_KEY,
    TASK_KEY_RULE,
    quoted,
    validate_databricks_host,
    validate_notebook_path,
    validate_scope_name,
    validate_secret_name,
)
from provision.quartz import validate_quartz_cron, validate_timezone
from runner.core import MAX_ID

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
    "task_type",
    "dbt_platform_connection",
)
SCHEDULE_KEYS = ("quartz_cron", "timezone", "paused")
DBT_JOB_KEYS = ("job_id", "depends_on")
_TOP_LEVEL_KEYS = ("defaults", "environments")
# Tables whose keys merge with `[defaults]` one by one; any other value replaces it whole.
_MERGED_TABLES = ("schedule", "job_cluster")
COMPUTE_KEYS = ("cluster_id", "job_cluster")
# An environment's own tables: [environments.NAME.dbt_jobs], ...
_SUB_TABLES = ("dbt_jobs", "schedule", "job_cluster")

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_MAX_WORKFLOW_NAME = 4096  # the Jobs API's limit on a job name


# --- reading ----------------------------------------------------------------------------


def load_config(path: Path) -> Config:
    """Read, merge and validate the config file; ConfigError naming file, table and key."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such config file",
            hint=(
                "run `dbtwf onboard --dbt-job-url URL` to create it (or `dbtwf adopt` for a setup made by "
                "hand from dbt's guide), or point --config / DBTWF_CONFIG at it"
            ),
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read the config file: {error}") from None
    return parse_config(text, path)


def parse_config(text: str, path: Path) -> Config:
    """Validate config text as if it were the file at ``path`` (which names it in errors)."""
    document = parse_toml(text, path)
    reject_unknown(document, _TOP_LEVEL_KEYS, f"{path}:", "top-level key")
    defaults = _table(document.get("defaults", {}), f"{path}: [defaults]")
    environments = _table(document.get("environments", {}), f"{path}: [environments]")
    reject_unknown(defaults, ENVIRONMENT_KEYS, f"{path}: [defaults]", "key")
    resolved: dict[str, Environment] = {}
    for name, values in environments.items():
        where = f"{path}: [environments.{name}]"
        if not ENVIRONMENT_NAME.fullmatch(name):
            raise ConfigError(
                f"{path}: [environments.{quoted(name)}] is not a valid environment name "
                "(letters, digits, -, _ up to 64, starting with a letter or digit)"
            )
        table = _table(values, where)
        reject_unknown(table, ENVIRONMENT_KEYS, where, "key")
        resolved[name] = _resolve_environment(path, name, defaults, table)
    check_collisions(path, resolved)
    return Config(path=path, environments=resolved)


def parse_toml(text: str, path: Path) -> dict[str, Any]:
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
        raise ConfigError(f"{where} must be a table, got {quoted(value)}")
    return value


def reject_unknown(table: Mapping[str, Any], known: tuple[str, ...], where: str, what: str) -> None:
    for key in table:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            suggestion = f"; did you mean {close[0]}?" if close else ""
            raise ConfigError(
                f"{where} unknown {what} {quoted(key)}{suggestion}",
                hint=f"known {what}s: {', '.join(known)}",
            )


def _merge(defaults: dict[str, Any], table: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """The environment's values over `[defaults]`, and which keys came from `[defaults]`."""
    merged = dict(defaults)
    from_defaults = set(defaults)
    if any(key in table for key in COMPUTE_KEYS):
        # An environment naming its compute overrides whatever compute the defaults name.
        for key in COMPUTE_KEYS:
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

    def header(self, key: str | None = None) -> str:
        """`[environments.prod]`, or `[environments.prod.schedule]` for a key."""
        table = "defaults" if key in self.from_defaults else f"environments.{self.name}"
        return f"[{table}{'.' + key if key else ''}]"

    def table(self, key: str | None = None) -> str:
        """`dbtwf.toml: [environments.prod]`, or `[environments.prod.schedule]` for a key."""
        return f"{self.path}: {self.header(key)}"

    def reject_misplaced(self) -> None:
        """A setting of the environment found inside one of its sub-tables: in TOML every line
        after a [table] header belongs to that table, so a key appended at the end of the file
        lands in the last one. Say so, rather than judge it as that table's entry."""
        for key in _SUB_TABLES:
            table = self.values.get(key)
            for name in table if isinstance(table, dict) else ():
                if name in ENVIRONMENT_KEYS:
                    also = "; a task named like a setting needs another key" if key == "dbt_jobs" else ""
                    raise ConfigError(
                        f"{self.path}: {name} is inside {self.header(key)}; move it above that table",
                        hint=f"in TOML, every key after a [table] header belongs to that table{also}",
                    )

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
            raise self.fail(key, f"must be a non-empty string, got {quoted(value)}")
        return value.replace("{env}", self.name).strip()

    def positive_int(self, key: str, value: Any, sub: str | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise self.fail(key, f"must be a positive integer, got {quoted(value)}", sub)
        if value > MAX_ID:  # TOML's integers are 64-bit; Python's tomllib reads any size
            raise self.fail(key, f"must be a positive integer below 2**63, got {quoted(value)}", sub)
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.values.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise self.fail(key, f"must be a list of non-empty strings, got {quoted(value)}")
        return tuple(v.strip() for v in value)


def _resolve_environment(
    path: Path, name: str, defaults: dict[str, Any], table: dict[str, Any]
) -> Environment:
    merged, from_defaults = _merge(defaults, table)
    read = _Reader(path, name, merged, from_defaults)
    read.reject_misplaced()
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
        if not (account.isascii() and account.isdigit()):
            raise ConfigError(f"{ACCOUNT_ENVVAR}: must be a positive integer, got {quoted(account)}")
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
            raise read.fail("failure_emails", f"{quoted(email)} is not an e-mail address")

    task_type, connection = _read_task_type(read)

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
        task_type=task_type,
        dbt_platform_connection=connection,
    )


def _read_task_type(read: _Reader) -> tuple[Any, str | None]:
    """task_type ("notebook" or "dbt_platform") and the Unity Catalog connection a
    dbt_platform task needs (required then; allowed, unused, otherwise)."""
    from provision.platform import validate_connection_name

    task_type = read.values.get("task_type", "notebook")
    if task_type not in TASK_TYPES:
        raise read.fail(
            "task_type", f"must be one of {', '.join(map(repr, TASK_TYPES))}, got {quoted(task_type)}"
        )
    connection = read.string("dbt_platform_connection")
    if connection is not None:
        read.check("dbt_platform_connection", connection, validate_connection_name)
    elif task_type == DBT_PLATFORM:
        raise read.fail(
            "dbt_platform_connection",
            'missing: task_type = "dbt_platform" needs the Unity Catalog connection its tasks use',
            hint='set dbt_platform_connection = "<connection name>" (an admin creates the connection)',
        )
    return task_type, connection


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
        raise read.fail("dbt_jobs", f"must be a table of task_key = dbt job id, got {quoted(raw)}")
    tasks: list[DbtJobTask] = []
    for task_key, spec in raw.items():
        if not TASK_KEY.fullmatch(task_key):
            raise read.fail("dbt_jobs", f"is not a valid task key ({TASK_KEY_RULE})", sub=quoted(task_key))
        if isinstance(spec, dict):
            reject_unknown(spec, DBT_JOB_KEYS, read.where("dbt_jobs", task_key), "key")
            if "job_id" not in spec:
                raise read.fail("dbt_jobs", "job_id is missing", sub=task_key)
            job_id = read.positive_int("dbt_jobs", spec["job_id"], sub=f"{task_key}.job_id")
            depends_on = spec.get("depends_on", [])
            if not isinstance(depends_on, list) or not all(isinstance(d, str) for d in depends_on):
                raise read.fail(
                    "dbt_jobs",
                    f"must be a list of task keys, got {quoted(depends_on)}",
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
                    f"{quoted(upstream)} is not a task of this environment "
                    f"(known: {', '.join(sorted(keys))})",
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
        raise read.fail("schedule", f"must be a table with quartz_cron, timezone, paused; got {quoted(raw)}")
    reject_unknown(raw, SCHEDULE_KEYS, read.table("schedule"), "key")
    if "quartz_cron" not in raw:
        raise read.fail("schedule", 'missing; for example quartz_cron = "0 0 6 * * ?"', sub="quartz_cron")
    cron = raw["quartz_cron"]
    read.check("schedule", cron, validate_quartz_cron, sub="quartz_cron")
    timezone = raw.get("timezone", "UTC")
    read.check("schedule", timezone, validate_timezone, sub="timezone")
    paused = raw.get("paused", False)
    if not isinstance(paused, bool):
        raise read.fail("schedule", f"must be true or false, got {quoted(paused)}", sub="paused")
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
                "job_cluster", f"must be a table (a Jobs API new_cluster spec), got {quoted(job_cluster)}"
            )
        return Compute(kind="job_cluster", new_cluster=dict(job_cluster))
    return Compute()
