"""Workspace object permissions in the Databricks emulator, driven by the real databricks-sdk.

Sources are listed in tests/emulators/databricks_permissions.py: the SDK's WorkspaceAPI
permissions methods and dataclasses, terraform-provider-databricks' fixtures for the wire
shape, and the docs' "special folders" (all users CAN_MANAGE on /Shared, a home folder only
for its user, inheritance from folders, admins manage everything, no ACLs without Premium).
"""

from __future__ import annotations

import base64

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import BadRequest, InvalidParameterValue, NotFound, PermissionDenied
from databricks.sdk.service import workspace

from tests.conftest import DATABRICKS_TOKEN
from tests.emulators.databricks import DatabricksEmulator

OTHER_TOKEN = "dapi-other-user-token"
OTHER = "mallory@example.com"
NOTEBOOK = "# Databricks notebook source\nprint('hello')\n"


def client(emulator: DatabricksEmulator, token: str = DATABRICKS_TOKEN) -> WorkspaceClient:
    return WorkspaceClient(host=emulator.url, token=token)


def upload(w: WorkspaceClient, path: str, text: str = NOTEBOOK, overwrite: bool = False) -> None:
    w.workspace.import_(
        path,
        content=base64.b64encode(text.encode()).decode(),
        format=workspace.ImportFormat.SOURCE,
        language=workspace.Language.PYTHON,
        overwrite=overwrite,
    )


def acl_of(w: WorkspaceClient, kind: str, path: str) -> dict[str, list[tuple[str, bool]]]:
    """principal -> [(level, inherited)] of the object at ``path``."""
    object_id = str(w.workspace.get_status(path).object_id)
    answer = w.workspace.get_permissions(kind, object_id)
    found: dict[str, list[tuple[str, bool]]] = {}
    for entry in answer.access_control_list or []:
        name = entry.user_name or entry.group_name or entry.service_principal_name or ""
        found[name] = [
            (p.permission_level.value if p.permission_level else "", bool(p.inherited))
            for p in entry.all_permissions or []
        ]
    return found


@pytest.fixture
def me(databricks: DatabricksEmulator) -> WorkspaceClient:
    return client(databricks)


@pytest.fixture
def other(databricks: DatabricksEmulator) -> WorkspaceClient:
    databricks.add_user(OTHER_TOKEN, OTHER)
    return client(databricks, OTHER_TOKEN)


def test_shared_is_managed_by_all_users_and_inherited(
    databricks: DatabricksEmulator, me: WorkspaceClient
) -> None:
    assert acl_of(me, "directories", "/Shared")["users"] == [("CAN_MANAGE", False)]
    me.workspace.mkdirs("/Shared/dbtwf/dev")
    upload(me, "/Shared/dbtwf/dev/runner")
    acl = acl_of(me, "notebooks", "/Shared/dbtwf/dev/runner")
    assert acl["users"] == [("CAN_MANAGE", True)]
    assert acl[databricks.user_name] == [("CAN_MANAGE", False), ("CAN_MANAGE", True), ("CAN_MANAGE", True)]
    assert acl["admins"] == [("CAN_MANAGE", True)]
    shared_id = me.workspace.get_status("/Shared").object_id
    raw = me.workspace.get_permissions(
        "notebooks", str(me.workspace.get_status("/Shared/dbtwf/dev/runner").object_id)
    )
    assert raw.object_type == "notebook" and (raw.object_id or "").startswith("/notebooks/")
    users = next(e for e in raw.access_control_list or [] if e.group_name == "users")
    assert (users.all_permissions or [])[0].inherited_from_object == [f"/directories/{shared_id}"]


def test_another_user_edits_a_notebook_under_shared(
    databricks: DatabricksEmulator, me: WorkspaceClient, other: WorkspaceClient
) -> None:
    me.workspace.mkdirs("/Shared/dbtwf/dev")
    upload(me, "/Shared/dbtwf/dev/runner")
    upload(other, "/Shared/dbtwf/dev/runner", NOTEBOOK + "steal()\n", overwrite=True)
    assert databricks.workspace_file("/Shared/dbtwf/dev/runner") == (NOTEBOOK + "steal()\n").encode()


def test_a_home_folder_is_closed_to_other_users(
    databricks: DatabricksEmulator, me: WorkspaceClient, other: WorkspaceClient
) -> None:
    home = f"/Users/{databricks.user_name}"
    assert acl_of(me, "directories", home) == {
        databricks.user_name: [("CAN_MANAGE", False)],
        "admins": [("CAN_MANAGE", True)],
    }
    me.workspace.mkdirs(f"{home}/.dbtwf/dev")
    upload(me, f"{home}/.dbtwf/dev/runner")
    with pytest.raises(PermissionDenied):
        upload(other, f"{home}/.dbtwf/dev/runner", "evil()\n", overwrite=True)
    with pytest.raises(PermissionDenied):
        upload(other, f"{home}/.dbtwf/dev/other")
    with pytest.raises(PermissionDenied):
        other.workspace.mkdirs(f"{home}/.dbtwf/prod")
    with pytest.raises(PermissionDenied):
        other.workspace.export(f"{home}/.dbtwf/dev/runner", format=workspace.ExportFormat.SOURCE)
    with pytest.raises(PermissionDenied):
        other.workspace.delete(f"{home}/.dbtwf/dev/runner")
    with pytest.raises(PermissionDenied):
        other.workspace.get_permissions("directories", str(me.workspace.get_status(home).object_id))
    assert databricks.workspace_file(f"{home}/.dbtwf/dev/runner") == NOTEBOOK.encode()
    # The other user has a home of their own, and nobody but admins writes in the root.
    other.workspace.mkdirs(f"/Users/{OTHER}/x")
    with pytest.raises(PermissionDenied):
        other.workspace.mkdirs("/top-level")


