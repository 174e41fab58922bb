"""The names and paths dbtwf accepts, one rule each, shared by dbtwf.toml and the CLI's flags.

Each validator raises UsageError (exit 2) with a message that says the rule; the config
reader turns it into a ConfigError that also names the file, table and key.
"""

from __future__ import annotations

import json
import re

from provision.errors import UsageError
from provision.model import HOME_PREFIX

_SECRET_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")
# Scope names may also hold "@" (docs.databricks.com, security/secrets/workspace-secret-scopes).
_SCOPE_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,128}")
#: An environment's name: the `NAME` of `[environments.NAME]` and of `--env NAME`.
ENVIRONMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
#: The Jobs API's rule for a task key: `[ 1 .. 100 ] characters ^[\w\-\_]+$`
#: (docs.databricks.com/api/workspace/jobs/getrun, tasks.task_key). The pattern is an OpenAPI
#: (ECMA-262) regular expression, where \w is ASCII: [A-Za-z0-9_]. Python's \w is Unicode.
TASK_KEY = re.compile(r"[A-Za-z0-9_-]{1,100}")
TASK_KEY_RULE = "1 to 100 ASCII letters, digits, - or _"


def quoted(value: object) -> str:
    """A value as the user wrote it in TOML: strings in double quotes, the rest as Python shows it."""
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str) else repr(value)


def validate_secret_name(value: str, what: str) -> None:
    """A Databricks secret key name: letters, digits, -, _, . up to 128."""
    if not isinstance(value, str) or not _SECRET_NAME.fullmatch(value):
        raise UsageError(f"{quoted(value)} is not a valid {what} (letters, digits, -, _, . up to 128)")


def validate_scope_name(value: str, what: str) -> None:
    """A Databricks secret scope name: letters, digits, -, _, ., @ up to 128 (compared
    case-insensitively by Databricks)."""
    if not isinstance(value, str) or not _SCOPE_NAME.fullmatch(value):
        raise UsageError(f"{quoted(value)} is not a valid {what} (letters, digits, -, _, ., @ up to 128)")


def validate_task_key(key: str, what: str = "task key") -> None:
    """A Jobs API task key (see TASK_KEY)."""
    if not isinstance(key, str) or not TASK_KEY.fullmatch(key):
        raise UsageError(f"{quoted(key)} is not a valid {what} ({TASK_KEY_RULE})")


def validate_databricks_host(value: str) -> None:
    """A workspace URL: https://HOST (a bare host means https), plain http only for loopback."""
    from urllib.parse import urlsplit

    from runner.core import is_loopback_host  # the one loopback rule, shared with the dbt host's

    text = value.strip() if isinstance(value, str) else ""
    parts = urlsplit(text if "://" in text else f"https://{text}")
    example = "like https://adb-1234567890123456.7.azuredatabricks.net"
    try:
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise UsageError(f"{quoted(value)} is not a workspace URL ({example})") from None
    if (
        not parts.hostname
        or any(char.isspace() for char in text)
        or parts.query
        or parts.fragment
        or parts.path.strip("/")
    ):
        raise UsageError(f"{quoted(value)} is not a workspace URL ({example})")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise UsageError(f"{quoted(value)} uses plain http; use https (http only for a loopback host)")
    if parts.scheme not in ("http", "https"):
        raise UsageError(f"{quoted(value)} is not a workspace URL ({example})")


def validate_notebook_path(path: str) -> None:
    """An absolute workspace path such as /Users/me@example.com/dbt/run_dbt_cloud_job, or one
    under the deploying identity's home folder: ~/.dbtwf/prod/run_dbt_cloud_job."""
    in_home = isinstance(path, str) and path.startswith(HOME_PREFIX)
    if not isinstance(path, str) or not (path.startswith("/") or in_home):
        raise UsageError(
            f"{quoted(path)} is not an absolute workspace path; give it from the root, like "
            "/Users/me@example.com/dbtwf/run_dbt_cloud_job, or under your home folder: "
            "~/.dbtwf/prod/run_dbt_cloud_job"
        )
    parts = path.split("/")[1:]
    if path in ("/", HOME_PREFIX) or any(part in ("", ".", "..") for part in parts):
        raise UsageError(
            f"{quoted(path)} is not a notebook path: no empty, '.' or '..' parts and no trailing '/'"
        )
    if any(ord(char) < 32 for char in path):
        raise UsageError(f"{quoted(path)} contains control characters")
