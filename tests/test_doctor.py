"""`dbtwf doctor`: one line per link, OK/FAIL/SKIP with a fix, over real HTTP; read-only."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from provision.doctor import Check, Status, diagnose
from provision.model import Compute, DbtJobTask
from tests.conftest import DBT_CLOUD_TOKEN
from tests.provision_helpers import configured_cli, make_env, make_workspace

DBT_JOB = 42
ALL_CHECKS = [
    "config",
    "databricks auth",
    "dbt token",
    "dbt jobs",
    "secret scope",
    "secret key",
    "scope readers",
    "scope access",
    "notebook",
    "notebook location",
    "workflow",
    "added tasks",
    "compute",
    "lock",
]


@pytest.fixture
def invoke(
    tmp_path: Path, databricks: Any, dbt_cloud: Any, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Any]:
    dbt_cloud.add_job(DBT_JOB)
    return configured_cli(tmp_path, monkeypatch, databricks.url, dbt_cloud.url, DBT_JOB)


def doctor_json(invoke: Callable[..., Any]) -> tuple[int, dict[str, dict[str, Any]]]:
    result = invoke("doctor", "--json")
    data = json.loads(result.stdout)
    checks = {check["name"]: check for check in data["checks"]}
    assert list(checks) == ALL_CHECKS
    assert data["ok"] is (result.exit_code == 0)
    return result.exit_code, checks


def statuses(checks: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {name: check["status"] for name, check in checks.items()}


def test_fresh_workspace_fails_with_fixes_and_writes_nothing(
    invoke: Callable[..., Any], databricks: Any
) -> None:
    code, checks = doctor_json(invoke)

    assert code == 1
    assert statuses(checks) == {
        "config": "ok",
        "databricks auth": "ok",
        "dbt token": "ok",
        "dbt jobs": "ok",
        "secret scope": "fail",
        "secret key": "skip",
        "scope readers": "skip",
        "scope access": "skip",
        "notebook": "fail",
        "notebook location": "ok",
        "workflow": "fail",
        "added tasks": "ok",
        "compute": "ok",
        "lock": "ok",
    }
    for name in ("secret scope", "notebook", "workflow"):
        assert "dbtwf apply" in checks[name]["fix"]
    assert databricks.user_name in checks["databricks auth"]["detail"]
    assert "Daily dbt build" in checks["dbt jobs"]["detail"]
    assert databricks.writes() == []


def test_after_apply_everything_passes(invoke: Callable[..., Any], databricks: Any) -> None:
    assert invoke("apply", "--yes").exit_code == 0
    databricks.reset_log()

    code, checks = doctor_json(invoke)

    assert code == 0, checks
    assert set(statuses(checks).values()) == {"ok"}
    assert "environment variable" in checks["dbt token"]["detail"]
    # Read-only, and never a secret's value.
    assert databricks.writes() == []
    assert not [r for r in databricks.requests if r.path.endswith("/secrets/get")]
    table = invoke("doctor")
    assert table.exit_code == 0 and "all checks passed" in table.stdout
    assert DBT_CLOUD_TOKEN not in table.output


def test_drift_is_reported_per_link(invoke: Callable[..., Any], databricks: Any, tmp_path: Path) -> None:
    assert invoke("apply", "--yes").exit_code == 0
    ws = make_workspace(databricks)
    env_notebook = f"/Users/{databricks.user_name}/.dbtwf/dev/run_dbt_cloud_job"
    ws.import_notebook(
        env_notebook, "# Databricks notebook source\nprint('edited by hand')\n", overwrite=True
    )
    (job_id,) = databricks.jobs
    ws.update_job(job_id, {"max_concurrent_runs": 7})

    code, checks = doctor_json(invoke)

    assert code == 1
    assert checks["notebook"]["status"] == "fail" and "differs" in checks["notebook"]["detail"]
    assert checks["workflow"]["status"] == "fail" and "max_concurrent_runs" in checks["workflow"]["detail"]
    assert checks["secret key"]["status"] == "ok"


def test_changed_local_token_is_flagged(invoke: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    assert invoke("apply", "--yes").exit_code == 0
    monkeypatch.setenv("DBT_CLOUD_API_TOKEN", "dbtc_rotated_but_not_applied_0000")
    _, checks = doctor_json(invoke)
    # The dbt emulator rejects the new token, and the secret holds the old one.
    assert checks["dbt jobs"]["status"] == "fail" and "DBT_CLOUD_API_TOKEN" in checks["dbt jobs"]["fix"]
    assert checks["secret key"]["status"] == "fail" and "another token" in checks["secret key"]["detail"]


def test_missing_config_and_token_skip_what_needs_them(
    invoke: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "dbtwf.toml").unlink()
    monkeypatch.delenv("DBT_CLOUD_API_TOKEN")
    code, checks = doctor_json(invoke)
    assert code == 2  # bad input: no usable config, so nothing was asked of either service
    assert statuses(checks)["config"] == "fail" and "onboard" in (checks["config"]["fix"] or "")
    assert statuses(checks)["dbt token"] == "fail" and "dbtwf token set" in checks["dbt token"]["fix"]
    assert {name for name, status in statuses(checks).items() if status == "skip"} == set(ALL_CHECKS) - {
        "config",
        "dbt token",
    }


def test_compute_on_an_existing_cluster(databricks: Any, dbt_cloud: Any) -> None:
    dbt_cloud.add_job(DBT_JOB)
    env = make_env(
        dbt_host=dbt_cloud.url, compute=Compute(kind="existing_cluster", existing_cluster_id="0101-abc")
    )
    ws = make_workspace(databricks)

    def run() -> Check:
        checks = diagnose(lambda: env, lambda _: ws, find_token=lambda: (DBT_CLOUD_TOKEN, "a test"))
        return next(c for c in checks if c.name == "compute")

    missing = run()
    assert missing.status is Status.FAIL and "does not exist" in missing.detail
    # The fix names the key the config takes (and only that one).
    assert missing.fix is not None and "set cluster_id of environment 'dev'" in missing.fix
    assert "existing_cluster_id" not in missing.fix and "compute." not in missing.fix
    from provision.config import parse_config

    text = '[environments.dev]\ndbt_cloud_host = "a.dbt.com"\ndbt_cloud_account_id = 1\n'
    text += 'cluster_id = "0101-abc"\n[environments.dev.dbt_jobs]\nnightly = 1\n'
    parsed = parse_config(text, Path("dbtwf.toml"))
    assert parsed.environments["dev"].compute.existing_cluster_id == "0101-abc"
    databricks.add_cluster("0101-abc", state="TERMINATED")
    assert run().status is Status.OK
    databricks.add_cluster("0101-abc", state="ERROR")
    assert run().status is Status.FAIL


def test_scope_readers_need_read(databricks: Any, dbt_cloud: Any) -> None:
    from provision.apply import apply_changes
    from provision.plan import plan_environment

    dbt_cloud.add_job(DBT_JOB)
    env = make_env(
        dbt_host=dbt_cloud.url, dbt_jobs=(DbtJobTask("nightly", DBT_JOB),), scope_readers=("analysts",)
    )
    ws = make_workspace(databricks)

    def readers() -> Check:
        checks = diagnose(lambda: env, lambda _: ws, find_token=lambda: (DBT_CLOUD_TOKEN, "a test"))
        return next(c for c in checks if c.name == "scope readers")

    ws.create_scope(env.secret_scope)
    missing = readers()
    assert missing.status is Status.FAIL and "analysts" in missing.detail
    apply_changes(ws, env, plan_environment(ws, env, DBT_CLOUD_TOKEN), DBT_CLOUD_TOKEN)
    assert readers().status is Status.OK


def test_secret_overwritten_outside_dbtwf_is_reported(invoke: Callable[..., Any], databricks: Any) -> None:
    assert invoke("apply", "--yes").exit_code == 0
    make_workspace(databricks).put_secret("dbtwf-dev", "dbt-cloud-api-token", "not the token")
    databricks.reset_log()

    code, checks = doctor_json(invoke)

    assert code == 1
    secret = checks["secret key"]
    assert secret["status"] == "fail" and "overwritten outside dbtwf" in secret["detail"]
    assert "dbtwf apply" in secret["fix"]
    assert databricks.writes() == []
    assert not [r for r in databricks.requests if r.path.endswith("/secrets/get")]
    plan = invoke("plan")
    assert "overwritten outside dbtwf" in plan.stdout


def test_a_stale_lock_is_reported_and_a_live_one_is_not_a_failure(
    invoke: Callable[..., Any], databricks: Any, dbt_cloud: Any
) -> None:
    from provision.state import lock_path

    assert invoke("apply", "--yes").exit_code == 0
    env = make_env(dbt_host=dbt_cloud.url, dbt_jobs=(DbtJobTask("nightly", DBT_JOB),))
    ws = make_workspace(databricks)
    now = 1_800_000_000.0

    ws.mkdirs(env.notebook_folder)

    def lock_check(age: float) -> Check:
        ws.delete(lock_path(env))
        held = {"holder": "ci@runner pid 7", "acquired_at": now - age, "nonce": "x"}
        ws.write_file(lock_path(env), json.dumps(held).encode(), overwrite=False)
        checks = diagnose(
            lambda: env, lambda _: ws, find_token=lambda: (DBT_CLOUD_TOKEN, "a test"), now=lambda: now
        )
        return next(c for c in checks if c.name == "lock")

    live = lock_check(age=20)
    assert live.status is Status.OK and "ci@runner pid 7 for 20 s" in live.detail
    stale = lock_check(age=3 * 3600)
    assert stale.status is Status.FAIL and "stale lock" in stale.detail and "3.0 h" in stale.detail
    assert stale.fix and "--break-lock" in stale.fix


def test_doctor_does_not_export_a_notebook_the_record_vouches_for(
    invoke: Callable[..., Any], databricks: Any
) -> None:
    assert invoke("apply", "--yes").exit_code == 0
    databricks.reset_log()
    _, checks = doctor_json(invoke)
    assert checks["notebook"]["status"] == "ok"
    notebook_exports = [
        r for r in databricks.requests if r.path.endswith("/workspace/export") and "run_dbt" in str(r.query)
    ]
    assert notebook_exports == []


def test_bracketed_text_is_shown_and_config_and_auth_failures_say_what_to_do(
    invoke: Callable[..., Any], tmp_path: Path
) -> None:
    (tmp_path / "dbtwf.toml").write_text('[environments.dev]\nsecret_scop = "x"\n')
    table = invoke("doctor")
    assert table.exit_code == 2
    assert "[environments.dev]" in table.stdout  # not eaten as rich markup
    _, checks = doctor_json(invoke)
    assert checks["config"]["status"] == "fail" and checks["config"]["fix"]

    from provision.errors import ConfigError, RemoteError

    def unusable() -> Any:
        raise ConfigError("dbtwf.toml: [environments.dev] timezone: not a time zone")

    def unreachable(env: Any) -> Any:
        raise RemoteError("cannot reach Databricks at https://adb-1.example.invalid (DATABRICKS_HOST)")

    token = (DBT_CLOUD_TOKEN, "a test")
    (config, *_) = diagnose(unusable, unreachable, find_token=lambda: token)
    assert config.status is Status.FAIL and "dbtwf onboard" in (config.fix or "")
    auth = diagnose(lambda: make_env(), unreachable, find_token=lambda: None)[1]  # nothing sent
    assert auth.name == "databricks auth" and auth.status is Status.FAIL
    assert "DATABRICKS_HOST" in (auth.fix or "") and "databricks auth login" in (auth.fix or "")


def test_a_changed_dbt_host_is_named_by_plan_and_doctor(
    invoke: Callable[..., Any], tmp_path: Path, dbt_cloud: Any
) -> None:
    assert invoke("apply", "--yes").exit_code == 0
    config = tmp_path / "dbtwf.toml"
    moved = dbt_cloud.url.replace("127.0.0.1", "localhost")
    config.write_text(config.read_text().replace(dbt_cloud.url, moved))
    expected = f"the dbt host changed ({dbt_cloud.url!r} -> {moved!r})"

    planned = json.loads(invoke("plan", "--json").stdout)
    (notebook,) = [change for change in planned["changes"] if change["resource"] == "notebook"]
    assert (notebook["action"], notebook["reason"]) == ("update", expected)
    _, checks = doctor_json(invoke)
    assert expected in checks["notebook"]["detail"]
