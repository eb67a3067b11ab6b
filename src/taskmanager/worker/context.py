"""``TaskContext``: what a handler is given — its task, the attempt, progress reports, and the
signal to stop when the task is cancelled, its lease is lost or its time is up."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Generator
from typing import Any

from taskmanager.client import AsyncTaskManagerClient, Task

#: Why a running task was told to stop.
CANCELLED = "cancelled"
LEASE_LOST = "lease_lost"
TIMED_OUT = "timeout"


class TaskCancelled(Exception):
    """Raised at a cooperative stop point (``ctx.sleep``, ``ctx.raise_if_cancelled``) once the task
    was cancelled, its lease lost, or its time ran out. Let it propagate: the worker knows why."""


class _Done:
    """An awaitable that is already finished: what ``progress`` returns to a blocking handler."""

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield  # pragma: no cover - makes this a generator


class TaskContext:
    """The handler's view of its task. A handler receives one as its only argument."""

    def __init__(
        self, task: Task, *, client: AsyncTaskManagerClient, loop: asyncio.AbstractEventLoop, worker_id: str
    ) -> None:
        self.task = task
        self.worker_id = worker_id
        self._client = client
        self._loop = loop
        self._stopped = threading.Event()  # seen by handler threads
        self.stop_signal: asyncio.Future[str] = loop.create_future()  # seen by the worker's loop
        self.stop_reason: str | None = None

    @property
    def task_id(self) -> int:
        return self.task.id

    @property
    def task_type(self) -> str:
        return self.task.type

    @property
    def params(self) -> dict[str, Any]:
        return self.task.params

    @property
    def attempt(self) -> int:
        """1 on the first run, 2 on the first retry..."""
        return self.task.attempts

    @property
    def max_attempts(self) -> int:
        return self.task.max_attempts

    @property
    def cancelled(self) -> bool:
        """True once the task should stop: cancelled, lease lost, or out of time."""
        return self._stopped.is_set()

    def raise_if_cancelled(self) -> None:
        """A cooperative stop point: raise ``TaskCancelled`` if the task should stop."""
        if self._stopped.is_set():
            raise TaskCancelled(self.stop_reason)

    def sleep(self, seconds: float) -> None:
        """Sleep (in a blocking handler), waking early with ``TaskCancelled`` if the task stops."""
        if self._stopped.wait(seconds):
            raise TaskCancelled(self.stop_reason)

    def progress(self, value: int, message: str | None = None) -> Awaitable[None]:
        """Report progress (0-100); it also extends the lease.

        A blocking handler calls ``ctx.progress(50, "half")`` and it returns once reported; an
        async handler writes ``await ctx.progress(50, "half")``.
        """
        report = self._report(value, message)
        if _in_loop(self._loop):
            return self._loop.create_task(report)
        asyncio.run_coroutine_threadsafe(report, self._loop).result()
        return _Done()

    async def _report(self, value: int, message: str | None) -> None:
        await self._client.report_progress(
            self.task.id, value, message, worker_id=self.worker_id, lease_token=self.task.lease_token
        )

    def stop(self, reason: str) -> None:
        """Tell the handler to stop (called by the worker, on its loop)."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self._stopped.set()
        if not self.stop_signal.done():
            self.stop_signal.set_result(self.stop_reason or CANCELLED)

    async def stopped(self) -> str:
        """Wait until the task is told to stop; the reason."""
        return await asyncio.shield(self.stop_signal)


def _in_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


__all__ = ["CANCELLED", "LEASE_LOST", "TIMED_OUT", "TaskCancelled", "TaskContext"]
