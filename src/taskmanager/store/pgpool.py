"""PostgresStore's own connections: a small pool of asyncpg connections, lent one operation at a time.

asyncpg's own pool costs the single-request path about a seventh of the server's CPU (ADR 0011):
given a timeout, its ``acquire`` runs in a task of its own (``wait_for``), and every ``release``
runs in another (``shield``), with a timeout context, a reset and an inactivity timer re-armed.
PostgresStore needs less, because of how it uses a connection — one statement or one transaction,
never a LISTEN, a cursor, a prepared statement of its own or a SET (its planner settings are the
connection's, from its start) — and because it gives back any connection an operation left in an
unknown state instead of repairing it. So here:

* **lend** — the most recently returned idle connection, with no await at all; else a new one
  while fewer than ``size`` are open; else wait (first come, first served) for one to come back.
  Opening and waiting are bounded by ``timeout`` together (``TimeoutError``);
* **give back** — a connection whose operation ended normally goes straight to the first waiter
  or onto the idle stack. One whose operation raised or was cancelled, that is closed, or that
  is still inside a transaction is terminated, and its place freed for a new one;
* **idle** — a connection unused for ``idle_seconds`` is closed when the pool next lends one, so
  a server keeps no more connections than its recent load needed;
* **close** — closes the idle connections; those on loan are terminated when they come back.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable

import asyncpg

#: How long an idle connection is kept (asyncpg's pool default too).
IDLE_SECONDS = 300.0


class PoolClosed(asyncpg.InterfaceError):  # type: ignore[misc]
    """The pool was closed (the server is shutting down)."""


class ConnectionPool:
    def __init__(
        self,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        size: int,
        *,
        timeout: float,
        idle_seconds: float = IDLE_SECONDS,
    ) -> None:
        if size < 1:
            raise ValueError("a pool needs room for one connection at least")
        self._connect = connect
        self.size = size
        self._timeout = timeout
        self._idle_seconds = idle_seconds
        #: Idle connections and when each came back, the most recent last.
        self._idle: list[tuple[asyncpg.Connection, float]] = []
        #: Connections open or being opened, idle or lent.
        self.opened = 0
        #: Borrowers waiting, first first; each is given a connection, or None for a free place.
        self._waiters: deque[asyncio.Future[asyncpg.Connection | None]] = deque()
        self._closed = False
        self._closing: set[asyncio.Task[None]] = set()

    @property
    def idle(self) -> int:
        return len(self._idle)

    async def acquire(self) -> asyncpg.Connection:
        if self._closed:
            raise PoolClosed("the connection pool is closed")
        if self._idle:
            self._expire()
            if self._idle:
                return self._idle.pop()[0]
        async with asyncio.timeout(self._timeout):
            while True:
                if self.opened < self.size:
                    return await self._open()
                found = await self._wait()
                if found is not None:
                    return found

    def release(self, conn: asyncpg.Connection, *, discard: bool = False) -> None:
        """Give ``conn`` back; ``discard`` (its operation failed): close it, free its place."""
        if discard or self._closed or conn.is_closed() or conn.is_in_transaction():
            conn.terminate()
            self.opened -= 1
            self._hand_over(None)
            return
        self._hand_over(conn)

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        self.opened -= len(idle)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(PoolClosed("the connection pool is closed"))
        self._waiters.clear()
        for conn, _ in idle:
            await self._close_quietly(conn)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    async def _open(self) -> asyncpg.Connection:
        self.opened += 1
        try:
            return await self._connect()
        except BaseException:
            self.opened -= 1
            self._hand_over(None)  # a waiter may try in its turn
            raise

    async def _wait(self) -> asyncpg.Connection | None:
        waiter: asyncio.Future[asyncpg.Connection | None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except BaseException:
            if not waiter.done():
                waiter.cancel()
            elif not waiter.cancelled() and waiter.exception() is None:
                # Handed something just as this borrower gave up: pass it on.
                handed = waiter.result()
                if handed is None:
                    self._hand_over(None)
                else:
                    self.release(handed)
            raise

    def _hand_over(self, conn: asyncpg.Connection | None) -> None:
        """``conn`` (or a free place, None) to the first borrower still waiting, else idle."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        if conn is not None:
            self._idle.append((conn, time.monotonic()))

    def _expire(self) -> None:
        """Close the connections idle longer than ``idle_seconds`` (the oldest are first)."""
        cutoff = time.monotonic() - self._idle_seconds
        while self._idle and self._idle[0][1] < cutoff:
            conn, _ = self._idle.pop(0)
            self.opened -= 1
            task = asyncio.ensure_future(self._close_quietly(conn))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def _close_quietly(self, conn: asyncpg.Connection) -> None:
        try:
            await conn.close(timeout=self._timeout)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            conn.terminate()
