"""The emulators' network latency (`latency_ms`) and the request log's spans that count round trips.

No wall clock is asserted: the wait goes through the emulator's injectable ``sleep``, and the
tests that need two requests in flight together hold them in it with a barrier.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.conftest import DATABRICKS_TOKEN, DBT_ACCOUNT_ID, DBT_CLOUD_TOKEN
from tests.emulators.base import RecordedRequest, round_trip_depth
from tests.emulators.databricks import DatabricksEmulator
from tests.emulators.dbtcloud import DbtCloudEmulator

SCOPES = "/api/2.0/secrets/scopes/list"


def get(url: str, authorization: str) -> int:
    request = urllib.request.Request(url, headers={"Authorization": authorization})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            json.loads(response.read())
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def get_scopes(databricks: DatabricksEmulator) -> int:
    return get(databricks.url + SCOPES, f"Bearer {DATABRICKS_TOKEN}")


def span(started: float, finished: float) -> RecordedRequest:
    return RecordedRequest("GET", "/x", {}, b"", 200, None, started, finished)


def test_every_request_waits_the_latency_before_its_answer(
    databricks: DatabricksEmulator, dbt_cloud: DbtCloudEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[tuple[str, float]] = []
    for name, emulator in (("databricks", databricks), ("dbt", dbt_cloud)):
        monkeypatch.setattr(emulator, "sleep", lambda seconds, name=name: waits.append((name, seconds)))
    dbt_cloud.add_job(7)

    assert get_scopes(databricks) == 200
    assert waits == []  # the default is no latency at all

    databricks.latency_ms = dbt_cloud.latency_ms = 150
    assert get_scopes(databricks) == 200
    assert get(databricks.url + SCOPES, "Bearer dapi-wrong") == 403  # an error is a round trip too
    job = f"{dbt_cloud.url}/api/v2/accounts/{DBT_ACCOUNT_ID}/jobs/7/"
    assert get(job, f"Token {DBT_CLOUD_TOKEN}") == 200
    assert waits == [("databricks", 0.15), ("databricks", 0.15), ("dbt", 0.15)]
    assert [r.status for r in databricks.requests[1:]] == [200, 403]

    databricks.reset()
    dbt_cloud.reset()
    assert databricks.latency_ms == 0 and dbt_cloud.latency_ms == 0


def test_the_latency_is_a_constructor_parameter_and_reset_keeps_it() -> None:
    emulator = DbtCloudEmulator(token=DBT_CLOUD_TOKEN, latency_ms=150)
    assert emulator.latency_ms == 150
    emulator.latency_ms = 0
    emulator.reset()
    assert emulator.latency_ms == 150
    with pytest.raises(ValueError, match="0 or more"):
        DbtCloudEmulator(latency_ms=-1)


def test_concurrent_requests_wait_at_the_same_time_and_count_as_one_round_trip(
    databricks: DatabricksEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each waits in the emulator until the other has arrived too: a server that answered one
    request at a time would break the barrier (and the requests) instead."""
    barrier = threading.Barrier(2, timeout=15)
    monkeypatch.setattr(databricks, "sleep", lambda seconds: barrier.wait())
    databricks.latency_ms = 150
    statuses: list[Any] = []

    def call() -> None:
        try:
            statuses.append(get_scopes(databricks))
        except Exception as error:  # noqa: BLE001 - reported by the assert below
            statuses.append(error)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert statuses == [200, 200]
    assert round_trip_depth(databricks.requests) == 1

    # One after the other: the second is sent once the first is answered, two round trips.
    monkeypatch.setattr(databricks, "sleep", lambda seconds: None)
    databricks.reset_log()
    get_scopes(databricks)
    get_scopes(databricks)
    assert round_trip_depth(databricks.requests) == 2
    assert all(r.started <= r.finished for r in databricks.requests)


def test_the_depth_is_the_longest_chain_of_requests_sent_one_after_another() -> None:
    assert round_trip_depth([]) == 0
    # Three waves: two together, then one, then three together.
    waves = [span(0, 1), span(0.1, 1.1), span(1.2, 2.2), span(2.3, 3.3), span(2.3, 3.4), span(2.4, 3.2)]
    assert round_trip_depth(reversed(waves)) == 3
    # A long request under two short ones in a row: the short ones are the critical path.
    assert round_trip_depth([span(0, 3), span(0.1, 1), span(1.1, 2)]) == 2
