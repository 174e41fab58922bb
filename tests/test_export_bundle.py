"""`dbtwf export bundle`, and dbtwf leaving a bundle-deployed workflow alone. Real HTTP against
the emulators wherever a workspace is involved.

The output is validated with `databricks-bundles`, Databricks' Python models generated from the
bundle JSON schema of databricks/cli (`bundle/schema/jsonschema.json`): `Job.from_dict` and
`SecretScope.from_dict` raise on an unknown field or a wrong type. The top-level structure of
databricks.yml is checked against the property names that schema gives the root object, `Bundle`,
`Target`, `Workspace` and `Resources` (databricks/cli, bundle/schema/jsonschema.json, $defs
github.com/databricks/cli/bundle/config.*; read, not vendored).
"""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from typer.testing import CliRunner

from provision.bundle import JOB_KEY, SCOPE_KEY
from provision.cli import app
from tests.conftest import DATABRICKS_TOKEN, DBT_CLOUD_TOKEN
from tests.provision_helpers import cli_env, write_config

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient

    from tests.emulators.databricks import DatabricksEmulator
    from tests.emulators.dbtcloud import DbtCloudEmulator

# Property names from databricks/cli bundle/schema/jsonschema.json (read 2026-11-29, commit 7bbe285).
ROOT_KEYS = {
    "artifacts", "bundle", "environments", "experimental", "include", "permissions", "presets",
    "python", "resources", "run_as", "scripts", "sync", "targets", "variables", "workspace",
}  # fmt: skip
BUNDLE_KEYS = {
    "cluster_id",
    "compute_id",
    "databricks_cli_version",
    "deployment",
    "engine",
    "git",
    "name",
    "uuid",
}
TARGET_KEYS = {
    "artifacts", "bundle", "cluster_id", "compute_id", "default", "git", "mode", "permissions",
    "presets", "resources", "run_as", "sync", "variables", "workspace",
}  # fmt: skip
WORKSPACE_KEYS = {"host", "profile", "root_path", "file_path", "artifact_path", "state_path", "auth_type"}
SYNC_KEYS = {"exclude", "include", "paths"}

METADATA = "/Workspace/Users/someone@example.com/.bundle/dbtwf/{env}/state/metadata.json"


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


@pytest.fixture
def two_envs(
    tmp_path: Path, databricks: DatabricksEmulator, dbt_cloud: DbtCloudEmulator, monkeypatch: Any
) -> Path:
    """dev runs one dbt job (a job-level job_id parameter); prod two, one after the other (task
    parameters), on a cluster, on a schedule, with failure e-mails and scope readers, pinned to
    the emulator's host. The CLI's variables point at the emulators."""
    for job in (42, 43, 44):
        dbt_cloud.add_job(job)
    databricks.add_cluster("0601-182128-abcd1234")
    config = write_config(tmp_path / "dbtwf.toml", dbt_cloud.url, {"dev": {"nightly": 42}, "prod": {"a": 43}})
    text = config.read_text().replace(
        "[environments.prod.dbt_jobs]",
        f'[environments.prod]\ndatabricks_host = "{databricks.url}"\n'
        'scope_readers = ["users", "ana@example.com"]\n'
        'failure_emails = ["ana@example.com"]\ncluster_id = "0601-182128-abcd1234"\n'
        'schedule = { quartz_cron = "0 0 6 * * ?", timezone = "Europe/Berlin" }\n\n'
        "[environments.prod.dbt_jobs]",
    )
    text = text.replace("a = 43", 'a = 43\nb = { job_id = 44, depends_on = ["a"] }')
    config.write_text(text, encoding="utf-8")
    for name, value in cli_env(tmp_path, databricks.url).items():
        monkeypatch.setenv(name, value)
    return config


def read_bundle(out: Path) -> dict[str, Any]:
    document = yaml.safe_load((out / "databricks.yml").read_text())
    assert isinstance(document, dict)
    return document


def validate(document: dict[str, Any]) -> None:
    """The structure checks against the bundle schema, and every job and scope through the
    models Databricks generated from it (each must also survive a round trip unchanged: no field
    the models do not know was silently dropped)."""
    from databricks.bundles.jobs import Job
    from databricks.bundles.secret_scopes import SecretScope

    assert set(document) <= ROOT_KEYS
    assert "name" in document["bundle"] and set(document["bundle"]) <= BUNDLE_KEYS
    for target in document["targets"].values():
        assert set(target) <= TARGET_KEYS
        assert set(target.get("workspace", {})) <= WORKSPACE_KEYS
        assert set(target.get("sync", {})) <= SYNC_KEYS
        assert {"jobs"} <= set(target["resources"]) <= {"jobs", "secret_scopes"}
        for job in target["resources"]["jobs"].values():
            assert Job.from_dict(job).as_dict() == job
        for scope in target["resources"].get("secret_scopes", {}).values():
            assert SecretScope.from_dict(scope).as_dict() == scope


