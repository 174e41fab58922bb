"""Where the runner notebook lives, and who can change it or read the token.

The notebook reads the dbt Cloud token as the job's identity, and the state record beside it
tells `destroy` what to delete: whoever can edit that folder can change both. By default
they go in the deploying identity's home folder (``~/.dbtwf/<env>/``, resolved here once
connected), where only that identity and workspace admins can edit them. Everything under
/Shared is CAN_MANAGE for all users, and a folder's permissions are inherited by what it
holds (Databricks docs, "Folder permissions"): `plan`, `apply` and `doctor` say so when the
configured location is editable by every user.

The facts are read through the gateway (``observe_*``); the judgements on them are pure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from provision.errors import AuthError, ConflictError, NotFoundError, RemoteError

if TYPE_CHECKING:
    from provision.databricks import Workspace
    from provision.model import Environment

#: Workspace object levels that can change a notebook's code (CAN_RUN only runs it).
EDIT_LEVELS = frozenset({"CAN_EDIT", "CAN_MANAGE"})
_LEVEL_ORDER = {"CAN_READ": 1, "CAN_RUN": 2, "CAN_EDIT": 3, "CAN_MANAGE": 4}
ALL_USERS = "users"
_KINDS = {"DIRECTORY": "directories", "NOTEBOOK": "notebooks", "FILE": "files"}
_PRINCIPAL_FIELDS = ("user_name", "service_principal_name", "group_name")


def resolve_location(ws: Workspace, env: Environment) -> Environment:
    """``env`` with ``~`` in its notebook path replaced by the connected identity's home folder."""
    return env.resolved(ws.current_user_name()) if env.in_home else env


# -- facts ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LocationFacts:
    """Who can do what to the notebook (or, before it exists, to the folder that will hold it)."""

    #: The object whose permissions were read: the notebook, else its nearest existing folder.
    checked_path: str
    #: False when the workspace has no workspace-object access control (not Premium).
    access_control: bool = True
    #: The `users` group's (every user's) highest level there, and whether it is inherited.
    all_users_level: str | None = None
    all_users_inherited: bool = False
    #: Principal names holding any level on it (for the workflow's run-as identity).
    principals: frozenset[str] = field(default_factory=frozenset)
    #: Why the permissions could not be read (permission denied), or None.
    unknown: str | None = None

    @property
    def editable_by_all_users(self) -> bool:
        return not self.access_control or self.all_users_level in EDIT_LEVELS

    def can_read(self, principal: str) -> bool:
        """Whether ``principal`` can read the notebook, as far as the ACL shows (a member of a
        group other than `users` is not seen: a grant then is merely redundant)."""
        return not self.access_control or principal in self.principals or self.all_users_level is not None


def _nearest_existing(
    get_status: Callable[[str], dict[str, Any] | None], path: str
) -> tuple[str, dict[str, Any]] | None:
    while True:
        status = get_status(path)
        if status is not None:
            return path, status
        if path in ("/", ""):
            return None
        path = path.rsplit("/", 1)[0] or "/"


def observe_location(
    ws: Workspace, env: Environment, *, status: Callable[[str], dict[str, Any] | None] | None = None
) -> LocationFacts:
    """Reads the permissions of the notebook, or of the nearest folder above it that exists:
    a new folder inherits that folder's permissions (its creator gets CAN_MANAGE besides).
    ``status`` answers get-status (a plan's cached reads); by default ``ws.get_status``."""
    found = _nearest_existing(status or ws.get_status, env.notebook_path)
    if found is None:
        return LocationFacts(checked_path="/", unknown="no folder above it exists")
    path, nearest = found
    kind = _KINDS.get(str(nearest.get("object_type")), "directories")
    try:
        acl = ws.get_permissions(kind, str(nearest.get("object_id")))
    except (AuthError, NotFoundError):
        raise
    except RemoteError as error:  # permission denied: not knowing is not a failure of plan
        return LocationFacts(checked_path=path, unknown=error.message)
    if acl is None:
        return LocationFacts(checked_path=path, access_control=False)
    return facts_from_acl(path, acl)


def facts_from_acl(path: str, acl: Mapping[str, Any]) -> LocationFacts:
    """LocationFacts from a permissions answer (WorkspaceObjectPermissions.as_dict())."""
    names: set[str] = set()
    level: str | None = None
    inherited = False
    for entry in acl.get("access_control_list") or []:
        name = next((str(entry[f]) for f in _PRINCIPAL_FIELDS if entry.get(f)), "")
        permissions = entry.get("all_permissions") or []
        if not name or not permissions:
            continue
        names.add(name)
        if entry.get("group_name") != ALL_USERS:
            continue
        best = max(permissions, key=lambda p: _LEVEL_ORDER.get(str(p.get("permission_level")), 0))
        level = str(best.get("permission_level"))
        inherited = bool(best.get("inherited"))
    return LocationFacts(
        checked_path=path, all_users_level=level, all_users_inherited=inherited, principals=frozenset(names)
    )


