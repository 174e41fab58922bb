"""`make demo` end to end: scripts/demo.py as a subprocess, as `make demo` runs it.

The test's own HOME holds a decoy ~/.databrickscfg pointing at a dead host, and the shell
carries decoy DATABRICKS_/DBT_CLOUD_ variables: a demo that read any of them would fail,
and one that wrote to HOME, the keyring folder or outside its temp folder is caught by
comparing the trees before and after.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest

DEMO = Path(__file__).resolve().parents[1] / "scripts" / "demo.py"
DECOY_CFG = "[DEFAULT]\nhost = http://127.0.0.1:9\ntoken = dapi-users-own-token\n"
DECOY_TOKEN = "dbtc_the_users_real_token_0123456789"
DEMO_TIMEOUT = 240.0


def user_environment(tmp_path: Path) -> dict[str, str]:
    """A user's shell: HOME with a ~/.databrickscfg, a keyring folder, credentials exported."""
    home = tmp_path / "home"
    (home / ".local/share").mkdir(parents=True)
    (home / ".databrickscfg").write_text(DECOY_CFG, encoding="utf-8")
    (tmp_path / "tmp").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "DBT_CLOUD_", "XDG_"))}
    env.update(
        {
            "HOME": str(home),
            "XDG_DATA_HOME": str(home / ".local/share"),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "TMPDIR": str(tmp_path / "tmp"),
            # keyrings.alt's file backend under HOME: a stored token would show up as a file.
            "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
            "DATABRICKS_HOST": "http://127.0.0.1:9",
            "DATABRICKS_TOKEN": "dapi-users-own-token",
            "DBT_CLOUD_API_TOKEN": DECOY_TOKEN,
            "DBTWF_ENV": "prod",
        }
    )
    env.pop("FORCE_COLOR", None)
    return env


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"" for p in root.rglob("*")}


def port_is_closed(url: str) -> bool:
    parts = urlsplit(url)
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex((parts.hostname or "127.0.0.1", parts.port or 80)) != 0


@pytest.mark.slow
def test_demo_runs_every_step_and_touches_nothing_outside_its_folder(tmp_path: Path) -> None:
    env = user_environment(tmp_path)
    home_before = tree(tmp_path / "home")

    result = subprocess.run(
        [sys.executable, str(DEMO)],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT,
    )
    output = result.stdout

    assert result.returncode == 0, output + result.stderr
    for step in (
        r"^\$ dbtwf onboard --dbt-job-url http://127\.0\.0\.1:\d+/deploy/.+/jobs/\d+ --yes --run$",
        r"^\$ dbtwf add-task --workflow 'Nightly ETL' --dbt-job http://127\.0\.0\.1:\d+/deploy/.+/jobs/\d+$",
        r"^\$ dbtwf plan$",
        r"^\$ dbtwf doctor$",
        r"^\$ dbtwf run$",
    ):
        assert re.search(step, output, re.MULTILINE), step
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
    assert re.search(r"2 triggered by the uploaded notebook, 2 succeeded", output)
    assert re.search(r"elapsed: +\d+\.\d s", output)
    assert output.rstrip().endswith("demo passed: every step exited 0")

    # The user's credentials were neither used nor shown; the emulator's test token is shown
    # once, in the export line a user would paste, and never by dbtwf.
    assert DECOY_TOKEN not in output + result.stderr
    assert "dapi-users-own-token" not in output + result.stderr
    emulator_token = re.search(r"^  export DBT_CLOUD_API_TOKEN=(\S+)$", output, re.MULTILINE)
    assert emulator_token and output.count(emulator_token.group(1)) == 1
    # Nothing of the user's was touched, the temp folder is gone, the emulators are stopped.
    assert tree(tmp_path / "home") == home_before
    assert list((tmp_path / "tmp").iterdir()) == []
    databricks_url = re.search(r"export DATABRICKS_HOST=(\S+)", output)
    dbt_url = re.search(r"export DBT_CLOUD_HOST=(\S+)", output)
    assert databricks_url and dbt_url
    assert port_is_closed(databricks_url.group(1)) and port_is_closed(dbt_url.group(1))


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
