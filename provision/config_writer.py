"""Writing dbtwf.toml: `upsert_environment` creates or updates one environment with tomlkit,
keeping the file's comments and layout, and validates the whole file before a byte is written."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from provision.config import (
    COMPUTE_KEYS,
    ENVIRONMENT_KEYS,
    parse_config,
    parse_toml,
    reject_unknown,
)
from provision.errors import ConfigError, UsageError
from provision.model import Environment, default_task_key, environment_defaults
from provision.names import ENVIRONMENT_NAME, quoted

_NEW_FILE_HEADER = (
    "# dbtwf configuration: one [environments.NAME] table per environment, shared settings in\n"
    "# [defaults]. Edit freely; `dbtwf onboard` keeps your comments. Never put the token here.\n"
)


def upsert_environment(path: Path, name: str, values: dict[str, Any], *, write: bool = True) -> Environment:
    """Create or update `[environments.NAME]`, keeping the file's comments and layout.

    ``values`` uses the file's keys. A value equal to what would apply anyway (the
    environment's default or `[defaults]`) is not written, and removes an explicit entry;
    None removes the key. `dbt_jobs` merges by task key; a job given under its derived key
    (`dbt_job_<id>`) that the environment already runs under another key is not added twice.
    `schedule` merges key by key. Setting cluster_id drops job_cluster and vice versa.
    The whole file is validated before anything is written; with ``write=False`` nothing is
    (the environment as it would be, for a plan made before asking).
    """
    import tomlkit

    if not ENVIRONMENT_NAME.fullmatch(name):
        raise UsageError(
            f"{quoted(name)} is not a valid environment name (letters, digits, -, _ up to 64, "
            "starting with a letter or digit)"
        )
    reject_unknown(values, ENVIRONMENT_KEYS, f"{path}: [environments.{name}]", "key")
    if path.exists():
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"{path}: cannot read the config file: {error}") from None
        parse_toml(text, path)  # a TOML error is reported as such, with its line
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
        elif value is None or (key not in COMPUTE_KEYS and _plain(value) == _plain(inherited)):
            if key in table:
                del table[key]
        else:
            table[key] = value
        if key in COMPUTE_KEYS and value is not None:
            other = "job_cluster" if key == "cluster_id" else "cluster_id"
            if other in table:
                del table[other]

    text = tomlkit.dumps(document)
    config = parse_config(text, path)  # validate everything before writing a byte
    if write:
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
    """Write next to the file, then rename: an interrupted write never leaves half a config.
    A symlinked config is written where the link points (the link stays a link), and an
    existing file keeps its permissions."""
    target = Path(os.path.realpath(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        temporary.write_text(text, encoding="utf-8")
        if target.exists():
            temporary.chmod(stat.S_IMODE(target.stat().st_mode))
        os.replace(temporary, target)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise ConfigError(f"{path}: cannot write the config file: {error}") from None
