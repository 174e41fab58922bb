"""`make acceptance-local` inside `make test`: scripts/acceptance.py's suite, unchanged, against
the session emulators.

The suite sees only the variables a user exports and talks to the services only through
`dbtwf` and databricks-sdk. Here `dbtwf` runs in-process (typer's CliRunner, with the
environment the suite hands it) to spare six SDK imports of ~1.5 s each; `make
acceptance-local` runs the same suite with `dbtwf` as a subprocess. The tests inspect the
emulators only to check what the suite must not do: touch anything but its own objects.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import DATABRICKS_TOKEN, DBT_ACCOUNT_ID, DBT_CLOUD_TOKEN
from tests.emulators.databricks import DatabricksEmulator
from tests.emulators.dbtcloud import DbtCloudEmulator, Scenario

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "acceptance.py"
JOB, JOB_2 = 3001, 3002
#: The Unity Catalog connection "the admin" made for the dbt platform task (never the suite's).
CONNECTION = "dbt_platform_admins"
STEPS = (
    "dbtwf onboard",
    "dbtwf run",
    "dbtwf add-task",
    "dbtwf export bundle (offline)",
    "dbtwf migrate --to dbt_platform --connection dbt_platform_admins",
    "dbtwf run (a dbt platform task",
    "dbtwf plan --json is a no-op on dbt_platform",
    "dbtwf migrate --to notebook (back)",
    "dbtwf plan --json is a no-op",
    "dbtwf doctor",
    "dbtwf destroy --yes",
    "verify: destroy removed",
    "make a setup as the guide leaves it",
    "dbtwf adopt --notebook",
    "dbtwf destroy --yes gives the guide's setup back",
    "clean-up",
)


def load_acceptance() -> ModuleType:
    spec = importlib.util.spec_from_file_location("acceptance", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["acceptance"] = module
    spec.loader.exec_module(module)
    return module


acceptance = load_acceptance()


class InProcessDbtwf:
    """The suite's Invoker: `dbtwf ARGS` through CliRunner, with exactly the environment given.
    CliRunner swaps the process's environment and streams: the suite's two threads (its adopt
    steps run in one of their own) take turns."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.environments: list[dict[str, str]] = []
        self.lock = threading.Lock()

    def __call__(
        self, args: Sequence[str], env: Mapping[str, str], timeout: float, echo: Callable[[str], None]
    ) -> Any:
        with self.lock:
            return self._invoke(args, env, echo)

    def commands(self, config_name: str) -> list[str]:
        """The dbtwf commands run with that config file, in order."""
        return [
            next(a for a in call[2:] if not a.startswith("-") and "dbtwf-acc-" not in a)
            for call in self.calls
            if Path(call[1]).name == config_name
        ]

    def _invoke(self, args: Sequence[str], env: Mapping[str, str], echo: Callable[[str], None]) -> Any:
        from typer.testing import CliRunner

        from provision.cli import app

        self.calls.append(list(args))
        self.environments.append(dict(env))
        unset: dict[str, str | None] = {name: None for name in os.environ if name not in env}
        result = CliRunner().invoke(app, list(args), env={**unset, **env})
        for line in (result.stdout + result.stderr).splitlines():
            echo(line)
        return acceptance.Completed(result.exit_code, result.stdout, result.stderr)


