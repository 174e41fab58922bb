"""`dbtwf doctor`: check each link of the chain, from the config file to the compute.

Every link is one Check: OK, WARN (it works, but something is exposed: what to do about
it), FAIL (with what to do) or SKIP (a link it needs failed, so its answer would only
repeat that failure). Doctor only reads: it never writes to the
workspace or dbt Cloud, and it never reads a secret's value. Whether the notebook and the
workflow are current is the planner's answer (``provision.plan``), on the same reads; a
secret overwritten outside dbtwf shows in its update time, and a lock left by a crashed
run is reported as stale.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from provision.errors import DbtwfError
from provision.model import ENVIRONMENT_TAG, MANAGED_BY_TAG, MANAGED_BY_VALUE, Environment

if TYPE_CHECKING:
    from provision.change import Change
    from provision.databricks import Workspace
    from provision.observe import Reader
    from provision.state import StateRecord

_APPLY_FIX = "run `dbtwf apply`"
#: What to do about a config or sign-in failure that does not say itself.
_CONFIG_FIX = (
    "correct the config file where the detail points (`dbtwf plan` reports the same), or write the "
    "environment with `dbtwf onboard --dbt-job-url URL`"
)
_AUTH_FIX = (
    "check DATABRICKS_HOST and DATABRICKS_TOKEN, or the environment's databricks_profile and that "
    "profile in ~/.databrickscfg (`databricks auth login --host WORKSPACE_URL` creates one)"
)
#: Secret ACL permissions that include READ.
_READ_OR_HIGHER = frozenset({"READ", "WRITE", "MANAGE"})
#: Cluster states a job can run on (a terminated cluster is started by the job).
_USABLE_CLUSTER_STATES = frozenset({"RUNNING", "PENDING", "RESTARTING", "RESIZING", "TERMINATED"})


class Status(str, Enum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status.value, "detail": self.detail, "fix": self.fix}


class _Failed(Exception):
    """A link is broken: what is wrong and what to do."""

    def __init__(self, detail: str, fix: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.fix = fix


class _Warned(_Failed):
    """A link works but exposes something: what and what to do (a warning, not a failure)."""


class _Doctor:
    def __init__(
        self,
        load_environment: Callable[[], Environment],
        connect: Callable[[Environment], Workspace],
        find_token: Callable[[], tuple[str, str] | None],
        now: Callable[[], float],
    ) -> None:
        self._load_environment = load_environment
        self._connect = connect
        self._find_token = find_token
        self._now = now
        self.checks: list[Check] = []
        self._env: Environment | None = None
        self._ws: Workspace | None = None
        self._token: str | None = None
        self._reader: Reader | None = None
        self._changes: dict[bool, list[Change]] = {}

    @property
    def env(self) -> Environment:
        assert self._env is not None
        return self._env

    @property
    def ws(self) -> Workspace:
        assert self._ws is not None
        return self._ws

    def run(
        self, name: str, needs: tuple[str, ...], check: Callable[[], str], fix: str | None = None
    ) -> None:
        """Record ``check``'s outcome under ``name``, or SKIP when a needed link did not pass.
        ``fix`` is what to do when the failure itself does not say."""
        passed = {c.name for c in self.checks if c.status in (Status.OK, Status.WARN)}
        missing = [need for need in needs if need not in passed]
        if missing:
            self.checks.append(Check(name, Status.SKIP, f"needs: {', '.join(missing)}"))
            return
        try:
            self.checks.append(Check(name, Status.OK, check()))
        except _Warned as warned:
            self.checks.append(Check(name, Status.WARN, warned.detail, warned.fix))
        except _Failed as failed:
            self.checks.append(Check(name, Status.FAIL, failed.detail, failed.fix or fix))
        except DbtwfError as error:
            self.checks.append(Check(name, Status.FAIL, error.message, error.hint or fix))
        except Exception as error:  # noqa: BLE001 - one broken link must not hide the others
            self.checks.append(
                Check(name, Status.FAIL, f"unexpected {type(error).__name__}: {error}", "re-run with --debug")
            )

    @property
    def reader(self) -> Reader:
        """The workspace reads of the whole diagnosis, each made once (the planner's Reader)."""
        if self._reader is None:
            from provision.observe import Reader

            self._reader = Reader(self.ws)
        return self._reader

    def state_record(self) -> StateRecord | None:
        return self.reader.state(self.env)

    def changes(self, *, include_workflow: bool) -> list[Change]:
        """What `dbtwf apply` would do now (the planner's answer, on the same reads)."""
        if include_workflow not in self._changes:
            from provision.desired import desired_state
            from provision.observe import observe
            from provision.plan import plan, with_notebook_source

            desired = desired_state(self.env, self._token)
            observed = observe(self.reader, self.env, include_workflow=include_workflow)
            observed = with_notebook_source(self.reader, self.env, observed, desired)
            self._changes[include_workflow] = plan(desired, observed, include_workflow=include_workflow)
        return self._changes[include_workflow]

    # -- the links ------------------------------------------------------------------------
    def config(self) -> str:
        self._env = self._load_environment()
        env = self._env
        jobs = ", ".join(str(task.job_id) for task in env.dbt_jobs) or "none"
        where = f"dbt account {env.dbt_cloud_account_id} on {env.dbt_cloud_host}"
        return f"environment {env.name!r}: {where}, jobs {jobs}"

    def databricks_auth(self) -> str:
        from provision.location import resolve_location

        self._ws = self._connect(self.env)
        self._env = resolve_location(self.ws, self.env)
        user = self.ws.current_user()
        return f"{user} on {self.ws.host}"

    def dbt_token(self) -> str:
        from provision.token import NO_TOKEN_HINT, mask

        found = self._find_token()
        if found is None:
            raise _Failed("no dbt Cloud token found", NO_TOKEN_HINT)
        self._token, source = found
        return f"{mask(self._token)} from {source}"

    def optional_dbt_token(self) -> str:
        """dbt platform tasks: Databricks reaches dbt through the connection; a local token only
        lets doctor check the dbt jobs too."""
        if self._find_token() is None:
            return "none found; dbt platform tasks need none (set one to also check the dbt jobs)"
        return self.dbt_token()

    def dbt_platform_connection(self) -> str:
        """The Unity Catalog connection the dbt platform tasks authenticate with (never created by dbtwf)."""
        from provision.platform import HOW_TO_CREATE

        name = str(self.env.dbt_platform_connection)
        fix = f"dbtwf never creates it: {HOW_TO_CREATE}; then name it in dbt_platform_connection"
        try:
            found = self.ws.get_connection(name)
        except DbtwfError as error:
            raise _Failed(f"cannot read Unity Catalog connection {name!r}: {error.message}", fix) from None
        if found is None:
            raise _Failed(f"Unity Catalog connection {name!r} does not exist (or you may not see it)", fix)
        owner = f", owner {found['owner']}" if found.get("owner") else ""
        return f"{name!r} exists ({found.get('connection_type') or 'unknown type'}{owner})"

    def dbt_jobs(self) -> str:
        from provision.dbt_cloud import fetch_dbt_job

        assert self._token is not None
        if not self.env.dbt_jobs:
            raise _Failed("the environment lists no dbt jobs", "add one under dbt_jobs in dbtwf.toml")
        names = []
        for task in self.env.dbt_jobs:
            job = fetch_dbt_job(
                self.env.dbt_cloud_host, self.env.dbt_cloud_account_id, task.job_id, self._token
            )
            names.append(f"{task.job_id} {job.get('name')!r}" if job.get("name") else str(task.job_id))
        return "token accepted; job " + ", ".join(names)

    def secret_scope(self) -> str:
        if not self.reader.has_scope(self.env.secret_scope):
            raise _Failed(f"secret scope {self.env.secret_scope!r} does not exist", _APPLY_FIX)
        return f"{self.env.secret_scope!r} exists"

    def secret_key(self) -> str:
        from provision.plan import format_ms
        from provision.state import token_fingerprint

        env = self.env
        listed = self.reader.secrets(env.secret_scope)
        name = f"{env.secret_scope}/{env.secret_key}"
        if env.secret_key not in listed:
            raise _Failed(f"secret {name} is missing", _APPLY_FIX)
        record = self.state_record()
        stored_at = record.secret_updated_at if record is not None else None
        if stored_at is not None and listed[env.secret_key] != stored_at:
            raise _Failed(
                f"secret {name} was overwritten outside dbtwf at {format_ms(listed[env.secret_key])} "
                f"(dbtwf stored it at {format_ms(stored_at)}): the runner may read another value",
                f"{_APPLY_FIX} to store the token again (it needs the token)",
            )
        if self._token and record is not None and record.token_fingerprint:
            if token_fingerprint(self._token, record.token_salt) != record.token_fingerprint:
                raise _Failed(
                    f"secret {name} holds another token than the local one",
                    f"{_APPLY_FIX} to store the current token",
                )
            return f"{name} present, same token as the local one"
        return f"{name} present"

    def scope_readers(self) -> str:
        env = self.env
        record = self.state_record()
        if not env.scope_readers and not (record is not None and record.granted_readers):
            return "no scope_readers configured"
        permissions = self.reader.acls(env.secret_scope)
        missing = [p for p in env.scope_readers if permissions.get(p, "").upper() not in _READ_OR_HIGHER]
        if missing:
            raise _Failed(f"no READ on {env.secret_scope!r} for {', '.join(missing)}", _APPLY_FIX)
        granted = record.granted_readers if record is not None else []
        stale = [p for p in granted if p not in env.scope_readers and permissions.get(p) == "READ"]
        if stale:
            raise _Failed(
                f"{', '.join(stale)} still read {env.secret_scope!r}: "
                "dbtwf granted it, and they left scope_readers",
                f"{_APPLY_FIX} to take that READ back",
            )
        return (
            f"READ for {', '.join(env.scope_readers)}" if env.scope_readers else "no scope_readers configured"
        )

    def scope_access(self) -> str:
        """Who besides the scope's managers can read the token: on a workspace that is not on
        the Premium plan, a scope can only be created for all users."""
        from provision.location import all_users_scope_warning

        env = self.env
        try:
            acls = self.reader.acls(env.secret_scope)
        except DbtwfError as error:
            raise _Warned(
                f"cannot read who can read scope {env.secret_scope!r}: {error.message}",
                "listing a scope's ACLs needs MANAGE on it; ask its manager or a workspace admin",
            ) from None
        if "users" in acls:
            raise _Warned(
                all_users_scope_warning(env.secret_scope, acls["users"]).split(" (", 1)[0],
                "use a Premium workspace: delete the scope, run `dbtwf apply` (the new scope is yours "
                "alone) and list who else may read it in scope_readers; or accept that every "
                "workspace user can read the token",
            )
        return f"{env.secret_scope!r}: " + ", ".join(f"{p} {acls[p]}" for p in sorted(acls))

    def notebook_location(self) -> str:
        """Who can edit the notebook that reads the token, and the state record beside it."""
        from provision.location import describe_all_users, observe_location

        env = self.env
        facts = observe_location(self.ws, env)
        fix = (
            f"set notebook_path for environment {env.name!r} in dbtwf.toml to a folder only you can "
            f"edit, such as ~/.dbtwf/{env.name}/run_dbt_cloud_job (the default), and run `dbtwf apply`; "
            "then `dbtwf destroy` the old location's leftovers or delete them by hand"
        )
        if facts.unknown:
            raise _Warned(f"cannot read who can edit {facts.checked_path}: {facts.unknown}", None)
        if not facts.access_control:
            raise _Warned(
                f"every workspace user can edit {env.notebook_path}: this workspace has no access "
                "control on notebooks and folders (it is not on the Premium plan)",
                "use a Premium workspace, or accept that any user can change the code that reads the token",
            )
        if facts.editable_by_all_users:
            raise _Failed(
                f"every workspace user can edit {env.notebook_path} and the state record beside it "
                f"({describe_all_users(facts)}): anyone can change the code that reads the dbt Cloud token",
                fix,
            )
        return f"{facts.checked_path}: only you, those you granted and workspace admins can edit it"

    def notebook(self) -> str:
        from provision.change import Action

        env = self.env
        change = next(c for c in self.changes(include_workflow=False) if c.resource == "notebook")
        if change.action is Action.CREATE:
            raise _Failed(f"notebook {env.notebook_path} does not exist", _APPLY_FIX)
        if change.action is not Action.NOOP:
            raise _Failed(
                f"notebook {env.notebook_path} {change.reason}", f"{_APPLY_FIX} to upload the current one"
            )
        return f"{env.notebook_path} is {change.reason}"

    def workflow(self) -> str:
        from provision.change import Action
        from provision.desired import is_owned

        env = self.env
        record = self.state_record()
        if record is None or record.workflow_job_id is None:
            from provision.observe import find_owned_workflow

            find_owned_workflow(self.reader, env, record)  # deployed from elsewhere: says where
            raise _Failed(f"no workflow recorded for environment {env.name!r}", _APPLY_FIX)
        job = self.reader.job(record.workflow_job_id)
        if job is None:
            raise _Failed(
                f"workflow {record.workflow_job_id} was deleted", f"{_APPLY_FIX} to create it again"
            )
        if not is_owned(job, env):
            raise _Failed(
                f"workflow {record.workflow_job_id} lacks the tags {MANAGED_BY_TAG}={MANAGED_BY_VALUE}, "
                f"{ENVIRONMENT_TAG}={env.name}",
                f"{_APPLY_FIX} to restore them",
            )
        drift = [
            change
            for change in self.changes(include_workflow=True)
            if change.resource in ("workflow", "task", "notebook-acl") and change.action != Action.NOOP
        ]
        if drift:
            reasons = "; ".join(f"{c.name}: {c.reason}" for c in drift)
            raise _Failed(f"workflow {record.workflow_job_id} differs from the config: {reasons}", _APPLY_FIX)
        name = (job.get("settings") or {}).get("name")
        from provision.bundle import bundle_note, is_bundle_managed

        if is_bundle_managed(job.get("settings") or {}):
            return f"{record.workflow_job_id} {name!r} {bundle_note(job['settings'])}: the bundle manages it"
        return f"{record.workflow_job_id} {name!r} owned and in sync"

    def added_tasks(self) -> str:
        record = self.state_record()
        added = record.added_tasks if record is not None else []
        if not added:
            return "none"
        missing = []
        for job_id in sorted({task.job_id for task in added}):
            job = self.reader.job(job_id)
            keys = {t.get("task_key") for t in ((job or {}).get("settings") or {}).get("tasks") or []}
            missing += [
                f"{t.task_key} in {job_id}" for t in added if t.job_id == job_id and t.task_key not in keys
            ]
        if missing:
            raise _Failed(
                f"tasks added by dbtwf are gone: {', '.join(missing)}",
                "run `dbtwf add-task` again for each (or `dbtwf destroy` to forget them)",
            )
        return f"{len(added)} present"

    def lock(self) -> str:
        from provision.state import read_lock

        held = read_lock(self.ws, self.env)
        if held is None:
            return "not held"
        now = self._now()
        if held.is_live(now):
            return f"held by {held.describe(now)}: a dbtwf run is probably going on"
        raise _Failed(
            f"stale lock: held by {held.describe(now)} ({held.path}); apply and destroy stop on it",
            "if no dbtwf run is going on, re-run `dbtwf apply --break-lock` to remove it",
        )

    def compute(self) -> str:
        compute = self.env.compute
        if compute.kind == "serverless":
            return "serverless (assumed available: no cluster configured)"
        if compute.kind == "job_cluster":
            node = (compute.new_cluster or {}).get("node_type_id", "")
            return f"a new job cluster per run {node}".strip()
        cluster_id = compute.existing_cluster_id or ""
        cluster = self.ws.get_cluster(cluster_id)
        if cluster is None:
            raise _Failed(
                f"cluster {cluster_id} does not exist",
                f"set cluster_id of environment {self.env.name!r} in dbtwf.toml to an existing cluster's id "
                "(or remove it to run on serverless)",
            )
        state = str(cluster.get("state") or "UNKNOWN")
        if state not in _USABLE_CLUSTER_STATES:
            raise _Failed(f"cluster {cluster_id} is {state}", "fix or restart the cluster in the workspace")
        return f"cluster {cluster_id} ({cluster.get('cluster_name') or 'unnamed'}) is {state}"


def diagnose(
    load_environment: Callable[[], Environment],
    connect: Callable[[Environment], Workspace],
    *,
    find_token: Callable[[], tuple[str, str] | None] | None = None,
    now: Callable[[], float] = time.time,
) -> list[Check]:
    """Every link of the chain, in order. ``find_token`` defaults to the environment variable,
    then the keyring (never a prompt: doctor must run unattended)."""
    if find_token is None:
        from provision.token import token_source

        find_token = token_source
    doctor = _Doctor(load_environment, connect, find_token, now)
    doctor.run("config", (), doctor.config, _CONFIG_FIX)
    doctor.run("databricks auth", ("config",), doctor.databricks_auth, _AUTH_FIX)
    if doctor._env is not None and not doctor._env.uses_notebook:
        _diagnose_platform(doctor)
        return doctor.checks
    doctor.run("dbt token", (), doctor.dbt_token)
    doctor.run("dbt jobs", ("config", "dbt token"), doctor.dbt_jobs)
    doctor.run("secret scope", ("databricks auth",), doctor.secret_scope)
    doctor.run("secret key", ("secret scope",), doctor.secret_key)
    doctor.run("scope readers", ("secret scope",), doctor.scope_readers)
    doctor.run("scope access", ("secret scope",), doctor.scope_access)
    doctor.run("notebook", ("databricks auth",), doctor.notebook)
    doctor.run("notebook location", ("databricks auth",), doctor.notebook_location)
    doctor.run("workflow", ("databricks auth",), doctor.workflow)
    doctor.run("added tasks", ("databricks auth",), doctor.added_tasks)
    doctor.run("compute", ("databricks auth",), doctor.compute)
    doctor.run("lock", ("databricks auth",), doctor.lock)
    return doctor.checks


def _diagnose_platform(doctor: _Doctor) -> None:
    """An environment of dbt platform tasks: no secret, notebook or compute to check, but the
    Unity Catalog connection they authenticate with."""
    doctor.run("dbt token", (), doctor.optional_dbt_token)
    if doctor._token is not None:
        doctor.run("dbt jobs", ("config", "dbt token"), doctor.dbt_jobs)
    doctor.run("dbt platform connection", ("databricks auth",), doctor.dbt_platform_connection)
    doctor.run("workflow", ("databricks auth",), doctor.workflow)
    doctor.run("added tasks", ("databricks auth",), doctor.added_tasks)
    doctor.run("lock", ("databricks auth",), doctor.lock)


def all_passed(checks: list[Check]) -> bool:
    """No check failed or was skipped (warnings do not fail doctor; they are shown)."""
    return all(check.status in (Status.OK, Status.WARN) for check in checks)


def exit_code(checks: list[Check]) -> int:
    """0 when no check failed (warnings are shown, not failures); 2 when the config cannot be
    used (bad input: every link that needs it was skipped, so nothing was sent); 1 otherwise."""
    if all_passed(checks):
        return 0
    config_failed = any(check.name == "config" and check.status is Status.FAIL for check in checks)
    return 2 if config_failed else 1
