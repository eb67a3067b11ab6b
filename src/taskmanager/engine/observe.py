"""Observing the queue: ``GET /stats``, ``/workers`` and the feed of ``GET /events``.

The counts come from the store (read from indexes); this module shapes them into the API's data,
and the items of the live feed of history events (``engine/feed.py`` reads and fans them out).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from taskmanager.engine.clock import Clock
from taskmanager.engine.records import TaskStatus
from taskmanager.engine.scope import TypeScope
from taskmanager.engine.store import FeedEvent, QueueStats, Store, WorkerStats
from taskmanager.engine.wire import iso

T = TypeVar("T")

#: Seconds a ``/stats`` or ``/workers`` answer is served again (``TASKMANAGER_STATS_MAX_AGE``).
DEFAULT_STATS_MAX_AGE = 2.0
#: How many times ``max_age`` an answer may reach while it is served and refreshed behind.
STALE_FACTOR = 5
#: The window of "recent" in ``/stats`` (completed/failed last hour, throughput per minute).
RECENT = timedelta(hours=1)
#: The window of ``/workers``: every worker seen in the last day.
WORKERS_WINDOW = timedelta(hours=24)
#: History rows a feed reader reads (and holds) at once.
FEED_PAGE = 200
#: Seconds between a feed's looks for new history rows where the database cannot announce every
#: history write (MySQL, an in-memory SQLite); elsewhere only a stream's timer (``engine/feed.py``).
FEED_POLL_SECONDS = 0.5
#: Seconds of silence after which a feed sends a keep-alive (API.md B.7: every 15 s).
FEED_KEEPALIVE_SECONDS = 15.0
#: Events a reader may trail the newest by (catching up) or hold unsent (following) before it is
#: dropped.
FEED_MAX_LAG = 10_000

#: The status a task has just after each history event (None: read the task's current status).
STATUS_AFTER = {
    "created": TaskStatus.PENDING,
    "claimed": TaskStatus.CLAIMED,
    "progress": TaskStatus.CLAIMED,
    "heartbeat": TaskStatus.CLAIMED,
    "completed": TaskStatus.COMPLETED,
    "failed": TaskStatus.FAILED,
    "retry_scheduled": TaskStatus.PENDING,
    "cancelled": TaskStatus.CANCELLED,
    "retried": TaskStatus.PENDING,
    "expired": TaskStatus.CANCELLED,
}


class Snapshot(Generic[T]):
    """The last answer of an expensive read, served again while it is at most ``max_age``
    seconds old (0: never kept). Up to ``STALE_FACTOR`` times that it is still served, while one
    refresh runs in the background; older, the caller waits for a fresh one. At most one
    computation runs at a time however many callers ask, so the database does the work of a
    read once per ``max_age`` at most, whatever the request rate."""

    def __init__(self, compute: Callable[[], Awaitable[T]], clock: Clock, max_age: float) -> None:
        self._compute = compute
        self._clock = clock
        self.max_age = max_age
        self._kept: tuple[datetime, T] | None = None
        self._running: asyncio.Future[T] | None = None

    async def get(self) -> T:
        if self.max_age <= 0:
            return await self._compute()
        if self._kept is not None:
            at, value = self._kept
            age = (self._clock.now() - at).total_seconds()
            if age <= self.max_age:
                return value
            if age <= self.max_age * STALE_FACTOR:
                self._refresh()
                return value
        return await asyncio.shield(self._refresh())

    def _refresh(self) -> asyncio.Future[T]:
        if self._running is None:
            self._running = asyncio.ensure_future(self._keep())
            self._running.add_done_callback(_retrieved)
        return self._running

    async def _keep(self) -> T:
        try:
            at = self._clock.now()
            value = await self._compute()
            self._kept = (at, value)
            return value
        finally:
            self._running = None


def _retrieved(future: asyncio.Future[Any]) -> None:
    """A background refresh's failure is its waiters' to see; nobody waiting is no error."""
    if not future.cancelled():
        future.exception()


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


async def queue_stats(store: Store, clock: Clock) -> tuple[datetime, QueueStats]:
    """What ``GET /stats`` is made of, read at one instant (kept by a ``Snapshot``)."""
    now = clock.now()
    return now, await store.queue_stats(now, now - RECENT)


def stats(at: datetime, found: QueueStats, allowed: Callable[[str], bool]) -> dict[str, Any]:
    """The data of ``GET /stats``, of the types ``allowed`` (a key limited to types sees only
    theirs: counts, throughput, and the workers holding their tasks)."""
    by_status = dict.fromkeys((s.value for s in TaskStatus), 0)
    by_type = []
    for t in (t for t in found.types if allowed(t.type)):
        for status, n in t.counts.items():
            by_status[status] = by_status.get(status, 0) + n
        oldest = None if t.oldest_pending_at is None else (at - t.oldest_pending_at).total_seconds()
        by_type.append(
            {
                "type": t.type,
                **{s.value: t.counts.get(s.value, 0) for s in TaskStatus},
                "oldest_pending_seconds": None if oldest is None else max(0.0, round(oldest, 3)),
                "completed_last_hour": t.completed_recent,
                "failed_last_hour": t.failed_recent,
                "avg_run_seconds": _seconds(t.avg_run_seconds),
            }
        )
    every = all(allowed(t.type) for t in found.types)
    workers = (
        found.workers_active if every else sum(n for t, n in found.workers_by_type.items() if allowed(t))
    )
    return {
        "by_status": by_status,
        "by_type": by_type,
        "workers_active": workers,
        "throughput": throughput(at, [(m, s, n) for m, t, s, n in found.minutes if allowed(t)]),
    }


def throughput(now: datetime, minutes: list[tuple[str, str, int]]) -> list[dict[str, Any]]:
    """The last 60 minutes, oldest first, each with its completed and failed counts (0 if none)."""
    this_minute = now.replace(second=0, microsecond=0)
    counted: dict[tuple[str, str], int] = {}
    for m, s, n in minutes:
        counted[m, s] = counted.get((m, s), 0) + n
    rows = []
    for back in range(59, -1, -1):
        minute = this_minute - timedelta(minutes=back)
        key = minute.strftime("%Y-%m-%d %H:%M")
        rows.append(
            {
                "minute": iso(minute),
                "completed": counted.get((key, TaskStatus.COMPLETED.value), 0),
                "failed": counted.get((key, TaskStatus.FAILED.value), 0),
            }
        )
    return rows


async def worker_stats(store: Store, clock: Clock) -> list[WorkerStats]:
    """What ``GET /workers`` is made of (kept by a ``Snapshot``)."""
    return await store.worker_stats(clock.now() - WORKERS_WINDOW)


def workers(found: list[WorkerStats], allowed: Callable[[str], bool]) -> dict[str, Any]:
    """The data of ``GET /workers``; a key limited to types sees the workers of its types, each
    with its counts for those types only (as ``/stats`` shows it only theirs)."""
    every = all(allowed(t.type) for w in found for t in w.by_type)
    shown = found if every else [s for w in found if (s := _limited(w, allowed)) is not None]
    return {
        "workers": [
            {
                "worker_id": w.worker_id,
                "claimed": w.claimed,
                "completed": w.completed,
                "failed": w.failed,
                "last_seen_at": iso(w.last_seen_at),
                "avg_processing_seconds": _seconds(w.avg_processing_seconds),
            }
            for w in shown
        ],
    }


def _limited(worker: WorkerStats, allowed: Callable[[str], bool]) -> WorkerStats | None:
    """``worker`` as counted on the allowed types alone (None: it touched none of them)."""
    shares = [t for t in worker.by_type if allowed(t.type)]
    if not shares:
        return None
    processed = sum(t.processed for t in shares)
    seen = [t.last_seen_at for t in shares if t.last_seen_at is not None]
    return WorkerStats(
        worker.worker_id,
        sum(t.claimed for t in shares),
        sum(t.completed for t in shares),
        sum(t.failed for t in shares),
        max(seen) if seen else None,
        sum(t.processing_seconds for t in shares) / processed if processed else None,
        tuple(shares),
    )


def event_data(event: FeedEvent) -> dict[str, Any]:
    status = STATUS_AFTER.get(event.event)
    return {
        "task_id": event.task_id,
        "type": event.type,
        "status": event.status if status is None else status.value,
        "worker_id": event.worker_id,
        "at": iso(event.created_at),
    }


@dataclass(frozen=True, slots=True)
class FeedItem:
    """One history event of a feed."""

    id: int
    event: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """Nothing happened for a keep-alive interval."""


@dataclass(frozen=True, slots=True)
class Dropped:
    """The reader fell too far behind and is dropped; it may resume from ``last_id``."""

    last_id: int
    newest_id: int


@dataclass(frozen=True, slots=True)
class FeedFilter:
    types: frozenset[str] | None = None
    task_id: int | None = None
    #: The types the reader's key is limited to (None: every type).
    scope: TypeScope | None = None

    def wants(self, event: FeedEvent) -> bool:
        if self.task_id is not None and event.task_id != self.task_id:
            return False
        if self.scope is not None and (event.type is None or not self.scope.allows(event.type)):
            return False
        return self.types is None or event.type in self.types


@dataclass(frozen=True, slots=True)
class FeedTiming:
    poll_seconds: float = FEED_POLL_SECONDS
    keepalive_seconds: float = FEED_KEEPALIVE_SECONDS
    max_lag: int = FEED_MAX_LAG
    page: int = FEED_PAGE
    #: Seconds after which a stream ends by itself (None: never); its client resumes with
    #: ``Last-Event-ID``. In-process tests use it: their transport reads a whole response.
    lifetime: float | None = None
