"""Running one claimed task: the handler (in a thread, or as an asyncio task), its heartbeats,
its time limit, the report of its outcome, and one structured log line."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from taskmanager.client import (
    AsyncTaskManagerClient,
    LeaseLostError,
    Task,
    TaskManagerError,
    TaskManagerNotFoundError,
)
from taskmanager.worker.context import CANCELLED, LEASE_LOST, TIMED_OUT, TaskCancelled, TaskContext
from taskmanager.worker.registry import Handler
from taskmanager.worker.reporting import Reporter

log = logging.getLogger("taskmanager.worker")

#: The ``error`` a complete may carry is at most this long; a longer traceback keeps its end.
MAX_ERROR_CHARS = 65_000
#: Heartbeats go out at this fraction of the lease, so two can be lost before it expires.
HEARTBEAT_FRACTION = 1 / 3
#: ... but never more often than this (seconds).
MIN_HEARTBEAT_INTERVAL = 0.2
#: The lease assumed when a claimed task does not say how long its lease is (seconds).
DEFAULT_LEASE = 300.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a run ended: ``completed`` (with ``result``), ``failed``/``timeout`` (with ``error``),
    or ``cancelled``/``lease_lost`` (the server has moved on: nothing to report)."""

    kind: str
    result: Any = None
    error: str | None = None


def _traceback(exc: BaseException) -> str:
    text = "".join(traceback.format_exception(exc))
    return text if len(text) <= MAX_ERROR_CHARS else "...\n" + text[-MAX_ERROR_CHARS:]


def _in_thread(handler: Handler, ctx: TaskContext, loop: asyncio.AbstractEventLoop) -> asyncio.Future[Any]:
    """Run a blocking handler in a daemon thread of its own; its result as a future of ``loop``.

    Daemon, so a worker told to abandon its tasks can exit while a handler still runs.
    """
    future: asyncio.Future[Any] = loop.create_future()

    def resolve(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)

    def target() -> None:
        try:
            result = handler.fn(ctx)
        except BaseException as exc:
            loop.call_soon_threadsafe(resolve, None, exc)
        else:
            loop.call_soon_threadsafe(resolve, result, None)

    threading.Thread(target=target, name=f"task-{ctx.task_id}", daemon=True).start()
    return future


