"""What `dbtwf adopt` would change, as a plan of Changes for the one executor: the
environment's row in dbtwf.toml, the backup, the runner at the same path, the tags, the
recorded tasks, the state record, and the warnings the user must hear before confirming.
Read-only: it refuses (exit 2, or a conflict) what it cannot take over.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provision.adopt.recognise import BACKUP_SUFFIX, backup_header
from provision.adopt.scan import Found, WorkflowUse
from provision.change import Action, Change
from provision.errors import ConflictError, UsageError

if TYPE_CHECKING:
    from provision.model import Environment
    from provision.observe import Reader
    from provision.state import StateRecord


def config_change(config_path: Path, env_name: str, values: dict[str, Any], exists: bool) -> Change:
    """The environment adopt writes into dbtwf.toml, every value shown: the dbt host and
    account are where the runner will send the token, so the user sees them before confirming."""
    said = ", ".join(f"{key} = {value!r}" for key, value in values.items())
    if exists:
        return Change("config", str(config_path), Action.NOOP, f"[environments.{env_name}] already there")
    payload = {"environment": env_name, "values": values}
    return Change(
        "config", str(config_path), Action.CREATE, f"[environments.{env_name}] {said}", None, payload
    )


def adoption_changes(
    reader: Reader, env: Environment, found: Found, own: WorkflowUse, others: Sequence[WorkflowUse]
) -> list[Change]:
    """The plan: see the module's docstring. Read-only; refuses what it cannot take over."""
    from provision.desired import MANAGED_JOB_FIELDS, render_runner_notebook, sha256_text, workflow_tags
    from provision.location import WARNING, security_changes
    from provision.probes import with_expectations

    scope, key = env.secret_scope, env.secret_key
    # The notebook cannot run without its secret: say how to store the token, off the command line.
    store = (
        f"`databricks secrets put-secret {scope} {key}` (it asks for the token at a hidden prompt), "
        "then adopt again"
    )
    if not reader.has_scope(scope):
        raise UsageError(
            f"{found.path} reads secret scope {scope!r}, which does not exist",
            f"create it with `databricks secrets create-scope {scope}` and store the token with {store}",
        )
    stamps = reader.secrets(scope)
    if key not in stamps:
        raise UsageError(
            f"{found.path} reads secret {key!r} of scope {scope!r}, which does not exist",
            f"store the token with {store}",
        )
    backup = env.notebook_path + BACKUP_SUFFIX
    runner = render_runner_notebook(env)
    original = found.source
    # An adopt that stopped half-way, before the notebook was replaced, left the backup (exactly
    # what adopt writes now) and a record naming it: adopting again resumes it.
    kept = reader.file(backup) if reader.status(backup) is not None else None
    resumes = kept == (backup_header(env.notebook_path, sha256_text(original)) + "\n" + original).encode()
    record = reader.state(env) if reader.file(env.state_path) is not None else None
    undo = f"`dbtwf --env {env.name} destroy --yes` gives the hand-made setup back, then adopt again"
    if kept is not None and not resumes:
        named = record is not None and record.backup_path == backup
        raise ConflictError(
            f"{backup} exists already",
            undo if named else "move it away (it may be an earlier backup), then re-run",
        )
    if reader.file(env.state_path) is not None and not _half_way(record, backup, own.job_id):
        raise ConflictError(
            f"{env.state_path} exists: environment {env.name!r} is already deployed next to this notebook",
            "use another --env, or `dbtwf destroy` that environment first",
        )
    whole = (reader.job(own.job_id) or own.job).get("settings") or {}  # jobs/get: every field
    kept_fields = {name: whole[name] for name in MANAGED_JOB_FIELDS if name != "tags" and name in whole}
    tags = {**dict(whole.get("tags") or {}), **workflow_tags(env)}
    changes = [
        Change("scope", scope, Action.NOOP, "exists; kept (not created by dbtwf: destroy leaves it)"),
        Change(
            "secret",
            f"{scope}/{key}",
            Action.NOOP,
            "kept as it is (no token needed); its update time is recorded",
            None,
            {"updated_at": stamps.get(key)},
        ),
        Change("folder", env.notebook_folder, Action.NOOP, "exists"),
        Change(
            "backup",
            backup,
            Action.NOOP if resumes else Action.CREATE,
            (
                "kept by an adopt that stopped half-way"
                if resumes
                else f"keeps the hand-pasted code of {env.notebook_path}"
            )
            + "; destroy puts it back",
            None,
            {"source": original, "sha256": sha256_text(original)},
        ),
        Change(
            "notebook",
            env.notebook_path,
            Action.UPDATE,
            "the guide's code replaced by dbtwf's runner, same path (every task keeps running it)",
            None,
            {"source": runner, "sha256": sha256_text(runner)},
        ),
        Change(
            "adopt-workflow",
            own.name,
            Action.UPDATE,  # tagged, not created: the plan's count says so
            "made for the notebook: becomes dbtwf's (tags only; the next apply converges the rest)",
            own.job_id,
            {
                "op": "adopt",
                "tags": tags,
                "original_tags": dict(whole.get("tags") or {}),
                "original_settings": kept_fields,
            },
        ),
    ]
    for use in others:
        for task in use.tasks:
            why = f"in workflow {use.name!r}: recorded as a task dbtwf added, left as it is"
            payload = {"op": "adopt", "task": task.task, "dbt_job_id": task.dbt_job_id, "adopted": True}
            changes.append(Change("task", str(task.task["task_key"]), Action.NOOP, why, use.job_id, payload))
    changes.append(Change("state", env.state_path, Action.CREATE, "records what adopt took over"))
    # The same warnings plan gives: a notebook every user can edit (the guide's /Shared), a scope
    # every user can read. Adopting keeps the path, so the user hears it before confirming.
    changes += security_changes(
        env,
        deployer=None,
        location=reader.location(env),
        workflow=None,
        scope_exists=True,
        scope_acls=reader.scope_acls(env, required=False),
        granted_readers=(),
    )
    me = reader.ws.current_user_name()
    changes += _home_warning(me, env)
    creator = str(own.job.get("creator_user_name") or whole.get("creator_user_name") or "")
    if creator and creator.casefold() != me.casefold():
        why = (
            f"workflow {own.job_id} {own.name!r}, which adopt makes the environment's, was created by "
            f"{creator}, not you: they keep managing it and chose its dbt jobs, schedule and cluster"
        )
        changes.append(Change(WARNING, own.name, Action.NOOP, why, own.job_id))
    return with_expectations(changes, reader, env)


