"""Shared fixtures: both emulators start once per test session on free ports.

Each test gets them reset (state, request log, fault rules), so tests stay independent
without paying for a server start each time. `make demo`'s walk, the one end-to-end run of
real processes, also runs once per session (`demo_walk`), for the demo tests.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

if TYPE_CHECKING:
    from provision.databricks import Workspace
    from tests.emulators.databricks import DatabricksEmulator
    from tests.emulators.dbtcloud import DbtCloudEmulator

DATABRICKS_TOKEN = "dapi-emulator-test-token"
DBT_CLOUD_TOKEN = "dbtc_emulator_Sup3rSecretT0ken_9f8e7d"
DBT_ACCOUNT_ID = 70403


# --- the fault matrix's summary, with or without pytest-xdist --------------------------------

FAULT_MATRIX = "tests.test_fault_matrix"


def pytest_sessionfinish(session: pytest.Session) -> None:
    """An xdist worker hands its fault-matrix tallies to the controller."""
    workeroutput = getattr(session.config, "workeroutput", None)
    matrix = sys.modules.get(FAULT_MATRIX)
    if workeroutput is not None and matrix is not None:
        workeroutput["fault_matrix"] = matrix.TALLY.to_dict()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """The controller adds up what each xdist worker counted."""
    data = getattr(node, "workeroutput", {}).get("fault_matrix")
    if data is not None:
        import importlib

        importlib.import_module(FAULT_MATRIX).TALLY.add(data)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    matrix = sys.modules.get(FAULT_MATRIX)
    if matrix is not None and not hasattr(terminalreporter.config, "workeroutput"):
        for line in matrix.TALLY.summary():
            terminalreporter.write_line(line)


# --- the emulators ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def _databricks_server() -> Iterator[DatabricksEmulator]:
    from tests.emulators.databricks import DatabricksEmulator

    with DatabricksEmulator(token=DATABRICKS_TOKEN) as server:
        yield server


@pytest.fixture(scope="session")
def _dbt_server() -> Iterator[DbtCloudEmulator]:
    from tests.emulators.dbtcloud import DbtCloudEmulator

    with DbtCloudEmulator(token=DBT_CLOUD_TOKEN, account_id=DBT_ACCOUNT_ID) as server:
        yield server


@pytest.fixture
def databricks(_databricks_server: DatabricksEmulator) -> Iterator[DatabricksEmulator]:
    """The Databricks emulator, empty, with no faults and an empty request log."""
    _databricks_server.reset()
    yield _databricks_server
    _databricks_server.reset()


@pytest.fixture
def dbt_cloud(_dbt_server: DbtCloudEmulator) -> Iterator[DbtCloudEmulator]:
    """The dbt Cloud emulator, with no jobs, no faults and an empty request log."""
    _dbt_server.reset()
    yield _dbt_server
    _dbt_server.reset()


@pytest.fixture
def ws(databricks: DatabricksEmulator) -> Workspace:
    """dbtwf's gateway to the Databricks emulator (databricks-sdk over real HTTP)."""
    from tests.provision_helpers import make_workspace  # it imports this module's constants

    return make_workspace(databricks)


# --- `make demo`, once per session -----------------------------------------------------------

DEMO = Path(__file__).resolve().parents[1] / "scripts" / "demo.py"
DECOY_CFG = "[DEFAULT]\nhost = http://127.0.0.1:9\ntoken = dapi-users-own-token\n"
DECOY_TOKEN = "dbtc_the_users_real_token_0123456789"
DEMO_TIMEOUT = 240.0


def user_environment(root: Path) -> dict[str, str]:
    """A user's shell: HOME with a ~/.databrickscfg, a keyring folder, credentials exported.

    The decoys point at a dead host: a demo that read any of them would fail, and one that
    wrote to HOME or the keyring folder is caught by comparing the trees before and after.
    """
    home = root / "home"
    (home / ".local/share").mkdir(parents=True)
    (home / ".databrickscfg").write_text(DECOY_CFG, encoding="utf-8")
    (root / "tmp").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "DBT_CLOUD_", "XDG_"))}
    env.update(
        {
            "HOME": str(home),
            "XDG_DATA_HOME": str(home / ".local/share"),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "TMPDIR": str(root / "tmp"),
            # keyrings.alt's file backend under HOME: a stored token would show up as a file.
            "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
            "DATABRICKS_HOST": "http://127.0.0.1:9",
            "DATABRICKS_TOKEN": "dapi-users-own-token",
            "DBT_CLOUD_API_TOKEN": DECOY_TOKEN,
            "DBTWF_ENV": "prod",
        }
    )
    env.pop("FORCE_COLOR", None)
    return env


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"" for p in root.rglob("*")}


def port_is_closed(url: str) -> bool:
    parts = urlsplit(url)
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex((parts.hostname or "127.0.0.1", parts.port or 80)) != 0


@dataclass(frozen=True)
class DemoWalk:
    """One run of scripts/demo.py and what it left behind, looked at as soon as it ended."""

    returncode: int
    output: str  # stdout: the steps, the commands' output, the summary
    stderr: str
    home_before: dict[str, bytes]
    home_after: dict[str, bytes]
    tmp_left: list[Path]  # what the demo left in its TMPDIR
    closed_ports: dict[str, bool]  # each emulator URL it printed: nothing listens there any more


@pytest.fixture(scope="session")
def demo_walk(tmp_path_factory: pytest.TempPathFactory) -> DemoWalk:
    """`make demo`'s script as `make demo` runs it, once per session, in a user's shell with
    decoy credentials (user_environment); the tests of tests/test_demo.py assert on it (and
    `make test` keeps each test file on one pytest-xdist worker, so it runs once there too)."""
    import re

    root = tmp_path_factory.mktemp("demo")
    env = user_environment(root)
    home_before = tree(root / "home")
    result = subprocess.run(
        [sys.executable, str(DEMO)],
        cwd=root,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT,
    )
    urls = re.findall(r"export (?:DATABRICKS|DBT_CLOUD)_HOST=(\S+)", result.stdout)
    return DemoWalk(
        returncode=result.returncode,
        output=result.stdout,
        stderr=result.stderr,
        home_before=home_before,
        home_after=tree(root / "home"),
        tmp_left=list((root / "tmp").iterdir()),
        closed_ports={url: port_is_closed(url) for url in urls},
    )
