"""Trigger a dbt Cloud job and follow it to the end: standard library only.

This one module is the whole runner: `runner.notebook` ships it verbatim as the Databricks
notebook, `python -m runner` wraps it for a shell, and `provision` reuses its client to
validate a token and a job before provisioning anything.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

# --- inputs -------------------------------------------------------------------------


class RunnerInputError(ValueError):
    """Bad input, found before any request is sent (exit code 2)."""


class DbtCloudError(RuntimeError):
    """dbt Cloud refused or failed a request. Never carries the token, not even partly."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class DbtCloudAuthError(DbtCloudError):
    """The token was rejected (401) or lacks permission (403)."""


class DbtCloudNotFoundError(DbtCloudError):
    """The account, job or run does not exist (404)."""


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
    if not text.isdigit() or int(text) <= 0:
        raise RunnerInputError(f"{what} must be a positive integer, got {text!r}")
    return int(text)


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
            f"not a dbt job URL: {url!r}; expected a path like /deploy/<account>/projects/<project>/jobs/<job>"
        )
    host = parts.netloc if parts.scheme == "https" else f"{parts.scheme}://{parts.netloc}"
    return JobRef(
        host=host,
        account_id=parse_int(match["account"], "the account id in the dbt job URL"),
        project_id=parse_int(match["project"], "the project id in the dbt job URL"),
        job_id=parse_int(match["job"], "the job id in the dbt job URL"),
    )


def base_url(host: str) -> str:
    """The API root for a host: a bare host means https; a URL with a scheme is used as is."""
    text = host.strip().rstrip("/")
    if not text:
        raise RunnerInputError("the dbt Cloud host is empty; give it as ACCOUNT_PREFIX.us1.dbt.com or a URL")
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise RunnerInputError(f"the dbt Cloud host {host!r} is not an http(s) URL")
        return f"{parts.scheme}://{parts.netloc}{parts.path}"
    if not re.fullmatch(r"[A-Za-z0-9.-]+(:\d+)?", text):
        raise RunnerInputError(f"the dbt Cloud host {host!r} is not a host name")
    return f"https://{text}"


# --- the client -----------------------------------------------------------------------


class DbtCloudClient:
    """A small client for the Administrative API v2. Every request has a timeout."""

    def __init__(self, host: str, account_id: int, token: str, *, timeout: float = 30.0) -> None:
        self.base_url = base_url(host)
        self.account_id = account_id
        self._token = token
        self.timeout = timeout

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        url = f"{self.base_url}/api/v2/accounts/{self.account_id}{path}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Authorization", f"Token {self._token}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"{}").get("data")
        except urllib.error.HTTPError as error:
            raise _api_error(error, method, path) from None
        except (urllib.error.URLError, TimeoutError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise DbtCloudError(f"cannot reach dbt Cloud at {self.base_url}: {reason}") from None

    def get_job(self, job_id: int) -> dict[str, Any]:
        """The job's definition; raises DbtCloudNotFoundError when it is not in the account."""
        job = self._request("GET", f"/jobs/{job_id}/")
        return dict(job or {})


def _api_error(error: urllib.error.HTTPError, method: str, path: str) -> DbtCloudError:
    try:
        status_block = json.loads(error.read() or b"{}").get("status") or {}
        detail = status_block.get("user_message") or status_block.get("developer_message") or ""
    except ValueError:
        detail = ""
    message = f"dbt Cloud answered {error.code} to {method} {path}" + (f": {detail}" if detail else "")
    if error.code in (401, 403):
        return DbtCloudAuthError(message, error.code)
    if error.code == 404:
        return DbtCloudNotFoundError(message, error.code)
    return DbtCloudError(message, error.code)
