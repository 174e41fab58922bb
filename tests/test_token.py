"""The dbt Cloud token: a real keyring backend (keyrings.alt's file) confined to tmp_path.

Never the developer's keyring: every test points HOME, XDG_DATA_HOME and XDG_CONFIG_HOME
at tmp_path and selects the backend by PYTHON_KEYRING_BACKEND before keyring loads it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import keyring
import keyring.core
import pytest
from typer.testing import CliRunner

from provision import token as token_module
from provision.cli import app
from provision.errors import UsageError
from tests.conftest import DBT_CLOUD_TOKEN

PLAINTEXT = "keyrings.alt.file.PlaintextKeyring"
PLAINTEXT_CHOSEN = f"the keyring backend {PLAINTEXT} (a plaintext file, chosen by PYTHON_KEYRING_BACKEND)"
FAIL = "keyring.backends.fail.Keyring"
ROOT = Path(__file__).resolve().parents[1]


def confine(monkeypatch: pytest.MonkeyPatch, home: Path, backend: str | None) -> None:
    for name in ("HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME"):
        monkeypatch.setenv(name, str(home / name.lower()))
    monkeypatch.delenv("DBT_CLOUD_API_TOKEN", raising=False)
    if backend is None:
        monkeypatch.delenv("PYTHON_KEYRING_BACKEND", raising=False)
    else:
        monkeypatch.setenv("PYTHON_KEYRING_BACKEND", backend)
    keyring.core.init_backend()  # keyring caches its backend: load it again under this env


@pytest.fixture
def file_keyring(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """keyrings.alt's plaintext file backend, its file under tmp_path."""
    confine(monkeypatch, tmp_path, PLAINTEXT)
    yield tmp_path / "xdg_data_home" / "python_keyring" / "keyring_pass.cfg"
    keyring.core.init_backend(limit=lambda backend: False)  # leave a backend that stores nothing


@pytest.fixture
def headless(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    confine(monkeypatch, tmp_path, FAIL)
    yield
    keyring.core.init_backend(limit=lambda backend: False)


def invoke(*args: str, stdin: str | None = None, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args), input=stdin, env=env)


def test_set_show_delete_round_trip(file_keyring: Path) -> None:
    stored = invoke("token", "set", stdin=f"  {DBT_CLOUD_TOKEN}\n")
    assert stored.exit_code == 0, stored.output
    assert "stored the dbt Cloud token dbtc_…(37 chars) in " + PLAINTEXT_CHOSEN in stored.stdout
    # Chosen explicitly, so usable, but never called an OS keyring and always warned about.
    assert "OS keyring" not in stored.stdout
    assert stored.stderr.startswith(f"warning: {PLAINTEXT}, chosen by PYTHON_KEYRING_BACKEND, is not an OS")
    assert keyring.get_password("dbtwf", "dbt-cloud-api-token") == DBT_CLOUD_TOKEN  # stripped
    assert file_keyring.exists()  # the confined file, not the developer's keyring

    shown = invoke("token", "show")
    assert shown.exit_code == 0
    assert shown.output.strip() == f"dbtc_…(37 chars) from {PLAINTEXT_CHOSEN}"

    deleted = invoke("token", "delete")
    assert deleted.exit_code == 0
    assert "deleted the dbt Cloud token" in deleted.output
    assert keyring.get_password("dbtwf", "dbt-cloud-api-token") is None
    again = invoke("token", "delete")
    assert again.exit_code == 0
    assert "no dbt Cloud token was stored" in again.output

    missing = invoke("token", "show")
    assert missing.exit_code == 2
    assert "no dbt Cloud token" in missing.output
    assert "dbtwf token set" in missing.output
    for result in (stored, shown, deleted, again, missing):
        assert DBT_CLOUD_TOKEN not in result.output
        assert DBT_CLOUD_TOKEN[-6:] not in result.output


def test_set_refuses_empty_input_and_any_argument(file_keyring: Path) -> None:
    empty = invoke("token", "set", stdin="  \n")
    assert empty.exit_code == 2
    assert "the dbt Cloud token is empty" in empty.output
    with_space = invoke("token", "set", stdin="dbtc_abc def\n")
    assert with_space.exit_code == 2
    for argv in (["token", "set", DBT_CLOUD_TOKEN], ["token", "set", f"--token={DBT_CLOUD_TOKEN}"]):
        refused = invoke(*argv, stdin="")
        assert refused.exit_code == 2
        assert "never read from the command line" in refused.output
        assert DBT_CLOUD_TOKEN not in refused.output
    assert keyring.get_password("dbtwf", "dbt-cloud-api-token") is None


def test_invalid_utf8_on_stdin_is_bad_input_not_a_traceback(file_keyring: Path) -> None:
    result = CliRunner().invoke(app, ["token", "set"], input=b"dbtc_\xff\xfe_not_text\n")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: the token read from stdin is not valid UTF-8 text\nhint: ")
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    assert keyring.get_password("dbtwf", "dbt-cloud-api-token") is None


