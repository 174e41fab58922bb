"""Secret scope names as Databricks compares them: case-insensitively, "@" allowed.

Source: docs.databricks.com/aws/en/security/secrets/workspace-secret-scopes ("Secret scope
names ... must consist of alphanumeric characters, dashes, underscores, @, and periods ...
are case insensitive"). The emulator follows it; so do dbtwf's own lookups (plan, apply,
doctor, destroy), which once compared names exactly and so missed a scope spelled otherwise.
"""

from __future__ import annotations

from typing import Any

from provision.apply import apply_changes
from provision.change import Action
from provision.destroy import destroy_changes, plan_destroy
from provision.doctor import Status, diagnose
from provision.plan import plan_environment
from tests.conftest import DBT_CLOUD_TOKEN
from tests.provision_helpers import make_env, make_workspace


def test_a_scope_spelled_otherwise_is_the_same_scope_everywhere(databricks: Any) -> None:
    ws = make_workspace(databricks)
    ws.create_scope("DBTWF-Dev")  # made by someone else, before dbtwf
    env = make_env("dev", secret_scope="dbtwf-dev")

    changes = plan_environment(ws, env, DBT_CLOUD_TOKEN)
    (scope,) = [change for change in changes if change.resource == "scope"]
    assert scope.action is Action.NOOP

    apply_changes(ws, env, changes, DBT_CLOUD_TOKEN)
    assert [s["name"] for s in ws.list_scopes()] == ["DBTWF-Dev"]  # no second scope
    assert databricks.secret_value("DBTWF-Dev", env.secret_key) == DBT_CLOUD_TOKEN

    checks = {check.name: check for check in diagnose(lambda: env, lambda _: ws, find_token=lambda: None)}
    assert checks["secret scope"].status is Status.OK, checks["secret scope"]

    removal = plan_destroy(ws, env)
    assert [(c.resource, c.name) for c in removal if c.resource in ("scope", "secret")] == [
        ("secret", "dbtwf-dev/dbt-cloud-api-token")  # the scope is not dbtwf's: only its secret goes
    ]
    destroy_changes(ws, env, removal)
    assert databricks.secret_value("DBTWF-Dev", env.secret_key) is None
    assert [s["name"] for s in ws.list_scopes()] == ["DBTWF-Dev"]


def test_a_scope_named_after_a_user_is_provisioned(databricks: Any) -> None:
    ws = make_workspace(databricks)
    env = make_env("dev", secret_scope="data-team@example.com")
    apply_changes(ws, env, plan_environment(ws, env, DBT_CLOUD_TOKEN), DBT_CLOUD_TOKEN)
    assert databricks.secret_value("Data-Team@Example.com", env.secret_key) == DBT_CLOUD_TOKEN
