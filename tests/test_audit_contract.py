"""Acceptance checks of design.md section 4 that the feature tests left open: what a user
sees in help, the exit code and hint of a rejected Databricks token, a scope destroy must
keep, and `python -m runner`'s short input errors. Real HTTP against the emulators."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from provision.cli import app

ROOT = Path(__file__).resolve().parents[1]


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    # Wide enough that rich does not wrap a help line inside its box.
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200", **(env or {})})


def test_global_options_help_keeps_its_variable_and_default() -> None:
    # rich read "[env DBTWF_CONFIG; default ./dbtwf.toml]" as markup and printed "The config file ."
    result = invoke("plan", "--help")
    assert result.exit_code == 0, result.output
    assert "The config file (env DBTWF_CONFIG; default ./dbtwf.toml)." in result.output
    assert "(env DBTWF_ENV; default: the only one, else dev)." in result.output


def test_token_group_help_has_examples() -> None:
    result = invoke("token", "--help")
    assert result.exit_code == 0, result.output
    assert "Examples" in result.output and "dbtwf token show" in result.output
