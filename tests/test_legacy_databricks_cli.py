"""A third-party client, the legacy `databricks-cli` 0.18 from PyPI, round-trips through the emulator.

Verified quirk: the CLI keeps only the hostname of DATABRICKS_HOST, so with
`http://127.0.0.1:PORT` it calls port 80 and fails with "Connection refused". It is pointed at
`http://127.0.0.1` and its requests go through a local forward proxy (HTTP_PROXY) to the emulator.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import DATABRICKS_TOKEN
from tests.emulators.databricks import DatabricksEmulator
from tests.emulators.proxy import ForwardProxy, legacy_cli_env

pytestmark = pytest.mark.slow  # every command is a fresh Python process
LEGACY_CLI = Path(sys.executable).with_name("databricks")


@pytest.fixture
def proxy(databricks: DatabricksEmulator) -> Iterator[ForwardProxy]:
    with ForwardProxy(databricks.port) as running:
        yield running


@pytest.fixture
def cli_env(proxy: ForwardProxy, tmp_path: Path) -> dict[str, str]:
    return legacy_cli_env(proxy, tmp_path, DATABRICKS_TOKEN)


def cli(env: dict[str, str], *args: str) -> str:
    if not LEGACY_CLI.exists():
        pytest.fail(f"databricks-cli is not installed next to {sys.executable} (make install)")
    result = subprocess.run([str(LEGACY_CLI), *args], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"databricks {' '.join(args)}: {result.stdout}{result.stderr}"
    return result.stdout


def test_secrets_round_trip(
    databricks: DatabricksEmulator, cli_env: dict[str, str], proxy: ForwardProxy
) -> None:
    cli(cli_env, "secrets", "create-scope", "--scope", "dbtwf", "--initial-manage-principal", "users")
    cli(cli_env, "secrets", "put", "--scope", "dbtwf", "--key", "dbt-token", "--string-value", "dbtc_legacy")
    assert databricks.secret_value("dbtwf", "dbt-token") == "dbtc_legacy"
    assert "dbtwf" in cli(cli_env, "secrets", "list-scopes")
    listed = cli(cli_env, "secrets", "list", "--scope", "dbtwf", "--output", "JSON")
    assert [s["key"] for s in json.loads(listed)["secrets"]] == ["dbt-token"]
    assert "dbtc_legacy" not in listed
    assert "POST /api/2.0/secrets/put" in proxy.forwarded


def test_port_is_dropped_without_the_proxy(databricks: DatabricksEmulator, cli_env: dict[str, str]) -> None:
    env = {k: v for k, v in cli_env.items() if k.lower() != "http_proxy"}
    env["DATABRICKS_HOST"] = databricks.url
    result = subprocess.run(
        [str(LEGACY_CLI), "secrets", "list-scopes"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0 and "port=80" in result.stdout + result.stderr
    assert databricks.requests == []


def test_workspace_import_export_round_trip(
    databricks: DatabricksEmulator, cli_env: dict[str, str], tmp_path: Path
) -> None:
    source = "# Databricks notebook source\nprint('legacy')\n"
    local = tmp_path / "runner.py"
    local.write_text(source)
    cli(cli_env, "workspace", "mkdirs", "/Shared/legacy")
    cli(
        cli_env,
        "workspace",
        "import",
        "--language",
        "PYTHON",
        "--format",
        "SOURCE",
        str(local),
        "/Shared/legacy/nb",
    )
    assert databricks.workspace_file("/Shared/legacy/nb") == source.encode()
    assert "nb" in cli(cli_env, "workspace", "ls", "/Shared/legacy")
    exported = tmp_path / "exported.py"
    cli(cli_env, "workspace", "export", "--format", "SOURCE", "/Shared/legacy/nb", str(exported))
    assert exported.read_text() == source


def test_jobs_create_get_list_with_api_21(
    databricks: DatabricksEmulator, cli_env: dict[str, str], tmp_path: Path
) -> None:
    settings = {
        "name": "legacy workflow",
        "tags": {"dbtwf": "legacy"},
        "tasks": [
            {
                "task_key": "dbt",
                "notebook_task": {"notebook_path": "/Shared/legacy/nb", "base_parameters": {"job_id": "70"}},
            }
        ],
    }
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps(settings))
    job_id = json.loads(cli(cli_env, "jobs", "create", "--json-file", str(spec), "--version=2.1"))["job_id"]
    assert databricks.jobs[job_id]["settings"]["tags"] == {"dbtwf": "legacy"}
    got = json.loads(cli(cli_env, "jobs", "get", "--job-id", str(job_id), "--version=2.1"))
    assert got["settings"]["tasks"][0]["notebook_task"]["base_parameters"] == {"job_id": "70"}
    listed = json.loads(cli(cli_env, "jobs", "list", "--output", "JSON", "--version=2.1"))
    assert [j["job_id"] for j in listed["jobs"]] == [job_id]
    assert {r.path for r in databricks.requests} >= {
        "/api/2.1/jobs/create",
        "/api/2.1/jobs/get",
        "/api/2.1/jobs/list",
    }
