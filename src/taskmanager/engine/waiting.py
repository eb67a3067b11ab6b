"""Waiting for a task to end (``GET /tasks/{id}/wait``) without a polling loop.

A waiter takes a ticket of the engine's ``ended`` signal *before* it reads the task, so an end
that races with the read still wakes it (the same hand-off as a long-polling claim,
``signal.py``). The signal is notified in this process by every change that makes a task terminal,
and from other processes by the store (``Store.listen_ends``: PostgreSQL NOTIFY on the ends
channel, sent in the statement that ends the task if a waiter marked it first with
``Store.await_end``; a SQLite file's watcher). Where no other
process can wake it (MySQL/MariaDB), a waiter reads its task again every
``Store.end_poll_interval`` seconds.

A task can also end by time alone (its lease runs out on its last attempt, or it expires while
pending); a waiter sleeps no longer than until that moment, and reading the task then applies it.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable

from taskmanager.engine.records import TERMINAL_STATUSES, Task, TaskStatus
from taskmanager.engine.replies import Reply
from taskmanager.engine.transitions import Transitions
from taskmanager.engine.wire import task_data

#: The longest a wait may hold its request, and the default (API.md B.5).
MAX_WAIT_SECONDS = 60
DEFAULT_WAIT_SECONDS = 30
#: Seconds between two looks at whether a waiting caller hung up (no database read).
GONE_CHECK_INTERVAL = 1.0


async def wait_for_end(
    core: Transitions, task_id: int, seconds: float, gone: Callable[[], Awaitable[bool]] | None = None
) -> Reply:
    """The task once it is terminal, or as it is after ``seconds``; ``gone`` tells whether
    the caller has hung up (then the wait stops at its next wake-up)."""
    if seconds > 0 and not core.listening:
        await core.start()  # hosts that never run the app's start-up hook (WSGI adapters)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    if seconds > 0:
        await core.store.await_end(task_id)  # before the first read, so its end is announced
    while True:
        ticket = core.ended.ticket()  # taken before reading, so no end is missed
        task = await core.current(task_id)
        done = task.status in TERMINAL_STATUSES
        now = loop.time()
        if done or now >= deadline:
            break
        poll = core.store.end_poll_interval
        wake_at = now + min(deadline - now, _until_due(core, task), math.inf if poll is None else poll)
        if await _sleep(core, ticket, wake_at, gone):
            break  # the caller hung up: nobody reads an answer
    message = "Task finished" if done else "Task not finished yet"
    return Reply(message, {**task_data(task), "done": done})


async def _sleep(
    core: Transitions, ticket: asyncio.Event, wake_at: float, gone: Callable[[], Awaitable[bool]] | None
) -> bool:
    """Sleep until ``ticket`` is notified or ``wake_at`` (loop time), asking every
    ``GONE_CHECK_INTERVAL`` whether the caller hung up (that reads the socket, not the database);
    whether it did."""
    loop = asyncio.get_running_loop()
    while not ticket.is_set() and (left := wake_at - loop.time()) > 0:
        await core.ended.wait(ticket, min(left, GONE_CHECK_INTERVAL))
        if gone is not None and not ticket.is_set() and await gone():
            return True
    return False


def _until_due(core: Transitions, task: Task) -> float:
    """Seconds until the task's own deadline can end it (inf: it has none)."""
    due = None
    if task.status == TaskStatus.CLAIMED:
        due = task.lease_expires_at
    elif task.status == TaskStatus.PENDING:
        due = task.expires_at
    if due is None:
        return float("inf")
    return max(0.0, (due - core.clock.now()).total_seconds()) + 0.01


__all__ = ["DEFAULT_WAIT_SECONDS", "MAX_WAIT_SECONDS", "wait_for_end"]
