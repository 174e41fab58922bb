"""Which workspace dbtwf acts on, and what a user hears when it does not answer, over real HTTP.

- A named `databricks_profile` wins over DATABRICKS_HOST / DATABRICKS_TOKEN: the gateway passes
  the profile's values to the SDK's Config explicitly, which the SDK ranks above the environment
  (databricks-sdk config.py: `_set_inner_config(kwargs)` runs before `_load_from_env()`, and
  neither the environment nor the profile file overwrites a value already set).
- `databricks_host` pins an environment's workspace: another resolved host is exit 2, nothing
  written, no credential sent there.
- An unreachable workspace fails within seconds, in one line naming the host; the SDK's own log
  lines (a host answering 404 to /.well-known/databricks-config) stay out of the output.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from databricks.sdk.clock import Clock
from typer.testing import CliRunner

import provision.databricks.signin as gateway
from provision.cli import app
from provision.databricks import FIRST_CONTACT_RETRY_SECONDS, connect
from provision.errors import AuthError, RemoteError, UsageError
from provision.model import normalize_host
from tests.conftest import DATABRICKS_TOKEN
from tests.emulators.databricks import DatabricksEmulator
from tests.provision_helpers import cli_env, make_env, write_config

ROOT = Path(__file__).resolve().parents[1]
DEV_TOKEN = "dapi-dev-workspace-token"


class SimulatedSdkClock(Clock):
    """The SDK's clock interface on simulated time: its retries' waits are recorded, not spent."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0
        self.start = self.now

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def dev_workspace() -> Any:
    """A second workspace, "dev", that the DATABRICKS_* variables point at."""
    with DatabricksEmulator(token=DEV_TOKEN, user_name="dev-user@example.com") as dev:
        yield dev


@pytest.fixture
def variables(tmp_path: Path, databricks: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The CLI's environment, HOME and config file in tmp_path; DATABRICKS_* at `databricks`."""
    values = cli_env(tmp_path, databricks.url)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DATABRICKS_CONFIG_PROFILE", raising=False)
    return values


def write_profiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    path = tmp_path / "databrickscfg"
    path.write_text(text, encoding="utf-8")
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(path))


# -- the profile wins -----------------------------------------------------------------------


