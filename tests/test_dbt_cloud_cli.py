"""dbt-cloud-cli 0.9.1, a third-party dbt Cloud client, drives the dbt Cloud emulator.

The CLI only builds `https://{DBT_CLOUD_HOST}/api/...` URLs, and drops the trailing slash on
`job get`, `job list`, `run get` and `run list` (the real API redirects those, 308). So the
emulator gets a TLS front on 127.0.0.1: a self-signed certificate for IP 127.0.0.1 made at
test time with `cryptography` (already in the venv: google-auth, a databricks-sdk dependency,
requires it), served by a small relay that terminates TLS and hands each connection's bytes,
unchanged, to the session's emulator. requests trusts the certificate only through
REQUESTS_CA_BUNDLE. The CLI is a click group, so it runs in-process with click's CliRunner;
its 5 s poll sleep is replaced by a recorder, so nothing waits.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import dbt_cloud.cli as cloud_cli
import pytest
import requests
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.conftest import DBT_ACCOUNT_ID, DBT_CLOUD_TOKEN
from tests.emulators.dbtcloud import DbtCloudEmulator, Scenario

ACCOUNT = f"/api/v2/accounts/{DBT_ACCOUNT_ID}"


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for IP 127.0.0.1, its own issuer, valid for a day; (cert.pem, key.pem)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dbtwf test 127.0.0.1")])
    now = datetime.now(timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


class TlsFront:
    """Terminates TLS on 127.0.0.1 and relays each connection's plain bytes to ``backend_port``."""

    def __init__(self, backend_port: int, cert: Path, key: Path) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.cert = cert
        self.backend_port = backend_port
        self.handshakes = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        threading.Thread(target=self._accept, name="TlsFront", daemon=True).start()

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            tls = self.context.wrap_socket(client, server_side=True)
        except (ssl.SSLError, OSError):
            client.close()  # a client that does not trust the certificate hangs up here
            return
        self.handshakes += 1
        backend = socket.create_connection(("127.0.0.1", self.backend_port))
        threading.Thread(target=_relay, args=(backend, tls), daemon=True).start()
        _relay(tls, backend)


def _relay(source: socket.socket, target: socket.socket) -> None:
    """Copy until either side ends, then close both (so the other direction ends too)."""
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    finally:
        source.close()
        target.close()


@pytest.fixture(scope="module")
def tls_front(_dbt_server: DbtCloudEmulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsFront]:
    cert, key = self_signed_certificate(tmp_path_factory.mktemp("tls"))
    front = TlsFront(_dbt_server.port, cert, key)
    yield front
    front.close()


def cli_env(front: TlsFront, *, trust: bool) -> dict[str, str | None]:
    """What dbt-cloud-cli reads: host, token (from the environment, never argv), account, and
    the certificate to trust; no proxy may catch 127.0.0.1."""
    env: dict[str, str | None] = {
        "DBT_CLOUD_HOST": f"127.0.0.1:{front.port}",
        "DBT_CLOUD_API_TOKEN": DBT_CLOUD_TOKEN,
        "DBT_CLOUD_ACCOUNT_ID": str(DBT_ACCOUNT_ID),
        "REQUESTS_CA_BUNDLE": str(front.cert) if trust else None,
        "CURL_CA_BUNDLE": None,
        "LOG_LEVEL": "WARNING",
        "DBT_CLOUD_READONLY": None,
        "NO_PROXY": "127.0.0.1",
        "no_proxy": "127.0.0.1",
    }
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        env[name] = None
    return env


@pytest.fixture
def cli(
    dbt_cloud: DbtCloudEmulator, tls_front: TlsFront, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[CliRunner, list[float]]]:
    """A CliRunner whose environment points dbt-cloud-cli at the TLS front; the recorded sleeps."""
    sleeps: list[float] = []
    monkeypatch.setattr(cloud_cli, "time", SimpleNamespace(sleep=sleeps.append))
    yield CliRunner(env=cli_env(tls_front, trust=True)), sleeps


def invoke(cli: tuple[CliRunner, list[float]], *args: str) -> Result:
    runner, _ = cli
    return runner.invoke(cloud_cli.dbt_cloud, list(args), catch_exceptions=True)


def data(result: Result) -> Any:
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)["data"]


def statuses(emu: DbtCloudEmulator) -> list[tuple[str, str, int]]:
    return [(r.method, r.path.removeprefix(ACCOUNT), r.status) for r in emu.requests]


def test_job_get_and_job_list_follow_the_308_to_the_slashed_path(
    dbt_cloud: DbtCloudEmulator, tls_front: TlsFront, cli: tuple[CliRunner, list[float]]
) -> None:
    dbt_cloud.add_job(1, name="Daily build")
    dbt_cloud.add_job(2, name="Hourly models", project_id=5)
    job = data(invoke(cli, "job", "get", "--job-id", "1", "--include-related", "environment"))
    assert (job["id"], job["name"], job["environment"]["name"]) == (1, "Daily build", "Production")
    listed = data(invoke(cli, "job", "list", "--project-id", "5", "--order-by", "-id", "--limit", "10"))
    assert [j["id"] for j in listed] == [2]
    assert statuses(dbt_cloud) == [
        ("GET", "/jobs/1", 308),
        ("GET", "/jobs/1/", 200),
        ("GET", "/jobs", 308),
        ("GET", "/jobs/", 200),
    ]
    assert tls_front.handshakes >= 2  # it really went over TLS


