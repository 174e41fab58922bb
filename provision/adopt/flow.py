"""`dbtwf adopt`, the use case: scan, choose, work out the environment, plan, ask, carry out.

Order for "nothing written before the plan is confirmed": the scan and every check only
read; the environment is worked out in memory (``upsert_environment(write=False)``) and
compared with one of that name already in dbtwf.toml (a different one is refused, exit 2);
the plan, which shows the environment's values, is shown and confirmed; only then is it handed
to the one executor (``provision.apply.execute``), which re-reads every object under the lock
and writes the environment into dbtwf.toml first (a run stopped half-way can then be given back
with `dbtwf destroy`).

What adopt takes over (``provision.adopt.plan.adoption_changes``):

- the scope and secret stay as they are (no token is needed or read): the secret's
  ``last_updated_timestamp`` is recorded, ``scope_created`` stays False;
- the hand-pasted notebook is kept in a workspace file next to it (``<path>.dbtwf-backup.py``,
  first line ``BACKUP_MARK``), then replaced by the runner at the same path, so every task
  running it keeps running it (none is re-pointed);
- the workflow made for the notebook (every task runs it; the lowest job id if several)
  gets dbtwf's tags and nothing else (jobs/update of ``tags``): the next apply converges the
  rest; its tasks become the environment's dbt_jobs;
- every task running the notebook in another workflow is recorded as an added task
  (``adopted``), left as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provision.adopt.plan import adoption_changes, check_parameters, config_change
from provision.adopt.recognise import VALUE_NAMES
from provision.adopt.scan import DEFAULT_LIMIT, Found, ScanResult, WorkflowUse, scan, workflows_running
from provision.change import Change, has_changes
from provision.errors import ConflictError, DbtwfError, DeclinedError, UsageError

if TYPE_CHECKING:
    from provision.databricks import Workspace
    from provision.flows import Interaction
    from provision.model import Environment

DEFAULT_ENVIRONMENT = "dev"
#: The flag that gives each value the code may not say.
FLAGS = {
    "dbt_cloud_host": "--dbt-host",
    "dbt_cloud_account_id": "--account-id",
    "secret_scope": "--secret-scope",
    "secret_key": "--secret-key",
}


@dataclass(frozen=True)
class AdoptOptions:
    env_name: str | None = None
    notebooks: tuple[str, ...] = ()
    folders: tuple[str, ...] = ()
    limit: int = DEFAULT_LIMIT
    #: Values from the flags (VALUE_NAMES keys): fill what the code does not say.
    given: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AdoptOutcome:
    #: "adopted", "nothing new" (only dbtwf's runner/backups or nothing found).
    status: str
    scan: ScanResult
    environment: str | None = None
    notebook: str | None = None
    config_path: str | None = None
    planned: list[Change] = field(default_factory=list)
    done: list[Change] = field(default_factory=list)
    #: What was skipped and why (dbtwf's runner, a backup, a refused notebook).
    skipped: list[dict[str, str]] = field(default_factory=list)
    #: The workspace and identity adopt acted in, as plan/apply/destroy's --json name them.
    workspace_host: str | None = None
    identity: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "workspace_host": self.workspace_host,
            "identity": self.identity,
            "status": self.status,
            "notebook": self.notebook,
            "config": self.config_path,
            "listed": self.scan.listed,
            "truncated": self.scan.truncated,
            "skipped": self.skipped,
            "changes": [change.to_dict() for change in (self.done or self.planned)],
        }


def check_options(options: AdoptOptions) -> None:
    """Bad input (exit 2) before anything is sent."""
    from provision.names import validate_scope_name, validate_secret_name

    if options.limit < 1:
        raise UsageError(f"--limit {options.limit}: must be at least 1")
    flagged = [("--notebook", path) for path in options.notebooks] + [
        ("--folder", p) for p in options.folders
    ]
    for flag, path in flagged:
        if not path.startswith("/"):
            raise UsageError(
                f"{flag} {path}: not an absolute workspace path",
                "e.g. /Users/me@example.com/dbt (workspace paths start at /)",
            )
    given = options.given
    if "secret_scope" in given:
        validate_scope_name(str(given["secret_scope"]), "--secret-scope")
    if "secret_key" in given:
        validate_secret_name(str(given["secret_key"]), "--secret-key")
    if "dbt_cloud_account_id" in given and int(given["dbt_cloud_account_id"]) <= 0:
        raise UsageError("--account-id must be a positive number")


def _skipped(result: ScanResult) -> list[dict[str, str]]:
    return [
        {"path": item.path, "kind": item.recognition.kind, "why": item.recognition.reason}
        for item in result.of_kind("runner", "backup", "refused", "unreadable")
    ]


def choose(result: ScanResult, options: AdoptOptions) -> Found | None:
    """The one hand-made setup to adopt; None when there is none (only dbtwf's own notebooks)."""
    setups = result.of_kind("guide")
    refused = result.of_kind("refused")
    if options.notebooks:
        for item in result.found:
            if item.recognition.kind in ("other",):
                raise UsageError(f"{item.path}: not the guide's code ({item.recognition.reason})")
    if refused and (options.notebooks or not setups):
        item = refused[0]
        raise UsageError(
            f"{item.path}: cannot be adopted safely: {item.recognition.reason}",
            "undo that edit (or move the notebook to dbtwf by hand: `dbtwf onboard`, then `dbtwf add-task`)",
        )
    if len(setups) > 1:
        listed = ", ".join(item.path for item in setups[:5]) + (", ..." if len(setups) > 5 else "")
        raise UsageError(
            f"found {len(setups)} hand-made setups: {listed}",
            "adopt them one at a time: --notebook PATH (with --env NAME for each)",
        )
    return setups[0] if setups else None


def resolve_values(
    found: Found, given: dict[str, Any], ask: Callable[[str, str], str] | None
) -> dict[str, Any]:
    """Host, account, scope and key: from the code; what it does not say from the flags, else
    asked; a flag that contradicts the code is refused (the notebook sends the token there)."""
    values = dict(found.recognition.values)
    for name in VALUE_NAMES:
        if name in given and name in values and str(given[name]) != str(values[name]):
            raise UsageError(
                f"{FLAGS[name]} {given[name]} contradicts the notebook, which uses {values[name]!r}",
                f"drop {FLAGS[name]}: adopt takes what the notebook uses",
            )
    for name in found.recognition.missing:
        if name in given:
            values[name] = given[name]
        elif ask is not None:
            values[name] = ask(name, f"{found.path} does not say the {name.replace('_', ' ')}")
        else:
            raise UsageError(
                f"{found.path} does not say the {name.replace('_', ' ')} (a placeholder is left in)",
                f"pass it with {FLAGS[name]}",
            )
    try:
        values["dbt_cloud_account_id"] = int(values["dbt_cloud_account_id"])
    except (TypeError, ValueError):
        raise UsageError(f"the dbt account {values['dbt_cloud_account_id']!r} is not a number") from None
    return values


def environment_values(values: dict[str, Any], path: str, own: WorkflowUse) -> dict[str, Any]:
    """The environment's dbtwf.toml keys: what the notebook uses, where it is, the workflow
    made for it (its name, its tasks as dbt_jobs, its cluster and schedule)."""
    settings = own.job.get("settings") or {}
    jobs: dict[str, Any] = {}
    for use in own.tasks:
        needs = [str(d.get("task_key")) for d in use.task.get("depends_on") or []]
        jobs[str(use.task["task_key"])] = (
            {"job_id": use.dbt_job_id, "depends_on": needs} if needs else use.dbt_job_id
        )
    result: dict[str, Any] = {
        **values,
        "notebook_path": path,
        "workflow_name": own.name,
        "dbt_jobs": jobs,
    }
    clusters = {use.task.get("existing_cluster_id") for use in own.tasks}
    if len(clusters) == 1 and None not in clusters:
        result["cluster_id"] = clusters.pop()
    schedule = settings.get("schedule") or {}
    if schedule.get("quartz_cron_expression"):
        result["schedule"] = {
            "quartz_cron": schedule["quartz_cron_expression"],
            "timezone": schedule.get("timezone_id") or "UTC",
            "paused": schedule.get("pause_status") == "PAUSED",
        }
    return result


def adopt(
    ws: Workspace,
    options: AdoptOptions,
    config_path: Path,
    ui: Interaction,
    *,
    ask: Callable[[str, str], str] | None,
    progress: Callable[[int, bool], None] | None = None,
) -> AdoptOutcome:
    from provision.config_writer import upsert_environment
    from provision.flows import header_of
    from provision.observe import Reader

    result = scan(
        ws, notebooks=options.notebooks, folders=options.folders, limit=options.limit, progress=progress
    )
    skipped = _skipped(result)
    found = choose(result, options)
    if found is None:
        env_name = options.env_name or DEFAULT_ENVIRONMENT
        _check_not_half_way(ws, config_path, env_name)
        return AdoptOutcome(
            "nothing new",
            result,
            env_name,
            skipped=skipped,
            workspace_host=ws.host,
            identity=ws.current_user(),
        )
    for item in result.of_kind("refused"):
        ui.warn(f"{item.path} left alone: {item.recognition.reason}")
    reader = Reader(ws)
    uses = workflows_running(reader, found.path)
    built = [use for use in uses if use.purpose_built and use.unusable is None]
    if not built and any(use.purpose_built for use in uses):
        raise next(use.unusable for use in uses if use.purpose_built and use.unusable is not None)
    for use in uses:
        if use.unusable is not None:
            ui.warn(f"workflow {use.job_id} {use.name!r} left alone: {use.unusable.message}")
    uses = [use for use in uses if use.unusable is None]
    if not built:
        raise UsageError(
            f"{found.path} is the guide's code, but no workflow was made for it (every workflow running "
            "it runs other tasks too)",
            "schedule the notebook once (Schedule in the notebook), or set up dbtwf with `dbtwf onboard` "
            "and `dbtwf add-task`",
        )
    own, others = built[0], [use for use in uses if use is not built[0]]
    check_parameters(uses)
    values = environment_values(resolve_values(found, options.given, ask), found.path, own)
    env_name = options.env_name or DEFAULT_ENVIRONMENT
    pending = upsert_environment(config_path, env_name, values, write=False)
    existing = _existing(config_path, env_name)
    if existing is not None and existing != pending:
        raise UsageError(
            f"environment {env_name!r} in {config_path} differs from the setup found in {found.path} "
            f"(in {', '.join(_differing(existing, pending))})",
            f"pick a new name with --env, or, if an earlier adopt wrote it and `dbtwf --env {env_name} "
            f"destroy` gave it back, remove [environments.{env_name}] from {config_path.name}",
        )
    changes = [
        config_change(config_path, env_name, values, exists=existing is not None),
        *adoption_changes(reader, pending, found, own, others),
    ]
    header = header_of(ws, pending)
    ui.show_header(header)
    ui.show_plan(changes)
    if not ui.confirm(f"adopt {found.path} as environment {env_name!r}?"):
        raise DeclinedError(f"{found.path} not adopted; nothing was changed")
    if _existing(config_path, env_name) != existing:
        raise ConflictError(f"{config_path} changed while adopt was asking; nothing was changed")
    try:
        done = _execute(ws, pending, changes, ui)
    except DbtwfError as error:
        if _existing(config_path, env_name) is not None and not isinstance(error, DeclinedError):
            # Stopped half-way (the environment is written first): say the way back that works.
            how = f"`dbtwf --env {env_name} destroy --yes` gives the hand-made setup back, then adopt again"
            error.hint = f"{error.hint}; or {how}" if error.hint else how
        raise
    if existing is None:
        ui.say(f"wrote environment {env_name!r} to {config_path}")
    status = "adopted" if has_changes(done) else "nothing new"
    return AdoptOutcome(
        status,
        result,
        env_name,
        found.path,
        str(config_path),
        changes,
        done,
        skipped,
        header["workspace_host"],
        header["identity"],
    )


def _check_not_half_way(ws: Workspace, config_path: Path, env_name: str) -> None:
    """Nothing new to adopt, but the environment's own adopt may have stopped after the runner
    replaced the code (the scan then sees the runner): a workflow it recorded without dbtwf's
    tags yet. Say so, with the way back, rather than "nothing new"."""
    from provision.desired import is_owned
    from provision.observe import Reader

    env = _existing(config_path, env_name)
    if env is None:
        return
    reader = Reader(ws)
    state = reader.state(env)
    if state is None or not state.backup_path:
        return
    untagged = [w.job_id for w in state.adopted_workflows if not is_owned(reader.job(w.job_id) or {}, env)]
    if untagged or not state.adopted_workflows:
        raise ConflictError(
            f"the adopt of environment {env_name!r} stopped half-way (its workflow "
            f"{', '.join(map(str, untagged)) or '(not recorded)'} does not carry dbtwf's tags yet)",
            f"`dbtwf --env {env_name} destroy --yes` gives the hand-made setup back, then adopt again",
        )


def _differing(existing: Environment, pending: Environment) -> list[str]:
    """The keys whose values differ, as dbtwf.toml names them."""
    from dataclasses import fields

    keys = {"compute": "cluster_id / job_cluster"}
    names = [
        keys.get(f.name, f.name)
        for f in fields(existing)
        if getattr(existing, f.name) != getattr(pending, f.name)
    ]
    return names or ["its settings"]


def _existing(config_path: Path, env_name: str) -> Environment | None:
    from provision.config import load_config

    if not config_path.exists():
        return None
    return load_config(config_path).environments.get(env_name)  # a broken file: ConfigError, exit 2


def _execute(ws: Workspace, env: Environment, changes: list[Change], ui: Interaction) -> list[Change]:
    from provision.apply import execute

    return execute(ws, env, changes, None, warn=ui.warn, planned_now=not ui.asks)
