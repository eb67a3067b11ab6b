"""PostgreSQL LISTEN: a dedicated connection that turns NOTIFY into in-process wake-ups.

If the connection drops (database restart, killed backend) it is re-opened with backoff; while
it is down, long-polling claimers fall back to polling every ``FALLBACK_INTERVAL`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import asyncpg
from sqlalchemy.engine import URL

log = logging.getLogger("taskmanager.store")

#: Re-check interval while the listener is up: NOTIFY wakes claimers, this only catches work
#: that becomes due by time (scheduled tasks, expired leases).
LISTENING_INTERVAL = 1.0
#: Poll interval while the listener is reconnecting.
FALLBACK_INTERVAL = 0.25
#: Longest wait between reconnection attempts.
MAX_RECONNECT_DELAY = 5.0
#: Longest a server's start-up waits for the listener's first connection attempt.
START_WAIT = 5.0


class PgListener:
    def __init__(self, url: URL, channel: str, on_notify: Callable[[], None]) -> None:
        self._dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._channel = channel
        self._on_notify = on_notify
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        #: Set once the first connection attempt has succeeded or failed.
        self._tried = asyncio.Event()

    @property
    def interval(self) -> float:
        return LISTENING_INTERVAL if self._connected.is_set() else FALLBACK_INTERVAL

    async def start(self) -> None:
        """Start listening; return once the first connection attempt has succeeded (no NOTIFY
        sent after this is missed) or failed (a database that is down does not hold the server's
        start-up: claimers poll until the listener connects), or after ``START_WAIT`` seconds."""
        self._task = asyncio.create_task(self._run(), name=f"taskmanager-pg-listener-{self._channel}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._tried.wait(), START_WAIT)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _notified(self, *_args: Any) -> None:
        self._on_notify()

    async def _run(self) -> None:
        delay = 0.1
        while True:
            lost = asyncio.Event()
            conn = None
            try:
                conn = await asyncpg.connect(self._dsn, timeout=10)
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(self._channel, self._notified)
                self._connected.set()
                self._tried.set()
                self._on_notify()  # anything created while we were away is worth a look
                delay = 0.1
                await lost.wait()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: note it, wait, reconnect
                log.warning("%s listener disconnected: %s", self._channel, type(exc).__name__)
            finally:
                self._tried.set()
                self._connected.clear()
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=2)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RECONNECT_DELAY)
