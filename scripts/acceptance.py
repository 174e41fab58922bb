#!/usr/bin/env python3
"""`make acceptance`: dbtwf end to end against a real Databricks workspace and dbt Cloud account.

With DBTWF_ACCEPTANCE=1 and the usual variables set, it runs what a user runs, each as a
`dbtwf` process with its own temporary dbtwf.toml:

    dbtwf onboard --dbt-job-url URL --env PREFIX --workflow ... --notebook-path ... --secret-scope ... --yes
    dbtwf run                      (the dbt job really runs and must succeed)
    dbtwf add-task --workflow ID --dbt-job J2 --task-key ... --yes
                                   (on a two-task workflow the suite creates itself; never run)
    dbtwf plan --json              (must be a no-op)
    dbtwf doctor
    dbtwf destroy --yes

then checks with the Databricks SDK that destroy removed dbtwf's objects and that the
suite's own workflow has its two tasks exactly as before. Everything it creates is named
`dbtwf-acc-<random>` (environment, secret scope, the folder /Users/<you>/dbtwf-acc-<random>/,
workflow names, task key) and is removed at the end, also when a step fails: `dbtwf destroy`
first, then a sweep with the SDK of what is left under those exact names. It looks up
nothing but those names and never deletes anything else.

The dbt Cloud token is read from DBT_CLOUD_API_TOKEN only: never put on a command line,
never printed; the dbtwf processes use keyring's fail backend, so no keyring is read or
written. Without DBTWF_ACCEPTANCE=1 it says what to set and exits 0.

`--local` (make acceptance-local) starts the local emulators, seeds the dbt one with a
succeeding job, sets the variables to point at them and runs the same suite unchanged.

Exit codes: 0 every step passed and the workspace was left as found; 1 a step or the
clean-up failed; 2 a required variable is missing.

Standard library and databricks-sdk only (imported when needed, so `--help` is instant).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

REPO_ROOT = Path(__file__).resolve().parents[1]
PREFIX_STEM = "dbtwf-acc-"
NOTEBOOK_NAME = "run_dbt_cloud_job"
FOREIGN_TASKS = ("acc_check_a", "acc_check_b")
DEFAULT_STEP_TIMEOUT = 3600.0  # a real dbt job may take a while; a hung step must not hang forever

REQUIRED_HELP = """\
dbtwf acceptance suite: not run (DBTWF_ACCEPTANCE is not 1).

It runs onboard, run, add-task, plan, doctor and destroy against a REAL workspace and dbt
Cloud account, creating objects named dbtwf-acc-<random> and removing them at the end.
Point it at a sandbox workspace. Set:

  export DBTWF_ACCEPTANCE=1
  export DATABRICKS_HOST=https://<workspace>   and DATABRICKS_TOKEN=dapi...
      (or DATABRICKS_CONFIG_PROFILE=<profile of ~/.databrickscfg>)
  export DBT_CLOUD_HOST=<ACCOUNT_PREFIX>.us1.dbt.com   (or your single-tenant host)
  export DBT_CLOUD_ACCOUNT_ID=<account id>
  read -rs DBT_CLOUD_API_TOKEN && export DBT_CLOUD_API_TOKEN
      (paste a token that can read and trigger the job; typed after export ...= it stays in shell history)
  export DBTWF_ACCEPTANCE_JOB_ID=<a dbt job that succeeds; it is run once>
optional:
  export DBTWF_ACCEPTANCE_JOB_ID_2=<another dbt job, for the added task; never run>
  export DBTWF_ACCEPTANCE_CLUSTER_ID=<cluster id>   (a workspace without serverless jobs)
  export DBTWF_ACCEPTANCE_TIMEOUT=<seconds per step, default 3600>