def test_grants_add_replace_and_are_checked(
    databricks: DatabricksEmulator, me: WorkspaceClient, other: WorkspaceClient
) -> None:
    home = f"/Users/{databricks.user_name}"
    upload(me, f"{home}/runner")
    notebook_id = str(me.workspace.get_status(f"{home}/runner").object_id)
    grant = workspace.WorkspaceObjectAccessControlRequest(
        user_name=OTHER, permission_level=workspace.WorkspaceObjectPermissionLevel.CAN_READ
    )
    with pytest.raises(PermissionDenied):  # only a manager changes permissions
        other.workspace.update_permissions("notebooks", notebook_id, access_control_list=[grant])
    answer = me.workspace.update_permissions("notebooks", notebook_id, access_control_list=[grant])
    assert any(e.user_name == OTHER for e in answer.access_control_list or [])
    assert databricks.effective_level(f"{home}/runner", OTHER) == "CAN_READ"
    other.workspace.export(f"{home}/runner", format=workspace.ExportFormat.SOURCE)
    with pytest.raises(PermissionDenied):  # CAN_READ does not edit
        upload(other, f"{home}/runner", "evil()\n", overwrite=True)
    # PUT replaces the direct entries; what the home folder gives is still inherited.
    me.workspace.set_permissions("notebooks", notebook_id, access_control_list=[])
    assert databricks.object_permissions(f"{home}/runner") == {}
    assert databricks.effective_level(f"{home}/runner", databricks.user_name) == "CAN_MANAGE"
    assert databricks.effective_level(f"{home}/runner", OTHER) is None
    with pytest.raises(InvalidParameterValue, match="does not exist"):
        me.workspace.update_permissions(
            "notebooks",
            notebook_id,
            access_control_list=[
                workspace.WorkspaceObjectAccessControlRequest(
                    user_name="nobody@example.com",
                    permission_level=workspace.WorkspaceObjectPermissionLevel.CAN_READ,
                )
            ],
        )
    with pytest.raises(NotFound, match="Directory"):  # the id names a notebook, not a folder
        me.workspace.get_permissions("directories", notebook_id)


def test_admins_manage_everything(databricks: DatabricksEmulator, me: WorkspaceClient) -> None:
    databricks.add_user("dapi-admin", "admin@example.com", admin=True)
    admin = client(databricks, "dapi-admin")
    home = f"/Users/{databricks.user_name}"
    upload(me, f"{home}/runner")
    upload(admin, f"{home}/runner", "admin()\n", overwrite=True)
    admin.workspace.mkdirs("/top-level")


def test_a_workspace_without_premium_has_no_object_access_control(
    databricks: DatabricksEmulator, me: WorkspaceClient, other: WorkspaceClient
) -> None:
    databricks.premium_tier = False
    home = f"/Users/{databricks.user_name}"
    upload(me, f"{home}/runner")
    upload(other, f"{home}/runner", "evil()\n", overwrite=True)  # everyone can edit everything
    with pytest.raises(BadRequest, match="Premium"):
        me.workspace.get_permissions("directories", str(me.workspace.get_status(home).object_id))


def test_a_run_needs_its_identity_to_read_the_notebook(
    databricks: DatabricksEmulator, me: WorkspaceClient, other: WorkspaceClient
) -> None:
    home = f"/Users/{databricks.user_name}"
    upload(me, f"{home}/runner", NOTEBOOK)
    task = {"task_key": "t", "notebook_task": {"notebook_path": f"{home}/runner"}}
    job_id = int(
        other.api_client.do("POST", "/api/2.2/jobs/create", body={"name": "j", "tasks": [task]})["job_id"]
    )  # type: ignore[index]
    run = databricks.wait_for_run(int(other.jobs.run_now(job_id).bind()["run_id"]))
    assert run["state"]["result_state"] == "FAILED"
    assert "lacks the required permissions" in run["tasks"][0]["state"]["state_message"]
    notebook_id = str(me.workspace.get_status(f"{home}/runner").object_id)
    me.workspace.update_permissions(
        "notebooks",
        notebook_id,
        access_control_list=[
            workspace.WorkspaceObjectAccessControlRequest(
                user_name=OTHER, permission_level=workspace.WorkspaceObjectPermissionLevel.CAN_READ
            )
        ],
    )
    run = databricks.wait_for_run(int(other.jobs.run_now(job_id).bind()["run_id"]))
    assert run["state"]["result_state"] == "SUCCESS"
