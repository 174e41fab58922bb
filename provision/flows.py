"""The use cases behind plan, apply and destroy, step by step, without a word printed.

A flow hears and asks the person running it only through callbacks (``Interaction``): show
which environment, workspace and identity; show the plan; ask; warn. It raises project
errors and returns what happened (``Outcome``) for ``provision.output`` to render; it never
prints and never exits. onboard's flow (``provision.onboard``) and add-task's
(``provision.add_task``) are built the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provision.change import Change, has_changes, writes_secret
from provision.errors import ConflictError, DeclinedError, UsageError

if TYPE_CHECKING:
    from provision.apply import EnvironmentResult
    from provision.databricks import Workspace
    from provision.model import Environment
    from provision.saved_plan import Plan


def _ignore(_: Any) -> None:
    return None


def _agree(_: str) -> bool:
    return True


@dataclass(frozen=True)
class Interaction:
    """How a flow talks to the person running it; each callback defaults to silence (and yes)."""

    #: Which environment, workspace and identity (said before the plan).
    show_header: Callable[[Mapping[str, str]], None] = _ignore
    #: The title of one environment's part (apply --all).
    show_section: Callable[[str], None] = _ignore
    show_plan: Callable[[Sequence[Change]], None] = _ignore
    #: Asked before anything is written; False stops the flow (nothing written).
    confirm: Callable[[str], bool] = _agree
    #: Whether ``confirm`` may wait for a person's answer (no --yes): a plan confirmed after
    #: that wait is read again before anything is written; one confirmed at once is not.
    asks: bool = False
    warn: Callable[[str], None] = _ignore
    note: Callable[[str], None] = _ignore
    #: A line of progress the person asked for (onboard's "the token works").
    say: Callable[[str], None] = _ignore


#: What became of an environment: "up to date" (nothing to do), "applied", "matched" (another
#: run did exactly this meanwhile), "destroyed", "nothing owned" (destroy found nothing).
UP_TO_DATE, APPLIED, MATCHED, DESTROYED, NOTHING_OWNED = (
    "up to date",
    "applied",
    "matched",
    "destroyed",
    "nothing owned",
)


@dataclass(frozen=True)
class Outcome:
    """One environment's plan and what was done about it."""

    environment: str
    header: dict[str, str]
    status: str
    planned: list[Change]
    #: What was carried out (the plan's changes and any warnings the run adds).
    done: list[Change] = field(default_factory=list)
    workflow_id: int | None = None
    workflow_url: str | None = None


def header_of(ws: Workspace, env: Environment) -> dict[str, str]:
    """Which environment, workspace and identity: said first, and part of --json."""
    return {"environment": env.name, "workspace_host": ws.host, "identity": ws.current_user()}


def workflow_url(ws: Workspace, job_id: int) -> str:
    return f"{ws.host.rstrip('/')}/jobs/{job_id}"


# -- plan ------------------------------------------------------------------------------------


def plan_only(
    ws: Workspace, env: Environment, token: str | None, ui: Interaction, *, adopt: bool, out: Path | None
) -> tuple[dict[str, str], Plan]:
    """`dbtwf plan`: the header, the plan, and the plan saved to ``out`` when given."""
    from provision.saved_plan import make_plan

    header = header_of(ws, env)
    ui.show_header(header)
    plan = make_plan(ws, env, token, identity=header["identity"], adopt=adopt)
    if out is not None:
        try:
            out.write_bytes(plan.to_json())
        except OSError as error:
            raise UsageError(f"cannot write the plan to {out}: {error.strerror or error}") from None
    return header, plan


# -- apply -----------------------------------------------------------------------------------


def apply_environment(
    ws: Workspace,
    env: Environment,
    token: str | None,
    ui: Interaction,
    *,
    break_lock: bool,
    adopt: bool = False,
    verified_jobs: frozenset[int] = frozenset(),
    confirmed: Callable[[], None] | None = None,
) -> Outcome:
    """`apply` and `onboard`: plan, show, ask, carry out exactly that, say what became of it.

    ``verified_jobs``: dbt jobs the token was already proven on (onboard checks its job
    first). ``confirmed`` runs once the changes are confirmed (or there are none), before the
    workspace is written: onboard writes its config there.
    """
    from provision.saved_plan import make_plan

    header = header_of(ws, env)
    ui.show_header(header)
    plan = make_plan(ws, env, token, identity=header["identity"], adopt=adopt)
    return carry_out(
        ws,
        env,
        list(plan.changes),
        token,
        header,
        ui,
        break_lock=break_lock,
        verified_jobs=verified_jobs,
        replan=lambda: list(make_plan(ws, env, token, identity=header["identity"], adopt=adopt).changes),
        confirmed=confirmed,
    )


def carry_out(
    ws: Workspace,
    env: Environment,
    changes: list[Change],
    token: str | None,
    header: dict[str, str],
    ui: Interaction,
    *,
    break_lock: bool,
    verified_jobs: frozenset[int] = frozenset(),
    replan: Callable[[], list[Change]] | None = None,
    confirmed: Callable[[], None] | None = None,
    doing: tuple[str, str] | None = None,
) -> Outcome:
    """Show the changes, ask, and have the executor carry out exactly them. ``doing``: the
    question, and the past participle a "no" is told with (migrate says its own)."""
    from provision.apply import execute
    from provision.dbt_cloud import verify_token

    if not has_changes(changes):
        if confirmed is not None:
            confirmed()
        return _outcome(ws, env, header, UP_TO_DATE, changes, changes)
    if writes_secret(changes) and token is not None:  # without one the executor refuses the secret
        verify_token(env, token, verified=verified_jobs)  # a token dbt Cloud rejects is never stored
    ui.show_plan(changes)
    question, done_word = doing or (f"apply these changes to environment {env.name!r}?", "applied")
    if not ui.confirm(question):
        raise DeclinedError(f"environment {env.name!r} not {done_word}; nothing was changed")
    if confirmed is not None:
        confirmed()
    planned_now = replan is not None and not ui.asks  # read a moment ago, by this command
    done = execute(
        ws, env, changes, token, break_lock=break_lock, replan=replan, warn=ui.warn, planned_now=planned_now
    )
    return _outcome(ws, env, header, APPLIED if has_changes(done) else MATCHED, changes, done)