@pytest.fixture
def user_shell(
    databricks: DatabricksEmulator,
    dbt_cloud: DbtCloudEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[dict[str, str]]:
    """What the user exports, pointing at the session emulators (no other DATABRICKS_/DBT_ variable)."""
    for name in list(os.environ):
        if name.startswith(("DATABRICKS_", "DBT_CLOUD_", "DBTWF_")):
            monkeypatch.delenv(name)
    variables = {
        "DBTWF_ACCEPTANCE": "1",
        "DATABRICKS_HOST": databricks.url,
        "DATABRICKS_TOKEN": DATABRICKS_TOKEN,
        "DATABRICKS_CONFIG_FILE": str(tmp_path / "no-databrickscfg"),
        "DBT_CLOUD_HOST": dbt_cloud.url,
        "DBT_CLOUD_ACCOUNT_ID": str(DBT_ACCOUNT_ID),
        "DBT_CLOUD_API_TOKEN": DBT_CLOUD_TOKEN,
        "DBTWF_ACCEPTANCE_JOB_ID": str(JOB),
        "DBTWF_ACCEPTANCE_JOB_ID_2": str(JOB_2),
        "DBTWF_ACCEPTANCE_DBT_CONNECTION": CONNECTION,
    }
    # What an admin does once, through the public API (the suite's own local run does the same).
    acceptance.create_dbt_connection(
        databricks.url, DATABRICKS_TOKEN, CONNECTION, dbt_cloud.url, DBT_ACCOUNT_ID, DBT_CLOUD_TOKEN
    )
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    yield variables


def workspace_client(databricks: DatabricksEmulator) -> Any:
    from databricks.sdk import WorkspaceClient

    return WorkspaceClient(host=databricks.url, token=DATABRICKS_TOKEN)


def add_user_objects(databricks: DatabricksEmulator) -> None:
    """What a sandbox workspace already holds: the suite must leave all of it as it is."""
    from databricks.sdk.service import jobs, workspace

    w = workspace_client(databricks)
    w.secrets.create_scope("team-secrets")
    w.secrets.put_secret("team-secrets", "warehouse", string_value="keep-me")
    # Same stem as the suite's prefix, yet not its own: only its exact names may be touched.
    w.secrets.create_scope("dbtwf-acc-someone-else")
    home = f"/Users/{databricks.user_name}"
    w.workspace.mkdirs(f"{home}/etl")
    w.workspace.import_(
        f"{home}/etl/ingest",
        content="cHJpbnQoMSk=",  # print(1)
        format=workspace.ImportFormat.SOURCE,
        language=workspace.Language.PYTHON,
    )
    w.workspace.mkdirs(f"{home}/dbtwf-acc-someone-else")
    w.jobs.create(
        name="Nightly ETL",
        tasks=[
            jobs.Task(task_key="ingest", notebook_task=jobs.NotebookTask(notebook_path=f"{home}/etl/ingest"))
        ],
    )
    w.jobs.create(
        name="dbtwf-acc-someone-else-foreign-workflow",
        tasks=[
            jobs.Task(
                task_key="x",
                condition_task=jobs.ConditionTask(op=jobs.ConditionTaskOp.EQUAL_TO, left="1", right="1"),
            )
        ],
    )


def snapshot(databricks: DatabricksEmulator) -> dict[str, Any]:
    """Jobs, scopes with their secrets and ACLs, every workspace object with its content, and
    the Unity Catalog connections (the suite uses the admin's; it must neither delete nor add one)."""
    w = workspace_client(databricks)
    scopes = {
        s.name: (
            sorted(x.key for x in w.secrets.list_secrets(s.name)),
            sorted((a.principal, a.permission) for a in w.secrets.list_acls(s.name)),
        )
        for s in w.secrets.list_scopes()
    }
    objects = {
        str(o.path): (o.object_type, o.modified_at, databricks.workspace_file(str(o.path)))
        for o in w.workspace.list("/", recursive=True)
    }
    with databricks.state_lock:
        connections = {name: dict(info) for name, info in databricks._connections.items()}
    return {"jobs": databricks.jobs, "scopes": scopes, "objects": objects, "connections": connections}


def run_suite(invoke: InProcessDbtwf) -> tuple[int, str]:
    """The suite's lines are collected, not printed: CliRunner swaps sys.stdout while a dbtwf
    call of the other thread runs."""
    lines: list[str] = []
    code = acceptance.run_from_environment(invoke, lines.append)
    return code, "\n".join(lines)


def seed(dbt_cloud: DbtCloudEmulator, first: Scenario) -> None:
    dbt_cloud.add_job(JOB, name="Acceptance build", scenario=first)
    dbt_cloud.add_job(JOB_2, name="Acceptance marts", scenario=Scenario("success", polls=1))


def test_the_suite_passes_against_the_emulators_and_leaves_the_workspace_as_found(
    databricks: DatabricksEmulator,
    dbt_cloud: DbtCloudEmulator,
    user_shell: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    seed(dbt_cloud, Scenario("success", polls=1))
    add_user_objects(databricks)
    before = snapshot(databricks)
    invoke = InProcessDbtwf()

    code, output = run_suite(invoke)

    assert code == 0, output
    assert "acceptance PASSED" in output
    for step in STEPS:
        assert f"] {step}" in output or f"[{step}]" in output, step
    assert invoke.commands("dbtwf.toml") == [
        "onboard", "run", "add-task", "export", "migrate", "run", "plan", "migrate", "plan", "doctor",
        "destroy",
    ]  # fmt: skip
    # adopt and its destroy ran next to them (a thread of their own), with a config of their own.
    assert invoke.commands("guide.toml") == ["adopt", "destroy"]
    assert output.index("[adopt 1]") > output.index("verify: destroy removed")
    # The dbt job really ran twice: triggered by the uploaded notebook, then by the dbt platform task.
    triggers = [r for r in dbt_cloud.requests if r.method == "POST" and r.path.endswith(f"/jobs/{JOB}/run/")]
    assert len(triggers) == 2
    assert snapshot(databricks) == before
    assert CONNECTION in before["connections"] and "skipped" not in output
    # export bundle ran offline: no credential in its environment, every proxy a dead port.
    commands = [next(a for a in c[2:] if not a.startswith("-") and "acc-" not in a) for c in invoke.calls]
    export_env = invoke.environments[commands.index("export")]
    assert not [name for name in export_env if name.startswith(("DATABRICKS_", "DBT_CLOUD_"))]
    assert export_env["HTTPS_PROXY"] == export_env["HTTP_PROXY"] == acceptance.DEAD_PROXY
    # adopt needed no token; the guide's scope got it only through secrets/put.
    assert "DBT_CLOUD_API_TOKEN" not in invoke.environments[commands.index("adopt")]
    assert "DBT_CLOUD_API_TOKEN" in invoke.environments[commands.index("onboard")]
    assert all(DBT_CLOUD_TOKEN not in " ".join(call) for call in invoke.calls)
    assert DBT_CLOUD_TOKEN not in output
    # Every dbtwf process: the suite's own config (gone afterwards), no keyring, no DBTWF_ENV.
    configs = {Path(env["DBTWF_CONFIG"]) for env in invoke.environments}
    assert sorted(c.name for c in configs) == ["dbtwf.toml", "guide.toml"]
    assert len({c.parent for c in configs}) == 1 and not configs.pop().parent.exists()
    assert all(
        env["PYTHON_KEYRING_BACKEND"] == "keyring.backends.fail.Keyring" for env in invoke.environments
    )


def test_a_failing_step_still_cleans_up_and_exits_1(
    databricks: DatabricksEmulator,
    dbt_cloud: DbtCloudEmulator,
    user_shell: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    seed(dbt_cloud, Scenario("error", polls=1))  # `dbtwf run` fails: the dbt run errors
    add_user_objects(databricks)
    before = snapshot(databricks)
    invoke = InProcessDbtwf()

    code, output = run_suite(invoke)

    assert code == 1, output
    assert "acceptance FAILED" in output and "dbtwf run exited with 1" in output
    # destroy ran in the clean-up (removing the folder it made), then the sweep removed the
    # suite's own workflow and found no folder left; the adopt steps never started.
    assert invoke.commands("dbtwf.toml") == ["onboard", "run", "destroy"] and len(invoke.calls) == 3
    assert "make a setup as the guide leaves it" not in output
    assert "deleted workflow 'dbtwf-acc-" in output and "deleted folder /Users/" not in output
    assert snapshot(databricks) == before


def test_a_failing_adopt_step_still_sweeps_the_guide_setup(
    databricks: DatabricksEmulator,
    user_shell: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The guide's scope, folder and workflow are the suite's own: the clean-up removes them
    even when adopt fails (here it exits 1 before writing anything)."""
    before = snapshot(databricks)
    calls: list[list[str]] = []

    def failing_adopt(args: Sequence[str], env: Mapping[str, str], timeout: float, echo: Any) -> Any:
        calls.append(list(args))
        return acceptance.Completed(1, "", "error: adopt failed\n")

    lines: list[str] = []
    suite = acceptance.Suite(acceptance.read_settings(os.environ), failing_adopt, out=lines.append)
    suite.names = acceptance.Names(suite.prefix, databricks.user_name)
    suite.start_background(suite.names)  # the adopt steps' own thread, as in the scenario
    failure = suite.join_background()
    assert isinstance(failure, acceptance.StepFailed) and "dbtwf adopt exited with 1" in str(failure)
    # Its lines came out after it ended, with its steps: the seeding passed, adopt failed.
    assert any(line.startswith("[adopt 2] dbtwf adopt --notebook") for line in lines)
    assert "    error: dbtwf adopt exited with 1" in lines
    assert [(s.name.split(":")[0], s.ok) for s in suite.steps] == [
        ("make a setup as the guide leaves it", True),
        ("dbtwf adopt --notebook ... --yes (no dbt token in its environment)", False),
    ]
    seeded = snapshot(databricks)
    assert seeded != before and suite.guide_id in seeded["jobs"]
    assert suite.clean_up() == []
    output = "\n".join(lines)

    assert [call[4] for call in calls] == ["adopt"]
    assert f"deleted workflow '{suite.prefix}-guide-workflow'" in output
    assert f"deleted secret scope {suite.prefix}-guide" in output and "deleted folder /Users/" in output
    assert snapshot(databricks) == before


def test_without_the_connection_the_dbt_platform_steps_are_skipped_with_what_to_set(
    user_shell: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DBTWF_ACCEPTANCE_DBT_CONNECTION")
    suite = acceptance.Suite(acceptance.read_settings(os.environ), InProcessDbtwf())
    suite.dbt_platform_steps(acceptance.Names(suite.prefix, "me@example.com"))
    output = capsys.readouterr().out
    assert "skipped: set DBTWF_ACCEPTANCE_DBT_CONNECTION=" in output
    assert [(s.skipped, s.ok) for s in suite.steps] == [(True, True)]
    suite.summary(1.0, None, [])
    assert "dbt platform task (Beta)" in capsys.readouterr().out.split("skipped")[0]


def test_the_bundle_comparison_names_a_field_that_differs_and_checks_the_notebook_file(
    tmp_path: Path,
) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "nb.py").write_text("# Databricks notebook source\n")
    bundle = {"name": "w", "tasks": [{"task_key": "a", "notebook_task": {"notebook_path": "src/nb.py"}}]}
    workspace = {
        "name": "w",
        "format": "MULTI_TASK",  # a field the bundle does not set: not compared
        "tasks": [
            {"task_key": "a", "notebook_task": {"notebook_path": "/Users/me/nb", "source": "WORKSPACE"}}
        ],
    }
    assert acceptance.settings_differences(bundle, workspace, "job", bundle_paths=tmp_path) == []
    bundle["name"] = "other"
    bundle["tasks"][0]["notebook_task"]["notebook_path"] = "src/missing.py"
    found = acceptance.settings_differences(bundle, workspace, "job", bundle_paths=tmp_path)
    assert found == [
        "job.name: 'other' in the bundle, 'w' in the workspace",
        "job.tasks[a].notebook_task.notebook_path: src/missing.py is not a file of the bundle",
    ]


def test_without_dbtwf_acceptance_it_says_what_to_set_and_exits_0(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DBTWF_ACCEPTANCE", raising=False)
    assert acceptance.main([]) == 0
    output = capsys.readouterr().out
    for name in ("DBTWF_ACCEPTANCE=1", "DATABRICKS_HOST", "DBT_CLOUD_API_TOKEN", "DBTWF_ACCEPTANCE_JOB_ID"):
        assert name in output


def test_with_dbtwf_acceptance_but_a_variable_missing_it_names_it_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in list(os.environ):
        if name.startswith(("DATABRICKS_", "DBT_CLOUD_", "DBTWF_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DBTWF_ACCEPTANCE", "1")
    monkeypatch.setenv("DATABRICKS_CONFIG_PROFILE", "sandbox")
    monkeypatch.setenv("DBT_CLOUD_HOST", "acme.us1.dbt.com")
    assert acceptance.main([]) == 2
    output = capsys.readouterr().out
    assert "DBT_CLOUD_ACCOUNT_ID" in output and "DBTWF_ACCEPTANCE_JOB_ID" in output
    assert "DATABRICKS_HOST" not in output.split("missing:")[1].splitlines()[0]


@pytest.mark.parametrize(
    "stdout",
    [
        '[{"resource": "workflow", "name": "w", "action": "no-op", "reason": "in sync"}]\n',
        '{"environment": "e", "host": "h", "changes": [{"resource": "workflow", "action": "no-op"}]}\n',
    ],
)
def test_plan_json_is_read_as_a_list_or_an_object_with_changes(stdout: str) -> None:
    assert [c["action"] for c in acceptance.plan_changes(stdout)] == ["no-op"]


def test_plan_json_without_changes_is_refused() -> None:
    with pytest.raises(acceptance.StepFailed):
        acceptance.plan_changes('{"environment": "e"}')


def test_the_subprocess_invoker_keeps_stdout_apart_from_stderr_and_echoes_both() -> None:
    """What `make acceptance` uses: stdout (plan's JSON) must not mix with stderr (its header)."""
    echoed: list[str] = []
    code = "import sys; print('[1]'); print('env e, host h', file=sys.stderr); sys.exit(3)"
    result = acceptance.SubprocessInvoker(sys.executable)(["-c", code], dict(os.environ), 60, echoed.append)
    assert (result.code, result.stdout, result.stderr) == (3, "[1]\n", "env e, host h\n")
    assert sorted(echoed) == ["[1]", "env e, host h"]
