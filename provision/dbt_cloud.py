"""dbt Cloud as provisioning sees it: a GET of a job, before anything is written.

The client is the runner's own (`runner.core`), so the notebook and the CLI read hosts,
URLs and errors the same way; this module only turns its errors into the project's family.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from provision.errors import AuthError, RemoteError, UnknownNameError, UsageError
from provision.token import READ_TOKEN_HINT
from runner.core import (
    DbtCloudAuthError,
    DbtCloudClient,
    DbtCloudError,
    DbtCloudNotFoundError,
    RunnerInputError,
    check_token,
)

if TYPE_CHECKING:
    from provision.model import Environment


def fetch_dbt_job(
    host: str, account_id: int, job_id: int, token: str, *, timeout: float = 30.0
) -> dict[str, Any]:
    """The job's definition; proves the token works and the job exists in the account."""
    try:
        check_token(token, "it came from DBT_CLOUD_API_TOKEN or the keyring")
    except RunnerInputError as error:  # never sent: http.client's refusal would quote it whole
        raise UsageError(
            str(error),
            f"copy the token again from dbt Cloud: `dbtwf token set`, or `{READ_TOKEN_HINT}`",
        ) from None
    try:
        client = DbtCloudClient(host, account_id, token, timeout=timeout)
    except RunnerInputError as error:  # the host rule (https, or http to loopback): nothing sent
        raise UsageError(str(error), "fix dbt_cloud_host in dbtwf.toml (or DBT_CLOUD_HOST)") from None
    try:
        return client.get_job(job_id)
    except DbtCloudAuthError as error:
        raise AuthError(
            f"dbt Cloud rejected the API token ({error})",
            "set a valid token in DBT_CLOUD_API_TOKEN or with `dbtwf token set`; it needs access to "
            f"account {account_id}'s jobs",
        ) from None
    except DbtCloudNotFoundError:
        raise UnknownNameError(
            f"dbt job {job_id} not found in account {account_id} on {host}",
            "copy the job id or URL from dbt Cloud's Deploy > Jobs page",
        ) from None
    except DbtCloudError as error:
        raise RemoteError(str(error), "check the dbt Cloud host and try again") from None


def verify_token(env: Environment, token: str, *, verified: Iterable[int] = ()) -> None:
    """Prove the token on each of the environment's dbt jobs (GET job) before it is stored.

    A token dbt Cloud rejects must never overwrite the secret the runner reads: the next
    run would fail with 401. ``verified`` names jobs already fetched with this token.
    """
    done = set(verified)
    for task in env.dbt_jobs:
        if task.job_id not in done:
            fetch_dbt_job(env.dbt_cloud_host, env.dbt_cloud_account_id, task.job_id, token)
            done.add(task.job_id)