def _outcome(
    ws: Workspace,
    env: Environment,
    header: dict[str, str],
    status: str,
    planned: list[Change],
    done: list[Change],
) -> Outcome:
    """The outcome, with the workflow's id (the executor names a workflow it created by its new id)."""
    workflow = next((change for change in done if change.resource == "workflow"), None)
    job_id = workflow.job_id if workflow is not None else None
    url = workflow_url(ws, job_id) if job_id is not None else None
    return Outcome(env.name, header, status, planned, done, job_id, url)


def read_saved_plan(path: Path, env_name: str | None) -> Plan:
    """The plan `plan --out` saved; bad input (exit 2) when unreadable or for another environment."""
    from provision.saved_plan import Plan

    try:
        data = path.read_bytes()
    except OSError as error:
        raise UsageError(f"cannot read the plan {path}: {error.strerror or error}") from None
    saved = Plan.from_json(data, str(path))
    if env_name is not None and env_name != saved.environment:
        raise UsageError(
            f"the plan {path} is for environment {saved.environment!r}, not {env_name!r}",
            "drop --env (the plan names its environment) or pass the plan of that environment",
        )
    return saved


def apply_saved_plan(
    ws: Workspace,
    env: Environment,
    saved: Plan,
    token: str | None,
    ui: Interaction,
    *,
    where: Path,
    break_lock: bool,
) -> Outcome:
    """`apply --plan FILE`: exactly the saved changes, if the workspace, config and token still match."""
    from provision.plan import plan_environment
    from provision.saved_plan import edits

    header = header_of(ws, env)
    ui.show_header(header)
    mismatches = saved.mismatches(host=ws.host, identity=header["identity"], env=env, token=token)
    if mismatches:
        raise ConflictError(
            f"the plan {where} no longer matches: {'; '.join(mismatches)}; nothing was changed",
            f"make a new plan with `dbtwf plan --out {where}`",
        )
    edited = edits(saved.changes, plan_environment(ws, env, token))
    if edited:
        raise ConflictError(
            f"the plan {where} is not what planning gives now, in: {', '.join(edited)}; either the "
            "workspace changed since the plan or the file was edited; nothing was changed",
            f"make a new plan with `dbtwf plan --out {where}` and keep the file where only you can write it",
        )
    return carry_out(ws, env, list(saved.changes), token, header, ui, break_lock=break_lock)


@dataclass(frozen=True)
class EveryOutcome:
    """apply --all: each environment's result, and which ones had changes to apply."""

    results: list[EnvironmentResult]
    pending: list[str]

    @property
    def failed(self) -> list[EnvironmentResult]:
        return [result for result in self.results if result.error is not None]

    @property
    def applied(self) -> list[str]:
        return [
            result.environment.name
            for result in self.results
            if result.error is None
            and result.environment.name in self.pending
            and has_changes(result.changes)
        ]

    @property
    def up_to_date(self) -> list[str]:
        applied = set(self.applied)
        return [
            result.environment.name
            for result in self.results
            if result.error is None and result.environment.name not in applied
        ]


def apply_every_environment(
    environments: list[Environment],
    token: str | None,
    connect: Callable[[Environment], Workspace],
    ui: Interaction,
    *,
    break_lock: bool,
    adopt: bool = False,
) -> EveryOutcome:
    """`apply --all`: plan every environment concurrently, ask once, apply concurrently."""
    from provision.apply import apply_all, plan_all
    from provision.dbt_cloud import verify_token

    results = plan_all(environments, token, connect, check_token=verify_token, adopt=adopt)
    for result in results:
        ui.show_section(result.environment.name)
        if result.plan is not None:
            ui.show_header(result.header())
        if result.error is None:
            ui.show_plan(result.changes)
    pending = [result.environment.name for result in results if result.pending]
    if pending and not ui.confirm(f"apply changes to {', '.join(pending)}?"):
        raise DeclinedError(f"not applied to {', '.join(pending)}; nothing was changed")
    apply_all(results, token, break_lock=break_lock, adopt=adopt, warn=ui.warn)
    return EveryOutcome(results, pending)


# -- destroy ---------------------------------------------------------------------------------


def destroy_environment(ws: Workspace, env: Environment, ui: Interaction, *, break_lock: bool) -> Outcome:
    """`destroy`: what dbtwf owns in the environment, shown, asked for, deleted."""
    from provision.destroy import destroy_changes, plan_destroy

    header = header_of(ws, env)
    ui.show_header(header)
    changes = plan_destroy(ws, env)
    if not has_changes(changes):
        return Outcome(env.name, header, NOTHING_OWNED, changes, changes)
    ui.show_plan(changes)
    if not ui.confirm(f"delete these from environment {env.name!r}?"):
        raise DeclinedError(f"nothing was deleted from environment {env.name!r}")
    done = destroy_changes(ws, env, changes, break_lock=break_lock, warn=ui.warn)
    return Outcome(env.name, header, DESTROYED, changes, done)
