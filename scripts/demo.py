#!/usr/bin/env python3
"""`make demo`: the whole onboarding of the guide, end to end, against local emulators.

Starts `scripts/serve_emulators.py` (Databricks and dbt Cloud on 127.0.0.1), creates a
"foreign" workflow the way a user's existing one would look, then runs what a user runs,
unchanged, each as a real `dbtwf` process whose output streams to this terminal:

    dbtwf onboard --dbt-job-url URL --yes --run
    dbtwf add-task --workflow 'Nightly ETL' --dbt-job URL2
    dbtwf plan
    dbtwf doctor
    dbtwf run
    dbtwf export bundle --out bundle
    dbtwf migrate --to dbt_platform --connection dbt_demo --yes

Everything lives in a temporary folder: HOME, the XDG folders, the Databricks config file
and the keyring backend point there (keyring's fail backend: nothing is stored), so the
user's keyring and ~/.databrickscfg are never read nor written. The folder is removed at the
end (keep it with --keep). Exit 0 when every step passed; otherwise non-zero, naming the step.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import selectors
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
SERVE_EMULATORS = REPO_ROOT / "scripts" / "serve_emulators.py"

FOREIGN_WORKFLOW = "Nightly ETL"
EMULATOR_START_TIMEOUT = 60.0
STEP_TIMEOUT = 300.0  # generous: a step that hangs must not hang the demo forever
# Variables of the user's shell that would point dbtwf, the SDK or keyring elsewhere.
INHERITED_PREFIXES = ("DATABRICKS_", "DBT_CLOUD_", "DBTWF_", "PYTHON_KEYRING", "XDG_", "ARM_", "AZURE_")
ANSI_ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
RUN_LINE = re.compile(r"^run (\d+): (\S+)$", re.MULTILINE)


class StepFailed(Exception):
    """A step of the demo did not do what it should; the message says which and why."""


class Terminated(BaseException):
    """SIGTERM: unwind like Ctrl-C so the emulators are stopped in `finally`."""


@dataclass
class Emulators:
    process: subprocess.Popen[bytes]
    settings: dict[str, str]
    example_job_url: str
    log_path: Path

    @property
    def databricks_host(self) -> str:
        return self.settings["DATABRICKS_HOST"]

    @property
    def dbt_host(self) -> str:
        return self.settings["DBT_CLOUD_HOST"]

    @property
    def dbt_account_id(self) -> str:
        return self.settings["DBT_CLOUD_ACCOUNT_ID"]


@dataclass
class Demo:
    root: Path
    workdir: Path
    env: dict[str, str]
    color: bool
    steps_done: list[str] = field(default_factory=list)


# --- output ----------------------------------------------------------------------------


def say(text: str = "") -> None:
    print(text, flush=True)


def heading(demo: Demo, number: int, title: str, command: str | None = None) -> None:
    bold, dim, reset = ("\x1b[1m", "\x1b[2m", "\x1b[0m") if demo.color else ("", "", "")
    say()
    say(f"{bold}== {number}. {title}{reset}")
    if command:
        say(f"{dim}${reset} {bold}{command}{reset}")


# --- the isolated environment ------------------------------------------------------------


def isolated_environment(root: Path, color: bool) -> dict[str, str]:
    """This process's environment with every user-specific location moved into ``root``."""
    home = root / "home"
    for folder in ("home", "home/.config", "home/.local/share", "home/.cache", "home/.local/state"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    env = {key: value for key, value in os.environ.items() if not key.startswith(INHERITED_PREFIXES)}
    env.update(
        {
            "HOME": str(home),
            "USERPROFILE": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_DATA_HOME": str(home / ".local/share"),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "XDG_STATE_HOME": str(home / ".local/state"),
            # A path that does not exist: the SDK finds no profile and uses the variables below.
            "DATABRICKS_CONFIG_FILE": str(home / ".databrickscfg"),
            # The token comes from DBT_CLOUD_API_TOKEN; the fail backend makes sure no keyring
            # (the user's real one included) is ever read or written.
            "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
            "PYTHONUNBUFFERED": "1",
            # dbtwf and `python` resolve to this checkout's virtualenv first.
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        }
    )
    if color:
        # The children write into our pipe; keep rich's colours and live table on a terminal.
        env["FORCE_COLOR"] = "1"
        env["COLUMNS"] = str(shutil.get_terminal_size().columns)
    else:
        env.pop("FORCE_COLOR", None)
        env["NO_COLOR"] = "1"
        env["COLUMNS"] = "120"
    return env


# --- the emulators ---------------------------------------------------------------------


def start_emulators(demo: Demo) -> Emulators:
    """serve_emulators.py as a subprocess; its `export` lines give the settings a user pastes."""
    log_path = demo.root / "emulators.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, str(SERVE_EMULATORS)],
        cwd=demo.root,
        env=demo.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=log,
    )
    log.close()
    assert process.stdout is not None
    settings: dict[str, str] = {}
    example_job_url = ""
    deadline = time.monotonic() + EMULATOR_START_TIMEOUT
    for line in _lines_until(process, deadline):
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            settings[name] = shlex.split(value)[0] if value else ""
        elif line.startswith("# example dbt job URL:"):
            example_job_url = line.split(":", 1)[1].strip()
            break
    if not example_job_url:
        detail = log_path.read_text(errors="replace").strip()
        stop_process(process)
        raise StepFailed(f"the emulators did not start: {detail or 'no output'}")
    return Emulators(process, settings, example_job_url, log_path)


