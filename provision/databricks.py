"""The one gateway to Databricks: the only module that imports ``databricks.sdk``.

Everything above it sees plain dicts (the SDK dataclasses' ``as_dict()`` shapes) and the
project's error family, so the planner stays pure and the CLI can render any failure.
The SDK is imported lazily: it costs about two seconds, and ``--help`` or a config error
must not pay for it.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import logging
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from provision.errors import AuthError, ConflictError, DbtwfError, NotFoundError, RemoteError, UsageError
from provision.model import normalize_host, same_scope

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient

    from provision.model import Environment

T = TypeVar("T")

_AUTH_HINT = (
    "set DATABRICKS_HOST and DATABRICKS_TOKEN, or name a profile of ~/.databrickscfg with "
    "databricks_profile in dbtwf.toml (run `databricks auth login` to create one)"
)


#: The SDK asks `/.well-known/databricks-config` while it builds its Config (best effort: it
#: falls back on any failure), with the Config's own retry budget: keep that probe short.
_DISCOVERY_RETRY_SECONDS = 1
_DISCOVERY_HTTP_TIMEOUT_SECONDS = 3.0
#: The first real call (who am I) proves the workspace answers. An unreachable host fails
#: here within seconds instead of after the SDK's five-minute default: measured 12 s for a
#: refused connection and 14 s for a host that accepts but never answers, probe included.
FIRST_CONTACT_RETRY_SECONDS = 8
_FIRST_CONTACT_HTTP_TIMEOUT_SECONDS = 8.0
#: Once the workspace has answered, calls get the SDK's defaults back (retry 429/503 and lost
#: connections for five minutes, 60 s per attempt), and the user hears when that starts.
_CALL_RETRY_SECONDS = 300
_CALL_HTTP_TIMEOUT_SECONDS = 60.0
#: The SDK's clock for connect() (tests put a simulated one here: retries then take no time).
sdk_clock: Any = None

#: Set while connect() makes its first contact: the SDK's retries then are not announced
#: (the first contact fails on its own within seconds, in one line).
_first_contact = threading.local()


def while_importing_sdk(work: Callable[[], T]) -> T:
    """``work()`` (network waits that need no SDK, such as the dbt Cloud check) while
    ``databricks.sdk`` loads in another thread: its import is about 1.3 s of CPU, a round trip
    mostly waiting, so the two overlap. The import has finished when this returns, whatever
    ``work`` did, so nothing after it imports modules at the same time as the SDK. ``work``
    must only use modules already imported (it runs while the SDK's are being imported)."""
    loader = threading.Thread(target=_import_sdk, name="dbtwf-sdk-import", daemon=True)
    loader.start()
    try:
        return work()
    finally:
        loader.join()


def _import_sdk() -> None:
    # A failure is connect()'s to report: it imports the SDK again (cached when this worked).
    with contextlib.suppress(Exception):
        import databricks.sdk  # noqa: F401


def connect(
    env: Environment, *, on_retry: Callable[[str], None] | None = None, clock: Any = None
) -> Workspace:
    """The environment's workspace, checked: it answers, and it is the one the environment names.

    An environment with ``databricks_profile`` uses that profile's host and credentials even
    when DATABRICKS_* variables are set: they are passed to the SDK's Config explicitly, which
    the SDK ranks above the environment variables (its documented order: arguments, then the
    environment, then the profile file). Without a profile, the SDK's unified auth decides.
    ``databricks_host`` pins the workspace: another resolved host is a UsageError (exit 2),
    before any credential is sent or anything written. ``on_retry`` hears, once, that the SDK
    has started retrying a call after the first contact (see ``watch_retries``).
    """
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.core import Config

    quiet_sdk_logs()
    explicit = _profile_settings(env) if env.databricks_profile else {}
    source = _host_source(env)
    try:
        config = Config(
            **explicit,
            retry_timeout_seconds=_DISCOVERY_RETRY_SECONDS,
            http_timeout_seconds=_DISCOVERY_HTTP_TIMEOUT_SECONDS,
            clock=clock if clock is not None else sdk_clock,
        )
    except ValueError as error:  # the SDK's Config raises ValueError when no credentials resolve
        raise AuthError(
            f"cannot authenticate to Databricks with {source}: {_first_line(error)}", _AUTH_HINT
        ) from None
    host = normalize_host(str(config.host or ""))
    if env.databricks_host is not None and host != env.databricks_host:
        raise UsageError(
            f"environment {env.name!r} is pinned to {env.databricks_host} (databricks_host), "
            f"but {source} points at {host or 'no workspace'}",
            f"point {source} at {env.databricks_host}, or change databricks_host in the config",
        )

    config.retry_timeout_seconds = FIRST_CONTACT_RETRY_SECONDS
    config.http_timeout_seconds = _FIRST_CONTACT_HTTP_TIMEOUT_SECONDS
    probe = WorkspaceClient(config=config)
    _first_contact.active = True
    try:
        me = probe.current_user.me()
    except Exception as error:  # noqa: BLE001 - the SDK raises many unrelated types
        raise _first_contact_error(error, host, source) from None
    finally:
        _first_contact.active = False
    identity = str(me.user_name or me.display_name or me.id or "")

    config.retry_timeout_seconds = _CALL_RETRY_SECONDS
    config.http_timeout_seconds = _CALL_HTTP_TIMEOUT_SECONDS
    if on_retry is not None:
        watch_retries(on_retry, host=host)
    user_name = str(me.user_name) if me.user_name else None  # the same answer: no second SCIM Me
    return Workspace(WorkspaceClient(config=config), host=host, identity=identity, user_name=user_name)


def _profile_settings(env: Environment) -> dict[str, Any]:
    """The named profile's values, to pass to the SDK explicitly so they beat DATABRICKS_*.

    A profile that carries a token, a user and password, or an OAuth client is pinned to that
    way of signing in (auth_type), so credentials from the environment cannot mix in. One that
    names none (it relies on the Azure or Databricks CLI) while DATABRICKS_* credentials are
    set is refused: dbtwf cannot tell which the SDK would use.
    """
    from provision.environments import databricks_config_file, read_databricks_profile

    name = str(env.databricks_profile)
    values: dict[str, Any] = dict(read_databricks_profile(name) or {})
    if not values:
        raise AuthError(
            f"no profile {name!r} in {databricks_config_file()} (databricks_profile of environment "
            f"{env.name!r})",
            f"create it with `databricks auth login --profile {name}`, or fix databricks_profile",
        )
    if not values.get("host"):
        raise AuthError(
            f"profile {name!r} in {databricks_config_file()} has no host",
            f"add host = https://... to [{name}], or run `databricks auth login --profile {name}`",
        )
    if not values.get("auth_type"):
        for auth_type, needs in _PROFILE_AUTH_TYPES:
            if all(values.get(key) for key in needs):
                values["auth_type"] = auth_type
                break
    if not values.get("auth_type"):
        stray = sorted(name for name in _CREDENTIAL_ENVVARS if os.environ.get(name))
        if stray:
            raise UsageError(
                f"profile {name!r} does not say how to sign in, and {', '.join(stray)} is set: "
                "dbtwf will not mix the profile's workspace with other credentials",
                f"unset {', '.join(stray)} for this command, or add auth_type to [{name}]",
            )
    values["profile"] = name
    return values


#: How a profile signs in when it does not say (the SDK's credential strategies and their fields).
_PROFILE_AUTH_TYPES = (
    ("pat", ("token",)),
    ("basic", ("username", "password")),
    ("oauth-m2m", ("client_id", "client_secret")),
)
_CREDENTIAL_ENVVARS = (
    "DATABRICKS_TOKEN",
    "DATABRICKS_USERNAME",
    "DATABRICKS_PASSWORD",
    "DATABRICKS_CLIENT_ID",
    "DATABRICKS_CLIENT_SECRET",
    "DATABRICKS_AUTH_TYPE",
)


def _host_source(env: Environment) -> str:
    """Where the workspace host comes from, as a user would look for it."""
    if env.databricks_profile:
        return f"profile {env.databricks_profile!r}"
    if os.environ.get("DATABRICKS_HOST", "").strip():
        return "DATABRICKS_HOST"
    if os.environ.get("DATABRICKS_CONFIG_PROFILE", "").strip():
        return f"profile {os.environ['DATABRICKS_CONFIG_PROFILE'].strip()!r} (DATABRICKS_CONFIG_PROFILE)"
    return "the default profile"


def _first_contact_error(error: Exception, host: str, source: str) -> DbtwfError:
    """The first call's failure: an unreachable workspace in one line naming the host."""
    import requests
    from databricks.sdk.errors.base import DatabricksError

    cause = error.__cause__ if isinstance(error, TimeoutError) and error.__cause__ else error
    if isinstance(cause, DatabricksError):  # it answered, with an error (retried ones too: 429, 503)
        return _map_error(cause, "reading the current user", host)
    text = str(cause)
    if isinstance(cause, requests.Timeout):
        reason = f"no answer within {_FIRST_CONTACT_HTTP_TIMEOUT_SECONDS:.0f} s"
    elif "NameResolution" in text or "Name or service not known" in text or "nodename nor servname" in text:
        reason = "the host name does not resolve"
    elif "Connection refused" in text or "ConnectionRefused" in text:
        reason = "connection refused"
    else:
        reason = _first_line(cause)
    if isinstance(error, TimeoutError) and not isinstance(cause, requests.Timeout):
        reason += f" (retried for {FIRST_CONTACT_RETRY_SECONDS} s)"
    return RemoteError(
        f"cannot reach Databricks at {host or '(no host)'} ({source}): {reason}; "
        "check the host and your network"
    )


def quiet_sdk_logs() -> None:
    """Keep the SDK's own log lines (a failed host-metadata probe warns on every command) out of
    dbtwf's output: without a handler of its own, Python prints its warnings to stderr."""
    logger = logging.getLogger("databricks.sdk")
    if not any(isinstance(handler, logging.NullHandler) for handler in logger.handlers):
        logger.addHandler(logging.NullHandler())


class _RetryNotice(logging.Handler):
    """Passes the SDK's first "Retrying: <reason>" debug line on as one plain sentence."""

    def __init__(self, notify: Callable[[str], None], host: str | None) -> None:
        super().__init__(logging.DEBUG)
        self._notify = notify
        self._host = host
        self._told = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if not message.startswith("Retrying: ") or self._told.is_set():
            return
        if getattr(_first_contact, "active", False):
            return  # connect() reports an unreachable workspace itself, at once
        self._told.set()
        reason = message.removeprefix("Retrying: ").split(" (sleeping", 1)[0]
        where = f"Databricks at {self._host}" if self._host else "Databricks"
        self._notify(
            f"{where} is not answering ({reason}); the SDK keeps retrying for up to "
            f"{_CALL_RETRY_SECONDS // 60} minutes. Press Ctrl-C to stop."
        )


_RETRY_LOGGER = "databricks.sdk.retries"


def watch_retries(notify: Callable[[str], None], host: str | None = None) -> None:
    """Tell the user when the SDK starts retrying: it retries a lost connection for five
    minutes without a word, so a workspace gone away mid-command would otherwise look like a hang."""
    logger = logging.getLogger(_RETRY_LOGGER)
    for handler in [h for h in logger.handlers if isinstance(h, _RetryNotice)]:
        logger.removeHandler(handler)  # the latest listener wins; one notice per command
    logger.setLevel(logging.DEBUG)
    logger.addHandler(_RetryNotice(notify, host))


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
            raise _map_error(error, what, self.host) from None
        except Exception as error:  # noqa: BLE001
            raise _map_error(error, what, self.host) from None

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