def test_environment_variable_wins_and_show_says_so(file_keyring: Path) -> None:
    token_module.store_token("dbtu_stored_in_the_keyring_0123456789")
    env = {"DBT_CLOUD_API_TOKEN": DBT_CLOUD_TOKEN}
    shown = invoke("token", "show", env=env)
    assert shown.output.strip() == "dbtc_…(37 chars) from the environment variable DBT_CLOUD_API_TOKEN"
    set_anyway = invoke("token", "set", stdin="dbtu_new_token_value_0123456789\n", env=env)
    assert set_anyway.exit_code == 0
    assert "takes precedence" in set_anyway.output


def test_resolve_token_order(file_keyring: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UsageError) as caught:
        token_module.resolve_token(interactive=True)  # stdin is not a terminal under pytest
    assert caught.value.exit_code == 2
    assert "DBT_CLOUD_API_TOKEN" in caught.value.message
    assert "dbtwf token set" in (caught.value.hint or "")

    token_module.store_token("dbtc_from_the_keyring_0123456789")
    assert token_module.resolve_token(interactive=False) == "dbtc_from_the_keyring_0123456789"
    monkeypatch.setenv("DBT_CLOUD_API_TOKEN", f" {DBT_CLOUD_TOKEN} ")
    assert token_module.resolve_token(interactive=False) == DBT_CLOUD_TOKEN
    monkeypatch.delenv("DBT_CLOUD_API_TOKEN")
    # A resolved token is hidden from every message the CLI prints.
    assert token_module.redact("rejected dbtc_from_the_keyring_0123456789!") == "rejected ***!"


def test_headless_machine_gets_pointed_to_the_variable(
    headless: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = invoke("token", "set", stdin=f"{DBT_CLOUD_TOKEN}\n")
    assert result.exit_code == 2
    assert "no usable OS keyring" in result.output
    assert "keyring.backends.fail.Keyring" in result.output
    assert "DBT_CLOUD_API_TOKEN" in result.output
    assert "Traceback" not in result.output
    assert invoke("token", "show").exit_code == 2
    assert invoke("token", "delete").exit_code == 2
    with pytest.raises(UsageError, match="no usable OS keyring"):
        token_module.resolve_token(interactive=False)
    monkeypatch.setenv("DBT_CLOUD_API_TOKEN", DBT_CLOUD_TOKEN)
    assert token_module.resolve_token(interactive=False) == DBT_CLOUD_TOKEN  # the variable still works


def test_an_auto_selected_plaintext_backend_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # What keyring does by itself on a server with keyrings.alt installed and no OS keyring:
    # it falls back to the plaintext file. Nobody chose that, so dbtwf must not use it.
    from keyrings.alt.file import PlaintextKeyring

    confine(monkeypatch, tmp_path, None)
    keyring.core.init_backend(limit=lambda backend: isinstance(backend, PlaintextKeyring))
    try:
        with pytest.raises(
            UsageError, match=r"non-recommended backend keyrings\.alt\.file\.PlaintextKeyring"
        ):
            token_module.store_token(DBT_CLOUD_TOKEN)
        assert not (tmp_path / "xdg_data_home" / "python_keyring" / "keyring_pass.cfg").exists()
    finally:
        keyring.core.init_backend(limit=lambda backend: False)


def test_mask_shows_only_a_known_prefix_and_the_length() -> None:
    assert token_module.mask(DBT_CLOUD_TOKEN) == "dbtc_…(37 chars)"
    assert token_module.mask("dbtu_" + "x" * 27) == "dbtu_…(32 chars)"
    assert token_module.mask("abcdefghijklmnop") == "…(16 chars)"


def test_token_persists_across_processes(tmp_path: Path) -> None:
    """The real console script, twice: what one process stores, the next one reads."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DBT_CLOUD_API_TOKEN", "PYTHON_KEYRING_BACKEND")
    }
    env |= {
        "HOME": str(tmp_path),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "PYTHON_KEYRING_BACKEND": PLAINTEXT,
    }
    script = [sys.executable, "-c", "from provision.cli import main; main()"]
    stored = subprocess.run(
        [*script, "token", "set"],
        input=DBT_CLOUD_TOKEN + "\n",
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert stored.returncode == 0, stored.stderr
    shown = subprocess.run([*script, "token", "show"], env=env, cwd=ROOT, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == f"dbtc_…(37 chars) from {PLAINTEXT_CHOSEN}"
    assert (tmp_path / "data" / "python_keyring" / "keyring_pass.cfg").exists()
    assert DBT_CLOUD_TOKEN not in stored.stdout + stored.stderr + shown.stdout + shown.stderr