def _lines_until(process: subprocess.Popen[bytes], deadline: float) -> Iterator[str]:
    """stdout lines of ``process`` until it closes stdout or the deadline passes."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    buffer = b""
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                yield line.decode("utf-8", "replace")
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(timeout=remaining):
                return
            chunk = os.read(fd, 65536)
            if not chunk:
                return
            buffer += chunk


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after a grace period; always reaped."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()


# --- REST calls the demo makes itself (what a user would do in the UI) ---------------------


def call_json(method: str, url: str, token: str, scheme: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", f"{scheme} {token}")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"{}")


def databricks(emulators: Emulators, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    url = emulators.databricks_host + path
    return call_json(method, url, emulators.settings["DATABRICKS_TOKEN"], "Bearer", body)


def dbt_cloud(emulators: Emulators, path: str) -> Any:
    url = f"{emulators.dbt_host}/api/v2/accounts/{emulators.dbt_account_id}{path}"
    return call_json("GET", url, emulators.settings["DBT_CLOUD_API_TOKEN"], "Token")


def make_dbt_connection(emulators: Emulators) -> None:
    """What an admin does once for the dbt platform task (Beta): a Unity Catalog connection to
    dbt Cloud, through the public API. Its options are the emulator's assumption (see
    tests/emulators/databricks_dbt_platform.py)."""
    options = {
        "host": emulators.dbt_host,
        "account_id": str(emulators.dbt_account_id),
        "token": emulators.settings["DBT_CLOUD_API_TOKEN"],
    }
    body = {"name": "dbt_demo", "connection_type": "HTTP", "options": options}
    databricks(emulators, "POST", "/api/2.1/unity-catalog/connections", body)


def create_foreign_workflow(emulators: Emulators) -> int:
    """A workflow dbtwf did not create: two notebook tasks, a tag, an email, a schedule."""
    settings = {
        "name": FOREIGN_WORKFLOW,
        "tags": {"team": "analytics"},
        "max_concurrent_runs": 1,
        "email_notifications": {"on_failure": ["data-team@example.com"]},
        "schedule": {"quartz_cron_expression": "0 0 2 * * ?", "timezone_id": "UTC", "pause_status": "PAUSED"},
        "tasks": [
            {
                "task_key": "ingest_orders",
                "notebook_task": {"notebook_path": "/Shared/etl/ingest_orders", "source": "WORKSPACE"},
            },
            {
                "task_key": "refresh_dashboards",
                "depends_on": [{"task_key": "ingest_orders"}],
                "notebook_task": {"notebook_path": "/Shared/etl/refresh_dashboards", "source": "WORKSPACE"},
            },
        ],
    }
    return int(databricks(emulators, "POST", "/api/2.2/jobs/create", settings)["job_id"])


def seed_handmade_setup(emulators: Emulators) -> str:
    """What a team that followed the guide by hand has: a scope holding the dbt token, the
    guide's code pasted into a notebook, and a workflow scheduling it with a job_id parameter.
    Returns the notebook's path."""
    import base64

    sys.path.insert(0, str(REPO_ROOT))
    from tests.guide_workspace import GUIDE_KEY, GUIDE_SCOPE, guide_source

    user = databricks(emulators, "GET", "/api/2.0/preview/scim/v2/Me")["userName"]
    folder, job_id = f"/Users/{user}/dbt", emulators.example_job_url.rstrip("/").rsplit("/", 1)[1]
    path = f"{folder}/trigger_dbt_job"
    source = guide_source(emulators.dbt_host, int(emulators.dbt_account_id))
    databricks(emulators, "POST", "/api/2.0/secrets/scopes/create", {"scope": GUIDE_SCOPE})
    token = emulators.settings["DBT_CLOUD_API_TOKEN"]
    databricks(
        emulators,
        "POST",
        "/api/2.0/secrets/put",
        {"scope": GUIDE_SCOPE, "key": GUIDE_KEY, "string_value": token},
    )
    databricks(emulators, "POST", "/api/2.0/workspace/mkdirs", {"path": folder})
    content = base64.b64encode(source.encode()).decode()
    body = {"path": path, "format": "SOURCE", "language": "PYTHON", "content": content}
    databricks(emulators, "POST", "/api/2.0/workspace/import", body)
    task = {"task_key": "trigger_dbt_job", "notebook_task": {"notebook_path": path, "source": "WORKSPACE"}}
    job = {"name": "trigger_dbt_job", "parameters": [{"name": "job_id", "default": job_id}], "tasks": [task]}
    databricks(emulators, "POST", "/api/2.2/jobs/create", job)
    return path


