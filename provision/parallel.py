"""Independent requests sent together: one round trip for several, instead of one each.

A request to a cloud workspace spends most of its time on the network (about 150 ms from a
laptop), so reads that do not depend on each other, and writes whose prerequisites are done,
go out at the same time from a few threads. The Databricks SDK's client may be shared by them
(databricks-sdk 0.16x, read in its code): its one requests.Session is never reconfigured after
it is built, and what a request touches there is locked (the cookie jar's RLock; urllib3's pool
hands each thread its own connection); the Config is only read; the credential providers give
a static header (PAT) or refresh OAuth tokens under a lock; the SDK itself downloads file parts
from several threads through one client. requests does not promise Session is thread-safe
(psf/requests#2766, about a redirect cache that 2.3x no longer has).

Each call gets its own small pool, so a task may itself run tasks (no pool starves).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")

#: At most this many requests in flight from one call (the SDK's pool keeps 20 connections).
MAX_THREADS = 8


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What one task returned, or the exception it raised."""

    value: T | None = None
    error: BaseException | None = None

    def get(self) -> T | None:
        if self.error is not None:
            raise self.error
        return self.value


def run_all(tasks: Sequence[Callable[[], Any]]) -> list[Outcome[Any]]:
    """Runs every task, concurrently when there are several, and waits for all of them;
    each outcome holds its result or its exception (nothing is raised here)."""

    def guarded(task: Callable[[], Any]) -> Outcome[Any]:
        try:
            return Outcome(value=task())
        except Exception as error:  # noqa: BLE001 - handed back to the caller, who decides
            return Outcome(error=error)

    if len(tasks) <= 1:
        return [guarded(task) for task in tasks]
    with ThreadPoolExecutor(max_workers=min(MAX_THREADS, len(tasks)), thread_name_prefix="dbtwf-io") as pool:
        return list(pool.map(guarded, tasks))


def gather(tasks: Sequence[Callable[[], Any]]) -> list[Any]:
    """Runs every task (see run_all) and returns their results in order; when some failed,
    raises the error of the first of them in order, once all have ended."""
    outcomes = run_all(tasks)
    for outcome in outcomes:
        if outcome.error is not None:
            raise outcome.error
    return [outcome.value for outcome in outcomes]