class Execution:
    """One claimed task, from its handler's start to its reported outcome.

    ``on_handler_done`` is called once the handler has really returned (or, for an ``async``
    one, was cancelled): from then on the task needs no slot, only its report, so the claim loop
    can take the next task without waiting for the server to acknowledge this one.
    """

    def __init__(
        self,
        task: Task,
        handler: Handler,
        client: AsyncTaskManagerClient,
        reporter: Reporter,
        *,
        worker_id: str,
        lease_seconds: int | None,
        default_timeout: float | None,
        on_handler_done: Callable[[], None] | None = None,
    ) -> None:
        self.task = task
        self.handler = handler
        self.client = client
        self.reporter = reporter
        self.worker_id = worker_id
        self.lease_seconds = lease_seconds
        self.timeout = handler.timeout if handler.timeout is not None else default_timeout
        self.on_handler_done = on_handler_done

    def _lease(self) -> float:
        task = self.task
        if task.lease_expires_at is not None and task.claimed_at is not None:
            return max((task.lease_expires_at - task.claimed_at).total_seconds(), 0.0)
        return float(self.lease_seconds or DEFAULT_LEASE)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        ctx = TaskContext(self.task, client=self.client, loop=loop, worker_id=self.worker_id)
        started = time.monotonic()
        if log.isEnabledFor(logging.DEBUG):
            log.debug("task %d started", self.task.id, extra=self._fields())
        # Heartbeats start only for a task still running at the first beat: most tasks finish
        # sooner, and a timer costs far less than a task of its own.
        interval = max(self._lease() * HEARTBEAT_FRACTION, MIN_HEARTBEAT_INTERVAL)
        beats: list[asyncio.Task[None]] = []
        timer = loop.call_later(
            interval, lambda: beats.append(loop.create_task(self._heartbeats(ctx, interval)))
        )
        if self.handler.is_async:
            work: asyncio.Future[Any] = asyncio.ensure_future(self.handler.fn(ctx))
        else:
            work = _in_thread(self.handler, ctx, loop)
        if self.on_handler_done is not None:
            done = self.on_handler_done
            work.add_done_callback(lambda _: done())
        try:
            outcome = await self._outcome(work, ctx)
        finally:
            timer.cancel()
            for beat in beats:
                beat.cancel()
        status = await self._report(outcome)
        self._log(outcome, status, time.monotonic() - started)
        # A blocking handler past its time limit cannot be killed (it was told to stop): the run
        # lasts until it really returns, and so does its slot (``on_handler_done``).
        await asyncio.wait({work})
        if not work.cancelled():
            work.exception()  # retrieved, so asyncio does not warn about it

    async def _outcome(self, work: asyncio.Future[Any], ctx: TaskContext) -> Outcome:
        done, _ = await asyncio.wait(
            {work, ctx.stop_signal}, timeout=self.timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if work in done and not ctx.cancelled:
            error = None if work.cancelled() else work.exception()
            if work.cancelled():
                return Outcome(CANCELLED)
            if error is None:
                return Outcome("completed", work.result())
            return Outcome("failed", error=_traceback(error))
        if not ctx.cancelled:
            ctx.stop(TIMED_OUT)
        if self.handler.is_async:
            work.cancel()  # a thread cannot be stopped: it sees ctx.cancelled, and keeps its slot
        if ctx.stop_reason == TIMED_OUT:
            message = f"TimeoutError: the task did not finish within its {self.timeout:g} s time limit"
            return Outcome(TIMED_OUT, error=message)
        return Outcome(ctx.stop_reason or CANCELLED)

    async def _heartbeats(self, ctx: TaskContext, interval: float) -> None:
        """Beat now (the first interval has passed), then every ``interval`` seconds."""
        while True:
            try:
                beat = await self.client.heartbeat(
                    self.task.id, lease_seconds=self.lease_seconds, lease_token=self.task.lease_token
                )
            except (LeaseLostError, TaskManagerNotFoundError):
                ctx.stop(LEASE_LOST)
                return
            except TaskManagerError as exc:
                log.warning("task %d heartbeat failed: %s", self.task.id, exc, extra=self._fields())
            else:
                if beat.cancel_requested:
                    ctx.stop(CANCELLED)
                    return
            await asyncio.sleep(interval)

    async def _report(self, outcome: Outcome) -> str | None:
        """Send the outcome; the task's status the server answered (None: nothing was sent)."""
        if outcome.kind not in ("completed", "failed", TIMED_OUT):
            return None
        # This run's own lease token: if its lease ran out and this worker claimed the task
        # again, the client remembers the newer claim's token, which this run must not use.
        report = partial(self.reporter.report, lease_token=self.task.lease_token)
        try:
            if outcome.kind == "completed":
                try:
                    return await report(self.task.id, success=True, result=outcome.result)
                except (TypeError, ValueError) as exc:  # the result cannot be sent as JSON
                    outcome = Outcome("failed", error=f"the handler's result is not JSON: {exc}")
            return await report(self.task.id, success=False, error=outcome.error or "failed")
        except LeaseLostError:
            return LEASE_LOST
        except TaskManagerError as exc:
            log.error(
                "task %d: could not report %s (%s); its lease will bring it back",
                self.task.id,
                outcome.kind,
                exc,
                extra=self._fields(),
            )
            return "unreported"

    def _fields(self, **more: Any) -> dict[str, Any]:
        return {
            "task_id": self.task.id,
            "task_type": self.task.type,
            "attempt": self.task.attempts,
            "worker_id": self.worker_id,
            **more,
        }

    def _log(self, outcome: Outcome, status: str | None, seconds: float) -> None:
        # The error's last line names the exception ("ValueError: ..."); the rest is traceback.
        summary = (outcome.error or "").strip().rpartition("\n")[2] or None
        fields = self._fields(outcome=outcome.kind, status=status, duration=round(seconds, 4), error=summary)
        log.log(
            logging.INFO if outcome.kind == "completed" else logging.WARNING,
            "task %d %s: %s%s in %.3f s",
            self.task.id,
            self.task.type,
            outcome.kind,
            f" ({summary})" if summary else "",
            seconds,
            extra=fields,
        )


__all__ = ["Execution", "Outcome", "TaskCancelled"]