def test_export_writes_one_validated_target_per_environment_offline(
    two_envs: Path, tmp_path: Path, databricks: DatabricksEmulator, dbt_cloud: DbtCloudEmulator
) -> None:
    out = tmp_path / "bundle"
    result = invoke("export", "bundle", "--out", str(out))
    assert result.exit_code == 0, result.output
    document = read_bundle(out)
    validate(document)
    assert list(document["targets"]) == ["dev", "prod"]
    prod = document["targets"]["prod"]
    assert prod["workspace"] == {"host": databricks.url}
    assert "workspace" not in document["targets"]["dev"]  # not pinned: the CLI's default
    assert prod["sync"] == {"exclude": ["src/dev/**"]}
    assert prod["resources"]["secret_scopes"][SCOPE_KEY] == {
        "name": "dbtwf-prod",
        "permissions": [
            {"level": "READ", "group_name": "users"},
            {"level": "READ", "user_name": "ana@example.com"},
        ],
    }
    tasks = prod["resources"]["jobs"][JOB_KEY]["tasks"]
    assert {t["notebook_task"]["notebook_path"] for t in tasks} == {"src/prod/run_dbt_cloud_job.py"}
    for name in ("dev", "prod"):
        notebook = (out / f"src/{name}/run_dbt_cloud_job.py").read_text()
        assert notebook.startswith("# Databricks notebook source")
        assert f"secret_scope='dbtwf-{name}'" in notebook
    # Offline: not one request to the workspace or to dbt Cloud.
    assert databricks.requests == [] and dbt_cloud.requests == []
    # The next step binds before it deploys (a deploy first makes a second workflow), as the
    # README says; the help said "databricks bundle deploy" alone.
    next_step = result.output[result.output.index("next:") :]
    bind = next_step.index("bundle deployment bind dbt_cloud_jobs")
    assert "bind dbt_cloud_token_scope dbtwf-dev -t dev) only if dbtwf created it" in result.output
    assert bind < next_step.index("databricks bundle deploy -t dev")
    epilog = invoke("export", "bundle", "--help").output
    assert epilog.index("deployment bind") < epilog.index("bundle deploy -t prod")


def test_export_never_writes_the_token(two_envs: Path, tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("DATABRICKS_HOST", "https://workspace.invalid")  # and needs no workspace
    out = tmp_path / "bundle"
    result = invoke("export", "bundle", "--out", str(out))
    assert result.exit_code == 0, result.output
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) == 3
    for path in files:
        assert DBT_CLOUD_TOKEN not in path.read_text()
    assert DBT_CLOUD_TOKEN not in result.output


