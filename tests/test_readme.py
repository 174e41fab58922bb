"""The README cannot rot: every command it shows runs against the emulators and does what
the README says it does.

Each ```bash block's command lines are taken in README order. A line starting with `dbtwf`
or `python -m runner` is run in this process (`dbtwf` through its Typer app, the runner
through its main()), in one shared world (a project folder, HOME, a keyring confined to
tmp_path, ~/.databrickscfg profiles pointing at the Databricks emulator, the dbt Cloud
emulator standing in for `ab123.us1.dbt.com`), so later commands see what the earlier ones
did, as for a reader following along; then its entry in CLAIMS checks its output and the
emulators against what the README says of it. A ```toml block becomes ./dbtwf.toml at that
point. Any other line must say why it is not run with a `# not run in tests: <reason>`
comment, or be one of COVERED_ELSEWHERE; the classification test fails on anything else.

Real processes, the console script and the terminal are `make demo`'s walk
(tests/test_demo.py, which also checks that the demo runs what the README says it runs).

Prompts are answered as a person would: stdin is a terminal holding "y" answers (`dbtwf
token set` gets the token on a pipe instead, as its help shows).
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from tests.conftest import DATABRICKS_TOKEN, DBT_CLOUD_TOKEN

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
NOT_RUN_MARKER = "not run in tests:"
README_DBT_HOST = "ab123.us1.dbt.com"
COVERED_ELSEWHERE = {
    "make demo": "tests/test_demo.py runs scripts/demo.py end to end, and checks it against the README",
    "make test": "the suite this test is part of",
}
SHELL_SYNTAX = re.compile(r"[|;&<>`]|\$\(")


@dataclass(frozen=True)
class Block:
    language: str
    line: int  # 1-based line of the opening fence
    text: str


@dataclass(frozen=True)
class Command:
    line: int
    text: str  # without its trailing comment
    comment: str

    @property
    def skip_reason(self) -> str | None:
        if self.comment.startswith(NOT_RUN_MARKER):
            return self.comment.removeprefix(NOT_RUN_MARKER).strip()
        return None

    @property
    def argv(self) -> list[str]:
        return shlex.split(self.text)

    @property
    def runnable(self) -> bool:
        argv = self.argv
        return argv[:1] == ["dbtwf"] or argv[:3] == ["python", "-m", "runner"]


def readme_blocks(text: str) -> list[Block]:
    blocks: list[Block] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[index])
        if fence:
            start = index
            index += 1
            body: list[str] = []
            while index < len(lines) and lines[index].strip() != "```":
                body.append(lines[index])
                index += 1
            assert index < len(lines), f"README.md:{start + 1}: unclosed code block"
            blocks.append(Block(fence.group(1), start + 1, "\n".join(body)))
        index += 1
    return blocks


def split_comment(line: str) -> tuple[str, str]:
    """(command, comment): a `#` after whitespace and outside quotes starts the comment."""
    quote = ""
    for position, char in enumerate(line):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "#" and (position == 0 or line[position - 1].isspace()):
            return line[:position].strip(), line[position + 1 :].strip()
    return line.strip(), ""


def bash_commands(block: Block) -> list[Command]:
    commands: list[Command] = []
    pending = ""
    for offset, raw in enumerate(block.text.splitlines(), start=1):
        if pending:
            raw = pending + " " + raw.strip()
        if raw.rstrip().endswith("\\"):
            pending = raw.rstrip()[:-1].rstrip()
            continue
        pending = ""
        text, comment = split_comment(raw)
        if text:
            commands.append(Command(block.line + offset, text, comment))
    return commands


def readme_steps() -> list[Block | Command]:
    """Commands of the ```bash blocks and the ```toml blocks, in README order."""
    steps: list[Block | Command] = []
    for block in readme_blocks(README.read_text(encoding="utf-8")):
        if block.language == "bash":
            steps.extend(bash_commands(block))
        elif block.language == "toml":
            steps.append(block)
    return steps


def all_commands() -> list[Command]:
    return [step for step in readme_steps() if isinstance(step, Command)]


# --- what the README must look like ------------------------------------------------------


def test_the_two_commands_open_the_readme_with_what_each_shows() -> None:
    first = readme_blocks(README.read_text(encoding="utf-8"))[0]
    commands = bash_commands(first)
    assert [c.text for c in commands] == ["make demo", "make test"]
    assert all(len(c.comment) > 20 for c in commands), "say what each command shows"
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^demo:.*\n\t.*scripts/demo\.py", makefile, re.MULTILINE)


def test_every_command_is_run_or_says_why_not() -> None:
    unaccounted = []
    for command in all_commands():
        reason = command.skip_reason
        if command.text in COVERED_ELSEWHERE:
            continue
        if command.runnable:
            assert reason is None, f"README.md:{command.line}: runnable but marked not run: {command.text}"
            assert not SHELL_SYNTAX.search(command.text), (
                f"README.md:{command.line}: keep run commands free of pipes and redirections: {command.text}"
            )
        elif not reason:
            unaccounted.append(f"README.md:{command.line}: {command.text}")
    assert not unaccounted, (
        f"commands neither run by this test nor marked '# {NOT_RUN_MARKER} <why>':\n" + "\n".join(unaccounted)
    )
    assert sum(c.runnable for c in all_commands()) >= 15


def test_the_performance_section_has_the_benchmark_markers() -> None:
    text = README.read_text(encoding="utf-8")
    start, end = text.find("<!-- bench:start -->"), text.find("<!-- bench:end -->")
    assert 0 < start < end
    assert text.rfind("## Performance", 0, start) != -1


def test_the_parser_keeps_quotes_continuations_and_markers() -> None:
    block = Block(
        "bash",
        10,
        "dbtwf onboard --schedule '0 0 6 * * ?' \\\n  --yes  # first\n"
        "# a comment line\n\n"
        "pip install .  # not run in tests: network\n",
    )
    commands = bash_commands(block)
    assert [(c.text, c.comment, c.skip_reason) for c in commands] == [
        ("dbtwf onboard --schedule '0 0 6 * * ?' --yes", "first", None),
        ("pip install .", "not run in tests: network", "network"),
    ]
    assert commands[0].argv[3] == "0 0 6 * * ?"
    assert commands[0].runnable and not commands[1].runnable


# --- running them ---------------------------------------------------------------------------


def _mentioned(pattern: str, texts: list[str]) -> set[str]:
    return {match for text in texts for match in re.findall(pattern, text)}


@dataclass
class World:
    """What the README's reader has: a workspace, a dbt account, an existing workflow, profiles."""

    steps: list[Block | Command]
    project: Path
    home: Path
    databricks: Any
    dbt_cloud: Any

    @property
    def dbt_url(self) -> str:
        return str(self.dbt_cloud.url)


