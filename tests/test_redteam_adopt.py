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
