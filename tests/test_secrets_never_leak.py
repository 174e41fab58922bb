"""The dbt Cloud token reaches Databricks only in the body of secrets/put.

onboard, apply, plan --json, doctor and run go through the CLI; then stdout, stderr, the
config file, every workspace object, every job's settings and every request body but the
one secrets/put are scanned for the token and for its last characters.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from provision.cli import app
from tests.conftest import DBT_CLOUD_TOKEN
from tests.provision_helpers import cli_env

NEEDLES = (DBT_CLOUD_TOKEN, DBT_CLOUD_TOKEN[-6:], DBT_CLOUD_TOKEN[-4:])


def assert_clean(where: str, text: str) -> None:
    for needle in NEEDLES:
        assert needle not in text, f"the token (or its tail {needle!r}) leaked into {where}"


def test_token_appears_only_in_the_secrets_put_body(tmp_path: Path, databricks: Any, dbt_cloud: Any) -> None:
    dbt_cloud.add_job(42)
    env = cli_env(tmp_path, databricks.url)
    runner = CliRunner()
    outputs = []
    for args in (
        ["onboard", "--dbt-job-url", dbt_cloud.job_url(42), "--yes"],
        ["apply", "--yes", "--json"],
        ["plan", "--json"],
        ["doctor", "--json"],
        ["run", "--no-wait"],
        ["--debug", "apply", "--yes"],
    ):
        result = runner.invoke(app, args, env=env, catch_exceptions=False)
        outputs.append((args, result))
    assert outputs[0][1].exit_code == 0, outputs[0][1].output
    for args, result in outputs:
        assert_clean(f"stdout of {args}", result.stdout)
        assert_clean(f"stderr of {args}", result.stderr)
    assert_clean("the config file", (tmp_path / "dbtwf.toml").read_text())

    with databricks.state_lock:
        objects = dict(databricks._workspace)
    for path, found in objects.items():
        assert_clean(f"workspace object {path}", (found.content or b"").decode("utf-8", "replace"))
    assert_clean("job settings", json.dumps(databricks.jobs))

    puts = [r for r in databricks.requests if r.path.endswith("/secrets/put")]
    assert len(puts) == 1 and DBT_CLOUD_TOKEN in puts[0].body.decode()
    for request in databricks.requests:
        if request is not puts[0]:
            assert_clean(f"{request.method} {request.path}", request.body.decode("utf-8", "replace"))
            assert_clean(f"{request.method} {request.path} query", json.dumps(request.query))
    assert databricks.secret_value("dbtwf-dev", "dbt-cloud-api-token") == DBT_CLOUD_TOKEN


def test_a_failing_secrets_put_does_not_echo_the_token(
    tmp_path: Path, databricks: Any, dbt_cloud: Any
) -> None:
    dbt_cloud.add_job(42)
    databricks.faults.inject("500", path=r"/api/2\.0/secrets/put", times=None)
    result = CliRunner().invoke(
        app,
        ["--debug", "onboard", "--dbt-job-url", dbt_cloud.job_url(42), "--yes"],
        env=cli_env(tmp_path, databricks.url),
    )
    assert result.exit_code == 1
    assert_clean("stdout", result.stdout)
    assert_clean("stderr", result.stderr)
