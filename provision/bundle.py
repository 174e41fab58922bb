"""A Databricks Asset Bundle made from the config's environments: what `dbtwf export bundle` writes.

Pure: environments in, file contents out (``bundle_files``); the command writes them. The job
settings come from ``provision.desired.workflow_settings`` and the notebook from
``render_runner_notebook``, the very functions apply uses, so a bundle deploy and a dbtwf apply
send the same workflow. The only field that differs is each notebook task's ``notebook_path``:
the bundle's own source file (``src/<env>/<notebook name>.py``, relative to databricks.yml),
which `databricks bundle deploy` uploads and translates to its workspace path. An environment on
the dbt platform task (Beta) has neither notebook nor scope: its job alone.

The bundle never holds the dbt Cloud token: the scope is a ``secret_scopes`` resource, and the
secret in it is filled by `databricks secrets put-secret` (see the README).

Also here: whether a workflow is deployed by a bundle (``settings.deployment.kind == "BUNDLE"``,
as the Jobs API's JobDeployment reports it), which plan, destroy and add-task check.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from typing import Any

from provision.change import Action, Change
from provision.desired import render_runner_notebook, workflow_settings
from provision.model import Environment

#: The bundle's default name (its workspace folder is ~/.bundle/<name>/<target>; two bundles of
#: one name deployed by one identity share that folder and its deployment state).
BUNDLE_NAME = "dbtwf"
BUNDLE_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
#: The resource keys, the same in every target: `databricks bundle run dbt_cloud_jobs -t prod`.
JOB_KEY = "dbt_cloud_jobs"
SCOPE_KEY = "dbt_cloud_token_scope"
BUNDLE_FILE = "databricks.yml"
_SERVICE_PRINCIPAL = re.compile(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")

HEADER = """\
# Written by `dbtwf export bundle`: one target per dbtwf environment. Each target's job is the
# workflow `dbtwf apply` makes, field by field, except each notebook task's notebook_path: here
# the bundle's own copy of the runner notebook (src/<environment>/), uploaded by the deploy.
# The dbt Cloud token is NOT in this bundle: store it in the scope with
#   databricks secrets put-secret <scope> <key>      (hidden prompt, or the token on stdin)
# To take over what dbtwf deployed, bind the existing job and scope before the first deploy:
#   databricks bundle deployment bind dbt_cloud_jobs <job id> -t <environment>
#   databricks bundle deployment bind dbt_cloud_token_scope <scope> -t <environment>
#     (only a scope dbtwf created, holding nothing else: `bundle destroy` deletes a bound scope
#     with every secret in it; for another scope, delete its secret_scopes resource here)
#   databricks bundle deploy -t <environment>
# From then on dbtwf leaves that workflow to the bundle (plan shows it, apply and destroy skip it).
"""


def is_bundle_managed(settings: Mapping[str, Any]) -> bool:
    """Whether a job's settings say a Databricks Asset Bundle deployed it."""
    return str((settings.get("deployment") or {}).get("kind", "")).upper() == "BUNDLE"


def bundle_note(settings: Mapping[str, Any]) -> str:
    """Which bundle deployed the job, as far as its settings tell (the metadata file's path)."""
    path = (settings.get("deployment") or {}).get("metadata_file_path")
    what = "deployed by a Databricks Asset Bundle"
    return f"{what} ({path})" if path else what


def handed_to_bundle(name: str, job_id: int, settings: Mapping[str, Any]) -> Change:
    """The plan's line for a workflow a bundle now deploys: left alone, and why."""
    why = (
        f"{bundle_note(settings)}: dbtwf no longer manages it (change it in the bundle, then "
        "`databricks bundle deploy`); `dbtwf run` still runs it"
    )
    return Change("workflow", name, Action.NOOP, why, job_id, {"bundle": True})


