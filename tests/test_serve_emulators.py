"""`python scripts/serve_emulators.py` as a user runs it: a subprocess read through a pipe."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from runner.core import parse_job_url

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "serve_emulators.py"
START_TIMEOUT = 30.0


@dataclass
class Served:
    process: subprocess.Popen[str]
    lines: list[str]

    @property
    def settings(self) -> dict[str, str]:
        return dict(
            line.removeprefix("export ").split("=", 1) for line in self.lines if line.startswith("export ")
        )


def _read_lines(stream: Any, count: int) -> list[str]:
    """The first ``count`` stdout lines, or fail after START_TIMEOUT (a thread: pipes have no timeout)."""
    found: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in stream:
            found.put(line.rstrip("\n"))
        found.put(None)

    threading.Thread(target=pump, daemon=True).start()
    lines = []
    while len(lines) < count:
        line = found.get(timeout=START_TIMEOUT)
        if line is None:
            break
        lines.append(line)
    return lines


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    started: list[subprocess.Popen[str]] = []

    def start(*args: str) -> Served:
        # From another directory, with no PYTHONPATH: the script must find the repo itself.
        env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
        process = subprocess.Popen(
            [sys.executable, str(SCRIPT), *args],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        return Served(process, _read_lines(process.stdout, 6))

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def get(url: str, token: str, scheme: str) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers={"Authorization": f"{scheme} {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_prints_shell_ready_settings_serves_both_and_stops_on_sigterm(serve: Any) -> None:
    served = serve()
    assert [line.split("=")[0] for line in served.lines[:5]] == [
        "export DATABRICKS_HOST",
        "export DATABRICKS_TOKEN",
        "export DBT_CLOUD_HOST",
        "export DBT_CLOUD_ACCOUNT_ID",
        "export DBT_CLOUD_API_TOKEN",
    ]
    assert served.lines[5].startswith("# example dbt job URL: http://127.0.0.1:")
    settings = served.settings

    status, scopes = get(
        f"{settings['DATABRICKS_HOST']}/api/2.0/secrets/scopes/list", settings["DATABRICKS_TOKEN"], "Bearer"
    )
    assert status == 200, scopes

    job = parse_job_url(served.lines[5].split(": ", 1)[1])
    assert job.host == settings["DBT_CLOUD_HOST"]
    assert job.account_id == int(settings["DBT_CLOUD_ACCOUNT_ID"])
    api = f"{job.host}/api/v2/accounts/{job.account_id}"
    status, body = get(f"{api}/jobs/{job.job_id}/", settings["DBT_CLOUD_API_TOKEN"], "Token")
    assert status == 200, body
    assert body["data"]["project_id"] == job.project_id
    status, jobs = get(f"{api}/jobs/", settings["DBT_CLOUD_API_TOKEN"], "Token")
    assert len(jobs["data"]) >= 2
    assert get(f"{api}/jobs/", "wrong", "Token")[0] == 401

    served.process.send_signal(signal.SIGTERM)
    assert served.process.wait(timeout=10) == 0
    assert "Traceback" not in (served.process.stderr.read() if served.process.stderr else "")


def test_honours_the_ports_and_stops_cleanly_on_sigint(serve: Any) -> None:
    databricks_port, dbt_port = free_port(), free_port()
    served = serve("--databricks-port", str(databricks_port), "--dbt-port", str(dbt_port), "--seed", "7")
    settings = served.settings
    assert settings["DATABRICKS_HOST"] == f"http://127.0.0.1:{databricks_port}"
    assert settings["DBT_CLOUD_HOST"] == f"http://127.0.0.1:{dbt_port}"
    served.process.send_signal(signal.SIGINT)
    assert served.process.wait(timeout=10) == 0
    assert "Traceback" not in (served.process.stderr.read() if served.process.stderr else "")


@pytest.mark.parametrize(
    ("flag", "service"), [("--dbt-port", "dbt Cloud"), ("--databricks-port", "Databricks")]
)
def test_a_busy_port_is_a_one_line_error(serve: Any, flag: str, service: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        served = serve(flag, str(busy.getsockname()[1]))
        assert served.lines == []
        assert served.process.wait(timeout=10) == 1
        stderr = served.process.stderr.read() if served.process.stderr else ""
    assert f"cannot listen on the {service} port" in stderr
    assert "Traceback" not in stderr


def _script_module() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("serve_emulators_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_latency_ms_reaches_both_emulators_and_every_request_waits_it() -> None:
    script = _script_module()
    dbt, databricks = script.start_emulators(script.parse_args(["--latency-ms", "150"]))
    waits: list[float] = []
    try:
        for emulator in (dbt, databricks):
            assert emulator.latency_ms == 150
            emulator.sleep = waits.append  # recorded, not spent
        settings = dict(
            line.removeprefix("export ").split("=", 1)
            for line in script.settings_lines(databricks.url, dbt)[:5]
        )
        host, token = settings["DATABRICKS_HOST"], settings["DATABRICKS_TOKEN"]
        assert get(f"{host}/api/2.0/secrets/scopes/list", token, "Bearer")[0] == 200
        api = f"{dbt.url}/api/v2/accounts/{dbt.account_id}"
        assert get(f"{api}/jobs/", settings["DBT_CLOUD_API_TOKEN"], "Token")[0] == 200
    finally:
        script.stop_emulators(dbt, databricks)
    assert waits == [0.15, 0.15]
    assert script.parse_args([]).latency_ms == 0


@pytest.mark.parametrize("value", ["-5", "soon", "60001"])
def test_a_bad_latency_is_a_usage_error(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    script = _script_module()
    with pytest.raises(SystemExit) as exit_info:
        script.parse_args(["--latency-ms", value])
    assert exit_info.value.code == 2
    assert "--latency-ms" in capsys.readouterr().err
