"""The CLI shell: help with examples, global options before or after the command, errors
as one or two lines with the contract's exit codes, tracebacks only with --debug, and a
start-up that never pays for `databricks.sdk`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Annotated

import pytest
import typer
from typer.testing import CliRunner

from provision.cli import app

ROOT = Path(__file__).resolve().parents[1]

CONFIG = """
[defaults]
dbt_cloud_host = "ab123.us1.dbt.com"
dbt_cloud_account_id = 70403

[environments.dev.dbt_jobs]
nightly = 1

[environments.prod.dbt_jobs]
nightly = 2
"""


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "dbtwf.toml"
    path.write_text(CONFIG)
    for name in ("DBTWF_CONFIG", "DBTWF_ENV", "DBT_CLOUD_HOST", "DBT_CLOUD_ACCOUNT_ID", "DATABRICKS_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return path


def invoke(*args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args), env=env)


def run_python(code: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def all_command_paths() -> list[list[str]]:
    root = typer.main.get_command(app)
    paths: list[list[str]] = []

    def walk(command: object, prefix: list[str]) -> None:
        subcommands = getattr(command, "commands", None)
        if subcommands is None:
            paths.append(prefix)
            return
        for name, sub in subcommands.items():
            walk(sub, [*prefix, name])

    walk(root, [])
    return paths


def test_every_command_is_reached_and_has_help_with_examples() -> None:
    paths = all_command_paths()
    names = {" ".join(path) for path in paths}
    assert {"token set", "token show", "token delete"} <= names
    for path in [[], *paths]:
        result = invoke(*path, "--help")
        assert result.exit_code == 0, (path, result.output)
        assert "Examples" in result.output, path
        assert "--config" in result.output and "--env" in result.output, path


def test_help_labels_values_not_python_types() -> None:
    """A flag takes no value and a repeatable option one string each time: typer's rich help
    labelled them <bool> and <list[str]> (every command, --help included)."""
    for path in [[], *all_command_paths()]:
        output = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"}).output
        assert "<bool>" not in output and "<list[" not in output, (path, output)
    add_task = CliRunner().invoke(app, ["add-task", "--help"], env={"COLUMNS": "200"}).output
    rows = {line.split()[1]: line for line in add_task.splitlines() if line.startswith("│ ")}
    assert "<str>" in rows["--depends-on"] and "(repeatable)" in rows["--depends-on"]
    assert "<" not in rows["--yes"] and "<" not in rows["--help"]
    assert "dbt_job_<job id>" in rows["--task-key"]


def test_shell_completion_is_offered_and_completes_commands_and_options() -> None:
    assert "--install-completion" in invoke("--help").output
    script = CliRunner().invoke(app, ["--show-completion", "bash"], prog_name="dbtwf")
    assert script.exit_code == 0 and "_DBTWF_COMPLETE=complete_bash" in script.output

    def complete(words: str) -> list[str]:
        env = {
            "_DBTWF_COMPLETE": "complete_bash",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split()) - 1),
        }
        return CliRunner().invoke(app, [], prog_name="dbtwf", env=env).output.split()

    assert complete("dbtwf add") == ["add-task"]
    assert complete("dbtwf add-task --dep") == ["--depends-on"]


def test_help_and_input_errors_never_import_the_sdk(tmp_path: Path) -> None:
    # One interpreter runs every --help and two early failures, then reports what was imported.
    bad_config = tmp_path / "bad.toml"
    bad_config.write_text("[environments.dev]\nsecret_scop = 1\n")
    code = """
        import json, sys
        from typer.testing import CliRunner
        from provision.cli import app
        import typer

        def walk(command, prefix):
            subs = getattr(command, "commands", None)
            if subs is None:
                yield prefix
                return
            yield prefix
            for name, sub in subs.items():
                yield from walk(sub, [*prefix, name])

        codes = {}
        for path in walk(typer.main.get_command(app), []):
            codes[" ".join(path) + " --help"] = CliRunner().invoke(app, [*path, "--help"]).exit_code
        runs = [
            ["--config", sys.argv[1], "plan"],
            ["onboard", "--dbt-job-url", "https://example.com/not/a/job", "--yes"],
        ]
        token = {"DBT_CLOUD_API_TOKEN": "dbtc_x_123456789"}
        for args in runs:
            codes[" ".join(args)] = CliRunner().invoke(app, args, env=token).exit_code
        completion = {"_DBTWF_COMPLETE": "complete_bash", "COMP_WORDS": "dbtwf run --", "COMP_CWORD": "2"}
        codes["completion"] = CliRunner().invoke(app, [], prog_name="dbtwf", env=completion).exit_code
        sdk = sorted(m for m in sys.modules if m.startswith("databricks"))
        print(json.dumps({"codes": codes, "sdk": sdk}))
    """
    result = run_python(code, str(bad_config), env={"DBTWF_CONFIG": str(tmp_path / "missing.toml")})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["sdk"] == []
    helps = {name: code for name, code in report["codes"].items() if name.endswith("--help")}
    assert len(helps) >= 10 and set(helps.values()) == {0}
    assert report["codes"][f"--config {bad_config} plan"] == 2
    assert report["codes"]["onboard --dbt-job-url https://example.com/not/a/job --yes"] == 2
    assert report["codes"]["completion"] == 0


@pytest.mark.parametrize(
    "args",
    [
        ["--env", "staging", "plan"],
        ["plan", "--env", "staging"],
        ["-e", "staging", "plan"],
        ["--env=staging", "plan"],
        ["plan", "--env=staging"],
        ["plan", "-e", "staging"],
        ["plan", "-estaging"],
        ["plan", "--json", "-e", "staging", "--adopt"],  # among the command's own options
        ["--env", "dev", "plan", "--env", "staging"],  # after the command wins
        ["-e", "dev", "plan", "--env=staging"],
    ],
)
def test_env_option_before_or_after_the_command(config: Path, args: list[str]) -> None:
    result = invoke(*args)
    assert result.exit_code == 2
    assert 'dbtwf.toml: no environment "staging" (known: dev, prod)' in result.stderr
    assert "hint: pick one with --env" in result.stderr
    assert "Traceback" not in result.output


def test_no_command_declares_the_global_options_itself() -> None:
    """Declared once (the app callback); every command takes them after its name all the same."""
    root = typer.main.get_command(app)
    globals_ = {"--config", "--env", "-e", "--debug"}
    assert globals_ <= {name for param in root.params for name in param.opts}

    def leaves(command: object) -> list[object]:
        subcommands = getattr(command, "commands", None)
        return [command] if subcommands is None else [c for sub in subcommands.values() for c in leaves(sub)]

    for command in leaves(root):
        # A repeatable option of a command's own is another thing: `export bundle --env a --env b`.
        declared = {
            name
            for param in command.params  # type: ignore[attr-defined]
            if not getattr(param, "multiple", False)
            for name in param.opts
        }
        assert not declared & globals_, command


def test_a_commands_own_option_of_the_same_name_stays_its_own() -> None:
    from provision.commands.shell import DbtwfGroup, DbtwfTyper, global_options, settings

    own = DbtwfTyper(cls=DbtwfGroup)
    own.callback()(global_options)

    @own.command("deploy")
    def deploy(ctx: typer.Context, env: Annotated[str, typer.Option("--env")] = "none") -> None:
        print(f"own {env}, global {settings(ctx).env_name}, debug {settings(ctx).debug}")

    @own.command("other")
    def other() -> None:
        pass

    result = CliRunner().invoke(own, ["-e", "outer", "deploy", "--env", "inner", "--debug"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "own inner, global outer, debug True"
    assert CliRunner().invoke(own, ["deploy", "-e", "x"]).exit_code == 2  # -e belongs to --env's option


def test_typed_option_beats_the_environment_variable(config: Path) -> None:
    result = invoke("--env", "staging", "plan", env={"DBTWF_ENV": "dev"})
    assert 'no environment "staging"' in result.stderr
    from_env = invoke("plan", env={"DBTWF_ENV": "qa"})
    assert from_env.exit_code == 2
    assert 'no environment "qa"' in from_env.stderr


@pytest.mark.parametrize("position", ["before", "after", "envvar"])
def test_config_option_before_or_after_the_command(config: Path, tmp_path: Path, position: str) -> None:
    other = tmp_path / "other.toml"
    other.write_text(CONFIG.replace("nightly = 2", 'nightly = "two"'))
    args, env = {
        "before": (["--config", str(other), "plan"], None),
        "after": (["plan", "--config", str(other)], None),
        "envvar": (["plan"], {"DBTWF_CONFIG": str(other)}),
    }[position]
    result = invoke(*args, env=env)
    assert result.exit_code == 2
    assert f'error: {other}: [environments.prod.dbt_jobs] nightly: must be a positive integer, got "two"' in (
        result.stderr
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[environments.dev\n", "TOML error at line 1"),
        ('[environments.dev]\nsecret_scop = "x"\n', 'unknown key "secret_scop"; did you mean secret_scope?'),
        (
            CONFIG + '[environments.prod.schedule]\nquartz_cron = "0 6 * * *"\n',
            '[environments.prod.schedule] quartz_cron: "0 6 * * *" is not a Quartz cron expression',
        ),
    ],
)
def test_config_errors_exit_2_with_file_environment_and_key(config: Path, text: str, expected: str) -> None:
    config.write_text(text)
    result = invoke("plan")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: dbtwf.toml: ")
    assert expected in result.stderr
    assert "Traceback" not in result.output


def test_missing_config_points_to_onboard_and_adopt(config: Path) -> None:
    """A team coming from dbt's guide runs `dbtwf plan` first: the hint names adopt too."""
    config.unlink()
    result = invoke("plan")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "error: dbtwf.toml: no such config file",
        "hint: run `dbtwf onboard --dbt-job-url URL` to create it (or `dbtwf adopt` for a setup made by hand "
        "from dbt's guide), or point --config / DBTWF_CONFIG at it",
    ]