@pytest.fixture
def world(
    tmp_path: Path, databricks: Any, dbt_cloud: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[World]:
    """The reader's workspace and account, and their shell: HOME, profiles and a keyring confined
    to tmp_path, the project folder as the working directory."""
    import keyring.core

    from tests.emulators.dbtcloud import Scenario

    steps = readme_steps()
    texts = [s.text for s in steps]
    for job_id in _mentioned(r"(?:/jobs/|--dbt-job |--job-id |= |job_id = )(\d{3,})\b", texts):
        dbt_cloud.add_job(int(job_id), name=f"README job {job_id}", scenario=Scenario("success", polls=1))
    for cluster_id in _mentioned(r'cluster_id = "([^"]+)"', texts):
        databricks.add_cluster(cluster_id)
    # The workflows add-task is pointed at exist already, with the tasks it depends on.
    commands = [s for s in steps if isinstance(s, Command) and s.runnable]
    for name in {c.argv[c.argv.index("--workflow") + 1] for c in commands if "--workflow" in c.argv}:
        upstream = {c.argv[c.argv.index("--depends-on") + 1] for c in commands if "--depends-on" in c.argv}
        tasks = [
            {"task_key": key, "notebook_task": {"notebook_path": f"/Shared/etl/{key}", "source": "WORKSPACE"}}
            for key in sorted(upstream | {"ingest"})
        ]
        databricks_post(databricks, "/api/2.2/jobs/create", {"name": name, "tasks": tasks})

    if any("adopt" in c.argv for c in commands):  # a setup made by hand from the guide, to adopt
        from tests.guide_workspace import seed_guide_workspace
        from tests.provision_helpers import make_workspace

        databricks.add_cluster("0101-guide-cluster")
        ws = make_workspace(databricks)
        seed_guide_workspace(
            ws, dbt_host=dbt_cloud.url, account_id=70403, dbt_job_id=1234, token=DBT_CLOUD_TOKEN
        )

    # The Unity Catalog connections the dbt platform section names, made as an admin would.
    for connection in _mentioned(r"--connection (\S+)", texts):
        databricks.add_dbt_platform_connection(
            connection, dbt_url=dbt_cloud.url, account_id=70403, token=DBT_CLOUD_TOKEN
        )

    home, project = tmp_path / "home", tmp_path / "project"
    (home / ".local/share").mkdir(parents=True)
    project.mkdir()
    profiles = _mentioned(r'databricks_profile = "([^"]+)"', texts) | _mentioned(
        r"--(?:databricks-)?profile (\S+)", texts
    )
    (home / ".databrickscfg").write_text(
        "".join(f"[{p}]\nhost = {databricks.url}\ntoken = {DATABRICKS_TOKEN}\n\n" for p in sorted(profiles)),
        encoding="utf-8",
    )
    for name in list(os.environ):
        if name.startswith(("DATABRICKS_", "DBT_CLOUD_", "DBTWF_")):
            monkeypatch.delenv(name)
    variables = {
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / ".local/share"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
        "DATABRICKS_CONFIG_FILE": str(home / ".databrickscfg"),
        "DATABRICKS_HOST": databricks.url,
        "DATABRICKS_TOKEN": DATABRICKS_TOKEN,
        "NO_COLOR": "1",
        "COLUMNS": "200",
    }
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(project)
    keyring.core.init_backend()  # keyring caches its backend: load it again under this HOME
    try:
        yield World(steps, project, home, databricks, dbt_cloud)
    finally:
        keyring.core.init_backend(limit=lambda backend: False)  # leave a backend that stores nothing


def databricks_post(databricks: Any, path: str, body: dict[str, Any]) -> Any:
    import json
    import urllib.request

    request = urllib.request.Request(
        databricks.url + path,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {DATABRICKS_TOKEN}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def localize(text: str, dbt_url: str) -> str:
    """The README's dbt host is the emulator here."""
    return text.replace(f"https://{README_DBT_HOST}", dbt_url).replace(README_DBT_HOST, dbt_url)


@dataclass
class Ran:
    """A command's exit code and output, and the requests it sent to each emulator."""

    code: int
    stdout: str
    stderr: str
    databricks_requests: list[Any] = field(default_factory=list)
    dbt_requests: list[Any] = field(default_factory=list)

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    @property
    def databricks_writes(self) -> list[Any]:
        return [r for r in self.databricks_requests if r.is_write]


class _Keyboard(io.BytesIO):
    """stdin at a terminal, the reader's answers typed ahead."""

    def isatty(self) -> bool:
        return True


@contextmanager
def at_a_terminal() -> Iterator[None]:
    """CliRunner's stdin is a terminal (dbtwf asks before it writes only on one)."""

    def keyboard(input: str | bytes | None, charset: str) -> BinaryIO:
        return _Keyboard(input.encode(charset) if isinstance(input, str) else input or b"")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("typer.testing.make_input_stream", keyboard)
        yield


def run_command(command: Command, world: World) -> Ran:
    """The command, in this process: `dbtwf ...` through its Typer app, `python -m runner ...`
    through the runner's main(). The walk with real processes is `make demo`'s (tests/test_demo.py)."""
    from typer.testing import CliRunner

    from provision.cli import app

    argv = shlex.split(localize(command.text, world.dbt_url))
    if argv[0] == "dbtwf":
        if command.argv[:3] == ["dbtwf", "token", "set"]:  # the token on a pipe, as its help shows
            result = CliRunner().invoke(app, argv[1:], input=DBT_CLOUD_TOKEN + "\n", prog_name="dbtwf")
        else:  # a terminal whose reader answers "y"
            with at_a_terminal():
                result = CliRunner().invoke(app, argv[1:], input="y\ny\ny\n", prog_name="dbtwf")
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return Ran(result.exit_code, result.stdout, result.stderr)
    from runner.__main__ import main

    stdout, stderr = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch, redirect_stdout(stdout), redirect_stderr(stderr):
        patch.setenv("DBT_CLOUD_API_TOKEN", DBT_CLOUD_TOKEN)  # the runner reads it only from there
        code = main(argv[3:])
    return Ran(code, stdout.getvalue(), stderr.getvalue())


# --- what each command claims ------------------------------------------------------------
#
# One check per runnable README command, keyed by its text: what the README (or the command's
# comment) says it does, checked on its output and on the emulators afterwards.

Check = Callable[[Ran, World], None]
CLAIMS: dict[str, Check] = {}


def claim(command: str) -> Callable[[Check], Check]:
    def register(check: Check) -> Check:
        CLAIMS[command] = check
        return check

    return register


def environment(world: World, name: str) -> Any:
    from provision.config import load_config, select_environment

    # As the commands see it: `~` in the notebook path is the emulator user's home folder.
    return select_environment(load_config(world.project / "dbtwf.toml"), name).resolved(
        world.databricks.user_name
    )


def workflows_named(world: World, name: str) -> list[dict[str, Any]]:
    return [job for job in world.databricks.jobs.values() if job["settings"].get("name") == name]


def task(world: World, workflow: str, task_key: str) -> dict[str, Any]:
    (job,) = workflows_named(world, workflow)
    return next(t for t in job["settings"]["tasks"] if t["task_key"] == task_key)


def stored_token() -> str | None:
    import keyring

    return keyring.get_password("dbtwf", "dbt-cloud-api-token")


def plan_rows(output: str) -> dict[str, str]:
    """resource -> action, from a plan table (`+  create  scope  dbtwf-dev  missing`)."""
    rows = re.findall(r"^[+~=-]\s+(create|update|no-op|delete)\s+(\S+)", output, re.MULTILINE)
    return {resource: action for action, resource in rows}


@claim("dbtwf --version")
def _version(ran: Ran, world: World) -> None:
    from importlib.metadata import version

    assert ran.stdout == f"dbtwf {version('dbtwf')}\n"


@claim("dbtwf token set")
def _token_set(ran: Ran, world: World) -> None:
    # "pipe it in": kept in the keyring (here keyrings.alt's file under the reader's HOME).
    assert stored_token() == DBT_CLOUD_TOKEN
    assert list(world.home.rglob("keyring_pass.cfg"))


@claim("dbtwf token show")
def _token_show(ran: Ran, world: World) -> None:
    # "which token is used and from where, masked like dbtc_…(40 chars)"
    masked = re.escape(f"dbtc_…({len(DBT_CLOUD_TOKEN)} chars)")
    assert re.fullmatch(rf"{masked} from the .*keyring.*", ran.stdout.strip())


@claim("dbtwf onboard --dbt-job-url https://ab123.us1.dbt.com/deploy/70403/projects/1/jobs/1234")
def _onboard(ran: Ran, world: World) -> None:
    # "checks the token and the job against dbt Cloud, ... shows the plan for the dev environment
    # and asks; only then does it write the environment into ./dbtwf.toml ... and create the
    # secret scope, the secret, the notebook, the workflow and a state record. It ends with the
    # workflow's id and page."
    env = environment(world, "dev")
    assert [job.job_id for job in env.dbt_jobs] == [1234]
    assert any(r.path.endswith("/jobs/1234/") for r in ran.dbt_requests), "the job was not checked"
    assert {"scope", "secret", "notebook", "workflow", "state"} <= {
        resource for resource, action in plan_rows(ran.stdout).items() if action == "create"
    }
    assert re.search(r"^apply these changes to environment 'dev'\? \[y/N\]: y$", ran.stdout, re.MULTILINE)
    assert world.databricks.secret_value(env.secret_scope, env.secret_key) == DBT_CLOUD_TOKEN
    assert world.databricks.workspace_file(env.notebook_path) is not None
    assert world.databricks.workspace_file(env.state_path) is not None
    (workflow,) = [job["job_id"] for job in workflows_named(world, env.workflow_name)]
    assert f"workflow {workflow}: {world.databricks.url}/jobs/{workflow}" in ran.stdout
    asked = ran.stdout.index("apply these changes to environment 'dev'?")
    assert ran.stdout.index("wrote environment 'dev'") > asked  # the config only once confirmed


@claim("dbtwf run")
def _run(ran: Ran, world: World) -> None:
    # "run the workflow now; prints the run page, follows each task"
    run_line = re.search(r"^run (\d+): (http\S+#job/\d+/run/\d+)$", ran.stdout, re.MULTILINE)
    assert run_line, ran.output
    assert re.search(r"^  dbt_job_1234: RUNNING", ran.stderr, re.MULTILINE)
    assert re.search(r"^  dbt_job_1234: SUCCESS", ran.stderr, re.MULTILINE)
    finished = world.databricks.wait_for_run(int(run_line.group(1)), timeout=30)
    assert finished["state"]["result_state"] == "SUCCESS"
    assert f"run {run_line.group(1)} succeeded" in ran.stdout


@claim("dbtwf plan --env staging")
def _plan_staging(ran: Ran, world: World) -> None:
    # "what apply would change: create / update / no-op per resource" (and nothing written)
    env = environment(world, "staging")
    rows = plan_rows(ran.stdout)
    assert {"scope", "secret", "notebook", "workflow", "state"} <= set(rows)
    assert set(rows.values()) <= {"create", "update", "no-op"}
    assert env.workflow_name in ran.stdout
    assert ran.databricks_writes == []


@claim("dbtwf --env prod apply --yes")
def _apply_prod(ran: Ran, world: World) -> None:
    # "converge prod; a second apply sends no write request at all"
    env = environment(world, "prod")
    assert len(workflows_named(world, env.workflow_name)) == 1
    with world.databricks.recording() as second:
        again = run_command(Command(0, "dbtwf --env prod apply --yes", ""), world)
    assert again.code == 0, again.output
    assert [r for r in second if r.is_write] == []


@claim("dbtwf apply --all --yes")
def _apply_all(ran: Ran, world: World) -> None:
    # "every environment": each one's plan is shown under its name, and each now exists.
    from provision.config import load_config

    names = list(load_config(world.project / "dbtwf.toml").environments)
    assert names == ["dev", "staging", "prod"]
    for name in names:
        assert re.search(rf"^{name}$", ran.stdout, re.MULTILINE), f"no section for {name}"
        assert len(workflows_named(world, environment(world, name).workflow_name)) == 1


@claim("dbtwf plan --env prod --json")
def _plan_json(ran: Ran, world: World) -> None:
    # "the same plan as JSON, for CI": prod was just applied, so every change is a no-op;
    # the environment, workspace host and identity are fields of it.
    plan = json.loads(ran.stdout)
    assert (plan["environment"], plan["workspace_host"]) == ("prod", world.databricks.url)
    assert plan["identity"] == world.databricks.user_name
    changes = plan["changes"]
    assert {"scope", "secret", "notebook", "workflow", "state"} <= {c["resource"] for c in changes}
    assert all({"resource", "name", "action", "reason"} <= set(c) for c in changes)
    assert {c["action"] for c in changes} == {"no-op"}


@claim("dbtwf plan --env prod --out prod.plan.json")
def _plan_out(ran: Ran, world: World) -> None:
    # "save the plan for review (it holds no secret)"
    saved = (world.project / "prod.plan.json").read_text(encoding="utf-8")
    assert DBT_CLOUD_TOKEN not in saved and DBT_CLOUD_TOKEN[-6:] not in saved
    data = json.loads(saved)
    assert (data["format"], data["environment"]) == ("dbtwf-plan", "prod")
    assert data["token"]["fingerprint"]
    assert ran.databricks_writes == []


@claim("dbtwf apply --plan prod.plan.json --yes")
def _apply_plan(ran: Ran, world: World) -> None:
    # "carry out exactly that plan, or refuse": prod is as the plan saw it, and in sync.
    assert "environment 'prod' is up to date" in ran.stdout
    assert ran.databricks_writes == []


@claim("dbtwf add-task --workflow 'Nightly ETL' --dbt-job 1235 --depends-on ingest_orders")
def _add_task(ran: Ran, world: World) -> None:
    # "adds one notebook task ... a single jobs/update whose new_settings holds only the new
    # task, never a jobs/reset"; "The task key defaults to dbt_job_<job id>"
    added = task(world, "Nightly ETL", "dbt_job_1235")
    assert added["depends_on"] == [{"task_key": "ingest_orders"}]
    assert added["notebook_task"]["base_parameters"] == {"job_id": "1235"}
    job_writes = [r for r in ran.databricks_writes if "/jobs/" in r.path]
    assert [r.path.rsplit("/", 1)[1] for r in job_writes] == ["update"]
    assert [t["task_key"] for t in job_writes[0].json()["new_settings"]["tasks"]] == ["dbt_job_1235"]


@claim(
    "dbtwf --env prod add-task --workflow 'Nightly ETL' --dbt-job "
    "https://ab123.us1.dbt.com/deploy/70403/projects/1/jobs/1236 --task-key dbt_exports"
)
def _add_task_prod(ran: Ran, world: World) -> None:
    added = task(world, "Nightly ETL", "dbt_exports")
    assert added["notebook_task"]["base_parameters"] == {"job_id": "1236"}
    assert added["notebook_task"]["notebook_path"] == environment(world, "prod").notebook_path


@claim("dbtwf --env guide adopt --yes")
def _adopt(ran: Ran, world: World) -> None:
    # "brings it under dbtwf, without the token": the environment written, the workflow made for
    # the notebook tagged (tags only), the pasted code kept next to the runner, no secret write.
    from provision.adopt.recognise import BACKUP_SUFFIX

    env = environment(world, "guide")
    assert ran.stdout.startswith("adopted ") or "\nadopted " in ran.stdout, ran.output
    (job,) = workflows_named(world, "trigger_dbt_job")
    assert job["settings"]["tags"] == {"team": "analytics", "managed-by": "dbtwf", "dbtwf-env": "guide"}
    assert world.databricks.workspace_file(env.notebook_path + BACKUP_SUFFIX) is not None
    assert not [r for r in ran.databricks_writes if "/secrets/" in r.path]


@claim("dbtwf --env guide destroy --yes")
def _adopt_destroy(ran: Ran, world: World) -> None:
    # "gives the hand-made setup back as it was": the code back, the workflow untagged, not deleted.
    from provision.adopt.recognise import recognise

    (job,) = workflows_named(world, "trigger_dbt_job")
    assert job["settings"]["tags"] == {"team": "analytics"}
    path = job["settings"]["tasks"][0]["notebook_task"]["notebook_path"]
    assert recognise(bytes(world.databricks.workspace_file(path)).decode()).kind == "guide"
    assert world.databricks.secret_value("dbt-cloud", "api-key") == DBT_CLOUD_TOKEN


@claim("dbtwf export bundle --env prod --out bundle")
def _export_bundle(ran: Ran, world: World) -> None:
    # "bundle/databricks.yml and bundle/src/prod/run_dbt_cloud_job.py"; no workspace access, no token;
    # one target with the profile's host, the workflow (notebook path: the bundle's file), the scope.
    import yaml

    out = world.project / "bundle"
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == ["databricks.yml", "src/prod/run_dbt_cloud_job.py"]
    assert all(DBT_CLOUD_TOKEN not in (out / f).read_text(encoding="utf-8") for f in files)
    assert ran.databricks_requests == [] and ran.dbt_requests == []
    (target,) = yaml.safe_load((out / "databricks.yml").read_text(encoding="utf-8"))["targets"].values()
    assert target["workspace"] == {"host": world.databricks.url, "profile": "prod"}
    assert target["resources"]["secret_scopes"]["dbt_cloud_token_scope"]["name"] == "dbt-cloud"
    job = target["resources"]["jobs"]["dbt_cloud_jobs"]
    assert job["name"] == environment(world, "prod").workflow_name
    assert [t["task_key"] for t in job["tasks"]] == ["nightly", "marts"]
    assert {t["notebook_task"]["notebook_path"] for t in job["tasks"]} == {"src/prod/run_dbt_cloud_job.py"}


@claim("dbtwf --env prod migrate --to dbt_platform --connection dbt_prod")
def _migrate_to_dbt_platform(ran: Ran, world: World) -> None:
    # "one jobs/reset" for the owned workflow, "one jobs/update per workflow that holds only
    # those tasks", "task_type (and the connection) is written to dbtwf.toml"
    env = environment(world, "prod")
    assert env.task_type == "dbt_platform" and env.dbt_platform_connection == "dbt_prod"
    switched = task(world, "Nightly ETL", "dbt_exports")
    assert switched["dbt_platform_task"] == {
        "connection_resource_name": "dbt_prod",
        "dbt_platform_job_id": "1236",
    }
    assert "notebook_task" not in switched
    (owned,) = workflows_named(world, env.workflow_name)
    assert all("dbt_platform_task" in t for t in owned["settings"]["tasks"])
    job_writes = [r.path.rsplit("/", 1)[1] for r in ran.databricks_writes if "/jobs/" in r.path]
    assert sorted(job_writes) == ["reset", "update"]
    assert not [r for r in ran.databricks_writes if "/secrets/" in r.path]


@claim("dbtwf --env prod migrate --to notebook --yes")
def _migrate_back(ran: Ran, world: World) -> None:
    env = environment(world, "prod")
    assert env.task_type == "notebook"
    back = task(world, "Nightly ETL", "dbt_exports")
    assert back["notebook_task"]["base_parameters"] == {"job_id": "1236"} and "dbt_platform_task" not in back
    (owned,) = workflows_named(world, env.workflow_name)
    assert all("notebook_task" in t for t in owned["settings"]["tasks"])


def _runner_result(ran: Ran, world: World) -> dict[str, Any]:
    """The dbt run the runner's last line names ("dbt run N: Success URL"), as dbt Cloud has it."""
    last = re.fullmatch(r"dbt run (\d+): (\w+) (\S+)", ran.stdout.strip().splitlines()[-1])
    assert last, ran.output
    (run,) = [r for r in world.dbt_cloud.runs_of(1234) if r["id"] == int(last.group(1))]
    assert run["href"] == last.group(3)
    return run


@claim("python -m runner --job-id 1234 --host ab123.us1.dbt.com --account-id 70403")
def _runner(ran: Ran, world: World) -> None:
    # "Exit 0 when the dbt run succeeded"
    assert _runner_result(ran, world)["status"] == 10


@claim(
    "python -m runner --job-url https://ab123.us1.dbt.com/deploy/70403/projects/1/jobs/1234 "
    "--step 'dbt build --select orders+' --threads-override 8 --cause 'backfill orders'"
)
def _runner_overrides(ran: Ran, world: World) -> None:
    assert _runner_result(ran, world)["status"] == 10
    (trigger,) = [r for r in ran.dbt_requests if r.method == "POST" and r.path.endswith("/jobs/1234/run/")]
    body = trigger.json()
    assert body["steps_override"] == ["dbt build --select orders+"]
    assert body["threads_override"] == 8
    assert body["cause"].startswith("backfill orders")


@claim("python -m runner --job-id 1234 --host ab123.us1.dbt.com --account-id 70403 --no-wait")
def _runner_no_wait(ran: Ran, world: World) -> None:
    # "Exit 0 when the dbt run ... started, with --no-wait": triggered, never polled.
    run = _runner_result(ran, world)
    assert not [r for r in ran.dbt_requests if r.method == "GET" and r.path.endswith(f"/runs/{run['id']}/")]


def _readme_doctor_checks() -> list[str]:
    """The check names of the README's sample `dbtwf doctor` table."""
    (sample,) = [b for b in readme_blocks(README.read_text(encoding="utf-8")) if b.language == "text"]
    return re.findall(r"^OK\s{2,}(\S+(?: \S+)?)\s{2,}", sample.text, re.MULTILINE)


@claim("dbtwf doctor")
def _doctor(ran: Ran, world: World) -> None:
    # The README's sample output: the same checks, all OK on an onboarded environment.
    checks = re.findall(r"^OK\s{2,}(\S+(?: \S+)?)\s{2,}", ran.stdout, re.MULTILINE)
    assert checks == _readme_doctor_checks()
    assert ran.stdout.rstrip().endswith("all checks passed")
    assert ran.databricks_writes == []


@claim("dbtwf --env prod doctor --json")
def _doctor_json(ran: Ran, world: World) -> None:
    # {"ok": ..., "checks": [{"name", "status", "detail", "fix"}]}
    report = json.loads(ran.stdout)
    assert set(report) == {"ok", "checks"} and report["ok"] is True
    assert all(set(check) == {"name", "status", "detail", "fix"} for check in report["checks"])
    assert [check["name"] for check in report["checks"]] == _readme_doctor_checks()


@claim("dbtwf token delete")
def _token_delete(ran: Ran, world: World) -> None:
    # "forget the token kept in the OS keyring"
    assert stored_token() is None


@claim("dbtwf --env staging destroy --yes")
def _destroy_staging(ran: Ran, world: World) -> None:
    # "its workflow, added tasks, notebook, secret, state; the scope only if dbtwf made it"
    env = environment(world, "staging")
    assert workflows_named(world, env.workflow_name) == []
    assert world.databricks.workspace_file(env.notebook_path) is None
    assert world.databricks.workspace_file(env.state_path) is None
    assert world.databricks.secret_value(env.secret_scope, env.secret_key) is None
    from tests.provision_helpers import make_workspace

    assert env.secret_scope not in {s["name"] for s in make_workspace(world.databricks).list_scopes()}
    for other in ("dev", "prod"):  # the other environments keep theirs
        assert len(workflows_named(world, environment(world, other).workflow_name)) == 1


def test_every_run_command_has_its_claim_checked() -> None:
    runnable = [c.text for c in all_commands() if c.runnable]
    missing = [c for c in runnable if c not in CLAIMS]
    assert not missing, "README commands whose output nothing checks (add a @claim):\n" + "\n".join(missing)
    assert not set(CLAIMS) - set(runnable), "claims of commands the README no longer shows"


@pytest.mark.slow
def test_every_unmarked_readme_command_does_what_the_readme_says(world: World) -> None:
    executed: list[str] = []
    for step in world.steps:
        if isinstance(step, Block):
            # The reader writes the example config; it must load, and later commands use it.
            from provision.config import load_config

            config = world.project / "dbtwf.toml"
            config.write_text(localize(step.text, world.dbt_url), encoding="utf-8")
            assert load_config(config).environments, f"README.md:{step.line}: no environments"
            continue
        if not step.runnable:
            continue
        with world.databricks.recording() as databricks_requests, world.dbt_cloud.recording() as dbt_requests:
            ran = run_command(step, world)
        ran.databricks_requests, ran.dbt_requests = databricks_requests, dbt_requests
        where = f"README.md:{step.line}: `{step.text}`"
        assert ran.code == 0, f"{where} exited {ran.code}:\n{ran.output}"
        assert DBT_CLOUD_TOKEN not in ran.output, f"{where}: the token was printed"
        assert "Traceback" not in ran.output, ran.output
        try:
            CLAIMS[step.text](ran, world)
        except AssertionError as failed:
            raise AssertionError(f"{where} does not do what the README says:\n{ran.output}") from failed
        executed.append(step.text)

    expected = [c.text for c in all_commands() if c.runnable]
    assert executed == expected
    # dbtwf.toml never holds the token.
    assert DBT_CLOUD_TOKEN not in (world.project / "dbtwf.toml").read_text(encoding="utf-8")
