"""Trigger a dbt Cloud job and follow it to the end: standard library only.

This one module is the whole runner: `runner.notebook` ships it verbatim as the Databricks
notebook, `python -m runner` wraps it for a shell, and `provision` reuses its client to
validate a token and a job before provisioning anything.
"""

from __future__ import annotations

import enum
import http.client
import ipaddress
import json
import random
import re
import signal
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

Clock = Callable[[], float]
Sleep = Callable[[float], None]
Output = Callable[[str], None]
TaskValueSetter = Callable[[str, Any], None]

DEFAULT_TIMEOUT_SECONDS = 4 * 3600
REQUEST_TIMEOUT_SECONDS = 30.0
CAUSE_MAX_CHARS = 255  # dbt Cloud rejects a longer cause
GUIDE_PLACEHOLDER = "Enter the Job ID"  # what the guide's notebook leaves in the job_id widget

# --- inputs -------------------------------------------------------------------------


class RunnerInputError(ValueError):
    """Bad input, found before any request is sent (exit code 2)."""


class DbtCloudError(RuntimeError):
    """dbt Cloud refused or failed a request. Never carries the token, not even partly."""

    def __init__(self, message: str, status: int | None = None, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after  # seconds the server asked us to wait, when it said


class DbtCloudAuthError(DbtCloudError):
    """The token was rejected (401) or lacks permission (403)."""


class DbtCloudNotFoundError(DbtCloudError):
    """The account, job or run does not exist (404)."""


class DbtCloudTransientError(DbtCloudError):
    """No usable answer: connection error, timeout, 5xx or 429. Worth trying again later.

    For a write, the outcome is unknown: the request may or may not have taken effect.
    """


class DbtCloudRateLimitError(DbtCloudTransientError):
    """429: the account is over its request limit (5,000 a minute, dbt's rate-limits page)."""


class DbtRunError(RuntimeError):
    """The dbt run did not succeed. Raised so the Databricks task fails."""

    def __init__(self, message: str, *, run_id: int, run_url: str, status: int | None) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.run_url = run_url
        self.status = status


class DbtRunFailedError(DbtRunError):
    """The dbt run ended in error; the message names the failing step and ends with its logs."""

    def __init__(
        self,
        message: str,
        *,
        run_id: int,
        run_url: str,
        status: int | None,
        step_name: str | None,
        logs_tail: str,
    ) -> None:
        super().__init__(message, run_id=run_id, run_url=run_url, status=status)
        self.step_name = step_name
        self.logs_tail = logs_tail


class DbtRunCancelledError(DbtRunError):
    """The dbt run was cancelled (by someone in dbt Cloud, or by dbt's own timeout)."""


class DbtRunTimeoutError(DbtRunError):
    """The runner's overall timeout expired; the dbt run was cancelled."""


_JOB_URL_PATH = re.compile(r"/deploy/(?P<account>[^/]+)/projects/(?P<project>[^/]+)/jobs/(?P<job>[^/?#]+)/?")


@dataclass(frozen=True)
class JobRef:
    """What a dbt job URL says: where the account lives and which job to run."""

    host: str  # as found in the URL: scheme://netloc for http, the bare host for https
    account_id: int
    project_id: int
    job_id: int


def parse_int(value: object, what: str) -> int:
    """An id as a positive integer, or a RunnerInputError naming ``what`` and the value."""
    text = str(value).strip()
    # ASCII digits only: str.isdigit() also passes '²', which int() then refuses with a bare
    # ValueError; and no more than an int64, as both services' ids are.
    if not _ASCII_DIGITS.fullmatch(text) or not 0 < int(text[:20]) <= MAX_ID:
        shown = text if len(text) <= 40 else f"{text[:40]}... ({len(text)} characters)"
        raise RunnerInputError(f"{what} must be a positive integer, got {shown!r}")
    return int(text)


_ASCII_DIGITS = re.compile(r"[0-9]+")
MAX_ID = 2**63 - 1  # ids are int64 in the Jobs API and in dbt Cloud's


def parse_job_url(url: str) -> JobRef:
    """Read host, account, project and job id off `https://<host>/deploy/<a>/projects/<p>/jobs/<j>`."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise RunnerInputError(
            f"not a dbt job URL: {url!r}; copy it from dbt Cloud's Deploy > Jobs page, "
            "like https://ACCOUNT_PREFIX.us1.dbt.com/deploy/1/projects/2/jobs/3"
        )
    match = _JOB_URL_PATH.fullmatch(parts.path)
    if match is None:
        raise RunnerInputError(
            f"not a dbt job URL: {url!r}; "
            "expected a path like /deploy/<account>/projects/<project>/jobs/<job>"
        )
    host = parts.netloc if parts.scheme == "https" else f"{parts.scheme}://{parts.netloc}"
    base_url(host)  # the same host rules as everywhere: no plain http to another machine
    return JobRef(
        host=host,
        account_id=parse_int(match["account"], "the account id in the dbt job URL"),
        project_id=parse_int(match["project"], "the project id in the dbt job URL"),
        job_id=parse_int(match["job"], "the job id in the dbt job URL"),
    )


def is_loopback_host(hostname: str) -> bool:
    """True for `localhost` and the loopback addresses 127.0.0.0/8 and ::1, nothing else."""
    name = hostname.strip().strip("[]").rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def base_url(host: str) -> str:
    """The API root for a host: a bare host means https; a URL with a scheme is used as is.

    The one rule for where the token may go, used by the runner and by `dbtwf` alike: https,
    or plain http only to a loopback host (the local emulators), never credentials in the URL.
    """
    text = host.strip().rstrip("/")
    if not text:
        raise RunnerInputError("the dbt Cloud host is empty; give it as ACCOUNT_PREFIX.us1.dbt.com or a URL")
    if "://" in text:
        if not text.isprintable() or any(ch.isspace() for ch in text):
            # urlsplit drops tabs and newlines: 'good.com\n.evil' would mean good.com.evil.
            raise RunnerInputError(f"the dbt Cloud host {host!r} holds whitespace or control characters")
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise RunnerInputError(f"the dbt Cloud host {host!r} is not an http(s) URL")
        if "@" in text:
            # Also after '#' or '?': https://evil#@good.com reads as good.com and goes to evil.
            raise RunnerInputError(f"the dbt Cloud host {host!r} holds user info before '@': give a host")
        if parts.query or parts.fragment or "#" in text or "?" in text:
            raise RunnerInputError(f"the dbt Cloud host {host!r} holds a query or fragment: give a host")
        if not _URL_NETLOC.fullmatch(parts.netloc) or not _valid_port(parts.netloc):
            raise RunnerInputError(
                f"the dbt Cloud host {host!r} is not a host name with an optional port, "
                "like ACCOUNT_PREFIX.us1.dbt.com or 127.0.0.1:8080"
            )
        if parts.scheme == "http" and not is_loopback_host(parts.hostname):
            raise RunnerInputError(
                f"the dbt Cloud host {host!r} uses plain http, which would send the API token "
                "unencrypted: use https:// (plain http is accepted only for a loopback host: "
                "127.0.0.1, ::1 or localhost)"
            )
        return f"{parts.scheme}://{parts.netloc}{parts.path}"
    if not re.fullmatch(r"[A-Za-z0-9.-]+(:\d+)?", text):
        raise RunnerInputError(f"the dbt Cloud host {host!r} is not a host name")
    return f"https://{text}"


# A host name or IPv4 address, or a bracketed IPv6 address, then an optional port: ASCII only,
# so what a reader sees is the host the token goes to.
_URL_NETLOC = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")


def _valid_port(netloc: str) -> bool:
    try:
        port = urlsplit(f"//{netloc}").port
    except ValueError:
        return False
    return port is None or port > 0


def parse_job_id(value: object) -> int:
    """The dbt job id from a widget or flag, with a message that says what to type."""
    text = str(value if value is not None else "").strip()
    if text == GUIDE_PLACEHOLDER or text.lower().startswith("enter"):
        raise RunnerInputError(
            f"job_id still holds the placeholder {text!r}: set it to the dbt job's id, "
            "the number after /jobs/ in the job's URL (Deploy > Jobs in dbt Cloud)"
        )
    if not text:
        raise RunnerInputError(
            "job_id is empty: set it to the dbt job's id, the number after /jobs/ in its URL"
        )
    return parse_int(text, "job_id")


def parse_bool(value: object, what: str) -> bool:
    """true/false, yes/no, 1/0, on/off (any case) as a bool."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1", "on", "y"):
        return True
    if text in ("false", "no", "0", "off", "n"):
        return False
    raise RunnerInputError(f"{what} must be true or false, got {str(value)!r}")


