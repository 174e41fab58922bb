"""The Databricks emulator, driven by the real databricks-sdk over HTTP (and raw HTTP for error bodies).

Where the real service's behaviour comes from:
- error bodies for bad credentials: public reports of real responses (401 "Credential was not sent
  or was of an unsupported type for this API. [ReqId: ...]", 403 "Invalid access token.", both with
  a numeric error_code), e.g. databricks/databricks-sdk-go#873;
- jobs/get and runs/get on an unknown id answer 400 INVALID_PARAMETER_VALUE "Job N does not exist."
  (the SDK's own error overrides turn it into NotFound); `/.well-known/databricks-config` answered
  with an oidc_endpoint and workspace_id, as databricks/cli's test server does for the SDK;
- array paging of jobs/get in API 2.2 (100 per page) and how the SDK joins pages: the SDK source.
"""

from __future__ import annotations

import base64
import json
import logging
import urllib.error
import urllib.request
from typing import Any

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import (
    BadRequest,
    InvalidParameterValue,
    NotFound,
    PermissionDenied,
    ResourceAlreadyExists,
    ResourceDoesNotExist,
    Unauthenticated,
)
from databricks.sdk.service import compute, iam, jobs, workspace

from tests.conftest import DATABRICKS_TOKEN
from tests.emulators.databricks import DatabricksEmulator


def client(emulator: DatabricksEmulator, token: str = DATABRICKS_TOKEN, **config: Any) -> WorkspaceClient:
    return WorkspaceClient(host=emulator.url, token=token, **config)


@pytest.fixture
def w(databricks: DatabricksEmulator) -> WorkspaceClient:
    return client(databricks)


def raw(
    emulator: DatabricksEmulator,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    token: str | None = DATABRICKS_TOKEN,
) -> tuple[int, Any]:
    request = urllib.request.Request(emulator.url + path, method=method)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    data = None if body is None else json.dumps(body).encode()
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, data=data, timeout=10) as response:
            payload = response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        payload, status = error.read(), error.code
    return status, json.loads(payload) if payload else None


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


NOTEBOOK = "# Databricks notebook source\nprint('hello')\n"


# -- auth and start-up -----------------------------------------------------------------------


