"""``GET /metrics``: Prometheus text, right however many server processes share the database.

Two kinds of series, each counted where it is right (docs/guides/operating.md):

* **The queue's state** (``taskmanager_tasks{type,status}``, ``taskmanager_oldest_pending_seconds``,
  ``taskmanager_workers_active``) is read from the database at scrape time (the same index reads
  as ``GET /stats``), so every process of every server reports the same cluster-wide values: aggregate
  them with ``max``, never ``sum``.
* **What a process did** (claims, completions and failures per type; HTTP request latency per
  route template) is counted in the process that did it, as Prometheus counters are meant to be,
  and summed across targets with ``sum``. ``taskmanager serve --workers N`` runs N processes
  behind one port, so it turns on prometheus_client's multiprocess mode (a fresh
  ``PROMETHEUS_MULTIPROC_DIR``), and any process answering a scrape reports the sum of all N.
  Counting these from the database instead would mean scanning the history on every scrape.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from taskmanager.engine.records import Task, TaskStatus
from taskmanager.engine.store import ClaimParams, ClaimQuery, Store, TaskChange

TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: Latency buckets (seconds): a claim or read takes milliseconds, a long-poll up to a minute.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    """One app's counters and histogram, in a registry of its own (apps in one process, as the
    tests run them, do not share series)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.http = Histogram(
            "taskmanager_http_request_duration_seconds",
            "HTTP request latency by route template, method and status.",
            ("route", "method", "status"),
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.claims = self._counter("taskmanager_task_claims", "Tasks claimed, by type.")
        self.completions = self._counter("taskmanager_task_completions", "Tasks completed, by type.")
        self.failures = self._counter(
            "taskmanager_task_failures", "Failed attempts (retried or final), by type."
        )
        self.streams = Gauge(
            "taskmanager_event_streams",
            "Open GET /events streams.",
            registry=self.registry,
            multiprocess_mode="livesum",
        )

        # Each series' child, found once: ``labels()`` checks and joins its values on every call,
        # which cost more than the count itself on the hot routes.
        self._children: dict[tuple[Any, ...], Any] = {}

    def _counter(self, name: str, doc: str) -> Counter:
        return Counter(name, doc, ("type",), registry=self.registry)

    def _child(self, metric: Counter | Histogram, *values: str) -> Any:
        """``metric``'s series for the label ``values``."""
        key = (metric, *values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        self._child(self.http, route, method, str(status)).observe(seconds)

    def count(self, counter: Counter, task_type: str) -> None:
        """One more of ``counter`` (claims, completions, failures) for ``task_type``."""
        self._child(counter, task_type).inc()

    def render(self, queue: dict[str, Any]) -> bytes:
        """The scrape: ``queue`` (the data of ``GET /stats``) as gauges, then the counters and
        histogram of this process (or, in multiprocess mode, of every process)."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(QueueCollector(queue))
        if os.environ.get(MULTIPROC_ENV):
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(registry) + generate_latest(self.registry)


class QueueCollector(Collector):
    """The queue's state at scrape time, from the database."""

    def __init__(self, queue: dict[str, Any]) -> None:
        self.queue = queue

    def collect(self) -> Iterator[Metric]:
        tasks = GaugeMetricFamily("taskmanager_tasks", "Tasks by type and status.", labels=("type", "status"))
        oldest = GaugeMetricFamily(
            "taskmanager_oldest_pending_seconds", "Age of the oldest pending task, by type.", labels=("type",)
        )
        for row in self.queue["by_type"]:
            for status in TaskStatus:
                tasks.add_metric((row["type"], status.value), row[status.value])
            oldest.add_metric((row["type"],), row["oldest_pending_seconds"] or 0.0)
        workers = GaugeMetricFamily(
            "taskmanager_workers_active", "Workers holding a task under a live lease."
        )
        workers.add_metric((), self.queue["workers_active"])
        yield from (tasks, oldest, workers)


class CountingStore:
    """The app's store, counting in ``metrics`` the claims, completions and failures it applied
    (every other call passes straight through)."""

    def __init__(self, store: Store, metrics: Metrics) -> None:
        self._store = store
        self._metrics = metrics

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def claim_tasks(self, query: ClaimQuery, params: ClaimParams) -> list[Task]:
        claimed = await self._store.claim_tasks(query, params)
        for task in claimed:
            self._metrics.count(self._metrics.claims, task.type)
        return claimed

    async def update_task(self, change: TaskChange) -> Task | None:
        after = await self._store.update_task(change)
        self._count([change], [after])
        return after

    async def update_tasks(self, changes: Sequence[TaskChange]) -> list[Task | None]:
        written = await self._store.update_tasks(changes)
        self._count(changes, written)
        return written

    def _count(self, changes: Iterable[TaskChange], written: Iterable[Task | None]) -> None:
        for change, after in zip(changes, written, strict=True):
            if after is None or change.expected.columns.get("status") != TaskStatus.CLAIMED:
                continue
            if after.status == TaskStatus.COMPLETED:
                self._metrics.count(self._metrics.completions, after.type)
            elif after.status == TaskStatus.FAILED or (
                after.status == TaskStatus.PENDING and change.changes.get("status") == TaskStatus.PENDING
            ):
                self._metrics.count(self._metrics.failures, after.type)