def parse_steps(value: object) -> list[str]:
    """steps_override as a JSON list of strings or one dbt command per line."""
    if isinstance(value, (list, tuple)):
        steps = [str(step).strip() for step in value]
    else:
        text = str(value).strip()
        if text.startswith("["):
            try:
                loaded = json.loads(text)
            except ValueError as error:
                raise RunnerInputError(f"steps_override is not a valid JSON list: {error}") from None
            if not isinstance(loaded, list) or not all(isinstance(step, str) for step in loaded):
                raise RunnerInputError('steps_override must be a JSON list of strings, like ["dbt build"]')
            steps = [step.strip() for step in loaded]
        else:
            steps = [line.strip() for line in text.splitlines()]
    steps = [step for step in steps if step]
    if not steps:
        raise RunnerInputError("steps_override holds no command")
    for step in steps:
        if not step.startswith("dbt "):
            raise RunnerInputError(f"every step in steps_override must start with 'dbt ', got {step!r}")
    return steps


def _parse_positive_number(value: object, what: str) -> int:
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        raise RunnerInputError(f"{what} must be a number of seconds, got {text!r}") from None
    if not number > 0 or number != number or number == float("inf"):
        raise RunnerInputError(f"{what} must be more than 0 seconds, got {text!r}")
    return int(number) if number >= 1 else 1


# Optional trigger fields, passed through to dbt Cloud as given (after a type check).
STRING_OVERRIDES = (
    "schema_override",
    "git_branch",
    "git_sha",
    "target_name_override",
    "dbt_version_override",
)
OVERRIDE_NAMES = (
    "steps_override",
    *STRING_OVERRIDES,
    "threads_override",
    "timeout_seconds_override",
    "generate_docs_override",
)


def parse_overrides(raw: Mapping[str, object]) -> dict[str, Any]:
    """The trigger's optional fields from strings (widgets, flags) or typed values.

    Empty values are left out, so an untouched widget changes nothing.
    """
    unknown = sorted(set(raw) - set(OVERRIDE_NAMES))
    if unknown:
        raise RunnerInputError(
            f"unknown override(s): {', '.join(unknown)}; known: {', '.join(OVERRIDE_NAMES)}"
        )
    overrides: dict[str, Any] = {}
    for name in OVERRIDE_NAMES:
        value = raw.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        if name == "steps_override":
            overrides[name] = parse_steps(value)
        elif name == "threads_override":
            overrides[name] = parse_int(value, name)
        elif name == "timeout_seconds_override":
            overrides[name] = _parse_positive_number(value, name)
        elif name == "generate_docs_override":
            overrides[name] = parse_bool(value, name)
        else:
            overrides[name] = str(value).strip()
    return overrides


@dataclass(frozen=True)
class RunSettings:
    """Everything a run needs except the token, validated. Build it with :meth:`build`."""

    host: str
    account_id: int
    job_id: int
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS
    cause: str | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)
    wait: bool = True
    reuse_running: bool = False
    rerun_failed: bool = False

    @classmethod
    def build(
        cls,
        *,
        host: object,
        account_id: object,
        job_id: object,
        timeout_seconds: object = None,
        cause: object = None,
        overrides: Mapping[str, object] | None = None,
        wait: object = True,
        reuse_running: object = False,
        rerun_failed: object = False,
    ) -> RunSettings:
        """Check raw values (strings from widgets or flags are fine); raise RunnerInputError."""
        job_text = str(job_id if job_id is not None else "").strip()
        if job_text.startswith(("http://", "https://")):
            # A pasted job URL says where the job lives too.
            ref = parse_job_url(job_text)
            host, account_id, job_id = ref.host, ref.account_id, ref.job_id
        parsed_job_id = parse_job_id(job_id)
        host_text = str(host if host is not None else "").strip()
        if not host_text:
            raise RunnerInputError(
                "no dbt Cloud host: give the host of your dbt job URL, like ACCOUNT_PREFIX.us1.dbt.com"
            )
        base_url(host_text)
        if account_id is None or not str(account_id).strip():
            raise RunnerInputError("no dbt Cloud account id: it is the number after /deploy/ in the job URL")
        cause_text = str(cause).strip() if cause is not None else ""
        timeout = DEFAULT_TIMEOUT_SECONDS
        if timeout_seconds is not None and str(timeout_seconds).strip():
            timeout = _parse_positive_number(timeout_seconds, "timeout_seconds")
        return cls(
            host=host_text,
            account_id=parse_int(account_id, "the dbt Cloud account id"),
            job_id=parsed_job_id,
            timeout_seconds=timeout,
            cause=cause_text or None,
            overrides=parse_overrides(overrides or {}),
            wait=parse_bool(wait, "wait"),
            reuse_running=parse_bool(reuse_running, "reuse_running"),
            rerun_failed=parse_bool(rerun_failed, "rerun_failed"),
        )