def test_usage_errors_from_the_parser_exit_2(config: Path) -> None:
    assert invoke("plan", "--no-such-flag").exit_code == 2
    assert invoke("no-such-command").exit_code == 2


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.output.startswith("dbtwf ")


UNEXPECTED = """
    import sys
    from provision.cli import app, main

    @app.command("boom")
    def boom() -> None:
        raise RuntimeError("kaboom")

    sys.argv = ["dbtwf", *sys.argv[1:]]
    main()
"""


def test_errors_have_no_traceback_without_debug(config: Path) -> None:
    result = run_python(UNEXPECTED, "boom")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: unexpected RuntimeError: kaboom",
        "hint: re-run with --debug to see the traceback",
    ]
    project_error = run_python(UNEXPECTED, "--config", str(config.parent / "nope.toml"), "plan")
    assert project_error.returncode == 2
    assert "Traceback" not in project_error.stderr


@pytest.mark.parametrize("args", [["--debug", "boom"], ["boom", "--debug"]])
def test_debug_shows_the_traceback(args: list[str]) -> None:
    result = run_python(UNEXPECTED, *args)
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert "RuntimeError: kaboom" in result.stderr


def test_debug_shows_the_traceback_of_a_project_error_too(config: Path) -> None:
    config.unlink()
    result = run_python(UNEXPECTED, "plan", "--debug", "--config", str(config))
    assert result.returncode == 2
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.rstrip().endswith("or point --config / DBTWF_CONFIG at it")


