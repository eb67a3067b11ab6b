"""The claim loop: keep ``concurrency`` handlers running, claim in batches sized to the free slots,
and on shutdown stop claiming, then finish (or, told twice, abandon) what runs.

A slot is a running handler. A task whose handler has returned gives its slot back at once, while
its outcome is still on the way to the server: the next claim does not wait for a report's round
trip (with ``concurrency=1`` it would otherwise add one to every task's wait). So the worker may
hold the leases of ``concurrency`` running tasks plus those whose reports are in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from functools import partial

from taskmanager.client import AsyncTaskManagerClient, Task, TaskManagerError
from taskmanager.worker.execution import Execution
from taskmanager.worker.registry import Registry
from taskmanager.worker.reporting import Reporter

log = logging.getLogger("taskmanager.worker")

#: Seconds a claim waits on the server for work (long-poll, the claim's ``wait``): a new task
#: starts at once, and a stopping worker waits at most this long for the claim in flight to
#: return (it may hold tasks, so it is never dropped). Short, so shutdown is quick; an idle
#: worker then sends one claim per this many seconds.
DEFAULT_CLAIM_WAIT = 2.0
#: Without long-poll, an empty claim is followed by a sleep this long, doubling each time...
IDLE_MIN_DELAY = 0.05
#: ... up to this.
IDLE_MAX_DELAY = 1.0
#: Most tasks one claim may take (the server's limit).
MAX_CLAIM_BATCH = 100
#: Exit codes of ``run``: every running task finished, or they were abandoned to their leases.
EXIT_OK = 0
EXIT_ABANDONED = 1


@dataclass(frozen=True, slots=True)
class LoopOptions:
    concurrency: int
    worker_id: str
    lease_seconds: int | None = None
    task_timeout: float | None = None
    #: Seconds a claim may wait on the server for a task (long-poll); 0 or None: claim without
    #: waiting and sleep a little after an empty claim (servers without long-poll).
    claim_wait: float | None = DEFAULT_CLAIM_WAIT


class ClaimLoop:
    """Runs the registry's handlers on claimed tasks until told to stop."""

    def __init__(self, client: AsyncTaskManagerClient, registry: Registry, options: LoopOptions) -> None:
        self.client = client
        self.registry = registry
        self.options = options
        self.reporter = Reporter(client, options.worker_id)
        self.stopping = asyncio.Event()
        self.abandoning = asyncio.Event()
        # Keyed by run, not task id: a task whose lease ran out may be claimed again by this
        # worker while its first run still goes; each run holds its own slot and is waited for.
        self._runs = itertools.count()
        #: Every run not yet settled: its handler running, or its outcome being reported.
        self._running: dict[int, asyncio.Task[None]] = {}
        #: The runs whose handlers still run: the slots taken.
        self._busy: set[int] = set()
        self._slot_freed = asyncio.Event()

    @property
    def running(self) -> int:
        return len(self._running)

    def stop(self) -> None:
        """First call: stop claiming and finish the running tasks. Second call: abandon them."""
        if self.stopping.is_set():
            log.warning("told to stop again: abandoning %d running tasks to their leases", self.running)
            self.abandoning.set()
        else:
            log.info("stopping: no more claims; finishing %d running tasks", self.running)
            self.stopping.set()

    async def run(self) -> int:
        claimer = asyncio.create_task(self._claim_forever(), name="claim-loop")
        await self._first(claimer, self.stopping.wait())
        self.stopping.set()
        # The claim loop returns at its next check: a claim in flight is let finish, so no task
        # it took is dropped.
        await asyncio.wait({claimer})
        while self._running and not self.abandoning.is_set():
            await self._first(*self._running.values(), self.abandoning.wait())
        code = EXIT_OK
        if self._running:
            for task in self._running.values():
                task.cancel()
            await asyncio.gather(*self._running.values(), return_exceptions=True)
            code = EXIT_ABANDONED
        await self.reporter.close()
        claimer.result()  # a bug in the claim loop surfaces here, once the tasks are settled
        return code

    async def _claim_forever(self) -> None:
        idle = IDLE_MIN_DELAY
        types = self.registry.names()
        clock = asyncio.get_running_loop().time
        while not self.stopping.is_set():
            free = self.options.concurrency - len(self._busy)
            if free <= 0:
                self._slot_freed.clear()
                await self._first(self._slot_freed.wait(), self.stopping.wait())
                continue
            started = clock()
            try:
                tasks: list[Task] | None = await self.client.claim_tasks(
                    types,
                    self.options.worker_id,
                    limit=min(free, MAX_CLAIM_BATCH),
                    lease_seconds=self.options.lease_seconds,
                    wait=self.options.claim_wait or None,
                )
            except TaskManagerError as exc:
                log.warning("claim failed: %s; next try in %.2f s", exc, idle)
                tasks = None
            if tasks:
                idle = IDLE_MIN_DELAY
                for task in tasks:
                    self._start(task)
                continue
            wait = self.options.claim_wait
            if tasks is not None and wait and clock() - started >= wait / 2:
                continue  # the server held the claim until its wait ran out: ask again at once
            # Nothing, and no long-poll held the claim (off, failed, or a server without it).
            await self._pause(idle)
            idle = min(idle * 2, IDLE_MAX_DELAY)

    def _start(self, task: Task) -> None:
        handler = self.registry.get(task.type)
        assert handler is not None, f"claimed a task of unhandled type {task.type!r}"
        run = next(self._runs)
        execution = Execution(
            task,
            handler,
            self.client,
            self.reporter,
            worker_id=self.options.worker_id,
            lease_seconds=self.options.lease_seconds,
            default_timeout=self.options.task_timeout,
            on_handler_done=partial(self._release, run),
        )
        self._busy.add(run)
        running = asyncio.create_task(execution.run(), name=f"task-{task.id}")
        self._running[run] = running
        running.add_done_callback(partial(self._finished, run, task.id))

    def _release(self, run: int) -> None:
        """The handler of ``run`` returned: its slot is free for the next claim."""
        self._busy.discard(run)
        self._slot_freed.set()

    def _finished(self, run: int, task_id: int, running: asyncio.Task[None]) -> None:
        self._running.pop(run, None)
        self._release(run)  # also when the run ended without its handler returning
        if not running.cancelled() and running.exception() is not None:
            log.error("task %d: the worker failed running it", task_id, exc_info=running.exception())

    async def _pause(self, seconds: float) -> None:
        """Sleep, waking early when told to stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)

    @staticmethod
    async def _first(*waits: Awaitable[object]) -> None:
        """Wait until the first of ``waits`` finishes; cancel the waits this created."""
        futures = [asyncio.ensure_future(w) for w in waits]
        try:
            await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for future, given in zip(futures, waits, strict=True):
                if future is not given:
                    future.cancel()


__all__ = ["DEFAULT_CLAIM_WAIT", "EXIT_ABANDONED", "EXIT_OK", "ClaimLoop", "LoopOptions"]
