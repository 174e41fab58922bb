"""The pure planner: every decision tested on data, without a server."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from provision.change import Action
from provision.desired import Desired, workflow_settings
from provision.errors import ConflictError
from provision.model import Compute, DbtJobTask, Environment, Schedule
from provision.observe import Observed
from provision.plan import plan, workflow_differences
from provision.state import STATE_VERSION, StateRecord, token_fingerprint

TOKEN = "dbtc_plan_test_token_value"
SOURCE = "# Databricks notebook source\nprint('runner')\n"
STORED_AT = 1_700_000_000_000  # the secret's last_updated_timestamp (ms) when dbtwf stored it


def make_env(**overrides: Any) -> Environment:
    values: dict[str, Any] = {
        "name": "dev",
        "dbt_cloud_host": "acme.us1.dbt.com",
        "dbt_cloud_account_id": 7,
        "dbt_jobs": (DbtJobTask("dbt_job", 42),),
    }
    values.update(overrides)
    return Environment(**values)


def desired(env: Environment, token: str | None = TOKEN) -> Desired:
    return Desired(env=env, notebook_source=SOURCE, workflow=workflow_settings(env), token=token)


def in_sync(env: Environment, job_id: int = 11) -> Observed:
    """What the workspace holds right after a successful apply."""
    salt = "salt"
    return Observed(
        scope_exists=True,
        scope_acls={},
        secret_exists=True,
        folder_exists=True,
        notebook_source=SOURCE + "\n",
        state=StateRecord(
            environment=env.name,
            workflow_job_id=job_id,
            scope_created=True,
            token_salt=salt,
            token_fingerprint=token_fingerprint(TOKEN, salt),
            secret_updated_at=STORED_AT,
        ),
        workflow={"job_id": job_id, "settings": _with_server_defaults(workflow_settings(env))},
        found_by="state",
        secret_updated_at=STORED_AT,
    )


def _with_server_defaults(settings: dict[str, Any]) -> dict[str, Any]:
    """Fields the service adds to a job that dbtwf does not set: they must not count as drift."""
    tasks = [{**task, "run_if": "ALL_SUCCESS", "email_notifications": {}} for task in settings["tasks"]]
    return {
        **settings,
        "tasks": tasks,
        "format": "MULTI_TASK",
        "timeout_seconds": 0,
        "email_notifications": {},
    }


def actions(changes: list[Any]) -> dict[str, str]:
    return {change.resource: change.action.value for change in changes}


def test_fresh_environment_creates_everything() -> None:
    env = make_env()
    empty = Observed(False, {}, False, False, None, None)
    assert actions(plan(desired(env), empty)) == {
        "scope": "create",
        "secret": "create",
        "folder": "create",
        "notebook": "create",
        "workflow": "create",
        "state": "create",
    }


def test_in_sync_environment_plans_nothing() -> None:
    env = make_env(scope_readers=("data-team",))
    observed = replace(in_sync(env), scope_acls={"data-team": "READ"})
    changes = plan(desired(env), observed)
    assert {c.action for c in changes} == {Action.NOOP}, [c.to_dict() for c in changes]


def test_changed_token_updates_the_secret_in_place() -> None:
    env = make_env()
    changes = plan(desired(env, token="dbtc_another_token"), in_sync(env))
    assert actions(changes)["secret"] == "update"
    assert actions(changes)["state"] == "update"
    assert actions(changes)["workflow"] == "no-op"


def test_without_a_token_an_existing_secret_is_left_alone() -> None:
    env = make_env()
    assert actions(plan(desired(env, token=None), in_sync(env)))["secret"] == "no-op"


def test_changed_notebook_is_an_update() -> None:
    env = make_env()
    observed = replace(in_sync(env), notebook_source=SOURCE + "print('hand edit')\n")
    assert actions(plan(desired(env), observed))["notebook"] == "update"


@pytest.mark.parametrize(
    "change",
    [
        {"schedule": Schedule("0 0 6 * * ?", "Europe/Berlin")},
        {"dbt_jobs": (DbtJobTask("a", 1), DbtJobTask("b", 2, ("a",)))},
        {"compute": Compute(kind="existing_cluster", existing_cluster_id="0101-abc")},
        {"failure_emails": ("oncall@example.com",)},
        {"workflow_name": "renamed"},
        {"run_timeout_seconds": 60},
    ],
)
def test_changed_workflow_settings_update_the_owned_job(change: dict[str, Any]) -> None:
    before = make_env()
    after = make_env(**change)
    changes = plan(desired(after), in_sync(before))
    workflow = next(c for c in changes if c.resource == "workflow")
    assert workflow.action is Action.UPDATE and workflow.job_id == 11


def test_removed_schedule_is_drift() -> None:
    scheduled = make_env(schedule=Schedule("0 0 6 * * ?"))
    plain = make_env()
    assert workflow_differences(workflow_settings(plain), workflow_settings(scheduled)) == ["schedule"]


def test_single_dbt_job_uses_a_job_parameter_and_no_task_parameter() -> None:
    settings = workflow_settings(make_env())
    assert settings["parameters"] == [{"name": "job_id", "default": "42"}]
    assert "base_parameters" not in settings["tasks"][0]["notebook_task"]
    assert settings["tags"] == {"managed-by": "dbtwf", "dbtwf-env": "dev"}
    assert settings["max_concurrent_runs"] == 1


def test_several_dbt_jobs_use_task_parameters_and_no_job_parameter() -> None:
    settings = workflow_settings(make_env(dbt_jobs=(DbtJobTask("a", 1), DbtJobTask("b", 2, ("a",)))))
    assert "parameters" not in settings
    assert [t["notebook_task"]["base_parameters"] for t in settings["tasks"]] == [
        {"job_id": "1"},
        {"job_id": "2"},
    ]
    assert settings["tasks"][1]["depends_on"] == [{"task_key": "a"}]


def test_serverless_tasks_carry_no_compute_and_job_clusters_are_declared() -> None:
    assert not {"existing_cluster_id", "job_cluster_key", "new_cluster"} & set(
        workflow_settings(make_env())["tasks"][0]
    )
    spec = {"spark_version": "15.4.x-scala2.12", "num_workers": 1}
    settings = workflow_settings(make_env(compute=Compute(kind="job_cluster", new_cluster=spec)))
    assert settings["tasks"][0]["job_cluster_key"] == "dbtwf_cluster"
    assert settings["job_clusters"] == [{"job_cluster_key": "dbtwf_cluster", "new_cluster": spec}]


def test_found_by_tags_without_state_is_adopted_as_ours() -> None:
    env = make_env()
    observed = replace(in_sync(env), state=None, found_by="tags")
    changes = plan(desired(env), observed)
    assert actions(changes)["workflow"] == "no-op"
    assert actions(changes)["state"] == "create"
    # No fingerprint to compare against: the token is stored again rather than trusted.
    assert actions(changes)["secret"] == "update"


def test_stale_job_in_state_is_created_again() -> None:
    env = make_env()
    observed = replace(in_sync(env), workflow=None, found_by=None, stale_job_id=11)
    workflow = next(c for c in plan(desired(env), observed) if c.resource == "workflow")
    assert workflow.action is Action.CREATE and "11" in workflow.reason


def test_foreign_job_with_the_same_name_stops_unless_adopted() -> None:
    env = make_env()
    observed = replace(in_sync(env), workflow=None, found_by=None, foreign_same_name=(99,))
    with pytest.raises(ConflictError) as raised:
        plan(desired(env), observed)
    assert "99" in raised.value.message and raised.value.hint and "--adopt" in raised.value.hint
    workflow = next(c for c in plan(desired(env), observed, adopt=True) if c.resource == "workflow")
    assert workflow.action is Action.UPDATE and workflow.job_id == 99


def test_several_owned_jobs_are_ambiguous() -> None:
    env = make_env()
    observed = replace(in_sync(env), workflow=None, duplicate_owned=(11, 12))
    with pytest.raises(ConflictError, match="11, 12"):
        plan(desired(env), observed)


def test_scope_reader_acl_is_granted_but_never_downgraded() -> None:
    env = make_env(scope_readers=("analysts", "admins"))
    observed = replace(in_sync(env), scope_acls={"admins": "MANAGE"})
    changes = {c.name: c.action for c in plan(desired(env), observed) if c.resource == "scope-acl"}
    assert changes == {"dbtwf-dev:analysts": Action.CREATE, "dbtwf-dev:admins": Action.NOOP}


def test_change_serialises_without_the_token() -> None:
    env = make_env()
    rendered = repr([c.to_dict() for c in plan(desired(env, token="dbtc_another_token"), in_sync(env))])
    assert "another_token" not in rendered
    assert "another_token" not in repr(desired(env, token="dbtc_another_token"))


# -- changes carry what they run; saved plans -------------------------------------------------


def test_changes_carry_their_payload_and_never_the_token() -> None:
    env = make_env()
    empty = Observed(False, {}, False, False, None, None)
    changes = {c.resource: c for c in plan(desired(env), empty)}
    assert changes["notebook"].payload["source"] == SOURCE
    assert changes["workflow"].payload["settings"] == workflow_settings(env)
    secret = changes["secret"].payload
    assert set(secret) == {"salt", "fingerprint"} and TOKEN not in repr(secret)


def test_a_saved_plan_round_trips_and_names_what_no_longer_matches() -> None:
    from provision.change import Change
    from provision.desired import config_digest
    from provision.saved_plan import Plan

    env = make_env()
    salt = "s1"
    saved = Plan(
        environment="dev",
        workspace_host="https://adb-1.azuredatabricks.net/",
        identity="me@example.com",
        config_digest=config_digest(env),
        changes=(Change("scope", "dbtwf", Action.CREATE, "missing", expect={"exists": False}),),
        token_salt=salt,
        token_fingerprint=token_fingerprint(TOKEN, salt),
    )
    data = saved.to_json()
    assert TOKEN.encode() not in data
    loaded = Plan.from_json(data, "p.json")
    assert loaded == saved and loaded.changes[0].expect == {"exists": False}
    same = {"host": "https://adb-1.azuredatabricks.net", "identity": "me@example.com", "env": env}
    assert loaded.mismatches(**same, token=TOKEN) == []
    assert loaded.mismatches(**same, token="dbtc_other") == [
        "the dbt Cloud token is not the one the plan was made with"
    ]
    assert (
        "changed since the plan"
        in loaded.mismatches(**{**same, "env": make_env(run_timeout_seconds=5)}, token=TOKEN)[0]
    )


def test_old_state_records_migrate_and_newer_ones_are_refused() -> None:
    import json

    from provision.errors import RemoteError

    v1 = {"environment": "dev", "workflow_job_id": 7, "scope_created": True, "version": 1}
    record = StateRecord.from_json(json.dumps(v1).encode(), "s.json")
    assert (record.version, record.workflow_job_id, record.secret_updated_at) == (STATE_VERSION, 7, None)
    unversioned = StateRecord.from_json(b'{"environment": "dev"}', "s.json")
    assert unversioned.version == STATE_VERSION
    with pytest.raises(RemoteError, match="newer dbtwf"):
        StateRecord.from_json(json.dumps({**v1, "version": STATE_VERSION + 1}).encode(), "s.json")


def test_a_notebook_update_says_what_changed() -> None:
    """Not "differs from the runner version" when only a constant changed: which one, from what to what."""
    from provision.desired import notebook_difference, render_runner_notebook, sha256_text

    env = make_env()
    uploaded = render_runner_notebook(env)
    moved = replace(env, dbt_cloud_host="emea.dbt.com")
    assert notebook_difference(uploaded, render_runner_notebook(moved)) == (
        "the dbt host changed ('acme.us1.dbt.com' -> 'emea.dbt.com')"
    )
    both = notebook_difference(
        uploaded, render_runner_notebook(replace(env, secret_key="k2", run_timeout_seconds=60))
    )
    assert (
        both
        == "the secret key changed ('dbt-cloud-api-token' -> 'k2'); the run timeout changed (14400 -> 60)"
    )
    edited_core = uploaded.replace("import ", "import  ", 1)
    assert notebook_difference(edited_core, uploaded) == "the runner code changed (another dbtwf version)"

    # The planner says it, whether the record vouches for the upload or the export is compared.
    record = StateRecord(environment="dev", notebook_sha256=sha256_text(uploaded))
    record.notebook_object_id, record.notebook_modified_at = 5, 1
    vouched = replace(in_sync(moved), state=record, notebook_status={"object_id": 5, "modified_at": 1})
    wanted = Desired(
        env=moved, notebook_source=render_runner_notebook(moved), workflow=workflow_settings(moved)
    )
    for observed in (
        replace(vouched, notebook_source=uploaded),
        replace(in_sync(moved), notebook_source=uploaded),
    ):
        (notebook,) = [c for c in plan(wanted, observed) if c.resource == "notebook"]
        assert notebook.reason == "the dbt host changed ('acme.us1.dbt.com' -> 'emea.dbt.com')"
