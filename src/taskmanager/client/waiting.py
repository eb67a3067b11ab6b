"""Waiting for a task to end, with no I/O: the client asks for the next call (a
``GET /tasks/{id}/wait`` of at most ``MAX_WAIT_SECONDS``), sends it and hands the answer back,
until the task is done or the caller's own timeout has run out."""

from __future__ import annotations

import math
from collections.abc import Callable

from taskmanager.client.models import WaitedTask
from taskmanager.client.protocol import Call

#: The longest one ``GET /tasks/{id}/wait`` holds its request (API.md B.5).
MAX_WAIT_SECONDS = 60.0


class TaskWaiter:
    """The state of one wait: when the caller stops waiting (``timeout`` None: never) and the
    task as last seen. ``now`` is the caller's monotonic clock, in seconds."""

    def __init__(self, wait: Callable[[float], Call[WaitedTask]], timeout: float | None, now: float) -> None:
        if timeout is not None and timeout < 0:
            raise ValueError("timeout must be 0 or more")
        self._wait = wait
        self._deadline = math.inf if timeout is None else now + timeout
        self._first = True
        self.task: WaitedTask | None = None

    def next_call(self, now: float) -> Call[WaitedTask] | None:
        """The next wait request, or None when the task is done or the caller's time is up."""
        if self.task is not None and self.task.done:
            return None
        remaining = self._deadline - now
        if remaining <= 0 and not self._first:
            return None
        self._first = False
        return self._wait(max(0.0, min(MAX_WAIT_SECONDS, remaining)))

    def take(self, task: WaitedTask) -> None:
        self.task = task

    @property
    def result(self) -> WaitedTask:
        assert self.task is not None, "no wait was sent"
        return self.task


__all__ = ["MAX_WAIT_SECONDS", "TaskWaiter"]
