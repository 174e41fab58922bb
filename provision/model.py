"""The resolved settings of one environment: what `plan` turns into desired state.

`config.py` reads dbtwf.toml (shared `[defaults]` merged under each `[environments.NAME]`)
into these frozen dataclasses, already validated; everything below the CLI works on them.
"""

from __future__ import annotations

import dataclasses
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

MANAGED_BY_TAG = "managed-by"
MANAGED_BY_VALUE = "dbtwf"
ENVIRONMENT_TAG = "dbtwf-env"

#: A notebook path starting with this lives in the home folder of the identity that deploys
#: it, ``/Users/<user name>``: only that identity and workspace admins can edit it there,
#: where everything under /Shared can be edited by every workspace user.
HOME_PREFIX = "~/"


def default_notebook_path(env_name: str) -> str:
    """Where the runner notebook goes when nobody says: the deploying identity's home.
    The state record and the lock live beside it. The one source of this default."""
    return f"{HOME_PREFIX}.dbtwf/{env_name}/run_dbt_cloud_job"


#: The two backends a task can run a dbt job with (``Environment.task_type``).
TaskType = Literal["notebook", "dbt_platform"]
NOTEBOOK: TaskType = "notebook"
DBT_PLATFORM: TaskType = "dbt_platform"
TASK_TYPES: tuple[TaskType, ...] = (NOTEBOOK, DBT_PLATFORM)

DEFAULT_SECRET_KEY = "dbt-cloud-api-token"  # noqa: S105 - a key name, not a secret
DEFAULT_RUN_TIMEOUT_SECONDS = 4 * 3600


def environment_defaults(env_name: str) -> dict[str, Any]:
    """What an environment gets for each key that neither it nor `[defaults]` sets, by the
    file's key names. The one source of these defaults: the config reader, the config writer
    (which leaves a default value out of the file) and ``Environment`` itself use it."""
    return {
        "secret_scope": f"dbtwf-{env_name}",
        "secret_key": DEFAULT_SECRET_KEY,
        "notebook_path": default_notebook_path(env_name),
        "workflow_name": f"dbt Cloud jobs ({env_name})",
        "run_timeout_seconds": DEFAULT_RUN_TIMEOUT_SECONDS,
        "task_type": NOTEBOOK,
    }


def home_folder(user_name: str) -> str:
    """A user's (or service principal's, by application id) home folder."""
    return f"/Users/{user_name}"


def default_task_key(dbt_job_id: int) -> str:
    """The task key of a dbt job nobody named, `dbt_job_<id>`: what `onboard` writes into
    dbt_jobs and what `add-task` adds without --task-key. The one source of this default."""
    return f"dbt_job_{dbt_job_id}"


@dataclass(frozen=True)
class DbtJobTask:
    """One dbt Cloud job run by one notebook task of the workflow."""

    task_key: str
    job_id: int
    depends_on: tuple[str, ...] = ()


@dataclass(frozen=True)
class Schedule:
    quartz_cron: str
    timezone: str = "UTC"
    paused: bool = False


@dataclass(frozen=True)
class Compute:
    """Where the notebook task runs. Serverless unless a cluster is named or specified."""

    kind: Literal["serverless", "existing_cluster", "job_cluster"] = "serverless"
    existing_cluster_id: str | None = None
    #: A `new_cluster` spec (the Jobs API's ClusterSpec as a dict) for kind == "job_cluster".
    new_cluster: dict[str, Any] | None = None
    job_cluster_key: str = "dbtwf_cluster"


@dataclass(frozen=True)
class Environment:
    name: str
    dbt_cloud_host: str  # bare host (https implied) or a URL with a scheme, used as is
    dbt_cloud_account_id: int
    dbt_jobs: tuple[DbtJobTask, ...]
    databricks_profile: str | None = None  # None: the SDK's unified auth from the environment
    #: The workspace this environment must act on (normalised, see ``normalize_host``); any
    #: command refuses when the credentials resolve to another one. None: not pinned.
    databricks_host: str | None = None
    #: Empty: ``environment_defaults(name)``'s, as for notebook_path and workflow_name.
    secret_scope: str = ""
    secret_key: str = DEFAULT_SECRET_KEY
    #: Absolute, or under the deploying identity's home (``~/...``, see ``resolved``).
    notebook_path: str = ""
    workflow_name: str = ""
    schedule: Schedule | None = None
    compute: Compute = field(default_factory=Compute)
    failure_emails: tuple[str, ...] = ()
    #: How long the runner waits for a dbt run before cancelling it and failing.
    run_timeout_seconds: int = DEFAULT_RUN_TIMEOUT_SECONDS
    #: Principals (users, groups, service principals) given READ on the secret scope.
    scope_readers: tuple[str, ...] = ()
    #: What runs each dbt job: "notebook" (the runner notebook, reading the token from the
    #: secret) or "dbt_platform" (Databricks' dbt platform task, Beta: no notebook, no secret).
    task_type: TaskType = "notebook"
    #: The Unity Catalog connection a dbt_platform task authenticates to dbt with (required
    #: for task_type "dbt_platform"; dbtwf never creates it).
    dbt_platform_connection: str | None = None

    def __post_init__(self) -> None:
        defaults = environment_defaults(self.name)
        for key in ("secret_scope", "notebook_path", "workflow_name"):
            if not getattr(self, key):
                object.__setattr__(self, key, defaults[key])

    @property
    def uses_notebook(self) -> bool:
        """Whether the tasks run the runner notebook (so a scope, secret and notebook are needed)."""
        return self.task_type == NOTEBOOK

    @property
    def in_home(self) -> bool:
        """Whether the notebook path is relative to the deploying identity's home (``~/``)."""
        return self.notebook_path.startswith(HOME_PREFIX)

    def resolved(self, user_name: str) -> Environment:
        """The environment with ``~`` replaced by ``user_name``'s home folder. Nothing may
        reach the workspace before this: ``~`` means nothing to Databricks."""
        if not self.in_home:
            return self
        path = home_folder(user_name) + "/" + self.notebook_path[len(HOME_PREFIX) :]
        return dataclasses.replace(self, notebook_path=path)

    @property
    def notebook_folder(self) -> str:
        return self.notebook_path.rsplit("/", 1)[0] or "/"

    @property
    def state_path(self) -> str:
        """The workspace file recording what dbtwf owns for this environment."""
        return f"{self.notebook_folder}/.dbtwf-state-{self.name}.json"


def normalize_host(host: str) -> str:
    """A workspace URL in one spelling, for comparing: scheme (https when none is given),
    lower-case host, no default port, no trailing slash (`HTTPS://Adb-1.net:443/` ->
    `https://adb-1.net`)."""
    text = host.strip()
    if "://" not in text:
        text = "https://" + text
    parts = urllib.parse.urlsplit(text)
    scheme = parts.scheme.lower()
    netloc = (parts.hostname or "").lower()
    default_port = {"https": 443, "http": 80}.get(scheme)
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is not None and port != default_port:
        netloc = f"{netloc}:{port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"


def same_scope(a: str, b: str) -> bool:
    """Whether two secret scope names name the same scope: Databricks compares scope names
    case-insensitively ("Secret scope names are case insensitive", docs: workspace secret scopes)."""
    return a.casefold() == b.casefold()


@dataclass(frozen=True)
class Config:
    """A whole dbtwf.toml, read and validated: its environments by name."""

    path: Path
    environments: dict[str, Environment]