def check_token(token: object, where: str) -> str:
    """The token, or a RunnerInputError that says where it should come from (never its value)."""
    if not isinstance(token, str) or not token.strip():
        raise RunnerInputError(f"no dbt Cloud API token: {where}")
    if token != token.strip() or any(ch.isspace() for ch in token):
        raise RunnerInputError(f"the dbt Cloud API token contains whitespace; store it again ({where})")
    if not _TOKEN_TEXT.fullmatch(token):
        # http.client would refuse it with an error quoting the whole header, token and all.
        raise RunnerInputError(
            f"the dbt Cloud API token holds a character a token never has (not printable ASCII); "
            f"store it again ({where})"
        )
    return token


_TOKEN_TEXT = re.compile(r"[\x21-\x7e]+")  # what an Authorization header can carry as is


# --- the client -----------------------------------------------------------------------


class DbtRunStatus(enum.IntEnum):
    """A run's `status` code, as the API documents it."""

    QUEUED = 1
    STARTING = 2
    RUNNING = 3
    SUCCESS = 10
    ERROR = 20
    CANCELLED = 30

    @property
    def is_terminal(self) -> bool:
        return self in (DbtRunStatus.SUCCESS, DbtRunStatus.ERROR, DbtRunStatus.CANCELLED)

    @classmethod
    def of(cls, code: object) -> DbtRunStatus | None:
        """The status for a code, or None for one this runner does not know."""
        try:
            return cls(int(code))  # type: ignore[call-overload]
        except (TypeError, ValueError):
            return None


RETRY_BASE_SECONDS = 1.0
RETRY_CAP_SECONDS = 60.0
# dbt Cloud documents its limit (5,000 requests/min per account) but neither how long a 429
# lasts nor a Retry-After header. Without one, a 429 backs off exponentially from a few
# seconds; with one, the runner waits what it says (never less) plus a little jitter.
RATE_LIMIT_BASE_SECONDS = 4.0
RETRY_AFTER_JITTER_SECONDS = 1.0
RETRY_AFTER_CAP_SECONDS = 600.0  # a longer Retry-After is read as ten minutes, not hours


def retry_delay(error: DbtCloudError, attempt: int, rng: random.Random) -> float:
    """How long to wait before try number ``attempt + 2``.

    A Retry-After the server sent is honoured as given, plus up to a second (or a tenth of it)
    of jitter so many runners told the same thing do not come back in step. Otherwise the wait
    is exponential with "equal jitter" (never near zero): from 0.5-1 s for a 5xx or a dropped
    connection, from 2-4 s for a 429, doubling to at most 60 s.
    """
    if error.retry_after is not None:
        told = min(error.retry_after, RETRY_AFTER_CAP_SECONDS)
        return told + rng.random() * max(RETRY_AFTER_JITTER_SECONDS, told * 0.1)
    base = RATE_LIMIT_BASE_SECONDS if isinstance(error, DbtCloudRateLimitError) else RETRY_BASE_SECONDS
    ceiling = min(RETRY_CAP_SECONDS, base * 2.0**attempt)
    return ceiling / 2 + rng.random() * ceiling / 2


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: a number, or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, float(parsedate_to_datetime(value).timestamp() - time.time()))
    except (TypeError, ValueError):
        return None


class DbtCloudRedirectError(DbtCloudError):
    """dbt Cloud answered with a redirect the runner will not follow with the token."""


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or {"http": 80, "https": 443}.get(scheme)


