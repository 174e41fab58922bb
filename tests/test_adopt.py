"""`dbtwf adopt` over real HTTP: a workspace as the guide leaves it (tests/guide_workspace.py),
adopted, planned, run, scanned again, destroyed; and what adopt must refuse or leave alone."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest

from provision.adopt.recognise import BACKUP_MARK, BACKUP_SUFFIX
from provision.databricks import Workspace
from tests.conftest import DBT_ACCOUNT_ID, DBT_CLOUD_TOKEN
from tests.emulators.dbtcloud import Scenario
from tests.guide_workspace import (
    GUIDE_KEY,
    GUIDE_SCOPE,
    GuideSetup,
    refused_edit,
    seed_guide_workspace,
    tolerated_edit,
)
from tests.provision_helpers import cli_env

DBT_JOB = 42
CLUSTER = "0101-guide-cluster"


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, databricks: Any) -> Any:
    """`dbtwf ...` in-process, with NO dbt token anywhere (adopt must not need one) and no
    dbtwf.toml yet (a team that followed the guide has none)."""
    from typer.testing import CliRunner

    from provision.cli import app

    for name, value in cli_env(tmp_path, databricks.url, token=None).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DBT_CLOUD_API_TOKEN", raising=False)

    def invoke(*args: str, input: str | None = None) -> Any:
        return CliRunner().invoke(app, list(args), input=input)

    return invoke


def seed(ws: Workspace, databricks: Any, dbt_cloud: Any, source: str | None = None) -> GuideSetup:
    databricks.add_cluster(CLUSTER)
    dbt_cloud.add_job(DBT_JOB, scenario=Scenario(outcome="success", polls=1))
    return seed_guide_workspace(
        ws,
        dbt_host=dbt_cloud.url,
        account_id=DBT_ACCOUNT_ID,
        dbt_job_id=DBT_JOB,
        token=DBT_CLOUD_TOKEN,
        source=source,
    )


def content(databricks: Any, path: str) -> str:
    data = databricks.workspace_file(path)
    assert data is not None, path
    return bytes(data).decode("utf-8")


def no_token_in(requests: list[Any]) -> None:
    for request in requests:
        assert DBT_CLOUD_TOKEN not in request.body.decode("utf-8", errors="replace")
        assert base64.b64encode(DBT_CLOUD_TOKEN.encode()).decode() not in request.body.decode(
            errors="replace"
        )


def test_adopt_plan_run_adopt_again_destroy(
    cli: Any, ws: Workspace, databricks: Any, dbt_cloud: Any, tmp_path: Path
) -> None:
    setup = seed(ws, databricks, dbt_cloud)
    foreign_before = ws.get_job(setup.foreign_job_id)
    stamp_before = {s["key"]: s["last_updated_timestamp"] for s in ws.list_secrets(GUIDE_SCOPE)}
    folder = setup.notebook_path.rsplit("/", 1)[0]

    with databricks.recording() as requests:
        adopted = cli("adopt", "--folder", folder, "--yes")
    assert adopted.exit_code == 0, adopted.output
    assert "adopted " + setup.notebook_path in adopted.output
    # The next step needs the token adopt did not: said before the user meets apply's refusal.
    assert "apply needs the dbt token" in adopted.output
    no_token_in(requests)
    assert DBT_CLOUD_TOKEN not in adopted.output

    # dbtwf.toml: what the notebook uses, where it is, the workflow made for it.
    config = (tmp_path / "dbtwf.toml").read_text()
    for line in (
        "[environments.dev]",
        f'dbt_cloud_host = "{dbt_cloud.url}"',
        f"dbt_cloud_account_id = {DBT_ACCOUNT_ID}",
        f'secret_scope = "{GUIDE_SCOPE}"',
        f'secret_key = "{GUIDE_KEY}"',
        f'notebook_path = "{setup.notebook_path}"',
        'workflow_name = "trigger_dbt_job"',
        f"trigger_dbt_job = {DBT_JOB}",
        f'cluster_id = "{CLUSTER}"',
    ):
        assert line in config
    # The writes: the backup (a file), the notebook, one jobs/update of tags only, the record.
    updates = [r.json() for r in requests if r.path.endswith("/jobs/update")]
    # The workflow is tagged, not created: the plan counts it as an update.
    assert "3 to create, 2 to update" in adopted.output
    assert updates == [
        {
            "job_id": setup.own_job_id,
            "new_settings": {"tags": {"team": "analytics", "managed-by": "dbtwf", "dbtwf-env": "dev"}},
        }
    ]
    assert not [r for r in requests if r.is_write and "/secrets/" in r.path]
    backup = setup.notebook_path + BACKUP_SUFFIX
    assert ws.get_status(backup)["object_type"] == "FILE"  # type: ignore[index]
    kept = content(databricks, backup)
    assert kept.startswith(BACKUP_MARK) and kept.split("\n", 1)[1] == setup.source
    assert "run_from_notebook(" in content(databricks, setup.notebook_path)
    assert ws.get_job(setup.foreign_job_id) == foreign_before  # only recorded
    state = json.loads(content(databricks, f"{folder}/.dbtwf-state-dev.json"))
    assert state["scope_created"] is False and state["backup_path"] == backup
    assert state["secret_updated_at"] == stamp_before[GUIDE_KEY]
    assert [w["job_id"] for w in state["adopted_workflows"]] == [setup.own_job_id]
    assert [(t["job_id"], t["task_key"], t["adopted"]) for t in state["added_tasks"]] == [
        (setup.foreign_job_id, "dbt_cloud", True)
    ]
    assert len(state["original_notebook_sha256"]) == 64

    # plan: only what apply converges on the workflow (dbtwf's settings), nothing else.
    planned = cli("plan", "--json")
    assert planned.exit_code == 0, planned.output
    pending = [c for c in json.loads(planned.stdout)["changes"] if c["action"] != "no-op"]
    assert [c["resource"] for c in pending] == ["workflow", "state"]
    assert "differs in" in pending[0]["reason"]

    # The adopted workflow runs the runner, which reads the secret the guide stored.
    run_id = ws.run_now(setup.own_job_id)
    assert databricks.wait_for_run(run_id)["state"]["result_state"] == "SUCCESS"
    assert len(dbt_cloud.runs_of(DBT_JOB)) == 1

    # A second adopt, over the whole workspace, finds nothing new and writes nothing.
    with databricks.recording() as again:
        second = cli("adopt", "--yes", "--json")
    assert second.exit_code == 0, second.output
    result = json.loads(second.stdout)
    assert result["status"] == "nothing new"
    # The header every --json of plan/apply/destroy carries: the environment, workspace, identity.
    assert (result["environment"], result["workspace_host"], result["identity"]) == (
        "dev",
        databricks.url,
        ws.current_user(),
    )
    assert {(s["path"], s["kind"]) for s in result["skipped"]} == {
        (setup.notebook_path, "runner"),
        (backup, "backup"),
    }
    assert [r for r in again if r.is_write] == []

    # destroy gives the hand-made setup back.
    destroyed = cli("destroy", "--yes")
    assert destroyed.exit_code == 0, destroyed.output
    assert content(databricks, setup.notebook_path).rstrip() == setup.source.rstrip()
    assert ws.get_status(backup) is None
    own = ws.get_job(setup.own_job_id)
    assert own is not None and own["settings"]["tags"] == {"team": "analytics"}
    foreign = ws.get_job(setup.foreign_job_id)
    assert foreign is not None
    assert [t["task_key"] for t in foreign["settings"]["tasks"]] == ["ingest", "dbt_cloud"]
    assert databricks.secret_value(GUIDE_SCOPE, GUIDE_KEY) == DBT_CLOUD_TOKEN
    assert ws.has_scope(GUIDE_SCOPE)
    assert ws.read_file(f"{folder}/.dbtwf-state-dev.json") is None


def test_a_tolerated_edit_is_adopted_with_its_values(
    cli: Any, ws: Workspace, databricks: Any, dbt_cloud: Any, tmp_path: Path
) -> None:
    seed(ws, databricks, dbt_cloud, source=tolerated_edit(dbt_cloud.url, DBT_ACCOUNT_ID, "team-dbt", "tok"))
    # The seed's scope is dbt-cloud/api-key; this notebook reads team-dbt/tok.
    ws.create_scope("team-dbt")
    ws.put_secret("team-dbt", "tok", DBT_CLOUD_TOKEN)
    result = cli("--env", "analytics", "adopt", "--yes", "--json")
    assert result.exit_code == 0, result.output
    adopted = json.loads(result.stdout)
    assert adopted["status"] == "adopted"
    assert list(adopted)[:3] == ["environment", "workspace_host", "identity"]
    assert (adopted["environment"], adopted["workspace_host"]) == ("analytics", databricks.url)
    config = (tmp_path / "dbtwf.toml").read_text()
    assert 'secret_scope = "team-dbt"' in config and 'secret_key = "tok"' in config


def test_a_notebook_that_cannot_be_adopted_safely_is_refused_with_nothing_written(
    cli: Any, ws: Workspace, databricks: Any, dbt_cloud: Any, tmp_path: Path
) -> None:
    setup = seed(ws, databricks, dbt_cloud, source=refused_edit(dbt_cloud.url, DBT_ACCOUNT_ID))
    with databricks.recording() as requests:
        result = cli("adopt", "--notebook", setup.notebook_path, "--yes")
    assert result.exit_code == 2
    assert "host is computed at run time" in result.output
    assert len(result.output.strip().splitlines()) <= 2
    assert [r for r in requests if r.is_write] == []
    assert not (tmp_path / "dbtwf.toml").exists()


def test_nothing_is_written_before_the_plan_is_confirmed(
    cli: Any, ws: Workspace, databricks: Any, dbt_cloud: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from provision.commands import shell

    setup = seed(ws, databricks, dbt_cloud)
    monkeypatch.setattr(shell, "can_ask", lambda: True)
    with databricks.recording() as requests:
        result = cli("adopt", "--notebook", setup.notebook_path, input="n\n")
    assert result.exit_code == 1, result.output
    assert "backup" in result.output and "not adopted; nothing was changed" in result.output
    # Before the question: where the runner will send the token, read off the pasted code.
    asked = result.output.index("adopt " + setup.notebook_path)
    said = result.output.index(f"dbt_cloud_host = '{dbt_cloud.url}'")
    assert said < asked and f"dbt_cloud_account_id = {DBT_ACCOUNT_ID}" in result.output
    assert [r for r in requests if r.is_write] == []
    assert not (tmp_path / "dbtwf.toml").exists()
    assert content(databricks, setup.notebook_path) == setup.source


def test_values_the_notebook_does_not_say_come_from_flags(
    cli: Any, ws: Workspace, databricks: Any, dbt_cloud: Any, tmp_path: Path
) -> None:
    setup = seed(ws, databricks, dbt_cloud)
    placeholder = setup.source.replace(f'base_url =  "{dbt_cloud.url}"', 'base_url =  "<YOUR_BASE_URL>"')
    ws.import_notebook(setup.notebook_path, placeholder, overwrite=True)
    missing = cli("adopt", "--notebook", setup.notebook_path, "--yes")
    assert missing.exit_code == 2 and "--dbt-host" in missing.output
    contradicting = cli("adopt", "--notebook", setup.notebook_path, "--yes", "--secret-scope", "other")
    assert contradicting.exit_code == 2 and "contradicts the notebook" in contradicting.output
    given = cli("adopt", "--notebook", setup.notebook_path, "--yes", "--dbt-host", dbt_cloud.url)
    assert given.exit_code == 0, given.output
    assert f'dbt_cloud_host = "{dbt_cloud.url}"' in (tmp_path / "dbtwf.toml").read_text()


def test_an_existing_environment_that_differs_is_not_overwritten(
    cli: Any, ws: Workspace, databricks: Any, dbt_cloud: Any, tmp_path: Path
) -> None:
    setup = seed(ws, databricks, dbt_cloud)
    config = tmp_path / "dbtwf.toml"
    config.write_text(
        '# ours\n[environments.dev]\ndbt_cloud_host = "x.us1.dbt.com"\ndbt_cloud_account_id = 1\n\n'
        "[environments.dev.dbt_jobs]\nnightly = 5\n"
    )
    before = config.read_text()
    with databricks.recording() as requests:
        result = cli("adopt", "--notebook", setup.notebook_path, "--yes")
    assert result.exit_code == 2 and "differs from the setup found" in result.output
    # What differs, and the way out when an earlier adopt (given back by destroy) wrote it.
    assert "dbt_cloud_host" in result.output and "remove [environments.dev]" in result.output
    assert config.read_text() == before
    assert [r for r in requests if r.is_write] == []


def test_a_version_2_state_record_still_loads() -> None:
    from provision.state import STATE_VERSION, StateRecord

    record = StateRecord.from_json(json.dumps({"environment": "dev", "version": 2}).encode(), "s")
    assert record.version == STATE_VERSION and record.adopted_workflows == [] and record.backup_path == ""


def test_the_scan_stops_at_the_limit_and_says_so(
    cli: Any, ws: Workspace, databricks: Any, dbt_cloud: Any
) -> None:
    seed(ws, databricks, dbt_cloud)
    with databricks.recording() as requests:
        result = cli("adopt", "--limit", "3", "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert (found["status"], found["listed"], found["truncated"]) == ("nothing new", 3, True)
    assert "stopped after --limit 3" in result.stderr
    assert len([r for r in requests if r.path.endswith("/workspace/list")]) <= 3


def test_a_missing_secret_is_refused_with_how_to_store_the_token(
    cli: Any, ws: Workspace, databricks: Any, dbt_cloud: Any
) -> None:
    """The hint was "create it first" (or none for a missing key): it now names the Databricks
    CLI commands that store the token without putting it on the command line."""
    setup = seed(ws, databricks, dbt_cloud)
    ws.delete_secret(GUIDE_SCOPE, GUIDE_KEY)
    no_key = cli("adopt", "--notebook", setup.notebook_path, "--yes")
    assert no_key.exit_code == 2, no_key.output
    assert f"databricks secrets put-secret {GUIDE_SCOPE} {GUIDE_KEY}" in no_key.stderr
    ws.delete_scope(GUIDE_SCOPE)
    no_scope = cli("adopt", "--notebook", setup.notebook_path, "--yes")
    assert no_scope.exit_code == 2, no_scope.output
    assert f"databricks secrets create-scope {GUIDE_SCOPE}" in no_scope.stderr
    assert not (Path(os.environ["DBTWF_CONFIG"])).exists()


def test_the_progress_line_is_not_rewritten_into_a_log(
    cli: Any, ws: Workspace, databricks: Any, dbt_cloud: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`adopt --json 2>log` (a CI job) got every in-place update run together on one line
    ("...100 objects listed\rscanning the workspace: 200..."): off a terminal only the count."""
    import provision.adopt.scan

    seed(ws, databricks, dbt_cloud)
    monkeypatch.setattr(provision.adopt.scan, "PROGRESS_EVERY", 1)
    result = cli("adopt", "--yes", "--json")
    assert result.exit_code == 0, result.output
    assert "\r" not in result.stderr
    assert result.stderr.count("scanning the workspace:") == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--limit", "0"), "--limit 0"),
        (("--notebook", "Users/me/x"), "--notebook Users/me/x: not an absolute workspace path"),
        (("--folder", "dbt"), "--folder dbt: not an absolute workspace path"),
        (("--secret-scope", "bad scope!"), "--secret-scope"),
    ],
)
def test_bad_input_exits_2_before_any_request(
    cli: Any, databricks: Any, args: tuple[str, ...], message: str
) -> None:
    with databricks.recording() as requests:
        result = cli("adopt", *args)
    assert result.exit_code == 2 and message in result.output
    assert requests == []