def bundle_warning(handed: Change) -> Change:
    """The line plan and apply print (stderr) about a workflow handed to a bundle."""
    why = (
        f"workflow {handed.job_id} {handed.name!r} belongs to a Databricks Asset Bundle now: "
        "dbtwf leaves it to the bundle"
    )
    return Change("warning", handed.name, Action.NOOP, why, handed.job_id)


def notebook_file(env: Environment) -> str:
    """The runner notebook's file in the bundle, relative to databricks.yml."""
    name = env.notebook_path.rstrip("/").rsplit("/", 1)[-1] or "run_dbt_cloud_job"
    return f"src/{env.name}/{name}.py"


def bundle_job(env: Environment) -> dict[str, Any]:
    """The job resource: apply's settings with each runner task's notebook_path pointing at the
    bundle's notebook file."""
    settings = copy.deepcopy(workflow_settings(env))
    for task in settings.get("tasks") or []:
        notebook = task.get("notebook_task")
        if notebook is not None and notebook.get("notebook_path") == env.notebook_path:
            notebook["notebook_path"] = notebook_file(env)
    return settings


def scope_permission(principal: str) -> dict[str, str]:
    """A scope reader as a bundle names it: a user by e-mail, a service principal by its
    application id (a UUID), anything else a group."""
    if "@" in principal:
        kind = "user_name"
    elif _SERVICE_PRINCIPAL.fullmatch(principal):
        kind = "service_principal_name"
    else:
        kind = "group_name"
    return {"level": "READ", kind: principal}


def bundle_scope(env: Environment) -> dict[str, Any]:
    """The secret scope resource (the secret in it is not part of the bundle)."""
    scope: dict[str, Any] = {"name": env.secret_scope}
    if env.scope_readers:
        scope["permissions"] = [scope_permission(p) for p in env.scope_readers]
    return scope


def target_workspace(env: Environment, profile_host: str | None) -> dict[str, str]:
    """The target's workspace: the pinned host, else the profile's host (when its file names
    one), and the profile. Empty: the Databricks CLI's own default (DATABRICKS_HOST, DEFAULT)."""
    workspace: dict[str, str] = {}
    host = env.databricks_host or profile_host
    if host:
        workspace["host"] = host
    if env.databricks_profile:
        workspace["profile"] = env.databricks_profile
    return workspace


def bundle_document(
    environments: Sequence[Environment],
    profile_hosts: Mapping[str, str | None] | None = None,
    name: str = BUNDLE_NAME,
) -> dict[str, Any]:
    """databricks.yml as data: one target per environment, each with its job and scope."""
    hosts = profile_hosts or {}
    targets: dict[str, Any] = {}
    with_notebook = {env.name for env in environments if env.uses_notebook}
    for env in environments:
        target: dict[str, Any] = {}
        workspace = target_workspace(env, hosts.get(env.databricks_profile or ""))
        if workspace:
            target["workspace"] = workspace
        if env.uses_notebook and len(with_notebook) > 1:
            # Each target uploads only its own notebook (the sync takes the whole folder by default).
            target["sync"] = {"exclude": [f"src/{name}/**" for name in sorted(with_notebook - {env.name})]}
        target["resources"] = {"jobs": {JOB_KEY: bundle_job(env)}}
        if env.uses_notebook:  # a dbt platform task needs no secret: its connection holds the token
            target["resources"]["secret_scopes"] = {SCOPE_KEY: bundle_scope(env)}
        targets[env.name] = target
    return {"bundle": {"name": name}, "targets": targets}


def bundle_files(
    environments: Sequence[Environment],
    profile_hosts: Mapping[str, str | None] | None = None,
    name: str = BUNDLE_NAME,
) -> dict[str, str]:
    """Every file of the bundle, by path relative to its folder: databricks.yml and each
    environment's runner notebook."""
    import yaml

    document = bundle_document(environments, profile_hosts, name)
    text = yaml.safe_dump(document, sort_keys=False, default_flow_style=False, width=1000)
    files = {BUNDLE_FILE: HEADER + text}
    for env in environments:
        if env.uses_notebook:
            files[notebook_file(env)] = render_runner_notebook(env)
    return files
