"""The README cannot rot: every command it shows runs, for real, against the emulators.

Each ```bash block's command lines are taken in README order. A line starting with `dbtwf`
or `python -m runner` is run as a subprocess, in one shared world (a project folder, HOME,
a keyring confined to tmp_path, ~/.databrickscfg profiles pointing at the Databricks emulator,
the dbt Cloud emulator standing in for `ab123.us1.dbt.com`), so later commands see what the
earlier ones did, as for a reader following along. A ```toml block becomes ./dbtwf.toml at
that point. Any other line must say why it is not run with a `# not run in tests: <reason>`
comment, or be one of COVERED_ELSEWHERE; the classification test fails on anything else.

Prompts are answered as a person would: stdin is a pseudo-terminal holding "y" answers
(`dbtwf token set` gets the token on a pipe instead, as its help shows).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DATABRICKS_TOKEN, DBT_CLOUD_TOKEN

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
NOT_RUN_MARKER = "not run in tests:"
README_DBT_HOST = "ab123.us1.dbt.com"
COVERED_ELSEWHERE = {
    "make demo": "tests/test_demo.py runs scripts/demo.py end to end",
    "make test": "the suite this test is part of",
}
SHELL_SYNTAX = re.compile(r"[|;&<>`]|\$\(")
COMMAND_TIMEOUT = 120.0


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


# --- running them -------------------------------------------------------------------------


def _mentioned(pattern: str, texts: list[str]) -> set[str]:
    return {match for text in texts for match in re.findall(pattern, text)}


@pytest.fixture
def world(tmp_path: Path, databricks: Any, dbt_cloud: Any) -> dict[str, Any]:
    """What the README's reader has: a workspace, a dbt account, an existing workflow, profiles."""
    from tests.emulators.dbtcloud import Scenario

    steps = readme_steps()
    texts = [s.text for s in steps]
    for job_id in _mentioned(r"(?:/jobs/|--dbt-job |--job-id |= |job_id = )(\d{3,})\b", texts):
        dbt_cloud.add_job(int(job_id), name=f"README job {job_id}", scenario=Scenario("success", polls=2))
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
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "DBT_CLOUD_", "DBTWF_"))}
    base.update(
        {
            "HOME": str(home),
            "XDG_DATA_HOME": str(home / ".local/share"),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
            "DATABRICKS_CONFIG_FILE": str(home / ".databrickscfg"),
            "DATABRICKS_HOST": databricks.url,
            "DATABRICKS_TOKEN": DATABRICKS_TOKEN,
            "NO_COLOR": "1",
            "COLUMNS": "200",
            # `python -m runner` resolves to this checkout's runner.
            "PYTHONPATH": str(ROOT),
        }
    )
    return {"steps": steps, "project": project, "env": base, "dbt_url": dbt_cloud.url, "home": home}


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


def run_command(command: Command, world: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    argv = shlex.split(localize(command.text, world["dbt_url"]))
    env = dict(world["env"])
    if argv[0] == "dbtwf":
        argv[0] = str(Path(sys.executable).with_name("dbtwf"))
    else:
        argv[0] = sys.executable
        env["DBT_CLOUD_API_TOKEN"] = DBT_CLOUD_TOKEN  # the runner reads it only from there
    if command.argv[:3] == ["dbtwf", "token", "set"]:
        return subprocess.run(
            argv,
            cwd=world["project"],
            env=env,
            input=DBT_CLOUD_TOKEN + "\n",
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            start_new_session=True,
        )
    # A pseudo-terminal on stdin answers "y" to confirmations, like the reader at the keyboard.
    # A new session: no controlling terminal, so nothing can prompt on the test runner's tty.
    primary, secondary = os.openpty()
    try:
        os.write(primary, b"y\ny\ny\n")
        return subprocess.run(
            argv,
            cwd=world["project"],
            env=env,
            stdin=secondary,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            start_new_session=True,
        )
    finally:
        os.close(secondary)
        os.close(primary)


@pytest.mark.slow
def test_every_unmarked_readme_command_runs_against_the_emulators(world: dict[str, Any]) -> None:
    executed: list[str] = []
    for step in world["steps"]:
        if isinstance(step, Block):
            # The reader writes the example config; it must load, and later commands use it.
            from provision.config import load_config

            config = world["project"] / "dbtwf.toml"
            config.write_text(localize(step.text, world["dbt_url"]), encoding="utf-8")
            assert load_config(config).environments, f"README.md:{step.line}: no environments"
            continue
        if not step.runnable:
            continue
        result = run_command(step, world)
        output = result.stdout + result.stderr
        assert result.returncode == 0, (
            f"README.md:{step.line}: `{step.text}` exited {result.returncode}:\n{output}"
        )
        assert DBT_CLOUD_TOKEN not in output, f"README.md:{step.line}: the token was printed"
        assert "Traceback" not in output, output
        executed.append(step.text)

    expected = [c.text for c in all_commands() if c.runnable]
    assert executed == expected
    # What the commands did is real: the keyring file under HOME holds the token only until
    # `dbtwf token delete`, and dbtwf.toml never holds it.
    assert DBT_CLOUD_TOKEN not in (world["project"] / "dbtwf.toml").read_text(encoding="utf-8")