def test_job_run_wait_follows_a_succeeding_run_to_success(
    dbt_cloud: DbtCloudEmulator, cli: tuple[CliRunner, list[float]]
) -> None:
    dbt_cloud.add_job(1, scenario=Scenario("success", polls=3))
    result = invoke(cli, "job", "run", "--job-id", "1", "--cause", "from dbt-cloud-cli", "--wait")
    assert result.exit_code == 0, result.output
    final = json.loads(result.stdout)["data"]
    assert (final["status"], final["status_humanized"]) == (10, "Success")
    assert "run {}: SUCCESS".format(final["id"]) in result.stderr
    (run,) = dbt_cloud.runs_of(1)
    assert run["trigger"]["cause"] == "from dbt-cloud-cli"
    _, sleeps = cli
    assert sleeps == [5, 5]  # its fixed 5 s loop, recorded instead of spent
    assert [s for _, path, s in statuses(dbt_cloud) if path.startswith("/runs/")] == [308, 200] * 3


def test_job_run_wait_exits_1_on_a_failing_run_with_its_link(
    dbt_cloud: DbtCloudEmulator, cli: tuple[CliRunner, list[float]]
) -> None:
    dbt_cloud.add_job(1, scenario=Scenario("error", polls=2))
    result = invoke(cli, "job", "run", "--job-id", "1", "--wait")
    assert result.exit_code == 1
    (run,) = dbt_cloud.runs_of(1)
    assert f"Job run failed with ERROR status. For more information, see {run['href']}." in result.stderr
    assert json.loads(result.stdout)["data"]["is_error"] is True


def test_run_get_with_steps_and_run_list_with_filters(
    dbt_cloud: DbtCloudEmulator, cli: tuple[CliRunner, list[float]]
) -> None:
    dbt_cloud.add_job(1, scenario=Scenario("error", polls=1, steps=("dbt seed", "dbt build")))
    dbt_cloud.add_job(2, scenario=Scenario("success", polls=1), project_id=5)
    failed = data(invoke(cli, "job", "run", "--job-id", "1"))
    succeeded = data(invoke(cli, "job", "run", "--job-id", "2"))
    data(invoke(cli, "run", "get", "--run-id", str(succeeded["id"])))  # polled once: over
    run = data(invoke(cli, "run", "get", "--run-id", str(failed["id"]), "--include-related", "run_steps"))
    assert run["status"] == 20
    steps = [(step["name"], step["status"]) for step in run["run_steps"]]
    assert steps[-2:] == [("Invoke dbt with `dbt seed`", 10), ("Invoke dbt with `dbt build`", 20)]
    assert "UNRESOLVED_COLUMN" in run["run_steps"][-1]["logs"]

    by_status = data(invoke(cli, "run", "list", "--status", "Failed", "--order-by", "-id", "--limit", "5"))
    assert [r["id"] for r in by_status] == [failed["id"]]
    by_job = data(invoke(cli, "run", "list", "--job-id", "2"))
    assert [r["id"] for r in by_job] == [succeeded["id"]]
    by_project = data(invoke(cli, "run", "list", "--project-id", "5", "--status", "Succeeded"))
    assert [r["id"] for r in by_project] == [succeeded["id"]]
    every = invoke(cli, "run", "list", "--paginate")
    assert every.exit_code == 0, every.output
    assert sorted(r["id"] for r in json.loads(every.stdout)["data"]) == sorted(
        [failed["id"], succeeded["id"]]
    )


def test_run_cancel_of_a_queued_and_of_a_running_run(
    dbt_cloud: DbtCloudEmulator, cli: tuple[CliRunner, list[float]]
) -> None:
    dbt_cloud.add_job(1, scenario=Scenario("never", polls=3))
    queued = data(invoke(cli, "job", "run", "--job-id", "1"))
    cancelled = data(invoke(cli, "run", "cancel", "--run-id", str(queued["id"])))
    assert (cancelled["status"], cancelled["is_cancelled"], cancelled["started_at"]) == (30, True, None)

    running = data(invoke(cli, "job", "run", "--job-id", "1"))
    data(invoke(cli, "run", "get", "--run-id", str(running["id"])))
    assert data(invoke(cli, "run", "get", "--run-id", str(running["id"])))["status"] == 3
    answer = data(invoke(cli, "run", "cancel", "--run-id", str(running["id"])))
    assert answer["status"] == 3  # asked; it stops a moment later
    assert data(invoke(cli, "run", "get", "--run-id", str(running["id"])))["status"] == 30
    assert dbt_cloud.cancel_requests == [queued["id"], running["id"]]


def test_the_front_is_only_trusted_through_the_bundle(
    dbt_cloud: DbtCloudEmulator, tls_front: TlsFront
) -> None:
    """Without REQUESTS_CA_BUNDLE the CLI refuses the certificate: verification is really on."""
    dbt_cloud.add_job(1)
    result = CliRunner(env=cli_env(tls_front, trust=False)).invoke(
        cloud_cli.dbt_cloud, ["job", "get", "--job-id", "1"]
    )
    assert isinstance(result.exception, requests.exceptions.SSLError)
    assert dbt_cloud.requests == []
