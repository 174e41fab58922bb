"""The attacker's cases for the dbt Cloud token's trust boundary (issue 8, points 1, 2, 5, 6).

Each case runs the product over real HTTP against the emulators and ends by checking that the
token went nowhere but dbt Cloud and the body of Databricks' `secrets/put`. Hosts that must be
refused are under `.invalid`; what would reach them is observed through a recording HTTP proxy
on 127.0.0.1 (`HTTP_PROXY`), and "another host" is another recording server on 127.0.0.1, so no
test ever leaves the machine.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import keyring
import keyring.core
import pytest
from click.testing import Result
from typer.testing import CliRunner

from provision.cli import app
from provision.commands.shell import DbtwfGroup, DbtwfTyper, global_options
from provision.errors import RemoteError
from runner.__main__ import main as runner_main
from runner.core import DbtCloudClient, DbtCloudRedirectError
from tests.conftest import DATABRICKS_TOKEN, DBT_ACCOUNT_ID, DBT_CLOUD_TOKEN
from tests.emulators.base import LocalHttpServer
from tests.emulators.databricks import DatabricksEmulator
from tests.emulators.dbtcloud import DbtCloudEmulator, Scenario
from tests.provision_helpers import cli_env, write_config

ROOT = Path(__file__).resolve().parents[1]
DBT_JOB = 42
NEEDLES = (DBT_CLOUD_TOKEN, DBT_CLOUD_TOKEN[-6:])
EVIL_HOST = "http://dbt.example.invalid"
CHAINER = "keyring.backends.chainer.ChainerBackend"


# --- a server that records what reaches it -------------------------------------------------


@dataclass
class Seen:
    method: str
    target: str  # the request line's target: a path, or a whole URL when it is a proxy
    headers: dict[str, str]
    body: bytes

    @property
    def carries_token(self) -> bool:
        text = json.dumps(self.headers) + self.target + self.body.decode("utf-8", "replace")
        return any(needle in text for needle in NEEDLES)


Answer = Callable[[str], tuple[int, dict[str, str], Any]]


def not_found(path: str) -> tuple[int, dict[str, str], Any]:
    return 404, {}, {}


@dataclass
class Trap(LocalHttpServer):
    """Records every request; answers with ``answer(path)``: (status, headers, JSON body)."""

    answer: Answer = not_found
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        super().__init__()

    def fresh(self, answer: Answer = not_found) -> Trap:
        with self.lock:
            self.seen.clear()
        self.answer = answer
        return self

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        with self.lock:
            self.seen.append(Seen(handler.command, handler.path, dict(handler.headers.items()), body))
        status, headers, payload = self.answer(handler.path)
        data = json.dumps(payload).encode()
        handler.send_response(status)
        for name, value in {"Content-Type": "application/json", **headers}.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)


@pytest.fixture(scope="module")
def _traps() -> Iterator[tuple[Trap, Trap, Trap]]:
    """Started once: stopping a server waits out its half-second poll."""
    with Trap() as first, Trap() as second, Trap() as third:
        yield first, second, third


@pytest.fixture
def trap(_traps: tuple[Trap, Trap, Trap]) -> Trap:
    """A server on 127.0.0.1 standing for a host of the attacker's (or for the dbt host)."""
    return _traps[0].fresh()


@pytest.fixture
def elsewhere(_traps: tuple[Trap, Trap, Trap]) -> Trap:
    """Another host (another port: another origin) that a redirect points to."""
    return _traps[1].fresh()


@pytest.fixture
def proxy(_traps: tuple[Trap, Trap, Trap], monkeypatch: pytest.MonkeyPatch) -> Trap:
    """Every plain-http request to a host that is not 127.0.0.1 goes to this recording proxy:
    what the product would send to dbt.example.invalid lands here instead of the internet."""
    server = _traps[2].fresh(lambda path: (502, {}, {"error": "the test proxy forwards nothing"}))
    for name in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(name, server.url)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    return server


def assert_token_only_to_dbt_and_secrets_put(databricks: DatabricksEmulator, *elsewhere: Trap) -> None:
    """No server but dbt Cloud saw the token, and Databricks only in a `secrets/put` body."""
    for server in elsewhere:
        assert not [seen for seen in server.seen if seen.carries_token], f"the token reached {server.url}"
    for request in databricks.requests:
        if request.path.endswith("/secrets/put"):
            continue
        text = request.body.decode("utf-8", "replace") + json.dumps(request.query)
        assert not any(needle in text for needle in NEEDLES), f"{request.method} {request.path}"


