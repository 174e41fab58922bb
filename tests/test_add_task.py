"""add-task: one jobs/update holding only the new task, everything checked before it.

Pure decisions are tested directly; the rest over real HTTP against both emulators.
"""

from __future__ import annotations

from typing import Any

import pytest

from provision.add_task import (
    AddTaskRequest,
    build_task,
    check_request,
    choose_compute,
    job_parameter_note,
    parse_dbt_job,
    task_differences,
)
from provision.errors import ConflictError, UsageError
from provision.model import Compute, DbtJobTask, Environment

DBT_HOST = "ab123.us1.dbt.com"


def make_env(**overrides: Any) -> Environment:
    values: dict[str, Any] = {
        "name": "dev",
        "dbt_cloud_host": DBT_HOST,
        "dbt_cloud_account_id": 70403,
        "dbt_jobs": (DbtJobTask("dbt_cloud_1", 1),),
    }
    values.update(overrides)
    return Environment(**values)


# --- parsing the request -------------------------------------------------------------------


def test_dbt_job_from_id_or_url_of_the_environments_account() -> None:
    env = make_env()
    assert parse_dbt_job(" 456 ", env) == 456
    assert parse_dbt_job(f"https://{DBT_HOST}/deploy/70403/projects/2/jobs/789", env) == 789


@pytest.mark.parametrize(
    "value",
    [
        "abc",
        "0",
        "https://ab123.us1.dbt.com/deploy/70403/projects/2",
        f"https://{DBT_HOST}/deploy/99/projects/2/jobs/789",  # another account
        "https://zz999.eu1.dbt.com/deploy/70403/projects/2/jobs/789",  # another host
        f"http://{DBT_HOST}/deploy/70403/projects/2/jobs/789",  # http is another host than https
    ],
)
def test_bad_or_foreign_dbt_job_is_a_usage_error(value: str) -> None:
    with pytest.raises(UsageError):
        parse_dbt_job(value, make_env())


def test_local_host_with_scheme_matches_the_url() -> None:
    env = make_env(dbt_cloud_host="http://127.0.0.1:8123")
    assert parse_dbt_job("http://127.0.0.1:8123/deploy/70403/projects/1/jobs/5", env) == 5


@pytest.mark.parametrize(
    "request_",
    [
        AddTaskRequest(workflow="1", dbt_job="2", task_key="has space"),
        AddTaskRequest(workflow="1", dbt_job="2", task_key="x" * 101),
        AddTaskRequest(workflow="1", dbt_job="2", depends_on=("dbt_cloud_2",)),  # itself
        AddTaskRequest(workflow="1", dbt_job="2", cluster_id="c", job_cluster_key="k"),
        AddTaskRequest(workflow=" ", dbt_job="2"),
    ],
)
def test_bad_requests_are_usage_errors(request_: AddTaskRequest) -> None:
    with pytest.raises(UsageError):
        check_request(request_, make_env())


def test_default_task_key_and_name_or_id() -> None:
    assert check_request(AddTaskRequest(workflow="12", dbt_job="34"), make_env()) == (34, 12, "dbt_cloud_34")
    assert check_request(AddTaskRequest(workflow="Nightly", dbt_job="34", task_key="k"), make_env()) == (
        34,
        "Nightly",
        "k",
    )


# --- the task and its compute --------------------------------------------------------------


def test_task_shape_serverless_by_default() -> None:
    task = build_task(make_env(), task_key="k", dbt_job_id=42, depends_on=("a", "b"))
    assert task["task_key"] == "k"
    assert task["notebook_task"] == {
        "notebook_path": "/Shared/dbtwf/run_dbt_cloud_job",
        "source": "WORKSPACE",
        "base_parameters": {"job_id": "42"},
    }
    assert task["depends_on"] == [{"task_key": "a"}, {"task_key": "b"}]
    assert task["timeout_seconds"] > make_env().run_timeout_seconds
    assert not {"existing_cluster_id", "job_cluster_key", "new_cluster"} & task.keys()


def test_compute_flags_and_defaults() -> None:
    env = make_env()
    plain: dict[str, Any] = {"tasks": [{"task_key": "a"}]}
    assert choose_compute(plain, env, cluster_id=None, job_cluster_key=None, depends_on=()) == ({}, None)
    assert choose_compute(plain, env, cluster_id="c-1", job_cluster_key=None, depends_on=())[0] == {
        "existing_cluster_id": "c-1"
    }
    with pytest.raises(UsageError, match="no job cluster 'nope'"):
        choose_compute(plain, env, cluster_id=None, job_cluster_key="nope", depends_on=())
    on_cluster = make_env(compute=Compute(kind="existing_cluster", existing_cluster_id="env-c"))
    assert choose_compute(plain, on_cluster, cluster_id=None, job_cluster_key=None, depends_on=())[0] == {
        "existing_cluster_id": "env-c"
    }


def test_job_cluster_workflow_default_reuses_a_cluster_or_asks() -> None:
    env = make_env()
    one = {"job_clusters": [{"job_cluster_key": "main"}], "tasks": [{"task_key": "a"}]}
    compute, note = choose_compute(one, env, cluster_id=None, job_cluster_key=None, depends_on=())
    assert compute == {"job_cluster_key": "main"} and note and "main" in note
    two = {
        "job_clusters": [{"job_cluster_key": "small"}, {"job_cluster_key": "big"}],
        "tasks": [{"task_key": "a", "job_cluster_key": "big"}, {"task_key": "b"}],
    }
    compute, note = choose_compute(two, env, cluster_id=None, job_cluster_key=None, depends_on=("b", "a"))
    assert compute == {"job_cluster_key": "big"}
    with pytest.raises(UsageError, match="several job clusters"):
        choose_compute(two, env, cluster_id=None, job_cluster_key=None, depends_on=())


def test_task_differences_ignore_service_defaults() -> None:
    desired = build_task(make_env(), task_key="k", dbt_job_id=42, depends_on=("a",))
    as_served = {
        **desired,
        "run_if": "ALL_SUCCESS",
        "email_notifications": {},
        "depends_on": [{"task_key": "a"}],
    }
    as_served["notebook_task"] = {k: v for k, v in desired["notebook_task"].items() if k != "source"}
    assert task_differences(as_served, desired) == []
    other_job = build_task(make_env(), task_key="k", dbt_job_id=43, depends_on=("a",))
    assert task_differences(other_job, desired) == ["notebook_task.base_parameters"]
    on_cluster = {**desired, "existing_cluster_id": "c"}
    assert task_differences(on_cluster, desired) == ["existing_cluster_id"]


def test_job_level_job_id_parameter_overrides_the_task() -> None:
    assert job_parameter_note({"parameters": [{"name": "other", "default": "1"}]}, 42) is None
    note = job_parameter_note({"parameters": [{"name": "job_id", "default": "42"}]}, 42)
    assert note and "overrides" in note
    with pytest.raises(ConflictError, match="would run dbt job 7 instead of 42"):
        job_parameter_note({"parameters": [{"name": "job_id", "default": "7"}]}, 42)