def workflow_settings(emulators: Emulators, job_id: int) -> dict[str, Any]:
    settings: dict[str, Any] = databricks(emulators, "GET", f"/api/2.2/jobs/get?job_id={job_id}")["settings"]
    return settings


def second_dbt_job(emulators: Emulators, onboarded_url: str) -> tuple[int, str]:
    """Another dbt job of the account that succeeds, found as a user would: in the job list."""
    onboarded_id = int(onboarded_url.rstrip("/").rsplit("/", 1)[1])
    for job in dbt_cloud(emulators, "/jobs/")["data"]:
        if job["id"] != onboarded_id and str(job.get("name", "")).endswith("(succeeds)"):
            url = onboarded_url.rstrip("/").rsplit("/", 1)[0] + f"/{job['id']}"
            return int(job["id"]), url
    raise StepFailed("serve_emulators.py offers no second succeeding dbt job for add-task")


# --- running dbtwf as a user does --------------------------------------------------------


def run_step(demo: Demo, number: int, title: str, argv: Sequence[str], check: str | None = None) -> str:
    """Run ``argv`` (shown as the user types it), stream its output, return the output text.

    ``check``: a pattern the output must contain, or the step fails.
    """
    shown = shlex.join(argv)
    heading(demo, number, title, shown)
    executable = shutil.which(argv[0], path=demo.env["PATH"])
    if executable is None:
        raise StepFailed(f"step {number} ({shown}): {argv[0]} is not installed; run `make install`")
    process = subprocess.Popen(
        [executable, *argv[1:]],
        cwd=demo.workdir,
        env=demo.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # one stream, so status lines and results keep their order
    )
    captured = bytearray()
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + STEP_TIMEOUT
        fd = process.stdout.fileno()
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise StepFailed(f"step {number} ({shown}) took more than {STEP_TIMEOUT:.0f} s")
                if not selector.select(timeout=remaining):
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                captured += chunk
                sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
        code = process.wait(timeout=STEP_TIMEOUT)
    finally:
        stop_process(process)
    output = ANSI_ESCAPE.sub("", captured.decode("utf-8", "replace")).replace("\r", "")
    if code != 0:
        raise StepFailed(f"step {number} ({shown}) exited with {code}")
    if check is not None and not re.search(check, output, re.MULTILINE):
        raise StepFailed(f"step {number} ({shown}) did not print {check!r}")
    demo.steps_done.append(shown)
    return output


def run_url(output: str, step: str) -> tuple[str, str]:
    found = list(RUN_LINE.finditer(output))
    if not found:
        raise StepFailed(f"{step} printed no run URL")
    return found[-1].group(1), found[-1].group(2)


def play(demo: Demo) -> None:
    started = time.monotonic()
    heading(demo, 1, "Start local Databricks and dbt Cloud emulators", "python scripts/serve_emulators.py &")
    emulators = start_emulators(demo)
    try:
        for line in [f"export {k}={shlex.quote(v)}" for k, v in emulators.settings.items()]:
            say(f"  {line}")
        say(f"  # dbt job URL: {emulators.example_job_url}")
        demo.env.update(emulators.settings)  # what the user pastes into the shell
        _steps(demo, emulators, started)
    finally:
        stop_process(emulators.process)