def dbtwf(*args: str, stdin: str | bytes | None = None) -> Result:
    return CliRunner().invoke(app, list(args), input=stdin)


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, databricks: DatabricksEmulator) -> Path:
    """The emulators' credentials and a keyring confined to tmp_path; returns the config path."""
    for name, value in cli_env(tmp_path, databricks.url).items():
        monkeypatch.setenv(name, value)
    for name in ("DBT_CLOUD_HOST", "DBT_CLOUD_ACCOUNT_ID", "DBT_CLOUD_JOB_ID", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "dbtwf.toml"


def sdk(databricks: DatabricksEmulator) -> Any:
    from databricks.sdk import WorkspaceClient

    return WorkspaceClient(host=databricks.url, token=DATABRICKS_TOKEN)


# --- 1. run-time parameters cannot re-point the token ---------------------------------------


def test_run_parameters_naming_host_scope_or_key_fail_the_run_and_send_nothing(
    cli: Path, databricks: DatabricksEmulator, dbt_cloud: DbtCloudEmulator, trap: Trap
) -> None:
    dbt_cloud.add_job(DBT_JOB, scenario=Scenario(outcome="success", polls=1))
    write_config(cli, dbt_cloud.url, {"dev": {"nightly": DBT_JOB}})
    assert dbtwf("apply", "--yes").exit_code == 0
    w = sdk(databricks)
    w.secrets.create_scope("prod-db")
    w.secrets.put_secret("prod-db", "password", string_value="db-password-not-for-dbt")
    (workflow_id,) = databricks.jobs
    dbt_cloud.reset_log()

    # The reproduction: "Run now with different parameters" pointing the runner at
    # another host and another secret. On the old notebook this sent the DB password there.
    attacks = {
        "dbt_cloud_host": {"dbt_cloud_host": trap.url, "secret_scope": "prod-db", "secret_key": "password"},
        "dbt_cloud_account_id": {"dbt_cloud_account_id": "1"},
        "job_id URL": {"job_id": f"{trap.url}/deploy/{DBT_ACCOUNT_ID}/projects/1/jobs/{DBT_JOB}"},
    }
    for attack, parameters in attacks.items():
        run_id = w.jobs.run_now(workflow_id, job_parameters=parameters).run_id
        run = databricks.wait_for_run(run_id, timeout=30)
        assert run["state"]["result_state"] == "FAILED", attack
        (task,) = run["tasks"]
        error = w.jobs.get_run_output(task["run_id"]).error or ""
        assert error.startswith("RunnerInputError: "), (attack, error)
        if attack == "job_id URL":
            assert "runs jobs of account" in error
        else:
            names = [name for name in parameters if name != "job_id"]
            assert f"passes the parameter(s) {', '.join(names)}" in error and "Nothing was read" in error
        assert databricks.task_run(run_id, task["task_key"]).secrets_read == set(), attack  # no secret read

    assert trap.seen == []  # the other host was never contacted
    assert dbt_cloud.requests == []  # nor dbt Cloud: nothing was sent at all
    # The same workflow without those parameters still runs the dbt job: the refusal is not a
    # broken notebook.
    good = databricks.wait_for_run(w.jobs.run_now(workflow_id).run_id, timeout=30)
    assert good["state"]["result_state"] == "SUCCESS", good
    assert_token_only_to_dbt_and_secrets_put(databricks, trap)


# --- 2. redirects and plain http -----------------------------------------------------------


def redirect_to(target: str, code: int = 302) -> Answer:
    return lambda path: (code, {"Location": target + path}, {})


def test_a_redirect_to_another_host_is_refused_and_the_token_never_follows(
    trap: Trap,
    elsewhere: Trap,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    databricks: DatabricksEmulator,
) -> None:
    monkeypatch.setenv("DBT_CLOUD_API_TOKEN", DBT_CLOUD_TOKEN)
    dbt_host = trap.fresh(redirect_to(elsewhere.url))  # 302 to the same path on another port
    code = runner_main(["--job-id", str(DBT_JOB), "--host", dbt_host.url, "--account-id", "1"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"answered 302 with a redirect to {elsewhere.url}" in err
    assert "never sent to another host" in err
    assert len(dbt_host.seen) == 1  # one GET, not retried: a redirect is not a transient failure
    assert elsewhere.seen == []  # urllib alone would have followed, Authorization header and all

    # A 307 of a trigger (a POST keeps its method and body) is refused the same way.
    client = DbtCloudClient(dbt_host.url, 1, DBT_CLOUD_TOKEN, max_retries=0)
    dbt_host.answer = redirect_to(elsewhere.url, 307)
    with pytest.raises(DbtCloudRedirectError, match="answered 307"):
        client.trigger_run(DBT_JOB, "cause")
    assert elsewhere.seen == []
    assert_token_only_to_dbt_and_secrets_put(databricks, elsewhere)


def test_onboard_stops_at_a_redirecting_dbt_host_before_anything_is_written(
    cli: Path, trap: Trap, elsewhere: Trap, databricks: DatabricksEmulator
) -> None:
    dbt_host = trap.fresh(redirect_to(elsewhere.url, 301))
    result = dbtwf("onboard", "--dbt-job-url", f"{dbt_host.url}/deploy/1/projects/2/jobs/3", "--yes")
    assert result.exit_code == 1, result.output
    assert f"redirect to {elsewhere.url}" in result.stderr and "Traceback" not in result.output
    assert elsewhere.seen == [] and not cli.exists() and databricks.requests == []
    assert_token_only_to_dbt_and_secrets_put(databricks, elsewhere)


def test_a_same_host_redirect_is_followed_with_the_token(trap: Trap, databricks: DatabricksEmulator) -> None:
    """dbt Cloud answers 308 to a URL without its slash; the same origin gets the header again."""
    job = {"data": {"id": DBT_JOB, "name": "nightly"}, "status": {"code": 200, "is_success": True}}

    def answer(path: str) -> tuple[int, dict[str, str], Any]:
        if "moved" not in path:
            return 308, {"Location": "/moved" + path}, {}
        return 200, {}, job

    trap.answer = answer
    client = DbtCloudClient(trap.url, DBT_ACCOUNT_ID, DBT_CLOUD_TOKEN)
    assert client.get_job(DBT_JOB)["name"] == "nightly"
    assert [seen.target for seen in trap.seen] == [
        f"/api/v2/accounts/{DBT_ACCOUNT_ID}/jobs/{DBT_JOB}/",
        f"/moved/api/v2/accounts/{DBT_ACCOUNT_ID}/jobs/{DBT_JOB}/",
    ]
    assert all(seen.headers.get("Authorization") == f"Token {DBT_CLOUD_TOKEN}" for seen in trap.seen)
    assert_token_only_to_dbt_and_secrets_put(databricks)


def test_plain_http_to_a_non_loopback_dbt_host_is_refused_everywhere_before_any_request(
    cli: Path,
    databricks: DatabricksEmulator,
    dbt_cloud: DbtCloudEmulator,
    proxy: Trap,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    evil_job_url = f"{EVIL_HOST}/deploy/{DBT_ACCOUNT_ID}/projects/1/jobs/{DBT_JOB}"

    # python -m runner, by host and by job URL
    for argv in (["--job-id", "3", "--host", EVIL_HOST, "--account-id", "1"], ["--job-url", evil_job_url]):
        assert runner_main(argv) == 2
        assert "plain http" in capsys.readouterr().err

    # onboard: the job URL; nothing written, not even the config file
    onboarded = dbtwf("onboard", "--dbt-job-url", evil_job_url, "--yes")
    assert onboarded.exit_code == 2 and "plain http" in onboarded.stderr
    assert not cli.exists()

    # config: dbt_cloud_host in the file (plan, doctor) or from DBT_CLOUD_HOST
    write_config(cli, EVIL_HOST, {"dev": {"nightly": DBT_JOB}})
    planned = dbtwf("plan")
    assert planned.exit_code == 2 and "dbt_cloud_host" in planned.stderr and "plain http" in planned.stderr
    doctor = dbtwf("doctor", "--json")
    assert doctor.exit_code == 2
    checks = {check["name"]: check for check in json.loads(doctor.stdout)["checks"]}
    assert checks["config"]["status"] == "fail" and "plain http" in checks["config"]["detail"]
    assert checks["dbt jobs"]["status"] == "skip"
    cli.write_text(cli.read_text().replace(f'dbt_cloud_host = "{EVIL_HOST}"\n', ""))
    monkeypatch.setenv("DBT_CLOUD_HOST", EVIL_HOST)
    assert dbtwf("plan").exit_code == 2
    monkeypatch.delenv("DBT_CLOUD_HOST")

    # add-task: an environment on the (loopback) emulator, a --dbt-job URL on the plain-http host
    write_config(cli, dbt_cloud.url, {"dev": {"nightly": DBT_JOB}})
    added = dbtwf("add-task", "--workflow", "1", "--dbt-job", evil_job_url, "--yes")
    assert added.exit_code == 2 and "plain http" in added.stderr

    assert proxy.seen == []  # nothing, token or not, went towards dbt.example.invalid
    assert databricks.requests == [] and dbt_cloud.requests == []
    assert_token_only_to_dbt_and_secrets_put(databricks, proxy)


# --- 5. a foreign workflow's job parameters --------------------------------------------------


def foreign_workflow(databricks: DatabricksEmulator, parameters: dict[str, str]) -> int:
    settings = {
        "name": "Nightly ETL (not dbtwf's)",
        "parameters": [{"name": name, "default": value} for name, value in parameters.items()],
        "tasks": [{"task_key": "ingest", "notebook_task": {"notebook_path": "/Repos/etl/ingest"}}],
    }
    return int(sdk(databricks).api_client.do("POST", "/api/2.2/jobs/create", body=settings)["job_id"])


def test_a_foreign_workflows_colliding_job_parameters_are_refused_naming_each(
    cli: Path, databricks: DatabricksEmulator, dbt_cloud: DbtCloudEmulator
) -> None:
    dbt_cloud.add_job(DBT_JOB)
    write_config(cli, dbt_cloud.url, {"dev": {"nightly": DBT_JOB}})
    workflow = foreign_workflow(
        databricks, {"git_branch": "release-candidate", "wait": "false", "run_date": "today"}
    )
    databricks.reset_log()

    refused = dbtwf("add-task", "--workflow", str(workflow), "--dbt-job", str(DBT_JOB), "--yes")
    assert refused.exit_code == 2, refused.output
    lines = refused.stderr.splitlines()
    assert lines[0] == (
        "error: the workflow's job parameter(s) wait='false', git_branch='release-candidate' would set "
        "the new task's runner option(s) of the same name on every run (job parameters override task "
        "parameters)"
    )
    assert lines[1].endswith("--allow-job-parameter wait --allow-job-parameter git_branch")
    assert "run_date" not in refused.stderr  # not a runner option: no collision
    assert databricks.writes() == []

    partly = dbtwf(
        "add-task", "--workflow", str(workflow), "--dbt-job", str(DBT_JOB), "--allow-job-parameter", "wait"
    )
    assert partly.exit_code == 2 and "git_branch='release-candidate'" in partly.stderr
    assert "wait=" not in partly.stderr.splitlines()[0]
    add = ("add-task", "--workflow", str(workflow), "--dbt-job", str(DBT_JOB))
    unknown = dbtwf(*add, "--allow-job-parameter", "secret_key")
    assert unknown.exit_code == 2 and "is not a run option" in unknown.stderr
    assert databricks.writes() == []

    accepted = dbtwf(
        "add-task",
        "--workflow",
        str(workflow),
        "--dbt-job",
        str(DBT_JOB),
        "--allow-job-parameter",
        "git_branch",
        "--allow-job-parameter",
        "wait",
        "--yes",
    )
    assert accepted.exit_code == 0, accepted.output
    note = "note: job parameter git_branch='release-candidate' sets the runner's git_branch on every run"
    assert note in accepted.stderr
    assert_token_only_to_dbt_and_secrets_put(databricks)


def test_a_foreign_job_parameter_naming_a_notebook_constant_is_refused(
    cli: Path, databricks: DatabricksEmulator, dbt_cloud: DbtCloudEmulator
) -> None:
    dbt_cloud.add_job(DBT_JOB)
    write_config(cli, dbt_cloud.url, {"dev": {"nightly": DBT_JOB}})
    workflow = foreign_workflow(databricks, {"secret_scope": "prod-db"})
    databricks.reset_log()
    refused = dbtwf("add-task", "--workflow", str(workflow), "--dbt-job", str(DBT_JOB), "--yes")
    assert refused.exit_code == 2
    assert "job parameter(s) secret_scope: the runner refuses every run" in refused.stderr
    assert databricks.writes() == []
    assert_token_only_to_dbt_and_secrets_put(databricks)


# --- 6. the keyring, hints and --debug -------------------------------------------------------


@pytest.fixture
def chained_plaintext(monkeypatch: pytest.MonkeyPatch, cli: Path) -> Iterator[Path]:
    """keyring's chainer, chosen by PYTHON_KEYRING_BACKEND, whose only member is keyrings.alt's
    plaintext file: what keyring gives a headless server with keyrings.alt installed."""
    from keyrings.alt.file import PlaintextKeyring

    previous = keyring.get_keyring()
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", CHAINER)
    keyring.core.init_backend(limit=lambda backend: isinstance(backend, PlaintextKeyring))
    backend = keyring.get_keyring()
    assert type(backend).__name__ == "ChainerBackend"
    assert [type(member).__name__ for member in backend.backends] == ["PlaintextKeyring"]  # type: ignore[attr-defined]
    yield cli.parent / "keyring" / "python_keyring" / "keyring_pass.cfg"
    keyring.core.set_keyring(previous)  # keyring caches its backend process-wide: leave it as found


def test_a_chained_plaintext_keyring_is_refused_and_onboard_keeps_no_copy(
    chained_plaintext: Path,
    databricks: DatabricksEmulator,
    dbt_cloud: DbtCloudEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DBT_CLOUD_API_TOKEN")
    stored = dbtwf("token", "set", stdin=f"{DBT_CLOUD_TOKEN}\n")
    assert stored.exit_code == 2
    assert "no usable OS keyring" in stored.stderr and "chainer" in stored.stderr
    assert "keyrings.alt.file.PlaintextKeyring" in stored.stderr
    hint = stored.stderr.splitlines()[-1]
    assert "PYTHON_KEYRING_BACKEND" in hint and "read -rs DBT_CLOUD_API_TOKEN" in hint
    assert not chained_plaintext.exists()
    shown = dbtwf("token", "show")
    assert shown.exit_code == 2 and "chainer" in shown.stderr

    # The headless way the hint names: the token in the environment, onboard over HTTP.
    monkeypatch.setenv("DBT_CLOUD_API_TOKEN", DBT_CLOUD_TOKEN)
    dbt_cloud.add_job(DBT_JOB)
    onboarded = dbtwf("onboard", "--dbt-job-url", dbt_cloud.job_url(DBT_JOB), "--yes")
    assert onboarded.exit_code == 0, onboarded.output
    assert not chained_plaintext.exists()  # the token is in the secret scope, and in no file
    assert dbtwf("token", "show").stdout.endswith("from the environment variable DBT_CLOUD_API_TOKEN\n")
    assert_token_only_to_dbt_and_secrets_put(databricks)


def test_the_hints_never_put_the_token_in_shell_history() -> None:
    for path in [ROOT / "README.md", *ROOT.glob("provision/*.py"), *ROOT.glob("runner/*.py")]:
        text = path.read_text(encoding="utf-8")
        for pattern in ("export DBT_CLOUD_API_TOKEN=", "export {TOKEN_ENV}=", "export {TOKEN_VARIABLE}="):
            assert pattern not in text, f"{path.relative_to(ROOT)} invites the token into shell history"


_debug_app = DbtwfTyper(cls=DbtwfGroup)
_debug_app.callback()(global_options)


@_debug_app.command("boom")
def _boom(kind: str) -> None:
    try:
        raise ValueError(f"the server echoed {DBT_CLOUD_TOKEN}")
    except ValueError as cause:
        if kind == "remote":
            raise RemoteError(f"rejected {DBT_CLOUD_TOKEN}") from cause
        raise RuntimeError(f"unexpected {DBT_CLOUD_TOKEN}") from cause


@_debug_app.command("other")
def _other() -> None:  # a group of one command would run it without its name
    pass


@pytest.mark.parametrize("kind", ["remote", "unexpected"])
def test_debug_tracebacks_are_redacted_like_every_message(
    kind: str, monkeypatch: pytest.MonkeyPatch, databricks: DatabricksEmulator
) -> None:
    monkeypatch.setenv("DBT_CLOUD_API_TOKEN", DBT_CLOUD_TOKEN)
    result = CliRunner().invoke(_debug_app, ["boom", kind, "--debug"])
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert "the server echoed ***" in result.stderr  # the chained cause is shown, redacted
    assert not any(needle in result.output for needle in NEEDLES)
    assert_token_only_to_dbt_and_secrets_put(databricks)
