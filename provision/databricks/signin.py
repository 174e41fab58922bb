"""Which workspace, as whom: the SDK's Config built from the environment, checked at first contact.

A named profile beats DATABRICKS_* variables, ``databricks_host`` pins the workspace, an
unreachable host fails within seconds in one line, and the SDK's own log lines stay out of
dbtwf's output.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from provision.databricks.mapping import AUTH_HINT, first_line, map_error
from provision.databricks.workspace import Workspace
from provision.errors import AuthError, DbtwfError, RemoteError, UsageError
from provision.model import normalize_host

if TYPE_CHECKING:
    from provision.model import Environment

T = TypeVar("T")

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
            f"cannot authenticate to Databricks with {source}: {first_line(error)}", AUTH_HINT
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
        return map_error(cause, "reading the current user", host)
    text = str(cause)
    if isinstance(cause, requests.Timeout):
        reason = f"no answer within {_FIRST_CONTACT_HTTP_TIMEOUT_SECONDS:.0f} s"
    elif "NameResolution" in text or "Name or service not known" in text or "nodename nor servname" in text:
        reason = "the host name does not resolve"
    elif "Connection refused" in text or "ConnectionRefused" in text:
        reason = "connection refused"
    else:
        reason = first_line(cause)
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
