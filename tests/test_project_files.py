"""What the README and pyproject.toml state about the project itself: the Python version, the
license, how to start the emulators and what each runner widget defaults to."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import tomlkit

from runner.notebook import NotebookDefaults, render_notebook

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
PYPROJECT = tomlkit.parse((ROOT / "pyproject.toml").read_text(encoding="utf-8")).unwrap()


def test_one_python_version_everywhere() -> None:
    """Only 3.11 is tested (make test, CI): README and pyproject say 3.11+, nothing says 3.10+."""
    assert PYPROJECT["project"]["requires-python"] == ">=3.11"
    stated = set(re.findall(r"Python (3\.\d+)\+", README))
    assert stated == {"3.11"}


def test_license_is_an_spdx_expression_the_build_backend_reads() -> None:
    """The TOML-table form made setuptools print a deprecation banner on every install."""
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    (setuptools,) = [r for r in PYPROJECT["build-system"]["requires"] if r.startswith("setuptools")]
    minimum = re.fullmatch(r"setuptools>=(\d+)", setuptools.split("#")[0].strip())
    assert minimum is not None and int(minimum[1]) >= 77  # PEP 639 license expressions


def test_the_emulators_start_with_the_projects_python() -> None:
    """`python scripts/...` runs the system Python, which lacks the project's dependencies."""
    commands = re.findall(r"^```bash\n(.*?)^```", README, re.MULTILINE | re.DOTALL)
    lines = [line.strip() for block in commands for line in block.splitlines()]
    assert not [line for line in lines if re.match(r"python3? scripts/", line)]
    assert any(line.startswith("make emulators") for line in lines)


def widget_defaults() -> dict[str, str]:
    """Each widget the rendered notebook declares, with the default it declares."""
    source = render_notebook(NotebookDefaults("ab123.us1.dbt.com", 1, "scope", "key", timeout_seconds=7200))
    calls = re.findall(r"^dbutils\.widgets\.text\((.*)\)$", source, re.MULTILINE)
    return {name: value for name, value, _label in (ast.literal_eval(f"({call})") for call in calls)}


def test_the_widget_table_gives_the_defaults_the_widgets_have() -> None:
    rows = re.findall(r"^\| (`[^|]+`) \| ([^|]+) \|", README, re.MULTILINE)
    table = {name: default.strip() for names, default in rows for name in re.findall(r"`(\w+)`", names)}
    widgets = widget_defaults()
    assert set(widgets) <= set(table), set(widgets) - set(table)
    shown = {"(required)": "", "empty": "", "`run_timeout_seconds`": "7200"}
    assert {name: shown[table[name]] for name in widgets} == widgets


def test_every_package_of_the_source_tree_is_in_the_wheel() -> None:
    """setuptools ships only the packages listed: a subpackage left out (provision.commands was)
    installs a `dbtwf` that fails to import anywhere but in an editable checkout."""
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("provision", "runner")
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert set(PYPROJECT["tool"]["setuptools"]["packages"]) == found