then: make acceptance        (or: make acceptance-local, the same suite against the emulators)
"""


class StepFailed(Exception):
    """A step did not do what it should; the message says what happened."""


class MissingSettings(Exception):
    """DBTWF_ACCEPTANCE=1 but a required variable is not set."""


class Terminated(BaseException):
    """SIGTERM: unwind like Ctrl-C so the clean-up in `finally` runs."""


# --- settings --------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    dbt_host: str
    dbt_account_id: int
    dbt_token: str = field(repr=False)
    job_id: int
    job_id_2: int | None
    cluster_id: str | None
    step_timeout: float
    databricks_where: str  # what the SDK will use, for the header (host or profile)


def read_settings(environ: Mapping[str, str]) -> Settings:
    def get(name: str) -> str:
        return environ.get(name, "").strip()

    missing = [
        name
        for name in (
            "DBT_CLOUD_HOST",
            "DBT_CLOUD_ACCOUNT_ID",
            "DBT_CLOUD_API_TOKEN",
            "DBTWF_ACCEPTANCE_JOB_ID",
        )
        if not get(name)
    ]
    if not get("DATABRICKS_HOST") and not get("DATABRICKS_CONFIG_PROFILE"):
        missing.insert(0, "DATABRICKS_HOST (+ DATABRICKS_TOKEN) or DATABRICKS_CONFIG_PROFILE")
    if missing:
        raise MissingSettings("missing: " + ", ".join(missing))

    def number(name: str) -> int:
        try:
            return int(get(name))
        except ValueError:
            raise MissingSettings(f"{name} must be a number, not {get(name)!r}") from None

    try:
        timeout = float(get("DBTWF_ACCEPTANCE_TIMEOUT") or DEFAULT_STEP_TIMEOUT)
    except ValueError:
        raise MissingSettings("DBTWF_ACCEPTANCE_TIMEOUT must be a number of seconds") from None
    where = get("DATABRICKS_HOST") or f"profile {get('DATABRICKS_CONFIG_PROFILE')}"
    return Settings(
        dbt_host=get("DBT_CLOUD_HOST"),
        dbt_account_id=number("DBT_CLOUD_ACCOUNT_ID"),
        dbt_token=get("DBT_CLOUD_API_TOKEN"),
        job_id=number("DBTWF_ACCEPTANCE_JOB_ID"),
        job_id_2=number("DBTWF_ACCEPTANCE_JOB_ID_2") if get("DBTWF_ACCEPTANCE_JOB_ID_2") else None,
        cluster_id=get("DBTWF_ACCEPTANCE_CLUSTER_ID") or None,
        step_timeout=timeout,
        databricks_where=where,
    )


def dbt_base_url(host: str) -> str:
    """dbt-cloud-cli's DBT_CLOUD_HOST is a bare host (https implied); a URL is used as is."""
    text = host.strip().rstrip("/")
    return text if "://" in text else f"https://{text}"


# --- running dbtwf -----------------------------------------------------------------------


@dataclass(frozen=True)
class Completed:
    code: int
    stdout: str
    stderr: str


class Invoker(Protocol):
    """Runs `dbtwf ARGS` with ``env`` as its whole environment; ``echo`` gets each output line."""

    def __call__(
        self, args: Sequence[str], env: Mapping[str, str], timeout: float, echo: Callable[[str], None]
    ) -> Completed: ...


def find_dbtwf() -> str:
    beside = Path(sys.executable).parent / "dbtwf"
    if beside.exists():
        return str(beside)
    found = shutil.which("dbtwf")
    if found is None:
        raise StepFailed("the dbtwf command is not installed; run `make install`")
    return found