def test_a_missing_value_is_asked_for_at_a_terminal(
    cli: Any, ws: Workspace, databricks: Any, dbt_cloud: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from provision.commands import shell

    setup = seed(ws, databricks, dbt_cloud)
    placeholder = setup.source.replace(f"account_id = {DBT_ACCOUNT_ID}", "account_id = <YOUR_ACCOUNT_ID>")
    ws.import_notebook(setup.notebook_path, placeholder, overwrite=True)
    monkeypatch.setattr(shell, "can_ask", lambda: True)
    result = cli("adopt", "--notebook", setup.notebook_path, input=f"{DBT_ACCOUNT_ID}\ny\n")
    assert result.exit_code == 0, result.output
    assert "dbt account id" in result.output
    assert f"dbt_cloud_account_id = {DBT_ACCOUNT_ID}" in (tmp_path / "dbtwf.toml").read_text()


def test_apply_after_adopt_converges_and_destroy_still_gives_it_back(
    cli: Any, ws: Workspace, databricks: Any, dbt_cloud: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = seed(ws, databricks, dbt_cloud)
    before = ws.get_job(setup.own_job_id)
    assert cli("adopt", "--notebook", setup.notebook_path, "--yes").exit_code == 0
    monkeypatch.setenv("DBT_CLOUD_API_TOKEN", DBT_CLOUD_TOKEN)  # apply stores the token: it needs it
    planned = json.loads(cli("plan", "--json").stdout)["changes"]
    (secret,) = [c for c in planned if c["resource"] == "secret"]
    # The plan says the value it replaces is the hand-made setup's, not one dbtwf stored.
    assert secret["action"] == "update" and "kept by adopt" in secret["reason"]
    applied = cli("apply", "--yes")
    assert applied.exit_code == 0, applied.output
    again = cli("plan")
    assert again.exit_code == 0 and "nothing to change" in again.stdout, again.output
    destroyed = cli("destroy", "--yes")
    assert destroyed.exit_code == 0, destroyed.output
    assert content(databricks, setup.notebook_path).rstrip() == setup.source.rstrip()
    own = ws.get_job(setup.own_job_id)
    assert before is not None and own is not None
    assert own["settings"] == before["settings"]  # as adopt found it, though apply converged it
    assert databricks.secret_value(GUIDE_SCOPE, GUIDE_KEY) == DBT_CLOUD_TOKEN and ws.has_scope(GUIDE_SCOPE)


def test_a_second_destroy_leaves_the_notebook_the_first_gave_back(
    cli: Any, ws: Workspace, databricks: Any, dbt_cloud: Any
) -> None:
    """A user ran destroy twice: dbtwf.toml still names the notebook's path, and the second
    destroy deleted the guide's code the first had just put back."""
    setup = seed(ws, databricks, dbt_cloud)
    assert cli("adopt", "--notebook", setup.notebook_path, "--yes").exit_code == 0
    assert cli("destroy", "--yes").exit_code == 0
    again = cli("destroy", "--yes")
    assert again.exit_code == 0, again.output
    assert "not dbtwf's runner" in again.output
    assert content(databricks, setup.notebook_path).rstrip() == setup.source.rstrip()
    # plan then stops on the given-back workflow: the way back in is adopt, not --adopt alone
    # (which would replace the notebook's code with no backup).
    planned = cli("plan")
    assert planned.exit_code == 1 and "`dbtwf --env dev adopt`" in planned.stderr, planned.output


def test_workspace_list_answers_in_the_sdks_objectinfo_shape(ws: Workspace, databricks: Any) -> None:
    """What the scan walks: one folder at a time, objects as the SDK's ObjectInfo
    (docs.databricks.com/api/workspace/workspace/list); a missing folder is None."""
    import dataclasses

    from databricks.sdk.service.workspace import ObjectInfo

    ws.mkdirs("/Users/emulator-user@example.com/scan/sub")
    ws.import_notebook("/Users/emulator-user@example.com/scan/nb", "print(1)\n", overwrite=False)
    ws.write_file("/Users/emulator-user@example.com/scan/f.py", b"print(2)\n", overwrite=False)
    listed = ws.list_folder("/Users/emulator-user@example.com/scan")
    assert listed is not None
    fields = {f.name for f in dataclasses.fields(ObjectInfo)}
    assert all(set(item) <= fields for item in listed)
    assert {
        (item["path"].rsplit("/", 1)[1], item["object_type"], item.get("language")) for item in listed
    } == {
        ("sub", "DIRECTORY", None),
        ("nb", "NOTEBOOK", "PYTHON"),
        ("f.py", "FILE", None),
    }
    assert ws.list_folder("/Users/emulator-user@example.com/nowhere") is None


def test_the_scan_lists_a_level_of_folders_together(ws: Workspace, databricks: Any) -> None:
    from provision.adopt.scan import scan
    from tests.emulators.base import round_trip_depth

    home = "/Users/emulator-user@example.com/teams"
    for team in "abcdef":
        ws.mkdirs(f"{home}/{team}/nested")
    databricks.latency_ms = 30.0  # so requests sent together visibly overlap
    with databricks.recording() as requests:
        result = scan(ws, folders=[home])
    lists = [r for r in requests if r.path.endswith("/workspace/list")]
    assert (len(lists), result.listed) == (13, 12)  # home, 6 teams, 6 nested folders listed
    assert round_trip_depth(lists) == 3  # one round trip per level, not one per folder


def test_a_second_workflow_made_for_the_notebook_is_recorded_not_owned(
    cli: Any, ws: Workspace, databricks: Any, dbt_cloud: Any
) -> None:
    setup = seed(ws, databricks, dbt_cloud)
    task = {
        "task_key": "weekly",
        "notebook_task": {"notebook_path": setup.notebook_path, "source": "WORKSPACE"},
    }
    second = ws.create_job(
        {"name": "weekly dbt", "parameters": [{"name": "job_id", "default": "43"}], "tasks": [task]}
    )
    result = cli("adopt", "--notebook", setup.notebook_path, "--yes", "--json")
    assert result.exit_code == 0, result.output
    rows = {(c["resource"], c.get("job_id")) for c in json.loads(result.stdout)["changes"]}
    assert ("adopt-workflow", setup.own_job_id) in rows and ("task", second) in rows
    weekly = ws.get_job(second)
    assert weekly is not None and "tags" not in weekly["settings"]  # recorded, not tagged


def test_a_notebook_no_workflow_was_made_for_is_refused(
    cli: Any, ws: Workspace, databricks: Any, dbt_cloud: Any, tmp_path: Path
) -> None:
    setup = seed(ws, databricks, dbt_cloud)
    ws.delete_job(setup.own_job_id)  # left: only the foreign workflow's task runs it
    with databricks.recording() as requests:
        result = cli("adopt", "--notebook", setup.notebook_path, "--yes")
    assert result.exit_code == 2 and "no workflow was made for it" in result.output
    assert [r for r in requests if r.is_write] == [] and not (tmp_path / "dbtwf.toml").exists()


def test_a_setup_under_shared_is_adopted_with_the_warning_plan_gives(
    cli: Any, ws: Workspace, databricks: Any, dbt_cloud: Any
) -> None:
    # The guide's notebook often sits in /Shared, editable by every user: adopt keeps its path,
    # so its plan must say so before the user confirms, as `dbtwf plan` would.
    databricks.add_cluster(CLUSTER)
    dbt_cloud.add_job(DBT_JOB, scenario=Scenario(outcome="success", polls=1))
    setup = seed_guide_workspace(
        ws,
        dbt_host=dbt_cloud.url,
        account_id=DBT_ACCOUNT_ID,
        dbt_job_id=DBT_JOB,
        token=DBT_CLOUD_TOKEN,
        folder="/Shared/dbt",
    )
    adopted = cli("adopt", "--notebook", setup.notebook_path, "--yes")
    assert adopted.exit_code == 0, adopted.output
    assert f"every workspace user can edit {setup.notebook_path}" in adopted.output
    assert "run_from_notebook(" in content(databricks, setup.notebook_path)


def test_a_record_naming_another_file_as_the_backup_cannot_make_destroy_delete_it(
    cli: Any, ws: Workspace, databricks: Any, dbt_cloud: Any
) -> None:
    # Someone who can edit the state record points its backup at a file of the destroyer's:
    # destroy would have copied it over the notebook and deleted it.
    setup = seed(ws, databricks, dbt_cloud)
    assert cli("adopt", "--notebook", setup.notebook_path, "--yes").exit_code == 0
    precious = f"/Users/{ws.current_user_name()}/precious.py"
    ws.write_file(precious, b"print('mine')\n", overwrite=False)
    state_path = setup.notebook_path.rsplit("/", 1)[0] + "/.dbtwf-state-dev.json"
    record = json.loads(content(databricks, state_path))
    record["backup_path"] = precious
    ws.write_file(state_path, json.dumps(record).encode(), overwrite=True)

    destroyed = cli("destroy", "--yes")
    assert destroyed.exit_code == 0, destroyed.output
    assert "not the file adopt writes: left alone" in destroyed.output
    assert content(databricks, precious) == "print('mine')\n"
    assert "run_from_notebook(" in content(databricks, setup.notebook_path)


def test_migrate_after_adopt_says_the_adopted_foreign_task_stays_on_the_notebook(
    cli: Any, ws: Workspace, databricks: Any, dbt_cloud: Any
) -> None:
    # The foreign workflow's task is the user's own, recorded by adopt as it was (no dbtwf mark):
    # migrate leaves it running the notebook and says why, instead of "changed by hand".
    setup = seed(ws, databricks, dbt_cloud)
    assert cli("adopt", "--notebook", setup.notebook_path, "--yes").exit_code == 0
    databricks.add_dbt_platform_connection(
        "dbt_conn", dbt_url=dbt_cloud.url, account_id=DBT_ACCOUNT_ID, token=DBT_CLOUD_TOKEN
    )
    foreign_before = ws.get_job(setup.foreign_job_id)
    migrated = cli("migrate", "--to", "dbt_platform", "--connection", "dbt_conn", "--yes")
    assert migrated.exit_code == 0, migrated.output
    assert "was adopted as the hand-made setup had it: left running the notebook" in migrated.output
    assert "changed by hand" not in migrated.output
    assert ws.get_job(setup.foreign_job_id) == foreign_before
    own = ws.get_job(setup.own_job_id)
    assert own is not None and all("dbt_platform_task" in t for t in own["settings"]["tasks"])


def test_an_adopt_stopped_half_way_names_the_way_back_and_that_way_works(
    cli: Any, ws: Workspace, databricks: Any, dbt_cloud: Any
) -> None:
    # The tags' jobs/update fails (a 500 is not retried): the notebook is the runner already.
    setup = seed(ws, databricks, dbt_cloud)
    own_before = ws.get_job(setup.own_job_id)
    databricks.faults.inject("500", path=r"/api/2\.[12]/jobs/update", times=1)
    failed = cli("adopt", "--notebook", setup.notebook_path, "--yes")
    assert failed.exit_code == 1
    assert "`dbtwf --env dev destroy --yes` gives the hand-made setup back, then adopt again" in failed.output
    # Adopting again now sees dbtwf's runner at the path: not "nothing new", but the way back.
    rerun = cli("adopt", "--notebook", setup.notebook_path, "--yes")
    assert rerun.exit_code == 1 and "stopped half-way" in rerun.output, rerun.output
    assert "destroy --yes` gives the hand-made setup back" in rerun.output
    assert cli("destroy", "--yes").exit_code == 0
    assert content(databricks, setup.notebook_path) == setup.source
    assert ws.get_status(setup.notebook_path + BACKUP_SUFFIX) is None
    assert ws.get_job(setup.own_job_id) == own_before
    again = cli("adopt", "--notebook", setup.notebook_path, "--yes")
    assert again.exit_code == 0, again.output
    assert "run_from_notebook(" in content(databricks, setup.notebook_path)


def test_adopt_resumes_a_run_stopped_before_the_notebook_was_replaced(
    cli: Any, ws: Workspace, databricks: Any, dbt_cloud: Any
) -> None:
    from provision.adopt.recognise import backup_header
    from provision.desired import sha256_text

    # What an adopt stopped right after the backup left: the backup, exactly as adopt writes it.
    setup = seed(ws, databricks, dbt_cloud)
    backup = setup.notebook_path + BACKUP_SUFFIX
    body = backup_header(setup.notebook_path, sha256_text(setup.source)) + "\n" + setup.source
    ws.write_file(backup, body.encode(), overwrite=False)
    resumed = cli("adopt", "--notebook", setup.notebook_path, "--yes")
    assert resumed.exit_code == 0, resumed.output
    assert content(databricks, backup) == body and "run_from_notebook(" in content(
        databricks, setup.notebook_path
    )
    # A backup holding anything else is still refused, nothing written.
    assert cli("destroy", "--yes").exit_code == 0
    ws.write_file(backup, b"# someone's file\n", overwrite=False)
    with databricks.recording() as requests:
        refused = cli("adopt", "--notebook", setup.notebook_path, "--yes")
    assert refused.exit_code == 1 and "exists already" in refused.output
    assert [r for r in requests if r.is_write] == []