# -- judgements ---------------------------------------------------------------------------------


def location_warning(env: Environment, facts: LocationFacts | None) -> str | None:
    """One plain sentence when every workspace user can edit the notebook and the state record."""
    if facts is None or not facts.editable_by_all_users:
        return None
    path = env.notebook_path
    if not facts.access_control:
        who = "this workspace has no access control on notebooks and folders (it is not on the Premium plan)"
    else:
        who = describe_all_users(facts)
    return (
        f"every workspace user can edit {path} and the state record beside it: {who}. Anyone can "
        "change the code that reads the dbt Cloud token as the job's identity, or rewrite what "
        f"`dbtwf destroy` deletes. Set notebook_path for environment {env.name!r} to a folder only "
        f"you can edit, such as ~/.dbtwf/{env.name}/run_dbt_cloud_job (the default)"
    )


def describe_all_users(facts: LocationFacts) -> str:
    """``group users has CAN_MANAGE on /Shared/x, inherited from /Shared``, or the like."""
    text = f"group users has {facts.all_users_level} on {facts.checked_path}"
    if not facts.all_users_inherited:
        return text + ", granted there"
    if _under_shared(facts.checked_path):
        return text + ", inherited from /Shared"
    return text + ", inherited from a folder above it"


def _under_shared(path: str) -> bool:
    bare = path.removeprefix("/Workspace")
    return bare == "/Shared" or bare.startswith("/Shared/")


def scope_warning(env: Environment, acls: Mapping[str, str] | None) -> str | None:
    """One sentence when the `users` group holds any permission on the secret scope."""
    if not acls or ALL_USERS not in acls:
        return None
    return all_users_scope_warning(env.secret_scope, acls[ALL_USERS])


def all_users_scope_warning(scope: str, permission: str) -> str:
    return (
        f"every workspace user can read the dbt Cloud token: group users has {permission} on secret "
        f"scope {scope!r} (a workspace that is not on the Premium plan only creates scopes that way). "
        "On a Premium workspace, delete the scope and apply again to get one only you manage; "
        "otherwise this is what the workspace allows"
    )


def run_as_of(job: Mapping[str, Any]) -> tuple[str, str] | None:
    """(principal field, name) the job runs as: settings.run_as, else jobs/get's run_as_user_name
    (a user's e-mail, or a service principal's application id), else its creator."""
    run_as = (job.get("settings") or {}).get("run_as") or {}
    for name in _PRINCIPAL_FIELDS:
        if run_as.get(name):
            return name, str(run_as[name])
    who = job.get("run_as_user_name") or job.get("creator_user_name")
    if not who:
        return None
    return ("user_name" if "@" in str(who) else "service_principal_name"), str(who)


def readers_to_grant(
    deployer: str, facts: LocationFacts | None, jobs: Iterable[Mapping[str, Any]]
) -> list[tuple[str, str]]:
    """The run-as identities of ``jobs`` (that run the notebook) that cannot read it yet."""
    if facts is None or not facts.access_control or facts.unknown:
        return []
    needed: list[tuple[str, str]] = []
    for job in jobs:
        principal = run_as_of(job)
        if principal is None or principal[1] == deployer or principal in needed:
            continue
        if not facts.can_read(principal[1]):
            needed.append(principal)
    return needed


def grant_read(ws: Workspace, notebook_path: str, principal: tuple[str, str]) -> None:
    """CAN_READ on the notebook for ``principal``, so a job running as it can run the notebook."""
    status = ws.get_status(notebook_path)
    if status is None:
        raise RemoteError(f"cannot grant access to {notebook_path}: it does not exist")
    field_name, name = principal
    ws.update_permissions(
        "notebooks", str(status.get("object_id")), [{field_name: name, "permission_level": "CAN_READ"}]
    )


def runner_paths(job: Mapping[str, Any]) -> set[str]:
    """The notebook paths the job's notebook tasks run."""
    paths = set()
    for task in (job.get("settings") or {}).get("tasks") or []:
        path = (task.get("notebook_task") or {}).get("notebook_path")
        if path:
            paths.add(str(path).removeprefix("/Workspace"))
    return paths