def test_sdk_starts_without_warnings_and_reads_current_user(
    databricks: DatabricksEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        me = client(databricks).current_user.me()
    assert me.user_name == databricks.user_name
    assert [r for r in caplog.records if r.name.startswith("databricks")] == []
    paths = [r.path for r in databricks.requests]
    assert paths == ["/.well-known/databricks-config", "/api/2.0/preview/scim/v2/Me"]
    _status, body = raw(databricks, "GET", "/api/2.0/preview/scim/v2/Me")
    assert iam.User.from_dict(body).as_dict() == body


def test_missing_credentials_are_401_with_the_real_body(databricks: DatabricksEmulator) -> None:
    status, body = raw(databricks, "GET", "/api/2.0/secrets/scopes/list", token=None)
    assert status == 401
    assert body["error_code"] == 401
    assert body["message"].startswith("Credential was not sent or was of an unsupported type for this API.")


def test_wrong_token_is_403_invalid_access_token(databricks: DatabricksEmulator) -> None:
    status, body = raw(databricks, "GET", "/api/2.0/secrets/scopes/list", token="dapi-wrong")
    assert (status, body) == (403, {"error_code": 403, "message": "Invalid access token."})
    with pytest.raises(PermissionDenied, match="Invalid access token"):
        client(databricks, token="dapi-wrong").secrets.list_scopes().__next__()


def test_sdk_maps_missing_credentials_to_unauthenticated(databricks: DatabricksEmulator) -> None:
    status, _ = raw(databricks, "GET", "/api/2.0/preview/scim/v2/Me", token="")
    assert status == 401
    with pytest.raises(Unauthenticated):
        WorkspaceClient(host=databricks.url, token=" ").current_user.me()


def test_unknown_endpoint_is_404(databricks: DatabricksEmulator) -> None:
    status, body = raw(databricks, "GET", "/api/2.0/nothing/here")
    assert status == 404 and body["error_code"] == "ENDPOINT_NOT_FOUND"


# -- clusters ---------------------------------------------------------------------------------


def test_clusters_get_and_list(databricks: DatabricksEmulator, w: WorkspaceClient) -> None:
    databricks.add_cluster("0101-abc", state="TERMINATED", name="shared")
    cluster = w.clusters.get("0101-abc")
    assert (cluster.cluster_name, cluster.state) == ("shared", compute.State.TERMINATED)
    assert [c.cluster_id for c in w.clusters.list()] == ["0101-abc"]
    with pytest.raises(ResourceDoesNotExist, match="Cluster nope does not exist"):
        w.clusters.get("nope")
    status, body = raw(databricks, "GET", "/api/2.0/clusters/get?cluster_id=0101-abc")
    assert status == 200 and compute.ClusterDetails.from_dict(body).as_dict() == body


# -- secrets ----------------------------------------------------------------------------------


def test_secret_scope_life_cycle(databricks: DatabricksEmulator, w: WorkspaceClient) -> None:
    w.secrets.create_scope("dbtwf-prod")
    with pytest.raises(ResourceAlreadyExists, match="Scope dbtwf-prod already exists"):
        w.secrets.create_scope("dbtwf-prod")
    assert [s.name for s in w.secrets.list_scopes()] == ["dbtwf-prod"]
    assert [(a.principal, a.permission) for a in w.secrets.list_acls("dbtwf-prod")] == [
        (databricks.user_name, workspace.AclPermission.MANAGE)
    ]
    w.secrets.delete_scope("dbtwf-prod")
    assert list(w.secrets.list_scopes()) == []
    with pytest.raises(ResourceDoesNotExist, match="Scope dbtwf-prod does not exist"):
        w.secrets.delete_scope("dbtwf-prod")


@pytest.mark.parametrize("name", ["has space", "slash/y", "x" * 129, "ünï"])
def test_invalid_scope_and_key_names(w: WorkspaceClient, name: str) -> None:
    with pytest.raises(
        InvalidParameterValue, match="alphanumeric characters, dashes, underscores, @, and periods"
    ):
        w.secrets.create_scope(name)
    w.secrets.create_scope("ok.scope_1-a")
    with pytest.raises(InvalidParameterValue, match="dashes, underscores, and periods"):
        w.secrets.put_secret("ok.scope_1-a", name, string_value="v")


def test_scope_names_take_at_signs_and_ignore_case(
    databricks: DatabricksEmulator, w: WorkspaceClient
) -> None:
    # docs.databricks.com/aws/en/security/secrets/workspace-secret-scopes: scope names "consist of
    # alphanumeric characters, dashes, underscores, @, and periods" and "are case insensitive";
    # secret keys keep the narrower rule (secrets/put reference: no @).
    w.secrets.create_scope("Team@Example.com")
    with pytest.raises(ResourceAlreadyExists):
        w.secrets.create_scope("team@example.COM")
    w.secrets.put_secret("TEAM@example.com", "k", string_value="v")
    assert [s.name for s in w.secrets.list_scopes()] == ["Team@Example.com"]  # as created
    assert [s.key for s in w.secrets.list_secrets("team@example.com")] == ["k"]
    assert databricks.secret_value("team@EXAMPLE.com", "k") == "v"
    assert [a.principal for a in w.secrets.list_acls("TEAM@EXAMPLE.COM")] == [databricks.user_name]
    with pytest.raises(InvalidParameterValue):
        w.secrets.put_secret("Team@Example.com", "key@x", string_value="v")
    w.secrets.delete_scope("team@example.com")
    assert list(w.secrets.list_scopes()) == []


def test_well_known_can_answer_404_and_reset_restores_it(databricks: DatabricksEmulator) -> None:
    databricks.host_metadata = False
    status, body = raw(databricks, "GET", "/.well-known/databricks-config", token=None)
    assert status == 404 and body["error_code"] == "ENDPOINT_NOT_FOUND"
    databricks.reset()
    assert raw(databricks, "GET", "/.well-known/databricks-config", token=None)[0] == 200
    with DatabricksEmulator(token=DATABRICKS_TOKEN, host_metadata=False) as quiet:
        quiet.reset()  # the constructor's mode survives a reset
        assert raw(quiet, "GET", "/.well-known/databricks-config", token=None)[0] == 404


def test_secret_put_overwrites_list_hides_values_get_is_base64(
    databricks: DatabricksEmulator, w: WorkspaceClient
) -> None:
    w.secrets.create_scope("s")
    w.secrets.put_secret("s", "token", string_value="first")
    w.secrets.put_secret("s", "token", string_value="sécond")
    w.secrets.put_secret("s", "bin", bytes_value=base64.b64encode(b"\x00\x01").decode())
    assert databricks.secret_value("s", "token") == "sécond"
    listed = list(w.secrets.list_secrets("s"))
    assert [m.key for m in listed] == ["bin", "token"]
    assert all(m.last_updated_timestamp for m in listed)
    _status, body = raw(databricks, "GET", "/api/2.0/secrets/list?scope=s")
    assert (
        "sécond" not in json.dumps(body) and workspace.ListSecretsResponse.from_dict(body).as_dict() == body
    )
    got = w.secrets.get_secret("s", "token")
    assert base64.b64decode(got.value or "").decode() == "sécond"
    w.secrets.delete_secret("s", "token")
    assert databricks.secret_value("s", "token") is None
    with pytest.raises(ResourceDoesNotExist):
        w.secrets.get_secret("s", "token")
    with pytest.raises(ResourceDoesNotExist):
        w.secrets.delete_secret("s", "token")
    with pytest.raises(ResourceDoesNotExist):
        w.secrets.put_secret("missing", "k", string_value="v")


def test_secret_value_limit_and_exactly_one_value(w: WorkspaceClient) -> None:
    w.secrets.create_scope("s")
    w.secrets.put_secret("s", "max", string_value="x" * 128 * 1024)
    with pytest.raises(InvalidParameterValue, match="exceeds the limit"):
        w.secrets.put_secret("s", "big", string_value="x" * (128 * 1024 + 1))
    with pytest.raises(InvalidParameterValue, match="Exactly one"):
        w.secrets.put_secret("s", "none")


def test_acls_and_permission_denied(databricks: DatabricksEmulator, w: WorkspaceClient) -> None:
    databricks.add_user("dapi-other", "other@example.com")
    other = client(databricks, token="dapi-other")
    w.secrets.create_scope("s")
    w.secrets.put_secret("s", "k", string_value="v")
    with pytest.raises(PermissionDenied, match="does not have READ permission on scope s"):
        other.secrets.get_secret("s", "k")
    with pytest.raises(PermissionDenied):
        other.secrets.put_secret("s", "k", string_value="stolen")
    w.secrets.put_acl("s", "other@example.com", workspace.AclPermission.READ)
    assert other.secrets.get_secret("s", "k").value == b64("v")
    with pytest.raises(PermissionDenied, match="WRITE"):
        other.secrets.put_secret("s", "k", string_value="stolen")
    acl = w.secrets.get_acl("s", "other@example.com")
    assert acl.permission == workspace.AclPermission.READ
    w.secrets.delete_acl("s", "other@example.com")
    with pytest.raises(ResourceDoesNotExist):
        w.secrets.get_acl("s", "other@example.com")
    with pytest.raises(ResourceDoesNotExist):
        w.secrets.delete_acl("s", "other@example.com")
    assert databricks.secret_value("s", "k") == "v"


def test_initial_manage_principal_users_and_non_premium(
    databricks: DatabricksEmulator, w: WorkspaceClient
) -> None:
    w.secrets.create_scope("shared", initial_manage_principal="users")
    assert [(a.principal, a.permission.value) for a in w.secrets.list_acls("shared") if a.permission] == [
        ("users", "MANAGE")
    ]
    databricks.add_user("dapi-other", "other@example.com")
    client(databricks, token="dapi-other").secrets.put_secret("shared", "k", string_value="v")
    databricks.premium_tier = False
    with pytest.raises(InvalidParameterValue, match="initial_manage_principal"):
        w.secrets.create_scope("personal")
    w.secrets.create_scope("personal", initial_manage_principal="users")


# -- workspace --------------------------------------------------------------------------------


def test_notebook_import_export_status(databricks: DatabricksEmulator, w: WorkspaceClient) -> None:
    w.workspace.mkdirs("/Workspace/Shared/dbtwf/prod")
    w.workspace.import_(
        "/Shared/dbtwf/prod/runner",
        content=b64(NOTEBOOK),
        format=workspace.ImportFormat.SOURCE,
        language=workspace.Language.PYTHON,
    )
    status = w.workspace.get_status("/Workspace/Shared/dbtwf/prod/runner")
    assert status.object_type == workspace.ObjectType.NOTEBOOK
    assert status.language == workspace.Language.PYTHON
    assert status.path == "/Shared/dbtwf/prod/runner"
    assert status.object_id and status.modified_at
    assert databricks.workspace_file("/Shared/dbtwf/prod/runner") == NOTEBOOK.encode()
    exported = w.workspace.export("/Shared/dbtwf/prod/runner", format=workspace.ExportFormat.SOURCE)
    assert base64.b64decode(exported.content or "").decode() == NOTEBOOK
    with w.workspace.download("/Shared/dbtwf/prod/runner") as handle:  # direct_download=true
        assert handle.read() == NOTEBOOK.encode()
    _code, body = raw(databricks, "GET", "/api/2.0/workspace/get-status?path=/Shared/dbtwf/prod/runner")
    assert workspace.ObjectInfo.from_dict(body).as_dict() == body


def test_import_overwrite_and_missing_parent(databricks: DatabricksEmulator, w: WorkspaceClient) -> None:
    def upload(path: str, text: str, overwrite: bool = False) -> None:
        w.workspace.import_(
            path,
            content=b64(text),
            format=workspace.ImportFormat.SOURCE,
            language=workspace.Language.PYTHON,
            overwrite=overwrite,
        )

    upload("/Shared/nb", NOTEBOOK)
    first_id = w.workspace.get_status("/Shared/nb").object_id
    with pytest.raises(ResourceAlreadyExists, match=r"Path \(/Shared/nb\) already exists"):
        upload("/Shared/nb", NOTEBOOK + "x = 1\n")
    upload("/Workspace/Shared/nb", NOTEBOOK + "x = 1\n", overwrite=True)
    assert databricks.workspace_file("/Shared/nb") == (NOTEBOOK + "x = 1\n").encode()
    assert w.workspace.get_status("/Shared/nb").object_id == first_id
    with pytest.raises(ResourceDoesNotExist, match=r"The parent folder \(/Shared/missing\) does not exist"):
        upload("/Shared/missing/nb", NOTEBOOK)
    with pytest.raises(ResourceAlreadyExists):
        upload("/Shared", NOTEBOOK, overwrite=True)


def test_import_auto_gives_files_and_detects_notebooks(
    databricks: DatabricksEmulator, w: WorkspaceClient
) -> None:
    w.workspace.import_("/Shared/state.json", content=b64('{"a": 1}'), format=workspace.ImportFormat.AUTO)
    w.workspace.import_("/Shared/helper.py", content=b64("x = 1\n"), format=workspace.ImportFormat.AUTO)
    w.workspace.import_("/Shared/nb.py", content=b64(NOTEBOOK), format=workspace.ImportFormat.AUTO)
    kinds = {o.path: (o.object_type, o.language) for o in w.workspace.list("/Shared")}
    assert kinds == {
        "/Shared/state.json": (workspace.ObjectType.FILE, None),
        "/Shared/helper.py": (workspace.ObjectType.FILE, None),
        "/Shared/nb": (workspace.ObjectType.NOTEBOOK, workspace.Language.PYTHON),
    }
    assert databricks.workspace_file("/Workspace/Shared/state.json") == b'{"a": 1}'


def test_source_notebook_without_header_gets_one(databricks: DatabricksEmulator, w: WorkspaceClient) -> None:
    w.workspace.import_(
        "/Shared/plain",
        content=b64("print(1)\n"),
        format=workspace.ImportFormat.SOURCE,
        language=workspace.Language.PYTHON,
    )
    assert databricks.workspace_file("/Shared/plain") == b"# Databricks notebook source\nprint(1)\n"


def test_list_get_status_missing_and_delete(databricks: DatabricksEmulator, w: WorkspaceClient) -> None:
    w.workspace.mkdirs("/Shared/a/b")
    w.workspace.import_("/Shared/a/b/f.json", content=b64("{}"), format=workspace.ImportFormat.AUTO)
    assert [o.path for o in w.workspace.list("/Shared/a")] == ["/Shared/a/b"]
    assert next(iter(w.workspace.list("/Shared/a/b/f.json"))).object_type == workspace.ObjectType.FILE
    with pytest.raises(ResourceDoesNotExist, match=r"Path \(/Shared/zzz\) doesn't exist"):
        w.workspace.get_status("/Shared/zzz")
    status, body = raw(databricks, "POST", "/api/2.0/workspace/delete", {"path": "/Shared/a"})
    assert (status, body["error_code"]) == (400, "DIRECTORY_NOT_EMPTY")
    w.workspace.delete("/Shared/a", recursive=True)
    assert databricks.workspace_file("/Shared/a/b/f.json") is None
    with pytest.raises(ResourceDoesNotExist):
        w.workspace.delete("/Shared/a")
    assert list(w.workspace.list("/Shared")) == []


# -- jobs -------------------------------------------------------------------------------------


def notebook_task(key: str, path: str = "/Shared/nb", **extra: Any) -> dict[str, Any]:
    return {
        "task_key": key,
        "notebook_task": {"notebook_path": path, "base_parameters": {"job_id": "1"}},
        **extra,
    }


def create_raw(w: WorkspaceClient, body: dict[str, Any], version: str = "2.2") -> int:
    return int(w.api_client.do("POST", f"/api/{version}/jobs/create", body=body)["job_id"])  # type: ignore[index]


def test_create_keeps_every_field_the_sdk_sends(databricks: DatabricksEmulator, w: WorkspaceClient) -> None:
    settings = jobs.JobSettings(
        name="dbt: prod",
        tags={"dbtwf": "prod"},
        parameters=[jobs.JobParameterDefinition(name="job_id", default="70")],
        schedule=jobs.CronSchedule(quartz_cron_expression="0 0 6 * * ?", timezone_id="UTC"),
        email_notifications=jobs.JobEmailNotifications(on_failure=["ops@example.com"]),
        deployment=jobs.JobDeployment(kind=jobs.JobDeploymentKind.BUNDLE, metadata_file_path="/x/meta.json"),
        tasks=[
            jobs.Task(
                task_key="dbt",
                notebook_task=jobs.NotebookTask(notebook_path="/Shared/nb", base_parameters={"job_id": "70"}),
            )
        ],
    )
    with databricks.recording() as sent:
        job_id = w.jobs.create(**{k: getattr(settings, k) for k in settings.as_dict()}).job_id
    stored = databricks.jobs[job_id]["settings"]
    sent_body = sent[-1].json()
    assert sent_body == settings.as_dict()
    assert {k: stored[k] for k in sent_body} != {} and all(
        stored[k] == v or k == "tasks" for k, v in sent_body.items()
    )
    assert stored["tasks"][0]["notebook_task"]["base_parameters"] == {"job_id": "70"}
    job = w.jobs.get(job_id)
    assert job.settings is not None and job.settings.deployment is not None
    assert job.settings.deployment.kind == jobs.JobDeploymentKind.BUNDLE
    assert job.creator_user_name == databricks.user_name
    _code, body = raw(databricks, "GET", f"/api/2.2/jobs/get?job_id={job_id}")
    assert jobs.Job.from_dict(body).as_dict() == body


def test_unknown_fields_are_kept(databricks: DatabricksEmulator, w: WorkspaceClient) -> None:
    job_id = create_raw(
        w, {"name": "x", "future_field": {"a": 1}, "tasks": [notebook_task("t", future=True)]}
    )
    stored = databricks.jobs[job_id]["settings"]
    assert stored["future_field"] == {"a": 1} and stored["tasks"][0]["future"] is True


def test_defaults_the_real_service_fills_in(databricks: DatabricksEmulator, w: WorkspaceClient) -> None:
    job_id = create_raw(w, {"name": "x", "tasks": [notebook_task("t")]})
    settings = databricks.jobs[job_id]["settings"]
    assert settings["max_concurrent_runs"] == 1 and settings["timeout_seconds"] == 0
    assert settings["tasks"][0]["run_if"] == "ALL_SUCCESS"
    assert settings["tasks"][0]["notebook_task"]["source"] == "WORKSPACE"


@pytest.mark.parametrize(
    ("tasks", "message"),
    [
        ([notebook_task("a"), notebook_task("a")], "not unique"),
        ([notebook_task("a", depends_on=[{"task_key": "ghost"}])], "depends on 'ghost'"),
        ([notebook_task("a", path="relative/nb")], "Only absolute paths"),
        ([notebook_task("a", job_cluster_key="missing")], "job_cluster_key missing"),
        (
            [
                notebook_task("a", depends_on=[{"task_key": "b"}]),
                notebook_task("b", depends_on=[{"task_key": "a"}]),
            ],
            "cycle",
        ),
        ([{"task_key": "bad key!", "notebook_task": {"notebook_path": "/x"}}], "Invalid task_key"),
    ],
)
def test_invalid_settings_are_rejected(w: WorkspaceClient, tasks: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(InvalidParameterValue, match=message):
        create_raw(w, {"name": "x", "tasks": tasks})


def test_tasks_without_compute_need_serverless(databricks: DatabricksEmulator, w: WorkspaceClient) -> None:
    databricks.serverless_enabled = False
    with pytest.raises(InvalidParameterValue, match="existing_cluster_id must be specified"):
        create_raw(w, {"name": "x", "tasks": [notebook_task("a")]})
    create_raw(w, {"name": "x", "tasks": [notebook_task("a", existing_cluster_id="0101-abc")]})


def test_get_missing_job_is_not_found(databricks: DatabricksEmulator, w: WorkspaceClient) -> None:
    with pytest.raises(ResourceDoesNotExist, match="Job 999 does not exist"):
        w.jobs.get(999)
    status, body = raw(databricks, "GET", "/api/2.1/jobs/get?job_id=999")
    assert (status, body) == (
        400,
        {"error_code": "INVALID_PARAMETER_VALUE", "message": "Job 999 does not exist."},
    )
    with pytest.raises(InvalidParameterValue, match="Job 999 does not exist"):
        w.jobs.delete(999)


def test_job_with_150_tasks_is_paged_at_100_and_joined_by_the_sdk(
    databricks: DatabricksEmulator, w: WorkspaceClient
) -> None:
    tasks = [notebook_task(f"t{i:03}") for i in range(150)]
    job_id = create_raw(
        w, {"name": "big", "tasks": tasks, "parameters": [{"name": "job_id", "default": "1"}]}
    )
    _status, first = raw(databricks, "GET", f"/api/2.2/jobs/get?job_id={job_id}")
    assert len(first["settings"]["tasks"]) == 100 and first["next_page_token"]
    assert first["settings"]["parameters"] == [{"name": "job_id", "default": "1"}]
    _status, second = raw(
        databricks, "GET", f"/api/2.2/jobs/get?job_id={job_id}&page_token={first['next_page_token']}"
    )
    assert len(second["settings"]["tasks"]) == 50 and "next_page_token" not in second
    assert second["settings"]["parameters"] == []
    job = w.jobs.get(job_id)
    assert job.settings is not None and [t.task_key for t in job.settings.tasks or []] == [
        t["task_key"] for t in tasks
    ]
    assert len(job.settings.parameters or []) == 1
    _status, whole = raw(databricks, "GET", f"/api/2.1/jobs/get?job_id={job_id}")
    assert len(whole["settings"]["tasks"]) == 150 and "next_page_token" not in whole
    listed = list(w.jobs.list(expand_tasks=True))
    assert len(listed) == 1 and listed[0].settings is not None and len(listed[0].settings.tasks or []) == 150


def test_list_filters_by_exact_name_case_insensitively_and_pages(
    databricks: DatabricksEmulator, w: WorkspaceClient
) -> None:
    ids = [
        create_raw(w, {"name": name, "tasks": [notebook_task("t")]})
        for name in ["dbt prod", "DBT PROD", "dbt prod 2"]
    ]
    assert [j.job_id for j in w.jobs.list(name="Dbt Prod")] == ids[:2]
    listed = list(w.jobs.list())
    assert [j.job_id for j in listed] == ids and all(j.settings and not j.settings.tasks for j in listed)
    expanded = list(w.jobs.list(expand_tasks=True, name="dbt prod 2"))
    assert expanded[0].settings is not None and expanded[0].settings.tasks
    _status, page = raw(databricks, "GET", "/api/2.2/jobs/list?limit=2")
    assert page["has_more"] is True and len(page["jobs"]) == 2
    assert jobs.ListJobsResponse.from_dict(page).as_dict() == page
    _status, rest = raw(databricks, "GET", f"/api/2.2/jobs/list?limit=2&page_token={page['next_page_token']}")
    assert [j["job_id"] for j in rest["jobs"]] == ids[2:] and rest["has_more"] is False
    assert list(w.jobs.list(name="nothing")) == []


def test_update_merges_tasks_by_key_and_replaces_other_fields(
    databricks: DatabricksEmulator, w: WorkspaceClient
) -> None:
    job_id = create_raw(
        w,
        {
            "name": "theirs",
            "tags": {"team": "data"},
            "tasks": [notebook_task("ingest", existing_cluster_id="c1"), notebook_task("model")],
            "job_clusters": [{"job_cluster_key": "small", "new_cluster": {"num_workers": 1}}],
            "schedule": {"quartz_cron_expression": "0 0 * * * ?", "timezone_id": "UTC"},
        },
    )
    before = databricks.jobs[job_id]["settings"]
    w.jobs.update(
        job_id,
        new_settings=jobs.JobSettings(
            tasks=[
                jobs.Task(
                    task_key="dbt",
                    depends_on=[jobs.TaskDependency(task_key="model")],
                    notebook_task=jobs.NotebookTask(
                        notebook_path="/Shared/runner", base_parameters={"job_id": "9"}
                    ),
                )
            ]
        ),
    )
    after = databricks.jobs[job_id]["settings"]
    assert [t["task_key"] for t in after["tasks"]] == ["ingest", "model", "dbt"]
    assert after["tasks"][:2] == before["tasks"] and after["tags"] == before["tags"]
    assert after["job_clusters"] == before["job_clusters"] and after["schedule"] == before["schedule"]
    w.jobs.update(job_id, new_settings=jobs.JobSettings(tags={"x": "y"}))
    assert databricks.jobs[job_id]["settings"]["tags"] == {"x": "y"}
    replaced = notebook_task("model", path="/Shared/other")
    w.api_client.do(
        "POST", "/api/2.1/jobs/update", body={"job_id": job_id, "new_settings": {"tasks": [replaced]}}
    )
    model = next(t for t in databricks.jobs[job_id]["settings"]["tasks"] if t["task_key"] == "model")
    assert model["notebook_task"]["notebook_path"] == "/Shared/other"
    w.jobs.update(job_id, fields_to_remove=["schedule", "tasks/dbt", "job_clusters/small"])
    after = databricks.jobs[job_id]["settings"]
    assert "schedule" not in after and after["job_clusters"] == []
    assert [t["task_key"] for t in after["tasks"]] == ["ingest", "model"]
    with pytest.raises(InvalidParameterValue, match="depends on 'gone'"):
        w.api_client.do(
            "POST",
            "/api/2.2/jobs/update",
            body={
                "job_id": job_id,
                "new_settings": {"tasks": [notebook_task("x", depends_on=[{"task_key": "gone"}])]},
            },
        )


def test_reset_replaces_everything_and_delete_removes(
    databricks: DatabricksEmulator, w: WorkspaceClient
) -> None:
    job_id = create_raw(
        w, {"name": "a", "tags": {"k": "v"}, "tasks": [notebook_task("t1"), notebook_task("t2")]}
    )
    w.jobs.reset(
        job_id,
        jobs.JobSettings(name="b", tasks=[jobs.Task(task_key="only", notebook_task=jobs.NotebookTask("/x"))]),
    )
    settings = databricks.jobs[job_id]["settings"]
    assert (
        settings["name"] == "b"
        and "tags" not in settings
        and [t["task_key"] for t in settings["tasks"]] == ["only"]
    )
    w.jobs.delete(job_id)
    assert databricks.jobs == {}
    with pytest.raises(NotFound):
        w.jobs.get(job_id)


def test_jobs_api_21_and_22_share_jobs(databricks: DatabricksEmulator, w: WorkspaceClient) -> None:
    job_id = create_raw(w, {"name": "both", "tasks": [notebook_task("t")]}, version="2.1")
    status, body = raw(databricks, "GET", f"/api/2.2/jobs/get?job_id={job_id}")
    assert status == 200 and body["settings"]["name"] == "both"


def test_malformed_settings_are_bad_requests(w: WorkspaceClient) -> None:
    with pytest.raises(BadRequest):
        create_raw(w, {"name": "x", "tasks": "not a list"})
