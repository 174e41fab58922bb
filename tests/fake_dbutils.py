"""An in-process `dbutils` for running the runner (or its rendered notebook) inside a test.

Only what a Databricks job gives a notebook and the runner may rely on: widgets (the same class
the emulator's notebook process uses), secrets and jobs.taskValues. Secrets and task values are
kept in memory here; in the emulator they go over its dbutils channel.
"""

from __future__ import annotations

from typing import Any

from tests.emulators.databricks_notebook import Widgets


class FakeSecrets:
    def __init__(self, secrets: dict[tuple[str, str], str]) -> None:
        self.secrets = secrets
        self.asked: list[tuple[str, str]] = []  # every (scope, key) read, found or not

    def get(self, scope: str, key: str) -> str:
        self.asked.append((scope, key))
        if (scope, key) not in self.secrets:
            raise ValueError(f"Secret does not exist with scope: {scope} and key: {key}")
        return self.secrets[(scope, key)]


class FakeTaskValues:
    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def set(self, key: str, value: Any) -> None:
        self.values[key] = value


class FakeJobs:
    def __init__(self) -> None:
        self.taskValues = FakeTaskValues()


class FakeDBUtils:
    """Widgets from `parameters` (job parameters win over declared defaults), secrets by (scope, key)."""

    def __init__(self, parameters: dict[str, str], secrets: dict[tuple[str, str], str]) -> None:
        self.widgets = Widgets(parameters)
        self.secrets = FakeSecrets(secrets)
        self.jobs = FakeJobs()