def test_render_changes_table_json_and_redaction(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from provision.change import Action, Change
    from provision.output import render_changes, summarize
    from provision.token import register_secret

    # The registry lives as long as the process (one CLI run); here that is the whole test
    # session, so the secret goes into a set of this test's own, dropped when it ends.
    monkeypatch.setattr("provision.token._secrets", set())
    register_secret("dbtc_leaked_0123456789")
    changes = [
        Change("scope", "dbtwf-prod", Action.CREATE, "missing"),
        Change(
            "workflow",
            "dbt Cloud jobs (prod)",
            Action.UPDATE,
            "schedule [environments.prod] changed",
            job_id=7,
        ),
        Change(
            "secret", "dbtwf-prod/dbt-cloud-api-token", Action.NOOP, "token dbtc_leaked_0123456789 unchanged"
        ),
    ]
    render_changes(changes, as_json=False)
    table = capsys.readouterr().out
    assert "schedule [environments.prod] changed" in table  # brackets are not eaten as markup
    assert "dbtc_leaked" not in table and "token *** unchanged" in table
    assert table.rstrip().endswith("1 to create, 1 to update, 1 unchanged")

    render_changes(changes, as_json=True)
    data = json.loads(capsys.readouterr().out)
    assert data[1] == {
        "resource": "workflow",
        "name": "dbt Cloud jobs (prod)",
        "action": "update",
        "reason": "schedule [environments.prod] changed",
        "job_id": 7,
    }
    assert "dbtc_leaked" not in json.dumps(data)
    assert summarize([changes[2]]) == "nothing to change (1 unchanged)"


LATE_INTERRUPT = """
    import atexit, sys, time
    from provision.cli import app, main

    def linger() -> None:
        print("exiting", flush=True)
        time.sleep(30)

    @app.command("slow-exit")
    def slow_exit() -> None:
        atexit.register(linger)  # the process lingers after the command ended, as it may
        print("applied environment 'dev'", flush=True)

    sys.argv = ["dbtwf", "slow-exit"]
    main()
"""


def test_ctrl_c_after_the_last_message_exits_1() -> None:
    """Ctrl-C once the command has said its last word (Python still exiting) is exit 1 too,
    never a traceback or death by SIGINT (130)."""
    import signal

    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(LATE_INTERRUPT)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "applied environment 'dev'\n"
        assert process.stdout.readline() == "exiting\n"  # main() has returned
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=20)
    finally:
        process.kill()
    assert process.returncode == 1, stderr
    assert stderr.strip() == "interrupted"