class SubprocessInvoker:
    """`dbtwf` as a child process; both streams echoed line by line as they come."""

    def __init__(self, executable: str | None = None) -> None:
        self.executable = executable

    def __call__(
        self, args: Sequence[str], env: Mapping[str, str], timeout: float, echo: Callable[[str], None]
    ) -> Completed:
        executable = self.executable or find_dbtwf()
        process = subprocess.Popen(
            [executable, *args],
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        collected: dict[str, list[str]] = {"stdout": [], "stderr": []}
        lock = threading.Lock()

        def pump(name: str, stream: Any) -> None:
            for line in stream:
                with lock:
                    collected[name].append(line)
                    echo(line.rstrip("\n"))

        readers = [
            threading.Thread(target=pump, args=("stdout", process.stdout), daemon=True),
            threading.Thread(target=pump, args=("stderr", process.stderr), daemon=True),
        ]
        for reader in readers:
            reader.start()
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise StepFailed(f"dbtwf {args[0]} took more than {timeout:.0f} s; stopped it") from None
        finally:
            if process.poll() is None:  # Ctrl-C or SIGTERM while waiting
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            for reader in readers:
                reader.join(timeout=5)
        return Completed(code, "".join(collected["stdout"]), "".join(collected["stderr"]))


# --- the services' public APIs -----------------------------------------------------------


def dbt_get_job(settings: Settings, job_id: int) -> dict[str, Any]:
    """GET /api/v2/accounts/{a}/jobs/{j}/ (public dbt Cloud API v2); the token in the header only."""
    url = f"{dbt_base_url(settings.dbt_host)}/api/v2/accounts/{settings.dbt_account_id}/jobs/{job_id}/"
    request = urllib.request.Request(url, method="GET")
    request.add_header("Authorization", f"Token {settings.dbt_token}")
    request.add_header("Accept", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            body = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        raise StepFailed(
            f"dbt Cloud answered {error.code} for job {job_id} of account {settings.dbt_account_id}: "
            "check DBT_CLOUD_HOST, DBT_CLOUD_ACCOUNT_ID, the job id and the token's permissions"
        ) from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise StepFailed(f"cannot reach dbt Cloud at {dbt_base_url(settings.dbt_host)}: {error}") from None
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict):
        raise StepFailed(f"dbt Cloud's answer for job {job_id} has no job in it")
    return data


def task_dicts(workspace: Any, job_id: int) -> dict[str, dict[str, Any]]:
    """The workflow's tasks as jobs/get returns them, by task key."""
    job = workspace.jobs.get(job_id)
    tasks = job.settings.tasks if job.settings is not None else None
    return {task.task_key: task.as_dict() for task in tasks or []}


def jobs_named(workspace: Any, name: str) -> list[int]:
    """Ids of the jobs with exactly this name (jobs/list's own name filter: nothing else is read)."""
    return [int(job.job_id) for job in workspace.jobs.list(name=name) if job.job_id is not None]


def scope_named(workspace: Any, name: str) -> str | None:
    """The scope of this name as the workspace spells it (scope names are case-insensitive)."""
    for scope in workspace.secrets.list_scopes():
        if scope.name is not None and scope.name.lower() == name.lower():
            return str(scope.name)
    return None


def path_exists(workspace: Any, path: str) -> bool:
    from databricks.sdk.errors import NotFound

    try:
        workspace.workspace.get_status(path)
    except NotFound:
        return False
    return True


# --- the suite ---------------------------------------------------------------------------


@dataclass
class StepRecord:
    name: str
    seconds: float
    ok: bool


@dataclass
class Names:
    """Everything the suite creates, all carrying the one random prefix."""

    prefix: str
    user: str

    @property
    def environment(self) -> str:
        return self.prefix

    @property
    def scope(self) -> str:
        return self.prefix

    @property
    def folder(self) -> str:
        return f"/Users/{self.user}/{self.prefix}"

    @property
    def notebook(self) -> str:
        return f"{self.folder}/{NOTEBOOK_NAME}"

    @property
    def workflow(self) -> str:
        return f"{self.prefix}-dbt-workflow"

    @property
    def foreign_workflow(self) -> str:
        return f"{self.prefix}-foreign-workflow"

    @property
    def added_task(self) -> str:
        return self.prefix.replace("-", "_")


def new_prefix() -> str:
    return PREFIX_STEM + secrets.token_hex(4)


class Suite:
    def __init__(
        self,
        settings: Settings,
        invoke: Invoker,
        *,
        out: Callable[[str], None] | None = None,
        environ: Mapping[str, str] | None = None,
        prefix: str | None = None,
        workspace: Any = None,
    ) -> None:
        self.settings = settings
        self.invoke = invoke
        self.out = out or (lambda text: print(text, flush=True))
        self.environ = dict(os.environ if environ is None else environ)
        self.prefix = prefix or new_prefix()
        self._workspace = workspace
        self.steps: list[StepRecord] = []
        self.created: list[str] = []
        self.names: Names | None = None
        self.foreign_id: int | None = None
        self.foreign_tasks: dict[str, dict[str, Any]] = {}
        self.workflow_ids: set[int] = set()
        self.onboard_started = False
        self.destroyed = False
        self.config_dir = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-"))
        self.config_path = self.config_dir / "dbtwf.toml"

    # -- plumbing ------------------------------------------------------------------------
    @property
    def workspace(self) -> Any:
        if self._workspace is None:
            from databricks.sdk import WorkspaceClient

            self._workspace = WorkspaceClient()  # the SDK's unified auth: host+token, profile, ...
        return self._workspace

    def say(self, text: str = "") -> None:
        self.out(text)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        number = len(self.steps) + 1
        self.say()
        self.say(f"[{number}] {name}")
        started = time.monotonic()
        ok = False
        try:
            yield
            ok = True
        finally:
            seconds = time.monotonic() - started
            self.steps.append(StepRecord(name, seconds, ok))
            self.say(f"    {'ok' if ok else 'FAILED'} in {seconds:.1f} s")

    def record(self, what: str) -> None:
        self.created.append(what)
        self.say(f"    created: {what}")

    def dbtwf_env(self) -> dict[str, str]:
        """This environment, with dbtwf pointed at the temp config and kept off any keyring."""
        env = {k: v for k, v in self.environ.items() if k not in ("DBTWF_ENV", "DBT_CLOUD_JOB_ID")}
        env.update(
            {
                "DBTWF_CONFIG": str(self.config_path),
                # The token comes from DBT_CLOUD_API_TOKEN; the fail backend makes sure the
                # user's keyring is never read nor written.
                "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
                "PYTHONUNBUFFERED": "1",
                "NO_COLOR": "1",
                "COLUMNS": "200",
            }
        )
        env.pop("FORCE_COLOR", None)
        return env

    def dbtwf(self, *args: str) -> Completed:
        argv = ["--config", str(self.config_path), *args]
        if self.settings.dbt_token in " ".join(argv):
            raise StepFailed("refusing to put the dbt Cloud token on a command line")
        self.say(f"    $ dbtwf {shlex.join(argv)}")
        result = self.invoke(
            argv, self.dbtwf_env(), self.settings.step_timeout, lambda line: self.say(f"    | {line}")
        )
        if self.settings.dbt_token in result.stdout + result.stderr:
            raise StepFailed(f"dbtwf {args[0]} printed the dbt Cloud token")
        if result.code != 0:
            raise StepFailed(f"dbtwf {args[0]} exited with {result.code}")
        return result

    # -- the scenario --------------------------------------------------------------------
    def run(self) -> int:
        """Every step, then the clean-up whatever happened; 0 only when all passed."""
        started = time.monotonic()
        self.say(f"dbtwf acceptance suite, prefix {self.prefix}")
        self.say(f"  Databricks: {self.settings.databricks_where}")
        self.say(
            f"  dbt Cloud:  {dbt_base_url(self.settings.dbt_host)}, account {self.settings.dbt_account_id}"
        )
        failure: str | None = None
        try:
            self.scenario()
        except StepFailed as error:
            failure = str(error)
        except KeyboardInterrupt:
            failure = "interrupted"
        except Terminated:
            failure = "terminated"
        except Exception as error:  # noqa: BLE001 - an SDK or network error: report it, then clean up
            failure = f"{type(error).__name__}: {error}"
        if failure is not None:
            self.say(f"    error: {failure}")
        leftovers = self.clean_up()
        shutil.rmtree(self.config_dir, ignore_errors=True)
        self.summary(time.monotonic() - started, failure, leftovers)
        return 0 if failure is None and not leftovers else 1

    def scenario(self) -> None:
        settings = self.settings
        with self.step("preflight: who am I, which dbt jobs"):
            user = self.workspace.current_user.me().user_name
            if not user:
                raise StepFailed("the workspace did not say who the current user is")
            self.names = names = Names(self.prefix, str(user))
            self.say(f"    Databricks user: {user}")
            job = dbt_get_job(settings, settings.job_id)
            self.say(f"    dbt job {settings.job_id}: {job.get('name')!r} (project {job.get('project_id')})")
            job_url = (
                f"{dbt_base_url(settings.dbt_host)}/deploy/{settings.dbt_account_id}"
                f"/projects/{job['project_id']}/jobs/{settings.job_id}"
            )
            second = settings.job_id_2 or settings.job_id
            if settings.job_id_2 is not None:
                other = dbt_get_job(settings, settings.job_id_2)
                self.say(f"    dbt job {second}: {other.get('name')!r} (for the added task)")
            if jobs_named(self.workspace, names.workflow) or jobs_named(
                self.workspace, names.foreign_workflow
            ):
                raise StepFailed(f"workflows named {self.prefix}-* exist already; not touching them")
            if scope_named(self.workspace, names.scope) or path_exists(self.workspace, names.folder):
                raise StepFailed(f"a scope or folder named {self.prefix} exists already; not touching it")

        with self.step("create a two-task workflow of the suite's own (it is never run)"):
            self.create_foreign_workflow(names)

        cluster = ["--cluster-id", settings.cluster_id] if settings.cluster_id else []
        with self.step("dbtwf onboard"):
            self.onboard_started = True
            self.dbtwf(
                "onboard",
                "--env",
                names.environment,
                "--dbt-job-url",
                job_url,
                "--workflow",
                names.workflow,
                "--notebook-path",
                names.notebook,
                "--secret-scope",
                names.scope,
                *cluster,
                "--yes",
            )
            self.check_onboarded(names)

        with self.step(f"dbtwf run (dbt job {settings.job_id} really runs)"):
            self.dbtwf("run", "--env", names.environment)

        with self.step(f"dbtwf add-task to {names.foreign_workflow!r}"):
            assert self.foreign_id is not None
            self.dbtwf(
                "add-task",
                "--env",
                names.environment,
                "--workflow",
                str(self.foreign_id),
                "--dbt-job",
                str(second),
                "--task-key",
                names.added_task,
                *cluster,
                "--yes",
            )
            after = task_dicts(self.workspace, self.foreign_id)
            self.check_foreign_tasks(after, expect_added=True)
            self.say(f"    added: task {names.added_task!r}; tasks {', '.join(FOREIGN_TASKS)} unchanged")

        with self.step("dbtwf plan --json is a no-op"):
            result = self.dbtwf("plan", "--env", names.environment, "--json")
            changes = plan_changes(result.stdout)
            pending = [c for c in changes if c.get("action") != "no-op"]
            if pending:
                listed = "; ".join(f"{c.get('action')} {c.get('resource')} {c.get('name')}" for c in pending)
                raise StepFailed(f"plan after onboard and add-task wants changes: {listed}")
            self.say(f"    {len(changes)} resource(s), all no-op")

        with self.step("dbtwf doctor"):
            self.dbtwf("doctor", "--env", names.environment)

        with self.step("dbtwf destroy --yes"):
            self.dbtwf("destroy", "--env", names.environment, "--yes")
            self.destroyed = True

        with self.step("verify: destroy removed dbtwf's objects, the foreign tasks are as they were"):
            self.check_destroyed(names)

    def create_foreign_workflow(self, names: Names) -> None:
        """Two condition tasks: valid on any workspace, need no compute, read and write nothing."""
        from databricks.sdk.service import jobs

        created = self.workspace.jobs.create(
            name=names.foreign_workflow,
            tags={"dbtwf-acceptance": self.prefix},
            max_concurrent_runs=1,
            tasks=[
                jobs.Task(
                    task_key=FOREIGN_TASKS[0],
                    condition_task=jobs.ConditionTask(op=jobs.ConditionTaskOp.EQUAL_TO, left="1", right="1"),
                ),
                jobs.Task(
                    task_key=FOREIGN_TASKS[1],
                    depends_on=[jobs.TaskDependency(task_key=FOREIGN_TASKS[0])],
                    condition_task=jobs.ConditionTask(
                        op=jobs.ConditionTaskOp.NOT_EQUAL, left="{{job.id}}", right="0"
                    ),
                ),
            ],
        )
        self.foreign_id = int(created.job_id)
        self.record(f"workflow {names.foreign_workflow!r} (job {self.foreign_id}) through the Jobs API")
        self.foreign_tasks = task_dicts(self.workspace, self.foreign_id)
        if sorted(self.foreign_tasks) != sorted(FOREIGN_TASKS):
            raise StepFailed(f"the new workflow has tasks {sorted(self.foreign_tasks)}, not {FOREIGN_TASKS}")

    def check_onboarded(self, names: Names) -> None:
        ids = jobs_named(self.workspace, names.workflow)
        self.workflow_ids.update(ids)
        if len(ids) != 1:
            raise StepFailed(f"onboard left {len(ids)} workflows named {names.workflow!r}, not one")
        self.record(f"workflow {names.workflow!r} (job {ids[0]}) by dbtwf onboard")
        scope = scope_named(self.workspace, names.scope)
        if scope is None:
            raise StepFailed(f"onboard created no secret scope {names.scope!r}")
        self.record(f"secret scope {scope} (holding the dbt token) by dbtwf onboard")
        if not path_exists(self.workspace, names.notebook):
            raise StepFailed(f"onboard uploaded no notebook at {names.notebook}")
        self.record(f"folder {names.folder} with the notebook {NOTEBOOK_NAME} by dbtwf onboard")

    def check_foreign_tasks(self, after: dict[str, dict[str, Any]], *, expect_added: bool) -> None:
        assert self.names is not None
        changed = [key for key, task in self.foreign_tasks.items() if after.get(key) != task]
        if changed:
            raise StepFailed(f"the foreign workflow's own tasks changed: {', '.join(changed)}")
        extra = sorted(set(after) - set(self.foreign_tasks))
        wanted = [self.names.added_task] if expect_added else []
        if extra != wanted:
            raise StepFailed(f"the foreign workflow has extra tasks {extra}, expected {wanted}")

    def check_destroyed(self, names: Names) -> None:
        assert self.foreign_id is not None
        self.check_foreign_tasks(task_dicts(self.workspace, self.foreign_id), expect_added=False)
        self.say(
            f"    {names.foreign_workflow!r}: tasks {', '.join(FOREIGN_TASKS)} as created, added task gone"
        )
        left = []
        if jobs_named(self.workspace, names.workflow):
            left.append(f"workflow {names.workflow!r}")
        if path_exists(self.workspace, names.notebook):
            left.append(f"notebook {names.notebook}")
        if scope_named(self.workspace, names.scope) is not None:
            left.append(f"secret scope {names.scope} (dbtwf created it)")
        if path_exists(self.workspace, names.folder):
            left.append(f"folder {names.folder} (dbtwf made it)")
        if left:
            raise StepFailed("destroy left " + ", ".join(left))
        self.say("    workflow, notebook, secret scope and folder gone")

    # -- clean-up ------------------------------------------------------------------------
    def clean_up(self) -> list[str]:
        """dbtwf destroy (if it has not run), then the SDK sweep; returns what is still there."""
        self.say()
        self.say("[clean-up] leave the workspace as found")
        started = time.monotonic()
        if self.onboard_started and not self.destroyed and self.config_path.exists():
            try:
                self.say("    dbtwf destroy first, since the scenario did not get to it")
                self.dbtwf("destroy", "--env", self.prefix, "--yes")
            except (StepFailed, OSError) as error:
                self.say(f"    dbtwf destroy failed ({error}); the sweep removes what is left")
        try:
            self.sweep()
            leftovers = self.leftovers()
        except Exception as error:  # noqa: BLE001 - say so, and fail the run
            leftovers = [f"the sweep failed: {type(error).__name__}: {error}"]
        seconds = time.monotonic() - started
        self.steps.append(StepRecord("clean-up", seconds, not leftovers))
        for item in leftovers:
            self.say(f"    STILL THERE: {item}")
        self.say(f"    {'ok' if not leftovers else 'FAILED'} in {seconds:.1f} s")
        return leftovers

    def _ensure_ours(self, name: str) -> None:
        if self.prefix not in name:
            raise AssertionError(f"refusing to delete {name!r}: it does not carry {self.prefix}")

    def sweep(self) -> None:
        """Delete what is left under the suite's names; nothing else is looked up or touched.
        Each deletion is tried on its own: one failing does not keep the others from running."""
        from databricks.sdk.errors import NotFound

        if self.names is None:
            self.say("    nothing was created")
            return
        names = self.names
        job_ids = set(self.workflow_ids)
        if self.foreign_id is not None:
            job_ids.add(self.foreign_id)
        for name in (names.workflow, names.foreign_workflow):
            self._attempt(
                f"look up workflows named {name!r}",
                lambda n: job_ids.update(jobs_named(self.workspace, n)),
                name,
            )

        def delete_job(job_id: int) -> None:
            try:
                job = self.workspace.jobs.get(job_id)
            except NotFound:
                return
            name = str(job.settings.name if job.settings else "")
            self._ensure_ours(name)
            self.workspace.jobs.delete(job_id)
            self.say(f"    deleted workflow {name!r} (job {job_id})")

        for job_id in sorted(job_ids):
            self._attempt(f"delete job {job_id}", delete_job, job_id)

        def delete_scope() -> None:
            scope = scope_named(self.workspace, names.scope)
            if scope is None:
                return
            self._ensure_ours(scope)
            try:
                grants = ", ".join(
                    f"{acl.principal} {getattr(acl.permission, 'value', acl.permission)}"
                    for acl in self.workspace.secrets.list_acls(scope)
                )
            except Exception as error:  # noqa: BLE001 - only for the report; delete anyway
                grants = f"not listed: {type(error).__name__}"
            self.workspace.secrets.delete_scope(scope)
            self.say(f"    deleted secret scope {scope} and its grants ({grants or 'none'})")

        self._attempt(f"delete secret scope {names.scope}", delete_scope)

        def delete_folder() -> None:
            if not path_exists(self.workspace, names.folder):
                return
            self._ensure_ours(names.folder)
            inside = [str(o.path).rsplit("/", 1)[-1] for o in self.workspace.workspace.list(names.folder)]
            self.workspace.workspace.delete(names.folder, recursive=True)
            held = f"holding {', '.join(sorted(inside))}" if inside else "empty"
            self.say(f"    deleted folder {names.folder} ({held}; recursive, its permissions go with it)")

        self._attempt(f"delete folder {names.folder}", delete_folder)

    def _attempt(self, what: str, action: Callable[..., object], *args: Any) -> None:
        try:
            action(*args)
        except Exception as error:  # noqa: BLE001 - reported; leftovers() then names what stayed
            self.say(f"    could not {what}: {type(error).__name__}: {error}")

    def leftovers(self) -> list[str]:
        if self.names is None:
            return []
        names = self.names
        left = [
            f"workflow {n!r}"
            for n in (names.workflow, names.foreign_workflow)
            if jobs_named(self.workspace, n)
        ]
        if scope_named(self.workspace, names.scope) is not None:
            left.append(f"secret scope {names.scope}")
        if path_exists(self.workspace, names.folder):
            left.append(f"folder {names.folder}")
        return left

    def summary(self, seconds: float, failure: str | None, leftovers: list[str]) -> None:
        self.say()
        self.say("step                                                                     result  seconds")
        for record in self.steps:
            self.say(f"{record.name[:72]:<72} {'ok' if record.ok else 'FAILED':<7} {record.seconds:7.1f}")
        if self.created:
            self.say("objects the suite created (all removed unless listed as STILL THERE above):")
            for item in self.created:
                self.say(f"  {item}")
        if failure is None and not leftovers:
            self.say(f"acceptance PASSED in {seconds:.1f} s; everything named {self.prefix} was removed")
        else:
            why = failure or "the clean-up left objects behind"
            self.say(f"acceptance FAILED in {seconds:.1f} s: {why}")
            if not leftovers:
                self.say(f"  everything named {self.prefix} was removed")


def plan_changes(stdout: str) -> list[dict[str, Any]]:
    """The changes of `dbtwf plan --json`: a list of changes, or an object with a `changes` list."""
    text = stdout.strip()
    start = min((i for i in (text.find("["), text.find("{")) if i >= 0), default=-1)
    if start < 0:
        raise StepFailed("dbtwf plan --json printed no JSON")
    try:
        data = json.loads(text[start:])
    except ValueError as error:
        raise StepFailed(f"dbtwf plan --json printed invalid JSON: {error}") from None
    changes = data.get("changes") if isinstance(data, dict) else data
    if not isinstance(changes, list) or not all(isinstance(c, dict) for c in changes):
        raise StepFailed("dbtwf plan --json printed neither a list of changes nor an object with one")
    return changes


# --- the local emulators (make acceptance-local) ---------------------------------------------


LOCAL_DATABRICKS_TOKEN = "dapi-acceptance-local"
LOCAL_DBT_TOKEN = "dbtc_acceptance_local_token_5e1f"
LOCAL_ACCOUNT_ID = 70403
LOCAL_JOB_ID = 2001
LOCAL_JOB_ID_2 = 2002
# Variables of the user's shell that would point the suite at a real service.
INHERITED_PREFIXES = ("DATABRICKS_", "DBT_CLOUD_", "DBTWF_", "ARM_", "AZURE_", "GOOGLE_")


@contextmanager
def local_services(root: Path) -> Iterator[dict[str, str]]:
    """Both emulators on 127.0.0.1, the dbt one seeded with jobs that succeed; yields the
    variables a user would export. Seeding is setting up the fake service: the suite itself
    only ever sees the variables."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from tests.emulators.databricks import DatabricksEmulator
    from tests.emulators.dbtcloud import DbtCloudEmulator, Scenario

    dbt = DbtCloudEmulator(token=LOCAL_DBT_TOKEN, account_id=LOCAL_ACCOUNT_ID)
    databricks = DatabricksEmulator(token=LOCAL_DATABRICKS_TOKEN)
    with dbt, databricks:
        dbt.add_job(LOCAL_JOB_ID, name="Acceptance build (succeeds)", scenario=Scenario("success", polls=1))
        dbt.add_job(LOCAL_JOB_ID_2, name="Acceptance marts (succeeds)", scenario=Scenario("success", polls=1))
        yield {
            "DBTWF_ACCEPTANCE": "1",
            "DATABRICKS_HOST": databricks.url,
            "DATABRICKS_TOKEN": LOCAL_DATABRICKS_TOKEN,
            # A path that does not exist: no ~/.databrickscfg profile is ever read.
            "DATABRICKS_CONFIG_FILE": str(root / "no-databrickscfg"),
            "DBT_CLOUD_HOST": dbt.url,
            "DBT_CLOUD_ACCOUNT_ID": str(LOCAL_ACCOUNT_ID),
            "DBT_CLOUD_API_TOKEN": LOCAL_DBT_TOKEN,
            "DBTWF_ACCEPTANCE_JOB_ID": str(LOCAL_JOB_ID),
            "DBTWF_ACCEPTANCE_JOB_ID_2": str(LOCAL_JOB_ID_2),
        }


def run_local(invoke: Invoker) -> int:
    root = Path(tempfile.mkdtemp(prefix="dbtwf-acc-local-"))
    try:
        with local_services(root) as variables:
            for name in [k for k in os.environ if k.startswith(INHERITED_PREFIXES)]:
                del os.environ[name]
            os.environ.update(variables)
            print("acceptance against the local emulators:", flush=True)
            for name, value in variables.items():
                print(f"  export {name}={shlex.quote(value) if 'TOKEN' not in name else '...'}", flush=True)
            return run_from_environment(invoke)
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --- entry point -------------------------------------------------------------------------


def run_from_environment(invoke: Invoker, out: Callable[[str], None] | None = None) -> int:
    say = out or (lambda text: print(text, flush=True))
    if os.environ.get("DBTWF_ACCEPTANCE", "").strip() != "1":
        say(REQUIRED_HELP.rstrip("\n"))
        return 0
    try:
        settings = read_settings(os.environ)
    except MissingSettings as error:
        say(f"acceptance: {error}")
        say("hint: unset DBTWF_ACCEPTANCE to see every variable the suite reads")
        return 2
    return Suite(settings, invoke, out=out).run()


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--local", action="store_true", help="start the local emulators and run the suite against them"
    )
    parser.add_argument("--dbtwf", metavar="PATH", help="the dbtwf executable (default: the installed one)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_terminated)
    invoke = SubprocessInvoker(args.dbtwf)
    if args.local:
        return run_local(invoke)
    return run_from_environment(invoke)


if __name__ == "__main__":
    sys.exit(main())
