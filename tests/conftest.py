"""Shared fixtures: both emulators start once per test session on free ports.

Each test gets them reset (state, request log, fault rules), so tests stay independent
without paying for a server start each time.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.emulators.databricks import DatabricksEmulator
    from tests.emulators.dbtcloud import DbtCloudEmulator

DATABRICKS_TOKEN = "dapi-emulator-test-token"
DBT_CLOUD_TOKEN = "dbtc_emulator_Sup3rSecretT0ken_9f8e7d"
DBT_ACCOUNT_ID = 70403


@pytest.fixture(scope="session")
def _databricks_server() -> Iterator[DatabricksEmulator]:
    from tests.emulators.databricks import DatabricksEmulator

    with DatabricksEmulator(token=DATABRICKS_TOKEN) as server:
        yield server


@pytest.fixture(scope="session")
def _dbt_server() -> Iterator[DbtCloudEmulator]:
    from tests.emulators.dbtcloud import DbtCloudEmulator

    with DbtCloudEmulator(token=DBT_CLOUD_TOKEN, account_id=DBT_ACCOUNT_ID) as server:
        yield server


@pytest.fixture
def databricks(_databricks_server: DatabricksEmulator) -> Iterator[DatabricksEmulator]:
    """The Databricks emulator, empty, with no faults and an empty request log."""
    _databricks_server.reset()
    yield _databricks_server
    _databricks_server.reset()


@pytest.fixture
def dbt_cloud(_dbt_server: DbtCloudEmulator) -> Iterator[DbtCloudEmulator]:
    """The dbt Cloud emulator, with no jobs, no faults and an empty request log."""
    _dbt_server.reset()
    yield _dbt_server
    _dbt_server.reset()
