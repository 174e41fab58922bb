"""`make bench` cannot rot: its script runs end to end with tiny sizes, and --update-readme
rewrites only what lies between the README's bench markers. No wall-clock limit is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "scripts" / "bench.py"


@pytest.mark.slow
def test_quick_bench_writes_the_table_json_and_readme_section(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(
        "# Title\n\n## Performance\n<!-- bench:start -->\nold figures\n<!-- bench:end -->\n\nTail.\n"
    )
    out = tmp_path / "results"
    result = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--quick",
            "--out",
            str(out),
            "--update-readme",
            "--readme",
            str(readme),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    markdown = (out / "bench.md").read_text()
    assert markdown in result.stdout
    report = json.loads((out / "bench.json").read_text())
    assert report["machine"]["cpus"] >= 1 and report["machine"]["python"]

    assert report["latencies"] == [25.0]
    versus = report["versus_legacy"]["latencies"]["25"]
    onboard, noop, add = versus["onboard"], versus["noop_apply"], versus["add_task"]
    assert onboard["writes"] == 9 and onboard["wall_s"] > 0  # 8 before the record of ownership
    assert noop["writes"] == 0 and noop["reads"] > 0
    assert add["workflow_writes"] == 1
    assert versus["legacy_five"]["writes"] == 5 and versus["legacy_five"]["depth"] == 5
    assert versus["legacy_two"]["writes"] == 0 and versus["legacy_two"]["depth"] == 2
    assert versus["legacy_get_reset"]["writes"] == versus["legacy_get_reset"]["workflow_writes"] == 1
    for row in versus.values():  # every request is on some chain, and a chain is made of requests
        assert 1 <= row["depth"] <= row["requests"]
    assert "round trips on the critical path" in markdown

    (row,) = report["add_task"]
    assert row["tasks"] == 10
    assert row["add_task"]["write_body_bytes"] < row["reset"]["write_body_bytes"]
    assert row["add_task"]["workflow_writes"] == 1 and row["reset"]["writes"] == 1
    assert set(row["add_task"]["wall_s"]) == {"25"}

    assert [r["environments"] for r in report["apply_all"]] == [1]
    (lag,) = report["runner"]["durations"]
    assert lag["runner_requests"] > 0 and lag["guide_requests"] > 0
    assert report["runner"]["shared_account"]["limit_per_minute"] == 5000
    startup = report["startup"]
    assert startup["help_imports_sdk"] is False
    assert startup["plan_sdk_share"] > 0  # a ratio of two separate timings: noise can push it past 1

    text = readme.read_text()
    assert text.startswith("# Title\n\n## Performance\n<!-- bench:start -->\n")
    assert text.endswith("<!-- bench:end -->\n\nTail.\n")
    assert "old figures" not in text and markdown in text


def test_update_readme_refuses_a_readme_without_markers(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from bench import update_readme
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    readme = tmp_path / "README.md"
    readme.write_text("# No markers\n")
    with pytest.raises(SystemExit, match="markers"):
        update_readme(readme, "| figures |\n")
    assert readme.read_text() == "# No markers\n"
