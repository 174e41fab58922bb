"""Workspace object permissions for the Databricks emulator: folder ACLs, users' home folders,
`/Shared`, and the checks the workspace API makes with them.

What a real workspace does, and where that comes from:
- `GET|PUT|PATCH /api/2.0/permissions/{directories|notebooks|files}/{id}`: the SDK's
  ``WorkspaceAPI.get_permissions`` / ``set_permissions`` (PUT replaces the object's direct
  permissions) / ``update_permissions`` (PATCH adds to them), with the ``WorkspaceObjectPermissions``
  wire shape. ``object_id`` is ``/directories/<id>`` and ``object_type`` ``directory`` as in
  databricks/terraform-provider-databricks `permissions/resource_permissions_test.go`; inherited
  entries name the folder they come from in ``inherited_from_object``.
- Docs, "Access control lists" / "Folder permissions" (docs.databricks.com/security/auth/access-control,
  docs.azure.cn .../workspace-acl): objects in a folder inherit all its permissions; levels CAN_READ,
  CAN_RUN, CAN_EDIT, CAN_MANAGE; workspace admins have CAN_MANAGE on every object; users have
  CAN_MANAGE on what they create; all users have CAN_MANAGE on `/Shared`; a user has CAN_MANAGE on
  their home folder and all other users have no permission there; only admins create objects in
  the root. Access control needs the Premium plan: without it, every user can do everything.
- A job runs as its run-as identity, and that identity's access to the notebook is checked
  (docs "Manage identities, permissions, and privileges for Jobs").

Unverified (chosen, not measured): the exact 403 bodies; which level each call needs (export:
CAN_READ; creating, overwriting or deleting: CAN_EDIT; reading permissions: CAN_READ; changing
them: CAN_MANAGE; get-status and list: none, as the docs let anyone list a folder); the answer of
a non-Premium workspace to the permissions API (400 FEATURE_DISABLED here); the message of a run
whose identity cannot read the notebook.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from databricks.sdk.service import workspace as sdk_workspace

from tests.emulators.base import HttpError, Request

if TYPE_CHECKING:
    from tests.emulators.databricks import WorkspaceObject

LEVELS = {"CAN_READ": 1, "CAN_RUN": 2, "CAN_EDIT": 3, "CAN_MANAGE": 4}
#: URL kind -> (object_type of workspace/get-status, object_type of the permissions answer)
OBJECT_KINDS = {
    "directories": ("DIRECTORY", "directory"),
    "notebooks": ("NOTEBOOK", "notebook"),
    "files": ("FILE", "file"),
}
_KIND_OF_TYPE = {object_type: kind for kind, (object_type, _) in OBJECT_KINDS.items()}
#: Principal kinds as the access control list names them.
PRINCIPAL_FIELDS = ("user_name", "group_name", "service_principal_name")
ALL_USERS = "users"
ADMINS = "admins"

Principal = tuple[str, str]  # (field of PRINCIPAL_FIELDS, name)


def denied(user: str, level: str, path: str) -> HttpError:
    return HttpError(403, "PERMISSION_DENIED", f"User {user} does not have {level} permissions on {path}.")


class WorkspacePermissions:
    """Mixed into DatabricksEmulator: the ACLs of workspace objects and the checks that use them."""

    if TYPE_CHECKING:  # provided by DatabricksEmulator
        _workspace: dict[str, WorkspaceObject]
        _admins: set[str]
        _users: dict[str, str]
        premium_tier: bool
        state_lock: threading.RLock

        def route(self, method: str, pattern: str, handler: Callable[[Request], Any]) -> None: ...
        def _caller(self, request: Request) -> str: ...
        def _mkdir(self, path: str) -> None: ...

    _object_acls: dict[str, dict[Principal, str]]

    # -- test-facing ------------------------------------------------------------------------
    def object_permissions(self, path: str) -> dict[Principal, str]:
        """The direct permissions of the object at ``path`` (what PUT/PATCH set)."""
        from tests.emulators.databricks import normalize_workspace_path

        with self.state_lock:
            return dict(self._object_acls.get(normalize_workspace_path(path), {}))

    def effective_level(self, path: str, principal: str) -> str | None:
        """The highest level ``principal`` holds on ``path``, directly, by a group or inherited."""
        from tests.emulators.databricks import normalize_workspace_path

        with self.state_lock:
            rank = self._rank(normalize_workspace_path(path), principal)
        return next((name for name, value in LEVELS.items() if value == rank), None)

    # -- state ------------------------------------------------------------------------------
    def _clear_permissions(self, owner: str) -> None:
        """The special folders as a new workspace has them: `/Shared` for all users, a home for
        ``owner``, the root and `/Users` for admins only."""
        self._object_acls = {"/Shared": {("group_name", ALL_USERS): "CAN_MANAGE"}}
        self._make_home(owner)

    def _make_home(self, user_name: str) -> None:
        """A user's home folder: CAN_MANAGE for them, nothing for other users."""
        home = f"/Users/{user_name}"
        if home not in self._workspace:
            self._mkdir(home)
        self._object_acls[home] = {("user_name", user_name): "CAN_MANAGE"}

    def _define_permission_routes(self) -> None:
        path = r"/api/2\.0/permissions/(?P<kind>directories|notebooks|files)/(?P<object_id>[^/]+)"
        self.route("GET", path, self._permissions_get)
        self.route("PUT", path, self._permissions_set)
        self.route("PATCH", path, self._permissions_update)

    # -- who may do what --------------------------------------------------------------------
    def _holds(self, principal: Principal, user: str) -> bool:
        field, name = principal
        if field == "group_name":
            return name == ALL_USERS or (name == ADMINS and user in self._admins)
        return name == user

    def _rank(self, path: str, user: str) -> int:
        """``user``'s effective level on ``path``: the highest over the object and every folder
        above it, by name or by group. Admins, and everyone on a workspace without access
        control (not Premium), can do everything."""
        if user in self._admins or not self.premium_tier:
            return LEVELS["CAN_MANAGE"]
        best = 0
        for holder in _self_and_ancestors(path):
            for principal, level in self._object_acls.get(holder, {}).items():
                if self._holds(principal, user):
                    best = max(best, LEVELS.get(level, 0))
        return best

    def _require_level(self, path: str, user: str, level: str) -> None:
        if self._rank(path, user) < LEVELS[level]:
            raise denied(user, level, path)

    def _check_create(self, path: str, user: str) -> None:
        """Creating ``path`` needs CAN_EDIT on the folder that receives it."""
        self._require_level(_parent_of(path), user, "CAN_EDIT")

    def _created(self, path: str, user: str) -> None:
        """Users have CAN_MANAGE on what they create."""
        if user not in self._admins:
            self._object_acls.setdefault(path, {})[("user_name", user)] = "CAN_MANAGE"

    def _forget(self, path: str) -> None:
        prefix = path.rstrip("/") + "/"
        for candidate in [p for p in self._object_acls if p == path or p.startswith(prefix)]:
            del self._object_acls[candidate]

    def _can_read_notebook(self, path: str, principal: str) -> bool:
        return self._rank(path, principal) >= LEVELS["CAN_READ"]

    # -- the permissions API ----------------------------------------------------------------
    def _object_by_id(self, request: Request) -> tuple[str, str]:
        """(path, URL kind) of the object named in the URL; 404 when no object of that kind has the id."""
        kind, raw_id = request.params["kind"], request.params["object_id"]
        if not self.premium_tier:
            raise HttpError(
                400,
                "FEATURE_DISABLED",
                "Workspace object access control is not available: it requires the Premium plan.",
            )
        object_type = OBJECT_KINDS[kind][0]
        for path, found in self._workspace.items():
            if str(found.object_id) == raw_id and found.object_type == object_type:
                return path, kind
        what = {"directories": "Directory", "notebooks": "Notebook", "files": "File"}[kind]
        raise HttpError(404, "RESOURCE_DOES_NOT_EXIST", f"{what} {raw_id} does not exist.")

    def _object_ref(self, path: str) -> str:
        found = self._workspace[path]
        return f"/{_KIND_OF_TYPE[found.object_type]}/{found.object_id}"

    def _permissions_json(self, path: str, kind: str) -> dict[str, Any]:
        """ObjectPermissions: each principal's direct and inherited levels; admins always CAN_MANAGE."""
        entries: dict[Principal, list[dict[str, Any]]] = {}
        for holder in _self_and_ancestors(path):
            for principal, level in sorted(self._object_acls.get(holder, {}).items()):
                permission: dict[str, Any] = {"permission_level": level, "inherited": holder != path}
                if holder != path:
                    permission["inherited_from_object"] = [self._object_ref(holder)]
                entries.setdefault(principal, []).append(permission)
        admins = {
            "permission_level": "CAN_MANAGE",
            "inherited": True,
            "inherited_from_object": ["/directories/"],
        }
        entries.setdefault(("group_name", ADMINS), []).append(admins)
        acl = []
        for (field, name), permissions in entries.items():
            entry: dict[str, Any] = {field: name, "all_permissions": permissions}
            if field == "user_name":
                entry["display_name"] = name.split("@")[0]
            acl.append(entry)
        body = {
            "object_id": self._object_ref(path),
            "object_type": OBJECT_KINDS[kind][1],
            "access_control_list": acl,
        }
        sdk_workspace.WorkspaceObjectPermissions.from_dict(body)  # the SDK must read what we answer
        return body

    def _permissions_get(self, request: Request) -> dict[str, Any]:
        path, kind = self._object_by_id(request)
        self._require_level(path, self._caller(request), "CAN_READ")
        return self._permissions_json(path, kind)

    def _requested_acl(self, request: Request) -> dict[Principal, str]:
        acl = request.json().get("access_control_list") or []
        if not isinstance(acl, list):
            raise HttpError(400, "MALFORMED_REQUEST", "access_control_list must be a list")
        known_users = set(self._users.values())
        parsed: dict[Principal, str] = {}
        for item in acl:
            if not isinstance(item, dict):
                raise HttpError(400, "MALFORMED_REQUEST", "each access control entry must be an object")
            sdk_workspace.WorkspaceObjectAccessControlRequest.from_dict(item)
            named = [(field, item[field]) for field in PRINCIPAL_FIELDS if item.get(field)]
            if len(named) != 1:
                raise HttpError(
                    400,
                    "INVALID_PARAMETER_VALUE",
                    "Exactly one of user_name, group_name or service_principal_name must be set.",
                )
            principal = (str(named[0][0]), str(named[0][1]))
            level = item.get("permission_level")
            if level not in LEVELS:
                raise HttpError(
                    400,
                    "INVALID_PARAMETER_VALUE",
                    f"Permission level {level} is not supported; use one of {', '.join(LEVELS)}.",
                )
            if principal[0] == "user_name" and principal[1] not in known_users:
                raise HttpError(
                    400, "INVALID_PARAMETER_VALUE", f"Principal: UserName({principal[1]}) does not exist"
                )
            if principal[0] == "group_name" and principal[1] not in (ALL_USERS, ADMINS):
                raise HttpError(
                    400, "INVALID_PARAMETER_VALUE", f"Principal: GroupName({principal[1]}) does not exist"
                )
            if principal == ("group_name", ADMINS):
                continue  # admins keep CAN_MANAGE whatever is asked
            parsed[principal] = str(level)
        return parsed

    def _permissions_set(self, request: Request) -> dict[str, Any]:
        """PUT: the given list replaces the object's direct permissions (inherited ones stay)."""
        path, kind = self._object_by_id(request)
        self._require_level(path, self._caller(request), "CAN_MANAGE")
        self._object_acls[path] = self._requested_acl(request)
        return self._permissions_json(path, kind)

    def _permissions_update(self, request: Request) -> dict[str, Any]:
        """PATCH: the given entries are added to (or change) the object's direct permissions."""
        path, kind = self._object_by_id(request)
        self._require_level(path, self._caller(request), "CAN_MANAGE")
        self._object_acls.setdefault(path, {}).update(self._requested_acl(request))
        return self._permissions_json(path, kind)


def _parent_of(path: str) -> str:
    return path.rsplit("/", 1)[0] or "/"


def _self_and_ancestors(path: str) -> list[str]:
    """``/a/b/c`` -> ``/a/b/c``, ``/a/b``, ``/a``, ``/``."""
    found = [path]
    while path != "/":
        path = _parent_of(path)
        found.append(path)
    return found