def _home_warning(deployer: str, env: Environment) -> list[Change]:
    """The notebook stays where the hand-made setup had it: in another identity's home, that
    identity keeps editing the code that reads the token (the one the next apply stores) and the
    state record destroy trusts. Said before confirming, as plan says it of /Shared."""
    from provision.location import WARNING

    parts = env.notebook_path.removeprefix("/Workspace").split("/")
    owner = parts[2] if len(parts) > 3 and parts[1] == "Users" else None
    if owner is None or owner.casefold() == deployer.casefold():
        return []
    why = (
        f"{owner} can edit {env.notebook_path} and the state record beside it (their home folder): "
        "they can change the code that reads the dbt Cloud token as the job's identity, or rewrite "
        "what `dbtwf destroy` deletes. Adopt as that identity, or move the notebook to your own "
        "home after adopting (notebook_path, then apply)"
    )
    return [Change(WARNING, env.notebook_path, Action.NOOP, why)]


def check_parameters(uses: Sequence[WorkflowUse]) -> None:
    """The guide's code reads only the job_id widget; the runner that replaces it obeys its
    run options (git_branch, steps_override, wait, ...) and refuses every run passing a pinned
    name (dbt_cloud_host, ...). A job or task parameter of such a name did nothing before adopt
    and would steer (or stop) every run after it: refused, as add-task does (exit 2)."""
    from provision.foreign_task import ALLOWABLE_JOB_PARAMETERS
    from runner.core import PINNED_PARAMETERS

    steering = (*PINNED_PARAMETERS, *ALLOWABLE_JOB_PARAMETERS)
    for use in uses:
        settings = use.job.get("settings") or {}
        named = {str(p.get("name")) for p in settings.get("parameters") or [] if isinstance(p, dict)}
        for task in use.tasks:
            named |= set((task.task.get("notebook_task") or {}).get("base_parameters") or {})
        found = [name for name in steering if name in named]
        if found:
            raise UsageError(
                f"workflow {use.job_id} {use.name!r} passes parameter(s) {', '.join(found)}: the guide's "
                "code ignores them, dbtwf's runner would obey them on every run",
                "rename or remove them in the workflow (job and task parameters), then adopt again",
            )


def _half_way(record: StateRecord | None, backup: str, job_id: int) -> bool:
    """A record an adopt of this notebook left when it stopped before the notebook was
    replaced: it names this backup, or nothing dbtwf wrote (no token, no notebook)."""
    if record is None or record.workflow_job_id not in (None, job_id):
        return False
    if record.backup_path == backup:
        return True
    return not (
        record.backup_path or record.token_fingerprint or record.notebook_sha256 or record.scope_created
    )