def check_same_deployment(env: Environment, job: Mapping[str, Any]) -> None:
    """Refuses to take over a workflow found by its tags whose tasks run another notebook:
    the environment is deployed from elsewhere (by another identity, in its home folder, or
    at an old location). Taking it over would leave two notebooks and two state records."""
    from provision.bundle import is_bundle_managed

    if is_bundle_managed(job.get("settings") or {}):
        return  # handed to a bundle: it runs the bundle's copy of the notebook, and plan leaves it
    paths = runner_paths(job)
    if not paths or env.notebook_path.removeprefix("/Workspace") in paths:
        return
    theirs = sorted(paths)[0]
    job_id = job.get("job_id")
    name = (job.get("settings") or {}).get("name")
    creator = job.get("creator_user_name")
    by = f" (created by {creator})" if creator else ""
    home_owner = theirs.split("/")[2] if theirs.startswith("/Users/") and theirs.count("/") > 2 else None
    message = (
        f"environment {env.name!r} is already deployed: workflow {job_id} {name!r}{by} runs the "
        f"notebook {theirs}, not {env.notebook_path}"
    )
    if home_owner is not None:
        hint = (
            f"run dbtwf as {home_owner}, the identity that deployed it; or, to manage that deployment "
            f'from here, set notebook_path = "{theirs}" for the environment in dbtwf.toml (you need '
            "CAN_MANAGE on that folder)"
        )
    else:
        hint = (
            f'set notebook_path = "{theirs}" for the environment in dbtwf.toml to keep managing it '
            "there, or run `dbtwf destroy` with that notebook_path and apply again to move it"
        )
    raise ConflictError(message, hint)


# -- what the plan adds: grants to revoke, readers to grant, warnings ---------------------------

#: ``Change.resource`` of a warning: shown with the plan, never carried out.
WARNING = "warning"
NOTEBOOK_ACL = "notebook-acl"
_PREFIXES = {"user_name": "", "service_principal_name": "service-principal:", "group_name": "group:"}


def notebook_acl_name(notebook_path: str, principal: tuple[str, str]) -> str:
    """``<path>:<name>`` for a user, ``<path>:service-principal:<id>``, ``<path>:group:<name>``."""
    return f"{notebook_path}:{_PREFIXES[principal[0]]}{principal[1]}"


def notebook_acl_principal(name: str, notebook_path: str) -> tuple[str, str]:
    """The principal a ``notebook-acl`` change's name stands for (inverse of notebook_acl_name)."""
    rest = name[len(notebook_path) + 1 :]
    for field_name, prefix in _PREFIXES.items():
        if prefix and rest.startswith(prefix):
            return field_name, rest[len(prefix) :]
    return "user_name", rest


def security_changes(
    env: Environment,
    *,
    deployer: str | None,
    location: LocationFacts | None,
    workflow: Mapping[str, Any] | None,
    scope_exists: bool,
    scope_acls: Mapping[str, str],
    granted_readers: Iterable[str],
) -> list[Any]:
    """Pure: the READ grants dbtwf made that ``scope_readers`` no longer lists (revoked), the
    workflow's run-as identity's CAN_READ on the notebook, and the warnings to show."""
    from provision.change import Action, Change

    changes: list[Change] = []
    for principal in sorted(set(granted_readers) - set(env.scope_readers)):
        # Only the READ dbtwf granted: raised since by someone else, it is theirs now.
        if scope_acls.get(principal) == "READ":
            why = "no longer in scope_readers; dbtwf granted this READ"
            changes.append(Change("scope-acl", f"{env.secret_scope}:{principal}", Action.DELETE, why))
    if deployer is not None and workflow is not None:
        for reader in readers_to_grant(deployer, location, [workflow]):
            why = f"the workflow runs as {reader[1]}, who needs CAN_READ on the notebook"
            changes.append(
                Change(NOTEBOOK_ACL, notebook_acl_name(env.notebook_path, reader), Action.CREATE, why)
            )
    warning = location_warning(env, location)
    if warning:
        changes.append(Change(WARNING, env.notebook_path, Action.NOOP, warning))
    scope_note = scope_warning(env, scope_acls) if scope_exists else None
    if scope_note:
        changes.append(Change(WARNING, env.secret_scope, Action.NOOP, scope_note))
    return changes


def observe_scope_acls(ws: Workspace, env: Environment, *, required: bool) -> dict[str, str]:
    """principal -> permission on the scope. Listing needs MANAGE: when the plan needs the
    answer (readers to grant or revoke) a refusal fails the plan; otherwise it is only used
    to warn, and a refusal means no warning."""
    try:
        items = ws.list_acls(env.secret_scope)
    except (AuthError, NotFoundError):
        raise
    except RemoteError:
        if required:
            raise
        return {}
    return {str(a.get("principal")): str(a.get("permission")) for a in items}


def grant_run_as_read(ws: Workspace, env: Environment, job: Mapping[str, Any]) -> str | None:
    """For add-task: the foreign workflow runs as its own identity (often its creator, not the
    deployer), which must read the notebook in the deployer's home. Grants CAN_READ, nothing
    more, and says so; None when nothing was needed."""
    needed = readers_to_grant(ws.current_user_name(), observe_location(ws, env), [job])
    for principal in needed:
        grant_read(ws, env.notebook_path, principal)
    if not needed:
        return None
    names = ", ".join(name for _, name in needed)
    return f"granted {names} (the workflow runs as it) CAN_READ on {env.notebook_path}"
