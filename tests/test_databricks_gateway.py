"""The gateway's own behaviour, over real HTTP: what a user hears while the SDK retries."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.core import Config

from provision.databricks import Workspace, watch_retries
from provision.errors import RemoteError
from tests.conftest import DATABRICKS_TOKEN


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_refused_connection_is_announced_once_then_reported(databricks: Any) -> None:
    notices: list[str] = []
    watch_retries(notices.append)
    host = f"http://127.0.0.1:{_closed_port()}"
    client = WorkspaceClient(config=Config(host=host, token=DATABRICKS_TOKEN, retry_timeout_seconds=1))
    with pytest.raises(RemoteError, match="cannot reach Databricks"):
        Workspace(client).list_scopes()
    assert len(notices) == 1, notices
    assert "cannot connect" in notices[0] and "Ctrl-C" in notices[0]


def test_no_notice_when_the_workspace_answers(databricks: Any) -> None:
    notices: list[str] = []
    watch_retries(notices.append)
    Workspace(WorkspaceClient(host=databricks.url, token=DATABRICKS_TOKEN)).list_scopes()
    assert notices == []
