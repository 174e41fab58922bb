"""The one executor: carries out exactly the confirmed changes, for apply, destroy and add-task.

Nothing is written when every change is a no-op (not even the lock). Otherwise:

1. the token given must be the one the plan fingerprinted (a secret change says which);
2. the folder is made when the plan says so (the lock file lives in it), after checking,
   without the lock, that nothing moved since the plan, so a refusal writes nothing (a plan
   made by the same command a moment ago, with no question asked, is that check itself);
3. the environment's lock is taken, once;
4. every object the changes are about is read again (``moved_since_plan``, all at once). If
   the workspace changed since the plan (another apply, a hand edit), the executor refuses
   rather than do something else than what was confirmed; only when a fresh plan has nothing
   left to do (another run did exactly this meanwhile) does it stop quietly, having written
   nothing;
5. each write goes out once what it needs is done, beside the independent ones (the scope
   then the secret, the notebook, the workflow; destroy's deletes one by one, in the plan's
   order). Ownership is recorded before it is created: the state record says "dbtwf created
   the scope" before scopes/create and names a foreign task before the jobs/update that
   writes it, so a run killed in between still knows (the writes: ``provision.execution``);
6. the state record is written once more at the end when it changed, and the lock released;
7. destroy only: the folders dbtwf made for the notebook are deleted, deepest first, each
   only while empty (the lock file lived in one of them). Apply records them with the state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from provision.change import Action, Change, has_changes, writes_secret
from provision.errors import ConflictError, DbtwfError, UsageError
from provision.execution import HANDLERS, Execution
from provision.observe import Reader
from provision.probes import moved_since_plan
from provision.saved_plan import Plan
from provision.state import environment_lock, token_fingerprint

if TYPE_CHECKING:
    from provision.databricks import Workspace
    from provision.model import Environment

__all__ = ["apply_changes", "execute"]


def execute(
    ws: Workspace,
    env: Environment,
    changes: Sequence[Change],
    token: str | None,
    *,
    break_lock: bool = False,
    replan: Callable[[], list[Change]] | None = None,
    check_token: Callable[[str], None] | None = None,
    warn: Callable[[str], None] | None = None,
    planned_now: bool = False,
) -> list[Change]:
    """Carry out ``changes`` as planned; returns what was done.

    ``replan`` plans afresh (only used to see whether a moved workspace already matches);
    ``check_token`` proves the token against dbt Cloud before a secret write; ``warn`` hears
    what the user must know (a lock broken while young). ``planned_now``: the changes were
    planned by this command a moment ago, nothing in between (no question asked): the plan's
    reads are then the check before the folder is made, and are not made again (the check
    under the lock is made either way).
    """
    changes = list(changes)
    if not has_changes(changes):
        return changes
    unknown = sorted({c.resource for c in changes if c.writes and c.resource not in HANDLERS})
    if unknown:
        raise UsageError(
            f"this dbtwf cannot carry out changes of kind {', '.join(unknown)}; nothing was changed",
            "plan again with this dbtwf, or apply with the dbtwf that made the plan",
        )
    if writes_secret(changes):
        _require_planned_token(changes, token)
        if check_token is not None and token is not None:
            check_token(token)  # a rejected token: exit 1, nothing written
    # destroy's folder deletes run after the lock is released (see _remove_folders).
    folder_change = next(
        (c for c in changes if c.resource == "folder" and c.action is not Action.DELETE), None
    )
    if folder_change is not None and folder_change.action is Action.CREATE and planned_now:
        ws.mkdirs(env.notebook_folder)  # idempotent; the lock lives in it
        has_folder = True
    elif folder_change is not None and folder_change.action is Action.CREATE:
        reader = Reader(ws)
        moved = moved_since_plan(changes, reader, env)
        if not moved:
            ws.mkdirs(env.notebook_folder)  # idempotent; the lock lives in it
        elif reader.status(env.notebook_folder) is None:
            # Still no folder, so no dbtwf run is half-way (the folder is its first write):
            # whatever moved, a fresh plan now is a fair comparison, and a refusal writes nothing.
            return _moved(moved, replan)
        # Else another run made the folder and may still be going: decide under the lock.
        has_folder = True
    elif folder_change is not None:
        has_folder = True
    else:  # destroy plans no folder: without one, nothing of ours can be there to lock
        has_folder = ws.get_status(env.notebook_folder) is not None
    if not has_folder:
        done = _run_checked(ws, env, changes, token, replan)
    else:
        with environment_lock(ws, env, break_lock=break_lock, warn=warn):
            done = _run_checked(ws, env, changes, token, replan)
    if any(c.resource == "folder" and c.action is Action.DELETE for c in done):
        done = _remove_folders(ws, done)
    return done


def _remove_folders(ws: Workspace, done: list[Change]) -> list[Change]:
    """destroy: the folders dbtwf made, deepest first, once the lock file (which lives in the
    notebook's folder) is gone. Non-recursive: a folder holding anything (another run's lock,
    someone's file) is left, and said, not an error."""
    from provision.location import WARNING

    result: list[Change] = []
    kept: list[Change] = []
    for change in done:
        if (
            change.resource == "folder"
            and change.action is Action.DELETE
            and not ws.delete_if_empty(change.name)
        ):
            why = "made by dbtwf, but not empty: left with what it holds"
            change = replace(change, action=Action.NOOP, reason=why)
            kept.append(Change(WARNING, change.name, Action.NOOP, f"folder {change.name} is {why}"))
        result.append(change)
    return result + kept


def _run_checked(
    ws: Workspace,
    env: Environment,
    changes: list[Change],
    token: str | None,
    replan: Callable[[], list[Change]] | None,
) -> list[Change]:
    reader = Reader(ws)
    moved = moved_since_plan(changes, reader, env)
    if moved:
        return _moved(moved, replan)
    execution = Execution(ws, env, token, reader.state(env), reader.file(env.state_path))
    execution.run(changes)
    # A workflow created here is named by its new id: nobody needs to read the record for it.
    created = execution.record.workflow_job_id
    done = [
        replace(change, job_id=created)
        if change.resource == "workflow" and change.action is Action.CREATE and change.job_id is None
        else change
        for change in changes
    ]
    return done + execution.warnings


def _moved(moved: list[str], replan: Callable[[], list[Change]] | None) -> list[Change]:
    if replan is not None:
        fresh = replan()
        if not has_changes(fresh):
            return fresh  # another run did exactly this meanwhile: nothing left to do
    raise ConflictError(
        f"the workspace changed since the plan: {'; '.join(moved)}",
        "nothing was changed; run `dbtwf plan` again to see what applies now",
    )


def _require_planned_token(changes: list[Change], token: str | None) -> None:
    for change in changes:
        if change.resource != "secret" or change.action not in (Action.CREATE, Action.UPDATE):
            continue
        fingerprint = str(change.payload.get("fingerprint") or "")
        if token is None or not fingerprint:
            raise UsageError(
                "the secret needs the dbt Cloud token, and none was given"
                if token is None
                else "the plan stores the dbt Cloud token but was made without one",
                "set DBT_CLOUD_API_TOKEN or run `dbtwf token set`, then plan again",
            )
        if token_fingerprint(token, str(change.payload.get("salt", ""))) != fingerprint:
            raise ConflictError(
                "the dbt Cloud token is not the one the plan was made with; nothing was changed",
                "run `dbtwf plan` again with the token you mean to store",
            )


def apply_changes(
    ws: Workspace,
    env: Environment,
    changes: Sequence[Change],
    token: str | None,
    *,
    break_lock: bool = False,
    adopt: bool = False,
    check_token: Callable[[str], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> list[Change]:
    """Executes ``changes`` as planned by plan_environment; returns what was done."""
    from provision.plan import plan_environment

    include_workflow = any(change.resource == "workflow" for change in changes)
    return execute(
        ws,
        env,
        changes,
        token,
        break_lock=break_lock,
        replan=lambda: plan_environment(ws, env, token, include_workflow=include_workflow, adopt=adopt),
        check_token=check_token,
        warn=warn,
    )


# -- every environment at once -------------------------------------------------------------


@dataclass
class EnvironmentResult:
    """One environment's plan (then what apply did), or the error that stopped it."""

    environment: Environment
    workspace: Workspace | None = None
    plan: Plan | None = None
    changes: list[Change] = field(default_factory=list)
    error: DbtwfError | None = None

    @property
    def pending(self) -> bool:
        return self.error is None and has_changes(self.changes)

    def header(self) -> dict[str, str]:
        if self.plan is not None:
            return self.plan.header()
        return {"environment": self.environment.name}


def _concurrently(work: Callable[[EnvironmentResult], None], results: list[EnvironmentResult]) -> None:
    """Runs ``work`` on each result in its own thread; a project error stays with its environment."""

    def guarded(result: EnvironmentResult) -> None:
        try:
            work(result)
        except DbtwfError as error:
            result.error = error

    with ThreadPoolExecutor(max_workers=max(1, min(8, len(results))), thread_name_prefix="dbtwf") as pool:
        list(pool.map(guarded, results))


def plan_all(
    environments: list[Environment],
    token: str | None,
    connect: Callable[[Environment], Workspace],
    *,
    check_token: Callable[[Environment, str], None] | None = None,
    adopt: bool = False,
) -> list[EnvironmentResult]:
    """Plans every environment concurrently (each its own workspace and lock); a plan that
    stores the token proves it with ``check_token`` first. ``adopt`` as for one environment."""
    from provision.saved_plan import make_plan

    results = [EnvironmentResult(environment) for environment in environments]

    def plan_one(result: EnvironmentResult) -> None:
        from provision.location import resolve_location

        ws = result.workspace = connect(result.environment)
        result.environment = resolve_location(ws, result.environment)
        result.plan = make_plan(ws, result.environment, token, identity=ws.current_user(), adopt=adopt)
        result.changes = list(result.plan.changes)
        if check_token is not None and token is not None and writes_secret(result.changes):
            check_token(result.environment, token)

    _concurrently(plan_one, results)
    return results


def apply_all(
    results: list[EnvironmentResult],
    token: str | None,
    *,
    break_lock: bool,
    adopt: bool = False,
    warn: Callable[[str], None] | None = None,
) -> None:
    """Applies the pending plans concurrently; each result then holds what was done or its error."""

    def apply_one(result: EnvironmentResult) -> None:
        assert result.workspace is not None
        env = result.environment
        result.changes = apply_changes(
            result.workspace,
            env,
            result.changes,
            token,
            break_lock=break_lock,
            adopt=adopt,
            warn=None if warn is None else (lambda text: warn(f"environment {env.name!r}: {text}")),
        )

    _concurrently(apply_one, [result for result in results if result.pending])
