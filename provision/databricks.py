"""The one gateway to Databricks: the only module that imports ``databricks.sdk``.

Everything above it sees plain dicts (the SDK dataclasses' ``as_dict()`` shapes) and the
project's error family, so the planner stays pure and the CLI can render any failure.
The SDK is imported lazily: it costs about two seconds, and ``--help`` or a config error
must not pay for it.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from provision.errors import AuthError, ConflictError, DbtwfError, NotFoundError, RemoteError

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient

    from provision.model import Environment

T = TypeVar("T")

_AUTH_HINT = (
    "set DATABRICKS_HOST and DATABRICKS_TOKEN, or name a profile of ~/.databrickscfg with "
    "databricks_profile in dbtwf.toml (run `databricks auth login` to create one)"
)


def connect(env: Environment, *, on_retry: Callable[[str], None] | None = None) -> Workspace:
    """A Workspace for the environment's profile, or the SDK's unified auth when it names none.

    ``on_retry`` hears, once, that the SDK has started retrying (see ``watch_retries``).
    """
    from databricks.sdk import WorkspaceClient

    if on_retry is not None:
        watch_retries(on_retry)

    try:
        client = (
            WorkspaceClient(profile=env.databricks_profile) if env.databricks_profile else WorkspaceClient()
        )
    except ValueError as error:  # the SDK's Config raises ValueError when no credentials resolve
        where = f"profile {env.databricks_profile!r}" if env.databricks_profile else "the environment"
        raise AuthError(
            f"cannot authenticate to Databricks with {where}: {_first_line(error)}", _AUTH_HINT
        ) from None
    return Workspace(client)


class _RetryNotice(logging.Handler):
    """Passes the SDK's first "Retrying: <reason>" debug line on as one plain sentence."""

    def __init__(self, notify: Callable[[str], None]) -> None:
        super().__init__(logging.DEBUG)
        self._notify = notify
        self._told = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if not message.startswith("Retrying: ") or self._told.is_set():
            return
        self._told.set()
        reason = message.removeprefix("Retrying: ").split(" (sleeping", 1)[0]
        self._notify(
            f"Databricks is not answering ({reason}); the SDK keeps retrying for up to 5 minutes. "
            "Check the host (DATABRICKS_HOST or the profile), or press Ctrl-C to stop."
        )


_RETRY_LOGGER = "databricks.sdk.retries"


def watch_retries(notify: Callable[[str], None]) -> None:
    """Tell the user when the SDK starts retrying: it retries a refused connection for five
    minutes without a word, so a mistyped host would otherwise look like a hang."""
    logger = logging.getLogger(_RETRY_LOGGER)
    for handler in [h for h in logger.handlers if isinstance(h, _RetryNotice)]:
        logger.removeHandler(handler)  # the latest listener wins; one notice per command
    logger.setLevel(logging.DEBUG)
    logger.addHandler(_RetryNotice(notify))


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _map_error(error: Exception, what: str, host: str) -> DbtwfError:
    """One SDK or transport error as a project error that says what failed and what to do."""
    from databricks.sdk import errors
    from databricks.sdk.errors.base import DatabricksError

    message = f"{what} failed: {_first_line(error)}"
    # A wrong or expired token gets 403 "Invalid access token.", not 401: it is not a missing permission.
    denied = isinstance(error, errors.PermissionDenied)
    invalid_token = denied and "invalid access token" in _first_line(error).lower()
    if isinstance(error, errors.Unauthenticated) or invalid_token:
        return AuthError(f"Databricks at {host} rejected the credentials: {what}", _AUTH_HINT)
    if isinstance(error, errors.PermissionDenied):
        return RemoteError(
            f"permission denied on Databricks: {what}",
            "ask a workspace admin for the permission, or use a profile whose user holds it",
        )
    if isinstance(error, errors.NotFound):
        return NotFoundError(message)
    if isinstance(error, errors.ResourceConflict):
        return ConflictError(message)
    if isinstance(error, DatabricksError):
        return RemoteError(message)
    return RemoteError(f"cannot reach Databricks at {host}: {what}: {_first_line(error)}")


def _is_missing(error: Exception) -> bool:
    """Whether an SDK error means "no such object" (jobs/get answers 400 for a deleted job)."""
    from databricks.sdk import errors

    if isinstance(error, errors.NotFound):
        return True
    return isinstance(error, errors.InvalidParameterValue) and "does not exist" in str(error)


def _without_none(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


class Workspace:
    """Plain-dict operations on one workspace, errors mapped to the project's family."""

    def __init__(self, client: WorkspaceClient) -> None:
        self._client = client
        self.host: str = str(client.config.host or "")

    def _call(self, what: str, operation: Callable[[], T]) -> T:
        """Run one SDK call; any SDK or transport failure becomes a project error."""
        try:
            return operation()
        except DbtwfError:
            raise
        except Exception as error:  # noqa: BLE001 - the SDK raises many unrelated types
            raise _map_error(error, what, self.host) from None

    def _call_or_none(self, what: str, operation: Callable[[], T]) -> T | None:
        """Like _call, but a "does not exist" answer is None."""
        try:
            return operation()
        except DbtwfError:
            raise
        except Exception as error:  # noqa: BLE001
            if _is_missing(error):
                return None
            raise _map_error(error, what, self.host) from None

    # -- identity -----------------------------------------------------------------------
    def current_user(self) -> str:
        me = self._call("reading the current user", self._client.current_user.me)
        return str(me.user_name or me.display_name or me.id or "")

    # -- secrets ------------------------------------------------------------------------
    def list_scopes(self) -> list[dict[str, Any]]:
        return self._call(
            "listing secret scopes", lambda: [s.as_dict() for s in self._client.secrets.list_scopes()]
        )

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
            raise _map_error(error, f"creating secret scope {name!r}", self.host) from None
        except Exception as error:  # noqa: BLE001
            raise _map_error(error, f"creating secret scope {name!r}", self.host) from None

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


def tags_of(job: dict[str, Any]) -> dict[str, str]:
    """A job's tags from a jobs/get or jobs/list answer."""
    tags = (job.get("settings") or {}).get("tags") or {}
    return {str(key): str(value) for key, value in tags.items()}


def job_ids(jobs: Iterable[dict[str, Any]]) -> list[int]:
    return [int(job["job_id"]) for job in jobs if "job_id" in job]
