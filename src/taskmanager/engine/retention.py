"""Retention (API.md B.10): finished tasks disappear once they are older than their type keeps them.

The rule is the engine's, in one place: a task that ended ``completed`` is kept
``keep_completed_seconds`` after its ``completed_at``, one that ended ``failed`` or ``cancelled``
``keep_failed_seconds`` (each the type's own, else the server's default, read live; 0 = forever).
From that instant reads answer 404 and lists leave it out (``removed`` for one task, a
``Retention`` for queries); the rows themselves are deleted by the ``Sweeper`` that every server
process runs in its lifespan, a bounded batch per transaction (``Store.purge_tasks``). Deleting
a task frees its dedupe key, as any delete does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from taskmanager.engine.clock import Clock
from taskmanager.engine.records import Task, TaskStatus, TaskType
from taskmanager.engine.store import PurgeQuery, Retention, Store
from taskmanager.errors import Unavailable

log = logging.getLogger("taskmanager.retention")

#: The statuses each retention setting governs.
COMPLETED = (TaskStatus.COMPLETED.value,)
FAILED = (TaskStatus.FAILED.value, TaskStatus.CANCELLED.value)
#: Tasks deleted per transaction: each holds its row locks for milliseconds.
PURGE_BATCH = 500
#: Batches one sweep may run before it lets the next one start (it yields in between).
MAX_PURGE_BATCHES = 200
#: Seconds between sweeps while the last one found nothing left to delete.
SWEEP_INTERVAL = 1.0


def _keep_seconds(task: Task) -> int:
    if task.status == TaskStatus.COMPLETED:
        return task.policy.keep_completed_seconds
    if task.status in (TaskStatus.FAILED, TaskStatus.CANCELLED):
        return task.policy.keep_failed_seconds
    return 0


def removed(task: Task, now: datetime) -> bool:
    """Whether ``task`` is past its retention at ``now`` (so it reads as gone)."""
    seconds = _keep_seconds(task)
    finished = task.completed_at
    return seconds > 0 and finished is not None and finished + timedelta(seconds=seconds) <= now


def retention(types: Iterable[TaskType], now: datetime) -> Retention:
    """``removed`` for every task at once: for each (statuses, seconds kept), the types it holds
    for and the cutoff it makes at ``now``."""
    groups: dict[tuple[tuple[str, ...], int], list[int]] = {}
    for task_type in types:
        for statuses, seconds in (
            (COMPLETED, task_type.keep_completed_seconds),
            (FAILED, task_type.keep_failed_seconds),
        ):
            if seconds > 0:
                groups.setdefault((statuses, seconds), []).append(task_type.id)
    return Retention(
        tuple(
            (statuses, now - timedelta(seconds=seconds), tuple(sorted(ids)))
            for (statuses, seconds), ids in sorted(groups.items())
        )
    )


@dataclass
class Retainer:
    """Retention as of the clock: the ``Retention`` for queries, and purging what is due."""

    store: Store
    clock: Clock
    batch: int = PURGE_BATCH

    async def now(self) -> Retention:
        return retention(await self.store.list_types(False), self.clock.now())

    async def purge_due(self, max_batches: int = MAX_PURGE_BATCHES) -> int:
        """Delete tasks past their retention, a batch per transaction, until none is left or
        ``max_batches`` ran; how many were deleted. Between batches it rests as long as the
        batch took (the sweep takes at most half of the process's time, so requests on the same
        event loop are never held up for more than one batch)."""
        deleted = 0
        types = await self.store.list_types(False)  # read once per sweep, not per batch
        for _ in range(max_batches):
            began = time.perf_counter()
            count = await self.store.purge_tasks(PurgeQuery(retention(types, self.clock.now()), self.batch))
            deleted += count
            if count < self.batch:
                break
            await asyncio.sleep(time.perf_counter() - began)
        return deleted


@dataclass
class Sweeper:
    """The background sweep of one server process: ``also`` (if any), then ``purge_due``, every
    ``interval`` seconds (at once again while batches come back full). ``start`` and ``stop``
    belong to the app's lifespan; ``stop`` waits for the sweep to end, so nothing is left
    running after shutdown."""

    retainer: Retainer
    #: Another housekeeping pass run with each sweep (the dependency cascades a request left or
    #: a server died in, B.5): how much it found.
    also: Callable[[], Awaitable[int]] | None = None
    interval: float = SWEEP_INTERVAL
    _task: asyncio.Task[None] | None = field(default=None, init=False, repr=False)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="taskmanager-retention-sweep")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _run(self) -> None:
        while True:
            try:
                if self.also is not None:
                    await self.also()
                deleted = await self.retainer.purge_due()
            except Unavailable as exc:  # a database gone for a moment: the next sweep tries again
                log.warning("retention sweep: %s; retrying in %.0f s", exc, self.interval)
                deleted = 0
            except Exception:
                log.warning("retention sweep failed; retrying in %.0f s", self.interval, exc_info=True)
                deleted = 0
            full = deleted >= self.retainer.batch * MAX_PURGE_BATCHES
            await asyncio.sleep(0 if full else self.interval)