def test_export_env_subset_env_before_the_command_and_name(
    two_envs: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setenv("DBTWF_ENV", "prod")  # picks one environment to act on; an export takes all
    out = tmp_path / "all"
    assert invoke("export", "bundle", "--out", str(out)).exit_code == 0
    assert list(read_bundle(out)["targets"]) == ["dev", "prod"]
    out = tmp_path / "only-prod"
    assert invoke("export", "bundle", "--env", "prod", "--out", str(out)).exit_code == 0
    assert list(read_bundle(out)["targets"]) == ["prod"]
    assert "sync" not in read_bundle(out)["targets"]["prod"]  # one target: nothing to exclude
    assert sorted(p.name for p in (out / "src").iterdir()) == ["prod"]
    out = tmp_path / "only-dev"
    assert invoke("--env", "dev", "export", "bundle", "-o", str(out)).exit_code == 0
    assert list(read_bundle(out)["targets"]) == ["dev"]
    out = tmp_path / "named"
    assert invoke("export", "bundle", "--name", "dbt-jobs_2", "-o", str(out)).exit_code == 0
    assert read_bundle(out)["bundle"] == {"name": "dbt-jobs_2"}
    result = invoke("export", "bundle", "--name", "../x", "-o", str(tmp_path / "bad"))
    assert result.exit_code == 2 and not (tmp_path / "bad").exists()
    result = invoke("export", "bundle", "--env", "qa", "--out", str(tmp_path / "qa"))
    assert result.exit_code == 2 and 'no environment "qa"' in result.output
    assert not (tmp_path / "qa").exists()


def test_export_refuses_a_folder_that_is_not_empty_unless_forced(two_envs: Path, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    result = invoke("export", "bundle", "--out", str(out))
    assert result.exit_code == 2 and "not empty" in result.output
    assert [p.name for p in out.rglob("*")] == ["mine.txt"]  # nothing written
    result = invoke("export", "bundle", "--out", str(out), "--force")
    assert result.exit_code == 0, result.output
    assert (out / "mine.txt").read_text() == "keep me" and (out / "databricks.yml").is_file()


# --- the same workflow as apply --------------------------------------------------------------


def client(databricks: DatabricksEmulator) -> WorkspaceClient:
    from databricks.sdk import WorkspaceClient

    return WorkspaceClient(host=databricks.url, token=DATABRICKS_TOKEN)


def sent_settings(databricks: DatabricksEmulator) -> dict[str, dict[str, Any]]:
    """The settings each apply sent to jobs/create, by environment tag."""
    bodies = [r.json() for r in databricks.requests if r.method == "POST" and r.path.endswith("/jobs/create")]
    return {body["tags"]["dbtwf-env"]: body for body in bodies}


def test_bundle_job_equals_what_apply_sends_but_the_notebook_path(
    two_envs: Path, tmp_path: Path, databricks: DatabricksEmulator
) -> None:
    for name in ("dev", "prod"):
        result = invoke("apply", "--env", name, "--yes")
        assert result.exit_code == 0, result.output
    sent = sent_settings(databricks)
    out = tmp_path / "bundle"
    assert invoke("export", "bundle", "--out", str(out)).exit_code == 0
    document = read_bundle(out)
    w = client(databricks)
    for name in ("dev", "prod"):
        job = copy.deepcopy(document["targets"][name]["resources"]["jobs"][JOB_KEY])
        # The SDK's jobs/create sends each array it was not given as [] (no such field in the bundle).
        applied = {key: value for key, value in copy.deepcopy(sent[name]).items() if value != []}
        workspace_paths = {t["notebook_task"].pop("notebook_path") for t in applied["tasks"]}
        bundle_paths = {t["notebook_task"].pop("notebook_path") for t in job["tasks"]}
        assert bundle_paths == {f"src/{name}/run_dbt_cloud_job.py"}
        assert job == applied  # every other field, as apply sent it
        # The notebook file is the very notebook apply uploaded there.
        (path,) = workspace_paths
        uploaded = base64.b64decode(w.workspace.export(path).content or "").decode()
        assert (out / f"src/{name}/run_dbt_cloud_job.py").read_text().rstrip() == uploaded.rstrip()
    # The richer case was covered: dependencies, a cluster, a schedule, e-mails.
    assert sent["prod"]["tasks"][1]["depends_on"] == [{"task_key": "a"}]
    assert sent["prod"]["tasks"][0]["existing_cluster_id"] == "0601-182128-abcd1234"
    assert {"schedule", "email_notifications"} <= set(sent["prod"])


# --- after a bundle deploy: dbtwf leaves the workflow alone -----------------------------------


def deploy_as_a_bundle_would(databricks: DatabricksEmulator, out: Path, env: str, job_id: int) -> str:
    """What `databricks bundle deployment bind` + `bundle deploy -t env` do to the bound job:
    upload the notebook file under the bundle's folder, then jobs/reset with the bundle's settings,
    the notebook path translated (databricks/cli bundle/config/mutator/translate_paths.go: the
    notebook's extension goes) and `deployment` set (kind BUNDLE, the metadata file)."""
    from databricks.sdk.service.jobs import JobSettings
    from databricks.sdk.service.workspace import ImportFormat, Language

    w = client(databricks)
    root = f"/Users/{w.current_user.me().user_name}/.bundle/dbtwf/{env}/files"
    remote = f"{root}/src/{env}/run_dbt_cloud_job"  # the .py extension goes, as for any notebook
    w.workspace.mkdirs(remote.rsplit("/", 1)[0])
    source = (out / f"src/{env}/run_dbt_cloud_job.py").read_text()
    w.workspace.import_(
        remote,
        content=base64.b64encode(source.encode()).decode(),
        format=ImportFormat.SOURCE,
        language=Language.PYTHON,
        overwrite=True,
    )
    settings = copy.deepcopy(read_bundle(out)["targets"][env]["resources"]["jobs"][JOB_KEY])
    for task in settings["tasks"]:
        task["notebook_task"]["notebook_path"] = remote
    # What the deploy adds to every job (databricks/cli bundle/deploy/metadata/annotate_jobs.go).
    settings["deployment"] = {"kind": "BUNDLE", "metadata_file_path": METADATA.format(env=env)}
    settings["edit_mode"] = "UI_LOCKED"
    settings["format"] = "MULTI_TASK"
    w.jobs.reset(job_id, JobSettings.from_dict(settings))
    return remote


def test_plan_apply_and_destroy_leave_a_bundle_deployed_workflow_alone(
    two_envs: Path, tmp_path: Path, databricks: DatabricksEmulator
) -> None:
    assert invoke("apply", "--env", "dev", "--yes").exit_code == 0
    (job,) = client(databricks).jobs.list(name="dbt Cloud jobs (dev)")
    job_id = int(job.job_id or 0)
    out = tmp_path / "bundle"
    assert invoke("export", "bundle", "--env", "dev", "--out", str(out)).exit_code == 0
    deploy_as_a_bundle_would(databricks, out, "dev", job_id)
    before = client(databricks).jobs.get(job_id).settings.as_dict()  # type: ignore[union-attr]

    result = invoke("plan", "--env", "dev", "--json")
    assert result.exit_code == 0, result.output
    (workflow,) = [c for c in yaml.safe_load(result.stdout)["changes"] if c["resource"] == "workflow"]
    assert workflow["action"] == "no-op" and workflow["job_id"] == job_id
    assert "deployed by a Databricks Asset Bundle" in workflow["reason"]
    assert METADATA.format(env="dev") in workflow["reason"] and "no longer manages" in workflow["reason"]

    databricks.reset_log()
    result = invoke("apply", "--env", "dev", "--yes")
    assert result.exit_code == 0, result.output
    assert [r for r in databricks.requests if r.is_write and "/jobs/" in r.path] == []
    assert [r for r in databricks.requests if r.is_write] == []  # nothing else to do either
    assert (
        f"workflow {job_id} 'dbt Cloud jobs (dev)' belongs to a Databricks Asset Bundle now" in result.stderr
    )
    assert client(databricks).jobs.get(job_id).settings.as_dict() == before  # type: ignore[union-attr]

    result = invoke("doctor", "--env", "dev", "--json")
    assert result.exit_code == 0, result.output
    (check,) = [c for c in json.loads(result.stdout)["checks"] if c["name"] == "workflow"]
    assert check["status"] == "ok" and check["detail"].endswith(
        "Asset Bundle (" + METADATA.format(env="dev") + "): the bundle manages it"
    )

    result = invoke("run", "--env", "dev", "--no-wait")  # dbtwf still runs it
    assert result.exit_code == 0, result.output
    assert [r.json()["job_id"] for r in databricks.requests if r.path.endswith("/jobs/run-now")] == [job_id]

    result = invoke("destroy", "--env", "dev", "--yes")
    assert result.exit_code == 0, result.output
    assert "left alone" in result.output and "bundle destroy" in result.output
    assert client(databricks).jobs.get(job_id).settings.as_dict() == before  # type: ignore[union-attr]
    assert [s.key for s in client(databricks).secrets.list_secrets("dbtwf-dev")] == ["dbt-cloud-api-token"]

    # The state record is gone: found again by its tags, it is still the bundle's (not a
    # deployment from another notebook to refuse).
    result = invoke("plan", "--env", "dev", "--json")
    assert result.exit_code == 0, result.output
    (workflow,) = [c for c in yaml.safe_load(result.stdout)["changes"] if c["resource"] == "workflow"]
    assert workflow["action"] == "no-op" and "Asset Bundle" in workflow["reason"]


def test_the_emulator_keeps_a_bundle_deployment_through_create_update_and_reset(
    databricks: DatabricksEmulator,
) -> None:
    """Bundle deploys set `deployment` through jobs/create and jobs/reset (JobSettings.deployment,
    the SDK's JobDeployment); jobs/get returns it as sent."""
    from databricks.sdk.service.jobs import JobDeployment, JobDeploymentKind, JobSettings

    w = client(databricks)
    deployment = JobDeployment(kind=JobDeploymentKind.BUNDLE, metadata_file_path="/Workspace/x/metadata.json")
    job_id = w.jobs.create(name="bundled", deployment=deployment).job_id
    assert job_id is not None
    got = w.jobs.get(job_id).settings
    assert got is not None and got.deployment == deployment
    moved = JobDeployment(kind=JobDeploymentKind.BUNDLE, metadata_file_path="/Workspace/y/metadata.json")
    w.jobs.update(job_id, new_settings=JobSettings(deployment=moved))
    got = w.jobs.get(job_id).settings
    assert got is not None and got.deployment == moved
    w.jobs.reset(job_id, JobSettings(name="bundled", deployment=deployment))
    got = w.jobs.get(job_id).settings
    assert got is not None and got.deployment == deployment


# --- the pure parts ------------------------------------------------------------------------


def test_scope_readers_become_the_bundle_permission_of_their_kind() -> None:
    from provision.bundle import scope_permission

    assert scope_permission("ana@example.com") == {"level": "READ", "user_name": "ana@example.com"}
    uuid = "6f2b1a3c-0d4e-4f5a-9b8c-7d6e5f4a3b2c"
    assert scope_permission(uuid) == {"level": "READ", "service_principal_name": uuid}
    assert scope_permission("data-engineers") == {"level": "READ", "group_name": "data-engineers"}


def test_a_job_cluster_environment_exports_a_valid_job_with_its_cluster() -> None:
    from databricks.bundles.jobs import Job

    from provision.bundle import bundle_document, bundle_job
    from provision.desired import workflow_settings
    from provision.model import Compute
    from tests.provision_helpers import make_env

    spec = {"spark_version": "15.4.x-scala2.12", "node_type_id": "i3.xlarge", "num_workers": 1}
    env = make_env("qa", compute=Compute(kind="job_cluster", new_cluster=spec))
    job = bundle_job(env)
    assert Job.from_dict(job).as_dict() == job
    assert job["job_clusters"] == workflow_settings(env)["job_clusters"]
    assert job["tasks"][0]["job_cluster_key"] == "dbtwf_cluster"
    document = bundle_document([env])
    validate(document)
    assert "workspace" not in document["targets"]["qa"]


def test_a_dbt_platform_environment_exports_its_job_alone() -> None:
    from provision.bundle import bundle_files
    from provision.model import DBT_PLATFORM
    from tests.provision_helpers import make_env

    env = make_env("beta", task_type=DBT_PLATFORM, dbt_platform_connection="dbt_prod")
    files = bundle_files([env, make_env("dev")])
    assert sorted(files) == ["databricks.yml", "src/dev/run_dbt_cloud_job.py"]
    document = yaml.safe_load(files["databricks.yml"])
    validate(document)
    beta = document["targets"]["beta"]
    assert set(beta) == {"resources"} and set(beta["resources"]) == {"jobs"}
    assert "sync" not in document["targets"]["dev"]  # no other notebook folder to leave out
    (task,) = beta["resources"]["jobs"][JOB_KEY]["tasks"]
    assert task["dbt_platform_task"] == {"connection_resource_name": "dbt_prod", "dbt_platform_job_id": "42"}


def test_a_dbt_platform_environment_is_not_told_to_fill_a_secret(tmp_path: Path, monkeypatch: Any) -> None:
    """After `migrate --to dbt_platform`, export said to store the token in the scope it no
    longer exports, and to bind that scope."""
    config = write_config(tmp_path / "dbtwf.toml", "acme.us1.dbt.com", {"beta": {"nightly": 42}})
    config.write_text(
        config.read_text().replace(
            "[environments.beta.dbt_jobs]",
            '[environments.beta]\ntask_type = "dbt_platform"\ndbt_platform_connection = "dbt_prod"\n\n'
            "[environments.beta.dbt_jobs]",
        )
    )
    monkeypatch.setenv("DBTWF_CONFIG", str(config))
    result = invoke("export", "bundle", "--out", str(tmp_path / "bundle"))
    assert result.exit_code == 0, result.output
    assert "put-secret" not in result.output and "dbt_cloud_token_scope" not in result.output
    assert "bind dbt_cloud_jobs <job id> -t beta" in result.output


def test_the_validation_catches_what_the_bundle_schema_refuses() -> None:
    """The checks have teeth: an unknown field, a wrong type, an unknown top-level key."""
    from provision.bundle import bundle_document
    from tests.provision_helpers import make_env

    good = bundle_document([make_env("dev")])
    validate(good)
    job = good["targets"]["dev"]["resources"]["jobs"][JOB_KEY]
    for broken in (
        {**good, "resourcez": {}},
        {**good, "targets": {"dev": {**good["targets"]["dev"], "hosts": "x"}}},
        {
            **good,
            "targets": {
                "dev": {
                    "resources": {"jobs": {JOB_KEY: {**job, "max_concurrent_run": 1}}, "secret_scopes": {}}
                }
            },
        },
        {
            **good,
            "targets": {
                "dev": {
                    "resources": {
                        "jobs": {JOB_KEY: {**job, "max_concurrent_runs": "one"}},
                        "secret_scopes": {},
                    }
                }
            },
        },
    ):
        with pytest.raises((AssertionError, ValueError)):
            validate(broken)