def _origin_text(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class _SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to the same scheme, host and port, carrying the same headers
    (dbt Cloud's 308 to a slashed URL); refuses any other, so the `Authorization` header never
    reaches another host. urllib's own handler would carry it anywhere."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        target = urllib.parse.urljoin(req.full_url, newurl)
        method = req.get_method()
        refusal = None
        if _origin(target) != _origin(req.full_url):
            refusal = (
                f"dbt Cloud at {_origin_text(req.full_url)} answered {code} with a redirect to "
                f"{_origin_text(target)}; the API token is never sent to another host, so the request "
                "was not repeated there: set the dbt Cloud host to the one that serves the API "
                "(the host of your dbt job URL)"
            )
        elif method not in ("GET", "HEAD") and code not in (307, 308):
            path = urlsplit(req.full_url).path
            refusal = f"dbt Cloud answered {code} to {method} {path}: a redirect that would drop its body"
        if refusal is not None:
            fp.close()
            raise DbtCloudRedirectError(refusal, code)
        return urllib.request.Request(target, data=req.data, headers=dict(req.headers), method=method)


def _open(request: urllib.request.Request, timeout: float) -> Any:
    """urlopen, but redirects only to the same origin. A fresh opener each time, so the proxy
    settings of the environment are read when the request is sent (as urlopen does at first use)."""
    return urllib.request.build_opener(_SameOriginRedirects()).open(request, timeout=timeout)


class DbtCloudClient:
    """A small client for the Administrative API v2. Every request has a timeout.

    Only requests that are safe to repeat are retried (GETs, and cancel, whose effect is the
    same however often it lands); a trigger is sent once and its caller decides what an
    unknown outcome means.
    """

    def __init__(
        self,
        host: str,
        account_id: int,
        token: str,
        *,
        timeout: float = REQUEST_TIMEOUT_SECONDS,
        sleep: Sleep = time.sleep,
        rng: random.Random | None = None,
        max_retries: int = 4,
    ) -> None:
        self.base_url = base_url(host)
        self.account_id = account_id
        self._token = check_token(token, "set DBT_CLOUD_API_TOKEN, or store it again")
        self.timeout = timeout
        self.max_retries = max_retries
        self._sleep = sleep
        self._rng = rng or random.Random()  # jitter only, not secrets

    def __repr__(self) -> str:
        return f"DbtCloudClient(base_url={self.base_url!r}, account_id={self.account_id})"

    def _redact(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text

    def _send(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, object] | None = None,
        body: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Any:
        url = f"{self.base_url}/api/v2/accounts/{self.account_id}{path}"
        if query:
            url += "?" + urllib.parse.urlencode({k: str(v) for k, v in query.items()})
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Authorization", f"Token {self._token}")
        request.add_header("Accept", "application/json")
        request.add_header("User-Agent", "dbtwf-runner")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with _open(request, timeout or self.timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as error:
            raise self._api_error(error, method, path) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
            reason = getattr(error, "reason", None) or type(error).__name__
            if isinstance(error, TimeoutError) or isinstance(reason, TimeoutError):
                reason = f"timed out after {timeout or self.timeout:g} s"
            raise DbtCloudTransientError(
                self._redact(f"no answer from dbt Cloud at {self.base_url} to {method} {path}: {reason}")
            ) from None
        try:
            return json.loads(payload or b"{}").get("data")
        except (ValueError, AttributeError):
            raise DbtCloudTransientError(
                f"dbt Cloud sent a body that is not JSON to {method} {path}"
            ) from None

    def _request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, object] | None = None,
        body: Mapping[str, Any] | None = None,
        retries: int | None = None,
        timeout: float | None = None,
        idempotent: bool | None = None,
    ) -> Any:
        safe_to_repeat = method == "GET" if idempotent is None else idempotent
        budget = (self.max_retries if retries is None else retries) if safe_to_repeat else 0
        attempt = 0
        while True:
            try:
                return self._send(method, path, query=query, body=body, timeout=timeout)
            except DbtCloudTransientError as error:
                if attempt >= budget:
                    raise
                self._sleep(retry_delay(error, attempt, self._rng))
                attempt += 1

    def _api_error(self, error: urllib.error.HTTPError, method: str, path: str) -> DbtCloudError:
        try:
            status_block = json.loads(error.read() or b"{}").get("status") or {}
            detail = str(status_block.get("user_message") or status_block.get("developer_message") or "")
        except (ValueError, AttributeError, OSError):
            detail = ""
        message = self._redact(
            f"dbt Cloud answered {error.code} to {method} {path}" + (f": {detail}" if detail else "")
        )
        retry_after = _retry_after(error.headers.get("Retry-After") if error.headers else None)
        if error.code in (401, 403):
            return DbtCloudAuthError(message, error.code)
        if error.code == 404:
            return DbtCloudNotFoundError(message, error.code)
        if error.code == 429:
            return DbtCloudRateLimitError(message, error.code, retry_after=retry_after)
        if error.code >= 500 or error.code == 408:
            return DbtCloudTransientError(message, error.code, retry_after=retry_after)
        return DbtCloudError(message, error.code)

    # -- endpoints -----------------------------------------------------------------------

    def get_job(self, job_id: int) -> dict[str, Any]:
        """The job's definition; raises DbtCloudNotFoundError when it is not in the account."""
        job = self._request("GET", f"/jobs/{job_id}/")
        return dict(job or {})

    def trigger_run(
        self, job_id: int, cause: str, overrides: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """POST .../jobs/{id}/run/ once. A DbtCloudTransientError means the outcome is unknown."""
        body = {"cause": cause, **(overrides or {})}
        return dict(self._request("POST", f"/jobs/{job_id}/run/", body=body) or {})

    def rerun(self, job_id: int) -> dict[str, Any]:
        """POST .../jobs/{id}/rerun/ once: retry the job's last failed run from the failing step."""
        return dict(self._request("POST", f"/jobs/{job_id}/rerun/", body={}) or {})

    def get_run(
        self, run_id: int, *, include_steps: bool = False, retries: int | None = None
    ) -> dict[str, Any]:
        """One run; with ``include_steps`` its run_steps and their logs too."""
        query = {"include_related": '["run_steps"]'} if include_steps else None
        return dict(self._request("GET", f"/runs/{run_id}/", query=query, retries=retries) or {})

    def list_runs(
        self, job_id: int, *, limit: int = 10, newer_than: int | None = None
    ) -> list[dict[str, Any]]:
        """The job's runs, newest first, each with its trigger (and so its cause)."""
        query: dict[str, object] = {
            "job_definition_id": job_id,
            "order_by": "-id",
            "limit": limit,
            "include_related": '["trigger"]',
        }
        if newer_than is not None:
            query["id__gt"] = newer_than
        runs = self._request("GET", "/runs/", query=query)
        return [dict(run) for run in runs or []]

    def cancel_run(
        self, run_id: int, *, retries: int | None = None, timeout: float | None = None
    ) -> dict[str, Any]:
        """Ask dbt Cloud to cancel a run; it stops asynchronously. Safe to repeat."""
        path = f"/runs/{run_id}/cancel/"
        data = self._request("POST", path, retries=retries, timeout=timeout, idempotent=True)
        return dict(data or {})


# --- following a run ------------------------------------------------------------------


@dataclass(frozen=True)
class PollPolicy:
    """How often to ask about a run: every ``first`` seconds at the start, then a ``fraction``
    of the time elapsed, never more than ``cap``.

    So the end of a run is seen within max(1 s, 10% of its duration) and never more than 15 s
    late: a 10 s run is seen within a second (the guide's fixed 5 s loop: up to 5 s), while a
    one-hour run costs about 270 requests instead of the guide's 720. Fifty runners started
    together peak near 1,500 requests/min, well under dbt Cloud's 5,000/min per account.
    """

    first: float = 1.0
    fraction: float = 0.1
    cap: float = 15.0
    jitter: float = 0.1  # +/- share, so many runners started together drift apart

    def interval(self, elapsed: float, rng: random.Random) -> float:
        base = min(self.cap, max(self.first, elapsed * self.fraction))
        return base * (1 + self.jitter * (2 * rng.random() - 1))


@dataclass(frozen=True)
class RunResult:
    """What a finished (or, with wait=False, started) run looks like to the caller."""

    run_id: int
    job_id: int
    status: int  # a documented code; an undocumented final one is replaced by the run's outcome
    status_humanized: str
    url: str
    elapsed_seconds: float
    how: str  # "triggered", "reused" (a run already in progress) or "rerun" (from failure)

    @property
    def succeeded(self) -> bool:
        return self.status == DbtRunStatus.SUCCESS


def format_elapsed(seconds: float) -> str:
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def describe_status(run: Mapping[str, Any]) -> str:
    code = run.get("status")
    known = DbtRunStatus.of(code)
    humanized = run.get("status_humanized")
    if known is None:
        return f"unknown status {code!r}" + (f" ({humanized})" if humanized else "")
    return str(humanized or known.name.title())


def run_outcome(run: Mapping[str, Any]) -> DbtRunStatus | None:
    """SUCCESS, ERROR or CANCELLED once the run is over, else None.

    An unknown code is judged by the run's `is_complete`/`is_success`/... flags, so a status
    dbt Cloud adds later neither crashes the runner nor ends the wait early.
    """
    known = DbtRunStatus.of(run.get("status"))
    if known is not None:
        return known if known.is_terminal else None
    if not run.get("is_complete"):
        return None
    if run.get("is_success"):
        return DbtRunStatus.SUCCESS
    if run.get("is_cancelled"):
        return DbtRunStatus.CANCELLED
    return DbtRunStatus.ERROR


def _run_id(run: Mapping[str, Any]) -> int:
    return int(run["id"])


def _run_url(run: Mapping[str, Any], client: DbtCloudClient) -> str:
    href = run.get("href")
    if href:
        return str(href)
    project = run.get("project_id")
    if project:
        return f"{client.base_url}/deploy/{client.account_id}/projects/{project}/runs/{run.get('id')}/"
    return f"{client.base_url}/api/v2/accounts/{client.account_id}/runs/{run.get('id')}/"


def _failure_details(run: Mapping[str, Any], redact: Callable[[str], str]) -> tuple[str | None, str]:
    """The failing step's name and the tail of its logs."""
    steps = [step for step in run.get("run_steps") or [] if isinstance(step, Mapping)]
    failing = [step for step in steps if step.get("status") == DbtRunStatus.ERROR]
    step = failing[-1] if failing else (steps[-1] if steps else None)
    if step is None:
        return None, ""
    logs = str(step.get("logs") or step.get("truncated_debug_logs") or "")
    lines = logs.rstrip().splitlines()[-LOG_TAIL_LINES:]
    tail = "\n".join(lines)[-LOG_TAIL_CHARS:]
    return (str(step.get("name")) if step.get("name") else None), redact(tail)


LOG_TAIL_LINES = 40
LOG_TAIL_CHARS = 6000


class _Follower:
    """Runs one invocation: start (or find) the dbt run, wait for it, report it."""

    def __init__(
        self,
        client: DbtCloudClient,
        settings: RunSettings,
        *,
        clock: Clock,
        sleep: Sleep,
        out: Output,
        rng: random.Random,
        policy: PollPolicy,
    ) -> None:
        self.client = client
        self.settings = settings
        self.clock = clock
        self.sleep = sleep
        self.out = out
        self.rng = rng
        self.policy = policy
        self.started = clock()
        self.deadline = self.started + settings.timeout_seconds

    def say(self, message: str) -> None:
        self.out(f"[{format_elapsed(self.clock() - self.started):>8}] {message}")

    # -- starting -------------------------------------------------------------------

    def start(self, cause: str, marker: str) -> tuple[dict[str, Any], str]:
        settings = self.settings
        if settings.reuse_running or settings.rerun_failed:
            latest = self.client.list_runs(settings.job_id, limit=10)
            if settings.reuse_running:
                running = [run for run in latest if DbtRunStatus.of(run.get("status")) in _IN_PROGRESS]
                if running:
                    self.say(
                        f"run {running[0]['id']} of dbt job {settings.job_id} is in progress: following it"
                    )
                    return running[0], "reused"
            finished = [run for run in latest if run_outcome(run) is not None]
            if settings.rerun_failed and finished and run_outcome(finished[0]) == DbtRunStatus.ERROR:
                rerun = self._rerun(finished[0], newest=max(_run_id(run) for run in latest))
                if rerun is not None:
                    return rerun, "rerun"
        return self._trigger(cause, marker), "triggered"

    def _trigger(self, cause: str, marker: str) -> dict[str, Any]:
        """Trigger once; when the outcome is unknown, look for this attempt's marker before trying again."""
        for attempt in range(TRIGGER_ATTEMPTS):
            try:
                return self.client.trigger_run(self.settings.job_id, cause, self.settings.overrides)
            except DbtCloudTransientError as error:
                self.say(f"trigger not confirmed ({error}); checking whether the run was created")
                landed = self._await_landed(
                    lambda: self._marked_run(marker), first_wait=retry_delay(error, attempt, self.rng)
                )
                if landed is not None:
                    self.say(f"the trigger did land: run {landed['id']}")
                    return landed
        raise DbtCloudError(
            f"could not trigger dbt job {self.settings.job_id} in {TRIGGER_ATTEMPTS} attempts"
        )

    def _marked_run(self, marker: str) -> dict[str, Any] | None:
        """The newest run of the job whose cause carries ``marker``, if any."""
        for run in self.client.list_runs(self.settings.job_id, limit=20):
            if marker in str((run.get("trigger") or {}).get("cause") or ""):
                return run
        return None

    def _await_landed(
        self, find: Callable[[], dict[str, Any] | None], *, first_wait: float
    ) -> dict[str, Any] | None:
        """Look for the run an unconfirmed POST may have started, several times over
        LOST_TRIGGER_WINDOW_SECONDS before giving up on it: dbt Cloud may commit it a little
        later, and sending the POST again too soon would start the job twice."""
        waited, wait = 0.0, first_wait
        while True:
            self.sleep(wait)
            waited += wait
            run = find()
            if run is not None or waited >= LOST_TRIGGER_WINDOW_SECONDS:
                return run
            wait = min(wait * 2, LOST_TRIGGER_WINDOW_SECONDS - waited)

    def _rerun(self, failed: Mapping[str, Any], *, newest: int) -> dict[str, Any] | None:
        """Rerun the job from its failed step; None when dbt Cloud refuses (the caller then
        triggers the job from the start).

        dbt refuses a failed run it cannot resume (the spec's RetryNotSupportedReasonEnum: a
        command `dbt retry` does not support, dbt older than 1.6, no run results, ...). A rerun
        carries no cause of ours, so one whose answer was lost is found as the job's first run
        newer than ``newest`` (the newest id seen before the POST), preferring one whose trigger
        says `cause_category` "rerun" (an enum value of the spec). `retrying_run_id` is not used:
        the spec names it but does not say which run it points to.
        """
        failed_id = _run_id(failed)
        job_id = self.settings.job_id
        self.say(f"the last run {failed_id} of dbt job {job_id} failed: rerunning from the failure")

        def landed_rerun() -> dict[str, Any] | None:
            newer = self.client.list_runs(job_id, limit=20, newer_than=newest)
            reruns = [run for run in newer if (run.get("trigger") or {}).get("cause_category") == "rerun"]
            return min(reruns or newer, key=_run_id, default=None)

        for attempt in range(TRIGGER_ATTEMPTS):
            try:
                return self.client.rerun(job_id)
            except DbtCloudTransientError as error:
                self.say(f"rerun not confirmed ({error}); checking whether it started")
                landed = self._await_landed(landed_rerun, first_wait=retry_delay(error, attempt, self.rng))
                if landed is not None:
                    self.say(f"the rerun did land: run {landed['id']}")
                    return landed
            except (DbtCloudAuthError, DbtCloudNotFoundError):
                raise
            except DbtCloudError as error:
                if error.status is None or not 400 <= error.status < 500:
                    raise
                reason = failed.get("retry_not_supported_reason")
                self.say(
                    f"dbt Cloud will not rerun run {failed_id} from the failure ({error}"
                    + (f"; reason {reason}" if reason and str(reason) not in str(error) else "")
                    + "): triggering the job from the start instead"
                )
                return None
        raise DbtCloudError(f"could not rerun dbt job {job_id} in {TRIGGER_ATTEMPTS} attempts")

    # -- waiting --------------------------------------------------------------------

    def follow(self, run: dict[str, Any]) -> dict[str, Any]:
        """Poll until the run is over or the deadline passes; one line per status change."""
        run_id = _run_id(run)
        last_seen: str | None = None
        failures = 0
        interval = self.policy.interval(0.0, self.rng)
        while True:
            seen = describe_status(run)
            if seen != last_seen:
                self.say(f"dbt run {run_id}: {seen}")
                last_seen = seen
            if run_outcome(run) is not None:
                return run
            now = self.clock()
            if now >= self.deadline:
                raise _DeadlinePassed(run)
            self.sleep(max(0.0, min(interval, self.deadline - now)))
            try:
                run = self.client.get_run(run_id, retries=0)
            except DbtCloudTransientError as error:
                if failures == 0:
                    self.say(f"dbt Cloud did not answer ({error}); still waiting")
                interval = retry_delay(error, failures, self.rng)
                failures += 1
                continue
            if failures:
                self.say(f"dbt Cloud answers again after {failures} failed poll(s)")
                failures = 0
            elapsed = self.clock() - self.started
            interval = self.policy.interval(elapsed, self.rng)

    def cancel_marked(self, marker: str) -> None:
        """Interrupted while triggering: cancel the run if the trigger landed after all."""
        try:
            run = self._marked_run(marker)
        except DbtCloudError as error:
            self.say(f"interrupted while triggering; could not check for a run to cancel: {error}")
            return
        if run is not None:
            self.say(f"interrupted while triggering: cancelling dbt run {run['id']}")
            self.cancel(_run_id(run), wait_seconds=0.0)

    def cancel(self, run_id: int, *, wait_seconds: float) -> dict[str, Any] | None:
        """Ask dbt Cloud to cancel, then wait up to ``wait_seconds`` to see the run over.

        The answer may already be final: a queued run is cancelled on the spot (status 30 and
        `finished_at` in the answer), and a run that ended meanwhile answers its final state,
        which is returned as it is (success included): the caller decides what it means.
        """
        try:
            run = self.client.cancel_run(run_id, retries=2, timeout=10.0)
        except DbtCloudError as error:
            self.say(f"could not cancel dbt run {run_id}: {error}")
            return None
        outcome = run_outcome(run)
        if outcome == DbtRunStatus.CANCELLED:
            self.say(f"dbt run {run_id} is cancelled")
        elif outcome is not None:
            self.say(f"dbt run {run_id} had already ended: {describe_status(run)}")
        else:
            self.say(f"asked dbt Cloud to cancel run {run_id}")
        give_up = self.clock() + wait_seconds
        while run_outcome(run) is None and self.clock() < give_up:
            self.sleep(min(2.0, max(0.0, give_up - self.clock())))
            try:
                run = self.client.get_run(run_id, retries=0)
            except DbtCloudTransientError:
                continue
        return run


_IN_PROGRESS = (DbtRunStatus.QUEUED, DbtRunStatus.STARTING, DbtRunStatus.RUNNING)
TRIGGER_ATTEMPTS = 5
#: How long an unconfirmed trigger is looked for before it is sent again.
LOST_TRIGGER_WINDOW_SECONDS = 15.0
CANCEL_WAIT_SECONDS = 60.0


class _DeadlinePassed(Exception):
    def __init__(self, run: dict[str, Any]) -> None:
        super().__init__("deadline passed")
        self.run = run


def new_marker() -> str:
    """A unique tag for one invocation, carried in the cause so a lost trigger can be found."""
    return f"[dbtwf:{uuid.uuid4().hex[:12]}]"


def build_cause(cause: str | None, context: Mapping[str, str], marker: str) -> str:
    """Where the run came from, at most 255 characters, always ending with the marker."""
    parts = [cause or ("Triggered by Databricks Workflows" if context else "Triggered by the dbtwf runner")]
    where = []
    if context.get("job_id"):
        where.append(f"job {context['job_id']}")
    if context.get("run_id"):
        where.append(f"run {context['run_id']}")
    if context.get("task_key"):
        where.append(f"task {context['task_key']}")
    if where:
        parts.append("Databricks " + " ".join(where))
    if context.get("workspace_url"):
        parts.append(context["workspace_url"])
    text = " | ".join(part.strip() for part in parts if part.strip())
    room = CAUSE_MAX_CHARS - len(marker) - 1
    return f"{text[:room].rstrip()} {marker}"


@contextmanager
def _sigterm_raises_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt while a run is followed, so it gets cancelled.

    Signal handlers can only be set on the main thread; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt("SIGTERM")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except (ValueError, OSError):
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _print(line: str) -> None:
    print(line, flush=True)


def run_dbt_job(
    settings: RunSettings,
    token: str,
    *,
    clock: Clock = time.monotonic,
    sleep: Sleep = time.sleep,
    out: Output = _print,
    task_values: TaskValueSetter | None = None,
    context: Mapping[str, str] | None = None,
    rng: random.Random | None = None,
    policy: PollPolicy | None = None,
    request_timeout: float = REQUEST_TIMEOUT_SECONDS,
) -> RunResult:
    """Trigger (or reuse, or rerun) the dbt job and, unless ``settings.wait`` is off, follow it.

    Returns when the run succeeded. Raises DbtRunFailedError, DbtRunCancelledError or
    DbtRunTimeoutError when it did not, DbtCloudError when dbt Cloud could not be used,
    and re-raises KeyboardInterrupt (SIGTERM too) after asking dbt Cloud to cancel the run.
    """
    token = check_token(token, "set DBT_CLOUD_API_TOKEN or store it in the secret scope")
    rng = rng or random.Random()
    client = DbtCloudClient(
        settings.host, settings.account_id, token, timeout=request_timeout, sleep=sleep, rng=rng
    )
    follower = _Follower(
        client, settings, clock=clock, sleep=sleep, out=out, rng=rng, policy=policy or PollPolicy()
    )
    publish = _publisher(task_values, out)
    marker = new_marker()
    cause = build_cause(settings.cause, context or {}, marker)

    with _sigterm_raises_interrupt():
        job = client.get_job(settings.job_id)
        name = job.get("name") or "unnamed"
        follower.say(f"dbt job {settings.job_id} ({name}) in account {settings.account_id}")
        try:
            run, how = follower.start(cause, marker)
        except KeyboardInterrupt:
            follower.cancel_marked(marker)
            raise
        run_id = _run_id(run)
        url = _run_url(run, client)
        follower.say(f"dbt run {run_id} {how}: {url}")
        publish(run_id, url, describe_status(run))
        if not settings.wait:
            return _result(run, settings, url, follower, how)
        try:
            final = follower.follow(run)
        except KeyboardInterrupt:
            follower.say(f"interrupted: cancelling dbt run {run_id}")
            answer = follower.cancel(run_id, wait_seconds=0.0)
            ended = answer is not None and run_outcome(answer) is not None
            publish(run_id, url, describe_status(answer) if answer is not None and ended else "Cancelled")
            raise
        except _DeadlinePassed as passed:
            limit = format_elapsed(settings.timeout_seconds)
            follower.say(f"timed out after {limit}: cancelling dbt run {run_id}")
            seen = follower.cancel(run_id, wait_seconds=CANCEL_WAIT_SECONDS) or passed.run
            if run_outcome(seen) not in (DbtRunStatus.SUCCESS, DbtRunStatus.ERROR):
                publish(run_id, url, describe_status(seen))
                raise DbtRunTimeoutError(
                    f"dbt run {run_id} did not finish within {limit} (timeout_seconds); "
                    f"it was cancelled. See {url}",
                    run_id=run_id,
                    run_url=url,
                    status=seen.get("status"),
                ) from None
            # It ended on its own while the cancel was on its way: report what really happened.
            follower.say(f"dbt run {run_id} ended before the cancel could stop it")
            final = seen

    outcome = run_outcome(final)
    publish(run_id, url, describe_status(final))
    if outcome == DbtRunStatus.SUCCESS:
        result = _result(final, settings, url, follower, how)
        follower.say(f"dbt run {run_id} succeeded in {format_elapsed(result.elapsed_seconds)}")
        return result
    if outcome == DbtRunStatus.CANCELLED:
        raise DbtRunCancelledError(
            f"dbt run {run_id} was cancelled: {final.get('status_message') or 'no reason given'}. See {url}",
            run_id=run_id,
            run_url=url,
            status=final.get("status"),
        )
    try:
        detailed = client.get_run(run_id, include_steps=True)
    except DbtCloudError as error:
        detailed = dict(final)
        follower.say(f"could not fetch the step logs: {error}")
    step_name, tail = _failure_details(detailed, client._redact)
    message = f"dbt run {run_id} failed" + (f" at step {step_name!r}" if step_name else "")
    if final.get("status_message"):
        message += f": {client._redact(str(final['status_message']))}"
    message += f"\nRun: {url}"
    if tail:
        message += f"\nLast lines of the step's log:\n{tail}"
    raise DbtRunFailedError(
        message, run_id=run_id, run_url=url, status=final.get("status"), step_name=step_name, logs_tail=tail
    )


def _result(
    run: Mapping[str, Any], settings: RunSettings, url: str, follower: _Follower, how: str
) -> RunResult:
    code = run.get("status")
    known = DbtRunStatus.of(code)
    outcome = run_outcome(run)
    if known is None and outcome is not None:
        code = int(outcome)  # an undocumented code, judged by the run's flags
    return RunResult(
        run_id=_run_id(run),
        job_id=settings.job_id,
        status=int(code) if isinstance(code, int) else 0,
        status_humanized=describe_status(run),
        url=url,
        elapsed_seconds=follower.clock() - follower.started,
        how=how,
    )


def _publisher(task_values: TaskValueSetter | None, out: Output) -> Callable[[int, str, str], None]:
    """Hand the run to downstream tasks; a failure to do so is reported, never fatal."""

    def publish(run_id: int, url: str, status: str) -> None:
        if task_values is None:
            return
        try:
            task_values("dbt_run_id", run_id)
            task_values("dbt_run_url", url)
            task_values("dbt_run_status", status)
        except Exception as error:  # noqa: BLE001 - a notebook outside a job may refuse; not our failure
            out(f"could not publish task values: {type(error).__name__}")

    return publish


# --- in a Databricks notebook ----------------------------------------------------------

# The notebook's widgets, in the order they are shown; job_id comes first.
NOTEBOOK_WIDGETS = (
    "job_id",
    "timeout_seconds",
    "cause",
    "wait",
    "reuse_running",
    "rerun_failed",
    *OVERRIDE_NAMES,
)
#: Where the token goes and which secret is read: constants of the notebook, written into it at
#: upload and never widgets. A run passing a parameter of one of these names is refused before
#: anything is read or sent: whoever may run the job with other parameters must not be able to
#: send the token (or any secret the job can read) to another host.
PINNED_PARAMETERS = ("dbt_cloud_host", "dbt_cloud_account_id", "secret_scope", "secret_key")


def databricks_context(dbutils: Any) -> dict[str, str]:
    """Job id, run id, task key and workspace URL of the current notebook run, when it can tell.

    Reads the notebook context through `dbutils.notebook.entry_point`, which only exists on a
    real Databricks cluster; anywhere else the answer is simply empty.
    """
    try:
        raw = dbutils.notebook.entry_point.getDbutils().notebook().getContext().toJson()
        data = json.loads(str(raw))
        tags = dict(data.get("tags") or {})
        extra = dict(data.get("extraContext") or {})
    except Exception:  # noqa: BLE001 - optional and guarded: any failure means "not known"
        return {}
    context: dict[str, str] = {}
    job_id = tags.get("jobId")
    run_id = tags.get("multitaskParentRunId") or tags.get("jobRunId") or tags.get("runId")
    host = tags.get("browserHostName") or extra.get("api_url")
    if job_id:
        context["job_id"] = str(job_id)
    if run_id:
        context["run_id"] = str(run_id)
    if tags.get("taskKey"):
        context["task_key"] = str(tags["taskKey"])
    if host:
        host = str(host)
        context["workspace_url"] = host if "://" in host else f"https://{host}"
    return context


def _widget(dbutils: Any, name: str) -> str:
    try:
        return str(dbutils.widgets.get(name) or "")
    except Exception:  # noqa: BLE001 - an undeclared widget raises; treat it as empty
        return ""


def _passed(dbutils: Any, name: str) -> bool:
    """Whether the run has a widget or parameter of that name. On Databricks, a job's or task's
    parameters are readable with `dbutils.widgets.get` even when the notebook declares no such
    widget; only a name that is neither raises."""
    try:
        dbutils.widgets.get(name)
    except Exception:  # noqa: BLE001 - py4j's InputWidgetNotDefined and friends: not passed
        return False
    return True


def refuse_pinned_parameters(dbutils: Any) -> None:
    """RunnerInputError when the run passes a parameter naming the host, account or secret."""
    passed = [name for name in PINNED_PARAMETERS if _passed(dbutils, name)]
    if passed:
        raise RunnerInputError(
            f"this run passes the parameter(s) {', '.join(passed)}, which the runner refuses: the dbt "
            "Cloud host, account id, secret scope and key are fixed in this notebook when `dbtwf apply` "
            "uploads it, so no run parameter can send the token elsewhere. Nothing was read or sent. "
            "Remove these parameters from the job, the task or the run; to change them, edit the "
            "environment in dbtwf.toml and run `dbtwf apply`"
        )


def settings_from_widgets(
    get: Callable[[str], str], *, dbt_cloud_host: str, dbt_cloud_account_id: object
) -> RunSettings:
    """RunSettings from the notebook's widgets, for the host and account fixed in the notebook.

    A dbt job URL in `job_id` is accepted only when it names that host and account.
    """
    account_id = parse_int(dbt_cloud_account_id, "the dbt Cloud account id")
    job_id: object = get("job_id")
    job_text = str(job_id).strip()
    if job_text.startswith(("http://", "https://")):
        ref = parse_job_url(job_text)
        if base_url(ref.host) != base_url(dbt_cloud_host) or ref.account_id != account_id:
            raise RunnerInputError(
                f"job_id is the URL of a job of account {ref.account_id} on {ref.host}, but this notebook "
                f"runs jobs of account {account_id} on {dbt_cloud_host} only; set job_id to the job's "
                "number (after /jobs/ in its URL)"
            )
        job_id = ref.job_id
    return RunSettings.build(
        host=dbt_cloud_host,
        account_id=account_id,
        job_id=job_id,
        timeout_seconds=get("timeout_seconds"),
        cause=get("cause"),
        overrides={name: get(name) for name in OVERRIDE_NAMES},
        wait=get("wait") or True,
        reuse_running=get("reuse_running") or False,
        rerun_failed=get("rerun_failed") or False,
    )


def run_from_notebook(
    dbutils: Any,
    *,
    dbt_cloud_host: str,
    dbt_cloud_account_id: int,
    secret_scope: str,
    secret_key: str,
    clock: Clock = time.monotonic,
    sleep: Sleep = time.sleep,
    out: Output = _print,
) -> RunResult:
    """The notebook's entry point: widgets in, dbt run followed, task values out, and the dbt
    run as the notebook's exit value when `dbutils.notebook.exit` exists (the Jobs API
    shows a notebook's result only through it).

    The host, account, scope and key are the notebook's constants (its last cell passes them as
    literals). Refused before the secret is read or any request is sent: a run parameter named
    like one of them, and an input that is not valid.
    """
    refuse_pinned_parameters(dbutils)
    scope, key = str(secret_scope).strip(), str(secret_key).strip()
    if not scope or not key:
        raise RunnerInputError("the notebook names no secret scope and key for the token; run `dbtwf apply`")
    settings = settings_from_widgets(
        lambda name: _widget(dbutils, name),
        dbt_cloud_host=dbt_cloud_host,
        dbt_cloud_account_id=dbt_cloud_account_id,
    )
    try:
        token = dbutils.secrets.get(scope=scope, key=key)
    except Exception as error:  # noqa: BLE001 - dbutils raises its own types; name the scope/key, not the value
        raise RunnerInputError(
            f"cannot read the dbt Cloud token from secret scope {scope!r}, key {key!r} "
            f"({type(error).__name__}); store it with `dbtwf apply` or `databricks secrets put-secret`"
        ) from None
    token = check_token(token, f"the secret {scope}/{key} is empty")

    def set_task_value(name: str, value: Any) -> None:
        dbutils.jobs.taskValues.set(key=name, value=value)

    task_values = set_task_value if _has_task_values(dbutils) else None
    result = run_dbt_job(
        settings,
        token,
        clock=clock,
        sleep=sleep,
        out=out,
        task_values=task_values,
        context=databricks_context(dbutils),
    )
    exit_notebook = _notebook_exit(dbutils)
    if exit_notebook is not None:
        # Reached only on success (a failed run raised above): exit marks the task SUCCEEDED.
        # On Databricks it ends the notebook here, by raising, so it is deliberately not
        # called inside a try block; `dbtwf run` reads the value from runs/get-output.
        exit_notebook(notebook_exit_value(result))
    return result


def notebook_exit_value(result: RunResult) -> str:
    """The task's result for the Jobs API (`runs/get-output` notebook_output.result): the
    same names as the task values, a few hundred bytes against Databricks' 5 MB limit."""
    return json.dumps(
        {"dbt_run_id": result.run_id, "dbt_run_url": result.url, "dbt_run_status": result.status_humanized}
    )


def _notebook_exit(dbutils: Any) -> Callable[[str], object] | None:
    try:
        exit_notebook = dbutils.notebook.exit
    except Exception:  # noqa: BLE001 - optional: a dbutils without notebook utilities just skips it
        return None
    return exit_notebook if callable(exit_notebook) else None


def _has_task_values(dbutils: Any) -> bool:
    try:
        return callable(dbutils.jobs.taskValues.set)
    except Exception:  # noqa: BLE001 - older runtimes have no jobs utility
        return False