def test_a_named_profile_beats_the_databricks_variables(
    tmp_path: Path,
    databricks: Any,
    dev_workspace: Any,
    variables: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # dev's variables exported, prod's profile named: prod must be the workspace acted on.
    monkeypatch.setenv("DATABRICKS_HOST", dev_workspace.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", DEV_TOKEN)
    write_profiles(tmp_path, monkeypatch, f"[prod]\nhost = {databricks.url}/\ntoken = {DATABRICKS_TOKEN}\n")

    ws = connect(make_env("prod", databricks_profile="prod"))

    assert ws.host == normalize_host(databricks.url)
    assert ws.current_user() == databricks.user_name
    assert ws.list_scopes() == []
    assert dev_workspace.requests == []

    # The whole command: `--env prod plan` reads prod only.
    config = write_config(tmp_path / "dbtwf.toml", "acme.us1.dbt.com", {"prod": {"nightly": 1}})
    config.write_text(config.read_text().replace("[environments.prod.dbt_jobs]", PROD_TABLE))
    databricks.reset_log()
    result = CliRunner().invoke(app, ["--env", "prod", "plan"])
    assert result.exit_code == 0, result.output
    assert dev_workspace.requests == []
    assert "/api/2.0/preview/scim/v2/Me" in [r.path for r in databricks.requests]


PROD_TABLE = '[environments.prod]\ndatabricks_profile = "prod"\n\n[environments.prod.dbt_jobs]'


def test_a_profile_that_names_no_credentials_is_not_mixed_with_the_variables(
    tmp_path: Path, databricks: Any, variables: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_profiles(tmp_path, monkeypatch, f"[prod]\nhost = {databricks.url}\n")
    with pytest.raises(UsageError) as caught:
        connect(make_env("prod", databricks_profile="prod"))
    assert "DATABRICKS_TOKEN" in caught.value.message and caught.value.exit_code == 2
    assert databricks.requests == []


def test_a_missing_profile_is_named(
    tmp_path: Path, variables: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_profiles(tmp_path, monkeypatch, "[other]\nhost = https://x.invalid\ntoken = t\n")
    with pytest.raises(AuthError, match="no profile 'prod' in"):
        connect(make_env("prod", databricks_profile="prod"))


# -- databricks_host pins the workspace -------------------------------------------------------


@pytest.mark.parametrize("spelling", ["{url}", "{URL}/", "{url}//"])
def test_a_pinned_host_matches_in_any_spelling(
    databricks: Any, variables: dict[str, str], spelling: str
) -> None:
    pinned = spelling.format(url=databricks.url, URL=databricks.url.upper())
    ws = connect(make_env(databricks_host=normalize_host(pinned)))
    assert ws.host == normalize_host(databricks.url)


def test_another_resolved_host_is_refused_before_anything_is_sent(
    tmp_path: Path, databricks: Any, variables: dict[str, str]
) -> None:
    with pytest.raises(UsageError) as caught:
        connect(make_env(databricks_host="https://prod.invalid"))
    message = caught.value.message
    assert "pinned to https://prod.invalid" in message and normalize_host(databricks.url) in message
    assert "DATABRICKS_HOST" in message
    # Only the SDK's unauthenticated discovery probe reached the other workspace.
    assert [r.path for r in databricks.requests] == ["/.well-known/databricks-config"]

    config = write_config(tmp_path / "dbtwf.toml", "acme.us1.dbt.com", {"dev": {"nightly": 1}})
    pinned = '[environments.dev]\ndatabricks_host = "prod.invalid"\n\n[environments.dev.dbt_jobs]'
    config.write_text(config.read_text().replace("[environments.dev.dbt_jobs]", pinned))
    for command in (["apply", "--yes"], ["destroy", "--yes"], ["plan"]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 2, result.output
        assert "pinned to https://prod.invalid" in result.stderr
    assert databricks.writes() == []


# -- an unreachable workspace, and a quiet SDK ----------------------------------------------------


def test_an_unreachable_workspace_fails_fast_in_one_line_naming_the_host(
    variables: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    host = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("DATABRICKS_HOST", host)
    clock = SimulatedSdkClock()
    notices: list[str] = []

    with pytest.raises(RemoteError) as caught:
        connect(make_env(), on_retry=notices.append, clock=clock)

    assert caught.value.message.startswith(f"cannot reach Databricks at {host} (DATABRICKS_HOST)")
    assert "connection refused" in caught.value.message
    # The SDK's default would have retried for 300 s (then 300 s more): the first contact gives up
    # after its own budget, plus at most one last back-off of the SDK (<= 10 s + jitter).
    assert FIRST_CONTACT_RETRY_SECONDS <= clock.now - clock.start < 30
    assert notices == []  # the failure is the message; no "keeps retrying" note before it

    # Through the CLI: one line on stderr, nothing else.
    monkeypatch.setattr(gateway, "sdk_clock", SimulatedSdkClock())
    write_config(Path(variables["DBTWF_CONFIG"]), "acme.us1.dbt.com", {"dev": {"nightly": 1}})
    result = CliRunner().invoke(app, ["plan"])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [f"error: {caught.value.message}"]


def test_a_workspace_without_host_metadata_prints_no_sdk_warning(
    tmp_path: Path, databricks: Any, variables: dict[str, str]
) -> None:
    """A host answering 404 to /.well-known/databricks-config: the SDK warns on every start; dbtwf
    keeps that out of its output (a subprocess: pytest's own log handlers would hide it)."""
    databricks.host_metadata = False
    write_config(Path(variables["DBTWF_CONFIG"]), "acme.us1.dbt.com", {"dev": {"nightly": 1}})
    result = subprocess.run(
        [sys.executable, "-c", "from provision.cli import main; main()", "plan"],
        cwd=ROOT,
        env={**os.environ, **variables},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert ("GET", "/.well-known/databricks-config", 404) in [
        (r.method, r.path, r.status) for r in databricks.requests
    ]
    # What the SDK logs there: "Failed to automatically resolve config from host metadata: ...
    # Falling back to explicit user provided configuration." (databricks-sdk config.py).
    assert "host metadata" not in result.stderr and "databricks-config" not in result.stderr
    assert "Falling back" not in result.stderr


def test_normalize_host() -> None:
    assert normalize_host("ADB-1.azuredatabricks.net") == "https://adb-1.azuredatabricks.net"
    assert normalize_host("https://adb-1.net:443/") == "https://adb-1.net"
    assert normalize_host("http://127.0.0.1:8080/") == "http://127.0.0.1:8080"
    assert normalize_host("HTTPS://Dbc-X.cloud.databricks.com//") == "https://dbc-x.cloud.databricks.com"