def _steps(demo: Demo, emulators: Emulators, started: float) -> None:
    heading(demo, 2, f"A workflow that already exists and that dbtwf does not own: {FOREIGN_WORKFLOW!r}")
    foreign_id = create_foreign_workflow(emulators)
    foreign_before = workflow_settings(emulators, foreign_id)
    say(
        f"  created through the Jobs API (POST /api/2.2/jobs/create): job {foreign_id}, tasks "
        + ", ".join(t["task_key"] for t in foreign_before["tasks"])
    )
    second_job_id, second_job_url = second_dbt_job(emulators, emulators.example_job_url)

    onboard = run_step(
        demo,
        3,
        "Onboard: config, token check, secret, notebook, workflow, and a first run",
        ["dbtwf", "onboard", "--dbt-job-url", emulators.example_job_url, "--yes", "--run"],
        check=r"^run \d+ succeeded",
    )
    onboard_run_id, _ = run_url(onboard, "onboard --run")
    run_step(
        demo,
        4,
        f"Add a second dbt job as a task to {FOREIGN_WORKFLOW!r}, touching nothing else",
        ["dbtwf", "add-task", "--workflow", FOREIGN_WORKFLOW, "--dbt-job", second_job_url],
        check=rf"^added task '[^']+' \(dbt job {second_job_id}\)",
    )
    run_step(demo, 5, "Plan: nothing left to do", ["dbtwf", "plan"], check=r"^nothing to change")
    run_step(demo, 6, "Doctor: every link of the chain", ["dbtwf", "doctor"], check=r"^all checks passed")
    heading(demo, 7, "A setup made by hand from the guide: scope, secret, pasted notebook, its workflow")
    handmade = seed_handmade_setup(emulators)
    say(f"  made through the public API: notebook {handmade}, scope dbt-cloud, workflow 'trigger_dbt_job'")
    run_step(
        demo,
        8,
        "Adopt it: the runner replaces the pasted code (kept as a backup), the workflow becomes dbtwf's",
        ["dbtwf", "--env", "guide", "adopt", "--folder", handmade.rsplit("/", 1)[0], "--yes"],
        check=r"^adopted ",
    )
    final = run_step(
        demo,
        9,
        "Run the workflow: the notebook triggers and follows the dbt job",
        ["dbtwf", "run"],
        check=r"^run \d+ succeeded",
    )
    final_run_id, final_run_url = run_url(final, "run")
    run_step(
        demo,
        10,
        "Export the environment as a Databricks Asset Bundle (offline, no token in it)",
        ["dbtwf", "export", "bundle", "--env", "dev", "--out", "bundle"],
        check=r"^wrote bundle/databricks\.yml with target\(s\) dev$",
    )
    bundle_files = sorted(
        str(p.relative_to(demo.workdir / "bundle")) for p in (demo.workdir / "bundle").rglob("*.*")
    )
    if any(
        emulators.settings["DBT_CLOUD_API_TOKEN"] in (demo.workdir / "bundle" / f).read_text()
        for f in bundle_files
    ):
        raise StepFailed("step 10 (dbtwf export bundle) wrote the dbt Cloud token into the bundle")

    foreign_after = workflow_settings(emulators, foreign_id)
    untouched = _untouched_tasks(foreign_before, foreign_after, second_job_id)
    make_dbt_connection(emulators)
    say("  an admin made Unity Catalog connection 'dbt_demo' to dbt Cloud (dbtwf never creates it)")
    migrated = run_step(
        demo,
        11,
        "Migrate to Databricks' dbt platform task (Beta): one plan, no token, no notebook needed",
        ["dbtwf", "migrate", "--to", "dbt_platform", "--connection", "dbt_demo", "--yes"],
        check=r"^migrated environment 'dev' to dbt_platform",
    )
    switched = [t for t in workflow_settings(emulators, foreign_id)["tasks"] if "dbt_platform_task" in t]
    if len(switched) != 1 or "switches to dbt_platform" not in migrated:
        raise StepFailed("migrate did not switch the task add-task added")
    workflows = databricks(emulators, "GET", "/api/2.2/jobs/list")["jobs"]
    owned = [j for j in workflows if (j["settings"].get("tags") or {}).get("dbtwf-env") == "dev"]
    dbt_runs = dbt_cloud(emulators, "/runs/?order_by=-id&limit=100")["data"]

    heading(demo, 12, "Summary")
    config_path = demo.workdir / "dbtwf.toml"
    say(f"  config written:      {config_path.name} (environment 'dev'; no token in it)")
    say("  created by onboard:  secret scope dbtwf-dev with the dbt token, the runner notebook")
    say("                       ~/.dbtwf/dev/run_dbt_cloud_job (your home folder), " + _names(owned))
    say(f"  added by add-task:   task for dbt job {second_job_id} in {FOREIGN_WORKFLOW!r} ({foreign_id});")
    say(f"                       its other tasks untouched: {', '.join(untouched)}")
    say(f"  adopted by adopt:    {handmade} (environment 'guide'): the runner replaced")
    say("                       the pasted code (kept in trigger_dbt_job.dbtwf-backup.py), the workflow")
    say("                       'trigger_dbt_job' got dbtwf's tags, the secret was kept as it was")
    say(f"  workflow runs:       {onboard_run_id} (onboard --run) and {final_run_id} (run), both succeeded")
    say(f"  last run page:       {final_run_url}")
    say(f"  export bundle:       bundle/ ({', '.join(bundle_files)}): `databricks bundle deploy -t dev`")
    say("                       makes the same workflow; the token is not in it")
    say(
        "  migrated (Beta):     the workflow and the added task now run dbt_platform_task via "
        "connection dbt_demo; task_type set in dbtwf.toml"
    )
    succeeded = sum(1 for run in dbt_runs if run.get("is_success"))
    say(f"  dbt Cloud runs:      {len(dbt_runs)} triggered by the uploaded notebook, {succeeded} succeeded")
    say(f"  elapsed:             {time.monotonic() - started:.1f} s")
    say("  HOME, keyring and Databricks config stayed in the temporary folder; emulators stop next.")


