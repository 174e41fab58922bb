"""``Workspace``: every operation dbtwf sends to Databricks, as plain dicts, errors mapped."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from provision.databricks.mapping import is_missing, map_error
from provision.errors import DbtwfError, RemoteError
from provision.model import normalize_host, same_scope

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient

T = TypeVar("T")


def _without_none(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


class Workspace:
    """Plain-dict operations on one workspace, errors mapped to the project's family."""

    def __init__(
        self,
        client: WorkspaceClient,
        host: str | None = None,
        identity: str | None = None,
        user_name: str | None = None,
    ) -> None:
        self._client = client
        #: The workspace URL, normalised (scheme, lower-case host, no trailing slash).
        self.host: str = host if host is not None else normalize_host(str(client.config.host or ""))
        self._identity = identity
        self._user_name = user_name  # the identity does not change during a session

    def _call(self, what: str, operation: Callable[[], T]) -> T:
        """Run one SDK call; any SDK or transport failure becomes a project error."""
        try:
            return operation()
        except DbtwfError:
            raise
        except Exception as error:  # noqa: BLE001 - the SDK raises many unrelated types
            raise map_error(error, what, self.host) from None

    def _call_or_none(self, what: str, operation: Callable[[], T]) -> T | None:
        """Like _call, but a "does not exist" answer is None."""
        try:
            return operation()
        except DbtwfError:
            raise
        except Exception as error:  # noqa: BLE001
            if is_missing(error):
                return None
            raise map_error(error, what, self.host) from None

    # -- identity -----------------------------------------------------------------------
    def current_user(self) -> str:
        """Who dbtwf acts as (user or service principal name); asked once per Workspace."""
        if self._identity is None:
            me = self._call("reading the current user", self._client.current_user.me)
            self._identity = str(me.user_name or me.display_name or me.id or "")
        return self._identity

    def describe(self, environment: str) -> str:
        """`environment 'prod' in https://adb-1.net as me@example.com`: what `plan`, `apply`
        and `destroy` say before anything else."""
        return f"environment {environment!r} in {self.host} as {self.current_user()}"

    def current_user_name(self) -> str:
        """The calling identity's user name (a service principal's application id): the name
        its home folder ``/Users/<name>`` and the permissions API know it by."""
        if self._user_name is None:
            me = self._call("reading the current user", self._client.current_user.me)
            if not me.user_name:
                raise RemoteError("Databricks did not say the current identity's user name (SCIM Me)")
            self._user_name = str(me.user_name)
        return self._user_name

    # -- secrets ------------------------------------------------------------------------
    def list_scopes(self) -> list[dict[str, Any]]:
        return self._call(
            "listing secret scopes", lambda: [s.as_dict() for s in self._client.secrets.list_scopes()]
        )

    def has_scope(self, name: str) -> bool:
        """Whether the scope exists, compared as Databricks does: case-insensitively."""
        return any(same_scope(str(scope.get("name") or ""), name) for scope in self.list_scopes())

    def create_scope(self, name: str, initial_manage_principal: str | None = None) -> str | None:
        """Creates the scope; returns the initial manage principal actually used.

        Without one the creator alone manages the scope (Premium). A non-Premium workspace
        rejects that and only accepts "users", so the call falls back to it there.
        """
        from databricks.sdk import errors

        try:
            self._client.secrets.create_scope(name, initial_manage_principal=initial_manage_principal)
            return initial_manage_principal
        except errors.BadRequest as error:
            text = str(error)
            if initial_manage_principal is None and ("initial_manage_principal" in text or "Premium" in text):
                self._call(
                    f"creating secret scope {name!r}",
                    lambda: self._client.secrets.create_scope(name, initial_manage_principal="users"),
                )
                return "users"
            raise map_error(error, f"creating secret scope {name!r}", self.host) from None
        except Exception as error:  # noqa: BLE001
            raise map_error(error, f"creating secret scope {name!r}", self.host) from None

    def delete_scope(self, name: str) -> None:
        self._ignore_missing(
            f"deleting secret scope {name!r}", lambda: self._client.secrets.delete_scope(name)
        )

    def list_secrets(self, scope: str) -> list[dict[str, Any]]:
        """Key names and update times, never values; ``[]`` when the scope does not exist."""
        found = self._call_or_none(
            f"listing secrets of scope {scope!r}",
            lambda: [s.as_dict() for s in self._client.secrets.list_secrets(scope)],
        )
        return found or []

    def put_secret(self, scope: str, key: str, value: str) -> None:
        # The error text never carries the value: only the scope and key are named.
        self._call(
            f"storing secret {key!r} in scope {scope!r}",
            lambda: self._client.secrets.put_secret(scope, key, string_value=value),
        )

    def delete_secret(self, scope: str, key: str) -> None:
        self._ignore_missing(
            f"deleting secret {key!r} of scope {scope!r}",
            lambda: self._client.secrets.delete_secret(scope, key),
        )

    def list_acls(self, scope: str) -> list[dict[str, Any]]:
        found = self._call_or_none(
            f"listing ACLs of scope {scope!r}",
            lambda: [a.as_dict() for a in self._client.secrets.list_acls(scope)],
        )
        return found or []

    def delete_acl(self, scope: str, principal: str) -> None:
        self._ignore_missing(
            f"revoking the access of {principal!r} to scope {scope!r}",
            lambda: self._client.secrets.delete_acl(scope, principal),
        )

    def put_acl(self, scope: str, principal: str, permission: str) -> None:
        from databricks.sdk.service.workspace import AclPermission

        self._call(
            f"granting {permission} on scope {scope!r} to {principal!r}",
            lambda: self._client.secrets.put_acl(scope, principal, AclPermission(permission)),
        )

    # -- workspace files and notebooks ---------------------------------------------------
    def get_status(self, path: str) -> dict[str, Any] | None:
        return self._call_or_none(
            f"reading the status of {path}", lambda: self._client.workspace.get_status(path).as_dict()
        )

    def list_folder(self, path: str) -> list[dict[str, Any]] | None:
        """The objects directly in a folder (workspace/list, not recursive), as ObjectInfo
        dicts; None when there is nothing at ``path``."""
        # Not recursive: adopt walks the tree itself, to count the objects and stop at a limit.
        return self._call_or_none(
            f"listing folder {path}", lambda: [o.as_dict() for o in self._client.workspace.list(path)]
        )

    def mkdirs(self, path: str) -> None:
        self._call(f"creating folder {path}", lambda: self._client.workspace.mkdirs(path))

    def export_source(self, path: str) -> str | None:
        """A notebook's SOURCE text, or None when there is nothing at ``path``."""
        from databricks.sdk.service.workspace import ExportFormat

        exported = self._call_or_none(
            f"exporting {path}", lambda: self._client.workspace.export(path, format=ExportFormat.SOURCE)
        )
        if exported is None:
            return None
        return base64.b64decode(exported.content or "").decode("utf-8")

    def import_notebook(self, path: str, source: str, overwrite: bool) -> None:
        from databricks.sdk.service.workspace import ImportFormat, Language

        content = base64.b64encode(source.encode("utf-8")).decode("ascii")
        self._call(
            f"uploading notebook {path}",
            lambda: self._client.workspace.import_(
                path,
                content=content,
                format=ImportFormat.SOURCE,
                language=Language.PYTHON,
                overwrite=overwrite,
            ),
        )

    def write_file(self, path: str, content: bytes, overwrite: bool) -> None:
        """Writes a workspace file; with ``overwrite=False`` an existing one is a ConflictError."""
        from databricks.sdk.service.workspace import ImportFormat

        encoded = base64.b64encode(content).decode("ascii")
        self._call(
            f"writing {path}",
            lambda: self._client.workspace.import_(
                path, content=encoded, format=ImportFormat.AUTO, overwrite=overwrite
            ),
        )

    def read_file(self, path: str) -> bytes | None:
        from databricks.sdk.service.workspace import ExportFormat

        exported = self._call_or_none(
            f"reading {path}", lambda: self._client.workspace.export(path, format=ExportFormat.AUTO)
        )
        if exported is None:
            return None
        return base64.b64decode(exported.content or "")

    def delete(self, path: str, recursive: bool = False) -> None:
        self._ignore_missing(
            f"deleting {path}", lambda: self._client.workspace.delete(path, recursive=recursive)
        )

    def delete_if_empty(self, path: str) -> bool:
        """Deletes a folder only while it is empty (non-recursive); False when it holds
        something (the API answers DIRECTORY_NOT_EMPTY). Gone already counts as deleted."""
        from databricks.sdk.errors.base import DatabricksError

        try:
            self._client.workspace.delete(path, recursive=False)
        except Exception as error:  # noqa: BLE001
            if isinstance(error, DatabricksError) and error.error_code == "DIRECTORY_NOT_EMPTY":
                return False
            if not is_missing(error):
                raise map_error(error, f"deleting folder {path}", self.host) from None
        return True

    # -- workspace object permissions ----------------------------------------------------
    def get_permissions(self, object_type: str, object_id: str) -> dict[str, Any] | None:
        """The ACL of a folder/notebook/file (``object_type`` directories|notebooks|files), with
        each principal's direct and inherited levels; None when the workspace has no object
        access control (not on the Premium plan: then every user can edit every object)."""
        from databricks.sdk import errors

        what = f"reading the permissions of {object_type} {object_id}"
        try:
            return self._client.workspace.get_permissions(object_type, object_id).as_dict()
        except errors.BadRequest as error:
            if error.error_code == "FEATURE_DISABLED" or "Premium" in str(error):
                return None
            raise map_error(error, what, self.host) from None
        except Exception as error:  # noqa: BLE001
            raise map_error(error, what, self.host) from None

    def update_permissions(self, object_type: str, object_id: str, entries: list[dict[str, Any]]) -> None:
        """Adds ``entries`` (``{"user_name"|"group_name"|"service_principal_name": ..,
        "permission_level": ..}``) to the object's ACL, keeping the others (PATCH)."""
        from databricks.sdk.service.workspace import WorkspaceObjectAccessControlRequest

        acl = [WorkspaceObjectAccessControlRequest.from_dict(entry) for entry in entries]
        self._call(
            f"granting access to {object_type} {object_id}",
            lambda: self._client.workspace.update_permissions(
                object_type, object_id, access_control_list=acl
            ),
        )

    # -- jobs ---------------------------------------------------------------------------
    def get_job(self, job_id: int) -> dict[str, Any] | None:
        """The job with every page of its arrays joined (the SDK pages tasks at 100)."""
        return self._call_or_none(f"reading job {job_id}", lambda: self._client.jobs.get(job_id).as_dict())

    def list_jobs(self, name: str | None = None) -> list[dict[str, Any]]:
        """Jobs, optionally with this exact (case-insensitive) name; settings without tasks."""
        return self._call(
            "listing jobs" + (f" named {name!r}" if name else ""),
            lambda: [job.as_dict() for job in self._client.jobs.list(name=name)],
        )

    def list_jobs_with_tasks(self) -> list[dict[str, Any]]:
        """Every job with its tasks (jobs/list expand_tasks, 100 a page); a job whose tasks
        did not fit in the listing (``has_more``) is read whole with jobs/get."""
        listed = self._call(
            "listing jobs with their tasks",
            lambda: [job.as_dict() for job in self._client.jobs.list(expand_tasks=True, limit=100)],
        )
        jobs = []
        for job in listed:
            whole = self.get_job(int(job["job_id"])) if job.get("has_more") else None
            jobs.append(whole if whole is not None else job)
        return jobs

    def create_job(self, settings: dict[str, Any]) -> int:
        from databricks.sdk.service.jobs import JobSettings

        parsed = JobSettings.from_dict(settings)
        created = self._call(
            f"creating job {settings.get('name')!r}", lambda: self._client.jobs.create(**_fields(parsed))
        )
        if created.job_id is None:
            raise RemoteError(f"creating job {settings.get('name')!r} returned no job id")
        return int(created.job_id)

    def update_job(
        self, job_id: int, new_settings: dict[str, Any], fields_to_remove: list[str] | None = None
    ) -> None:
        """jobs/update: top-level fields replace; ``tasks``/``job_clusters`` merge by key."""
        from databricks.sdk.service.jobs import JobSettings

        self._call(
            f"updating job {job_id}",
            lambda: self._client.jobs.update(
                job_id, new_settings=JobSettings.from_dict(new_settings), fields_to_remove=fields_to_remove
            ),
        )

    def reset_job(self, job_id: int, new_settings: dict[str, Any]) -> None:
        """jobs/reset: replaces every setting. Only ever for a job dbtwf owns."""
        from databricks.sdk.service.jobs import JobSettings

        self._call(
            f"resetting job {job_id}",
            lambda: self._client.jobs.reset(job_id, JobSettings.from_dict(new_settings)),
        )

    def delete_job(self, job_id: int) -> None:
        self._ignore_missing(f"deleting job {job_id}", lambda: self._client.jobs.delete(job_id))

    def run_now(
        self, job_id: int, job_parameters: dict[str, str] | None = None, idempotency_token: str | None = None
    ) -> int:
        waiter = self._call(
            f"starting a run of job {job_id}",
            lambda: self._client.jobs.run_now(
                job_id, job_parameters=job_parameters, idempotency_token=idempotency_token
            ),
        )
        run_id: Any = waiter.bind()["run_id"]
        return int(run_id)

    def list_active_runs(self, job_id: int) -> list[dict[str, Any]]:
        """The job's runs not yet ended (queued ones included), newest first, without tasks."""
        return self._call(
            f"listing the active runs of job {job_id}",
            lambda: [run.as_dict() for run in self._client.jobs.list_runs(job_id=job_id, active_only=True)],
        )

    def get_run(self, run_id: int) -> dict[str, Any]:
        return self._call(f"reading run {run_id}", lambda: self._client.jobs.get_run(run_id).as_dict())

    def cancel_run(self, run_id: int) -> None:
        self._call(f"cancelling run {run_id}", lambda: self._client.jobs.cancel_run(run_id))

    def get_run_output(self, run_id: int) -> dict[str, Any]:
        return self._call(
            f"reading the output of run {run_id}", lambda: self._client.jobs.get_run_output(run_id).as_dict()
        )

    # -- compute ------------------------------------------------------------------------
    def get_cluster(self, cluster_id: str) -> dict[str, Any] | None:
        return self._call_or_none(
            f"reading cluster {cluster_id}", lambda: self._client.clusters.get(cluster_id).as_dict()
        )

    # -- Unity Catalog ------------------------------------------------------------------
    def get_connection(self, name: str) -> dict[str, Any] | None:
        """A Unity Catalog connection (GET /api/2.1/unity-catalog/connections/{name}), None when
        there is none of that name (or the caller may not see it)."""
        return self._call_or_none(
            f"reading Unity Catalog connection {name!r}", lambda: self._client.connections.get(name).as_dict()
        )

    # -- helpers ------------------------------------------------------------------------
    def _ignore_missing(self, what: str, operation: Callable[[], object]) -> None:
        """Deletes are idempotent: something already gone is what was asked for."""
        self._call_or_none(what, operation)


def _fields(settings: object) -> dict[str, Any]:
    """A dataclass's set fields as keyword arguments (JobSettings -> jobs.create(**...))."""
    assert dataclasses.is_dataclass(settings)
    return _without_none(
        {field.name: getattr(settings, field.name) for field in dataclasses.fields(settings)}
    )
