"""`make demo` end to end: scripts/demo.py as a subprocess, as `make demo` runs it.

The walk runs once per session (the `demo_walk` fixture in conftest.py) and each test here
asserts one promise on it, the README's account of what the demo runs among them. Its HOME
holds a decoy ~/.databrickscfg pointing at a dead host, and the shell carries decoy
DATABRICKS_/DBT_CLOUD_ variables: a demo that read any of them would fail, and one that wrote
to HOME, the keyring folder or outside its temp folder is caught by comparing the trees before
and after. Two more runs are interrupted (Ctrl-C, SIGTERM) and must clean up.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import DECOY_TOKEN, DEMO, DemoWalk, port_is_closed, user_environment

README = Path(__file__).resolve().parents[1] / "README.md"


def succeeded(walk: DemoWalk) -> str:
    """The walk's output, once it is known to have passed."""
    assert walk.returncode == 0, walk.output + walk.stderr
    return walk.output


@pytest.mark.slow
def test_demo_runs_every_step_as_a_user_types_it(demo_walk: DemoWalk) -> None:
    output = succeeded(demo_walk)
    for step in (
        r"^\$ dbtwf onboard --dbt-job-url http://127\.0\.0\.1:\d+/deploy/.+/jobs/\d+ --yes --run$",
        r"^\$ dbtwf add-task --workflow 'Nightly ETL' --dbt-job http://127\.0\.0\.1:\d+/deploy/.+/jobs/\d+$",
        r"^\$ dbtwf plan$",
        r"^\$ dbtwf doctor$",
        r"^\$ dbtwf --env guide adopt --folder /Users/\S+/dbt --yes$",
        r"^\$ dbtwf run$",
        r"^\$ dbtwf export bundle --env dev --out bundle$",
    ):
        assert re.search(step, output, re.MULTILINE), step
    assert output.rstrip().endswith("demo passed: every step exited 0")


@pytest.mark.slow
def test_demo_shows_the_plan_the_runs_and_a_summary(demo_walk: DemoWalk) -> None:
    output = succeeded(demo_walk)
    # What a person wants to see: the plan table, the run URL, the live status lines.
    assert re.search(r"^\+\s+create\s+workflow\s+dbt Cloud jobs \(dev\)", output, re.MULTILINE)
    assert (
        len(re.findall(r"^run \d+: http://127\.0\.0\.1:\d+/\S+#job/\d+/run/\d+$", output, re.MULTILINE)) == 2
    )
    assert len(re.findall(r"^  dbt_job_\d+: SUCCESS", output, re.MULTILINE)) == 2
    assert len(re.findall(r"^run \d+ succeeded$", output, re.MULTILINE)) == 2
    assert re.search(
        r"^added task '\w+' \(dbt job \d+\) in workflow \d+ 'Nightly ETL'$", output, re.MULTILINE
    )
    assert re.search(r"^nothing to change", output, re.MULTILINE)
    assert re.search(r"^all checks passed$", output, re.MULTILINE)
    assert "its other tasks untouched: ingest_orders, refresh_dashboards" in output
    assert re.search(r"^adopted /Users/\S+/dbt/trigger_dbt_job as environment 'guide'", output, re.MULTILINE)
    assert "adopted by adopt:" in output
    assert re.search(r"2 triggered by the uploaded notebook, 2 succeeded", output)
    assert re.search(r"export bundle: +bundle/ \(databricks\.yml, src/dev/run_dbt_cloud_job\.py\)", output)
    assert re.search(r"elapsed: +\d+\.\d s", output)


@pytest.mark.slow
def test_demo_neither_uses_nor_shows_the_users_credentials(demo_walk: DemoWalk) -> None:
    output = succeeded(demo_walk)
    # The user's credentials were neither used nor shown; the emulator's test token is shown
    # once, in the export line a user would paste, and never by dbtwf.
    assert DECOY_TOKEN not in output + demo_walk.stderr
    assert "dapi-users-own-token" not in output + demo_walk.stderr
    emulator_token = re.search(r"^  export DBT_CLOUD_API_TOKEN=(\S+)$", output, re.MULTILINE)
    assert emulator_token and output.count(emulator_token.group(1)) == 1


@pytest.mark.slow
def test_demo_touches_nothing_outside_its_folder_and_stops_the_emulators(demo_walk: DemoWalk) -> None:
    succeeded(demo_walk)
    # Nothing of the user's was touched, the temp folder is gone, the emulators are stopped.
    assert demo_walk.home_after == demo_walk.home_before
    assert demo_walk.tmp_left == []
    assert len(demo_walk.closed_ports) == 2 and all(demo_walk.closed_ports.values()), demo_walk.closed_ports


@pytest.mark.slow
def test_make_demo_runs_the_commands_the_readme_says_it_runs(demo_walk: DemoWalk) -> None:
    """The paragraph under the first block names what `make demo` runs (`dbtwf onboard
    --dbt-job-url URL --yes --run`, `dbtwf add-task`, ...): each is a step of the demo's walk."""
    text = README.read_text(encoding="utf-8")
    paragraph = text.split("```", 2)[2].split("\n## ", 1)[0]
    named = re.findall(r"`(dbtwf [^`]+)`", paragraph)
    assert len(named) >= 5, paragraph
    assert demo_walk.returncode == 0, demo_walk.output + demo_walk.stderr
    for command in named:
        pattern = r"^\$ " + re.escape(command).replace("URL", r"\S+") + r"(?: .*)?$"
        assert re.search(pattern, demo_walk.output, re.MULTILINE), f"make demo does not run `{command}`"


@pytest.mark.parametrize(
    ("how", "expected_code"),
    [("Ctrl-C", 130), ("SIGTERM", 143)],
)
def test_an_interrupted_demo_stops_the_emulators_and_cleans_up(
    tmp_path: Path, how: str, expected_code: int
) -> None:
    env = user_environment(tmp_path)
    # Its own session, so a Ctrl-C can go to its whole process group as a terminal sends it.
    process = subprocess.Popen(
        [sys.executable, str(DEMO)],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    try:
        # Interrupt while the first workflow run is being followed: dbtwf, the emulators and
        # a notebook process are all alive then.
        while True:
            line = lines.get(timeout=120)
            assert line is not None, "".join(seen)
            seen.append(line)
            if re.match(r"run \d+: http", line):
                break
        if how == "Ctrl-C":
            os.killpg(process.pid, signal.SIGINT)
        else:
            process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == expected_code
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    while (line := lines.get(timeout=10)) is not None:
        seen.append(line)
    output = "".join(seen)
    assert "Traceback" not in output
    assert re.search(r"^demo (interrupted|terminated); emulators stopped$", output, re.MULTILINE), output
    assert list((tmp_path / "tmp").iterdir()) == []
    databricks_url = re.search(r"export DATABRICKS_HOST=(\S+)", output)
    assert databricks_url and port_is_closed(databricks_url.group(1))