def _names(owned: list[dict[str, Any]]) -> str:
    return ", ".join(f"workflow {j['settings']['name']!r} ({j['job_id']})" for j in owned) or "no workflow"


def _untouched_tasks(before: dict[str, Any], after: dict[str, Any], dbt_job_id: int) -> list[str]:
    """The foreign workflow's own tasks and settings, checked equal after add-task."""
    old_tasks = {t["task_key"]: t for t in before["tasks"]}
    new_tasks = {t["task_key"]: t for t in after["tasks"]}
    changed = [key for key, task in old_tasks.items() if new_tasks.get(key) != task]
    if changed:
        raise StepFailed(f"add-task changed tasks of {FOREIGN_WORKFLOW!r}: {', '.join(changed)}")
    added = [t for key, t in new_tasks.items() if key not in old_tasks]
    if len(added) != 1 or (added[0].get("notebook_task") or {}).get("base_parameters", {}).get(
        "job_id"
    ) != str(dbt_job_id):
        raise StepFailed(f"add-task did not add exactly one task for dbt job {dbt_job_id}")
    other_fields = {k: v for k, v in before.items() if k != "tasks"}
    if {k: after.get(k) for k in other_fields} != other_fields:
        raise StepFailed(f"add-task changed settings of {FOREIGN_WORKFLOW!r} besides its tasks")
    return list(old_tasks)


# --- entry point -------------------------------------------------------------------------


@contextmanager
def temporary_root(keep: bool) -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="dbtwf-demo-"))
    try:
        yield root
    finally:
        if keep:
            say(f"kept the demo folder: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (config, logs)")
    return parser.parse_args(argv)


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_terminated)
    color = sys.stdout.isatty() and "NO_COLOR" not in os.environ
    with temporary_root(args.keep) as root:
        workdir = root / "project"
        workdir.mkdir()
        demo = Demo(root=root, workdir=workdir, env=isolated_environment(root, color), color=color)
        say(f"dbtwf demo in {root} (HOME, keyring and ~/.databrickscfg are confined there)")
        try:
            play(demo)
        except StepFailed as failure:
            say()
            say(f"demo FAILED: {failure}")
            return 1
        except KeyboardInterrupt:
            say("\ndemo interrupted; emulators stopped")
            return 130
        except Terminated:
            say("\ndemo terminated; emulators stopped")
            return 143
        except OSError as error:  # the emulators' API unreachable, a pipe closed
            say(f"\ndemo FAILED: {type(error).__name__}: {error}")
            return 1
    say("\ndemo passed: every step exited 0")
    return 0


if __name__ == "__main__":
    sys.exit(main())
