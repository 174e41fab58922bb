"""Shared helpers for the provisioning tests: a Workspace on the emulator, environments,
a config file and the environment variables a CLI run needs (all confined to tmp_path)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provision.databricks import Workspace
from provision.model import DbtJobTask, Environment
from tests.conftest import DATABRICKS_TOKEN, DBT_ACCOUNT_ID, DBT_CLOUD_TOKEN

if TYPE_CHECKING:
    import pytest
    from click.testing import Result


def make_workspace(emulator: Any) -> Workspace:
    from databricks.sdk import WorkspaceClient

    return Workspace(WorkspaceClient(host=emulator.url, token=DATABRICKS_TOKEN))


def make_env(name: str = "dev", dbt_host: str = "acme.us1.dbt.com", **overrides: Any) -> Environment:
    values: dict[str, Any] = {
        "name": name,
        "dbt_cloud_host": dbt_host,
        "dbt_cloud_account_id": DBT_ACCOUNT_ID,
        "dbt_jobs": (DbtJobTask("nightly", 42),),
        "secret_scope": f"dbtwf-{name}",
        "notebook_path": f"/Shared/dbtwf/{name}/run_dbt_cloud_job",
        "workflow_name": f"dbt Cloud jobs ({name})",
    }
    values.update(overrides)
    return Environment(**values)


def write_config(path: Path, dbt_host: str, environments: dict[str, dict[str, int]]) -> Path:
    """A dbtwf.toml with the emulator's dbt host and one `[environments.NAME.dbt_jobs]` each."""
    lines = ["[defaults]", f'dbt_cloud_host = "{dbt_host}"', f"dbt_cloud_account_id = {DBT_ACCOUNT_ID}", ""]
    for name, jobs in environments.items():
        lines.append(f"[environments.{name}.dbt_jobs]")
        lines += [f"{key} = {job_id}" for key, job_id in jobs.items()]
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def set_notebook_path(tmp_path: Path, path: str) -> None:
    """Give environment dev of configured_cli's dbtwf.toml this notebook_path."""
    config = tmp_path / "dbtwf.toml"
    config.write_text(
        config.read_text().replace(
            "[environments.dev.dbt_jobs]",
            f'[environments.dev]\nnotebook_path = "{path}"\n\n[environments.dev.dbt_jobs]',
        ),
        encoding="utf-8",
    )


def cli_env(tmp_path: Path, databricks_url: str, *, token: str | None = DBT_CLOUD_TOKEN) -> dict[str, str]:
    """Environment variables for a CLI run: emulator credentials, a HOME and a keyring in tmp_path."""
    keyring_dir = tmp_path / "keyring"
    keyring_dir.mkdir(exist_ok=True)
    variables = {
        "HOME": str(tmp_path),
        "DATABRICKS_HOST": databricks_url,
        "DATABRICKS_TOKEN": DATABRICKS_TOKEN,
        "DATABRICKS_CONFIG_FILE": str(tmp_path / "no-databrickscfg"),
        "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
        "XDG_DATA_HOME": str(keyring_dir),
        "DBTWF_CONFIG": str(tmp_path / "dbtwf.toml"),
    }
    if token is not None:
        variables["DBT_CLOUD_API_TOKEN"] = token
    return variables


def configured_cli(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    databricks_url: str,
    dbt_url: str,
    dbt_job: int,
    *command: str,
) -> Callable[..., Result]:
    """`dbtwf COMMAND... ARGS...` in-process, against a dbtwf.toml whose one environment, dev,
    runs `dbt_job` as task `nightly`, with the emulators' credentials set by `monkeypatch`."""
    from typer.testing import CliRunner

    from provision.cli import app

    write_config(tmp_path / "dbtwf.toml", dbt_url, {"dev": {"nightly": dbt_job}})
    for name, value in cli_env(tmp_path, databricks_url).items():
        monkeypatch.setenv(name, value)

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(app, [*command, *args])

    return invoke


def write_kinds(requests: list[Any]) -> list[str]:
    """The write requests as "METHOD path", in order."""
    return [f"{r.method} {r.path}" for r in requests if r.is_write]


def write_labels(requests: list[Any]) -> list[str]:
    """The write requests as "METHOD path", in the order the emulator answered them, each
    workspace import named by what it wrote: "(lock)", "(state)" or "(notebook)". Writes sent
    together (one round trip) may come in either order."""
    labels = []
    for request in requests:
        if not request.is_write:
            continue
        label = f"{request.method} {request.path}"
        if request.path.endswith("/workspace/import"):
            path = str(request.json().get("path", ""))
            kind = "lock" if "/.dbtwf-lock-" in path else "state" if "/.dbtwf-state-" in path else "notebook"
            label += f" ({kind})"
        labels.append(label)
    return labels
