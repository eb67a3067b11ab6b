"""The feed of ``GET /events``: one reader of the history per server process, fanned out.

``Feed`` runs one task while at least one stream is open (none: no task and no reads). It reads
the history rows after its cursor once per wake-up: the claimers' ``work`` signal and the
``ended`` signal of ``GET /tasks/{id}/wait`` (this process's writes, and other processes' by
PostgreSQL NOTIFY or the SQLite file's watchers). A SQLite file's commit watcher hears every
write, so there it reads only when woken. Elsewhere it also looks every ``poll_seconds``, for
the claims and progress of other processes: on PostgreSQL by reading the history's id sequence
(``Store.history_mark``) and the history only if it moved; on MySQL and an in-memory SQLite by
reading the history. Each row is handed to every open
stream whose filter wants it, into that stream's bounded buffer: a stream whose client reads
slower than events arrive fills it and is dropped with a final ``Dropped`` (its client resumes
from its last event id). A stream that starts behind the feed (``Last-Event-ID``) first reads
the history itself, a page at a time, and joins the shared feed once it has caught up, with no
await between its last look and joining, so no event is missed or sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence

from taskmanager.engine.observe import Dropped, FeedFilter, FeedItem, FeedTiming, KeepAlive, event_data
from taskmanager.engine.signal import WorkSignal
from taskmanager.engine.store import FeedEvent, Store

#: How long the feed waits for a wake-up where every write is announced (only a bound).
IDLE_SECONDS = 3600.0


class Reader:
    """One open stream: its filter, the last event id it has been given, its buffer."""

    def __init__(self, cursor: int, wanted: FeedFilter, max_buffer: int) -> None:
        self.cursor = cursor
        self.wanted = wanted
        self.max_buffer = max_buffer
        self.buffer: deque[FeedItem] = deque()
        #: The newest event id when it was dropped (None: not dropped).
        self.dropped_at: int | None = None
        self.arrived = asyncio.Event()

    def offer(self, event: FeedEvent) -> bool:
        """Take ``event`` if it is new to this reader; False: the buffer is full (drop it)."""
        if event.id <= self.cursor:
            return True  # read while catching up
        if self.wanted.wants(event):
            if len(self.buffer) >= self.max_buffer:
                return False
            self.buffer.append(FeedItem(event.id, event.event, event_data(event)))
            self.arrived.set()
        self.cursor = event.id
        return True


class Feed:
    """The process's one reader of the history (see the module's docstring)."""

    def __init__(self, store: Store, signals: Sequence[WorkSignal]) -> None:
        self._store = store
        self._signals = tuple(signals)
        self.timing = FeedTiming()
        self._readers: set[Reader] = set()
        self._cursor = 0
        self._task: asyncio.Task[None] | None = None
        #: History reads by the shared task (tests count them).
        self.reads = 0

    @property
    def readers(self) -> int:
        return len(self._readers)

    async def follow(
        self, after: int, wanted: FeedFilter, timing: FeedTiming, stopping: Callable[[], bool]
    ) -> AsyncIterator[FeedItem | KeepAlive | Dropped]:
        """Events after id ``after`` as any process writes them, a ``KeepAlive`` after each quiet
        ``keepalive_seconds``; ends when ``stopping()`` says so, after ``lifetime``, or after
        ``Dropped``."""
        loop = asyncio.get_running_loop()
        ends = None if timing.lifetime is None else loop.time() + timing.lifetime
        reader = Reader(after, wanted, timing.max_lag)
        caught_up = await self._catch_up(reader, timing)
        if caught_up and isinstance(caught_up[-1], Dropped):  # never joined
            for item in caught_up:
                yield item
            return
        quiet_since = loop.time()
        sent = after
        try:
            for item in caught_up:
                sent = item.id if isinstance(item, FeedItem) else sent
                yield item
            while not stopping() and (ends is None or loop.time() < ends):
                if reader.dropped_at is not None:
                    yield Dropped(sent, reader.dropped_at)
                    return
                if reader.buffer:
                    quiet_since = loop.time()
                    item = reader.buffer.popleft()
                    sent = item.id
                    yield item
                    continue
                if loop.time() - quiet_since >= timing.keepalive_seconds:
                    quiet_since = loop.time()
                    yield KeepAlive()
                reader.arrived.clear()
                # Only a local timer: wake to see ``stopping()``, the keep-alive and the lifetime.
                left = timing.keepalive_seconds - (loop.time() - quiet_since)
                if ends is not None:
                    left = min(left, ends - loop.time())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(reader.arrived.wait(), max(0.0, min(left, timing.poll_seconds)))
        finally:
            self._leave(reader)

    async def _catch_up(self, reader: Reader, timing: FeedTiming) -> list[FeedItem | Dropped]:
        """Read the history from ``reader.cursor`` until it reaches the shared feed's cursor, then
        join; the events read on the way, ending with ``Dropped`` (not joined) if it is too far
        behind."""
        items: list[FeedItem | Dropped] = []
        self.timing = timing
        while not (self._readers and reader.cursor >= self._cursor):
            page = await self._store.events_after(reader.cursor, timing.page)
            for event in page:
                reader.cursor = event.id
                if reader.wanted.wants(event):
                    items.append(FeedItem(event.id, event.event, event_data(event)))
            if len(page) == timing.page:
                newest = await self._store.last_event_id()
                if newest - reader.cursor > timing.max_lag:
                    return [*items, Dropped(reader.cursor, newest)]
                continue
            if not self._readers:
                self._cursor = reader.cursor  # the feed (re)starts where its first reader is
                break
            if not page:
                break  # the rows up to the feed's cursor are gone (deleted with their task)
        self._readers.add(reader)  # no await since the last look: nothing missed, nothing twice
        self._start()
        return items

    def _running(self) -> bool:
        return self._task is not None and not self._task.done()

    def _start(self) -> None:
        if not self._running():
            # A fresh context: the task outlives the request that started it (and its key's scope).
            self._task = asyncio.create_task(
                self._run(), name="taskmanager-feed", context=contextvars.Context()
            )

    def _leave(self, reader: Reader) -> None:
        self._readers.discard(reader)
        if not self._readers and self._task is not None:
            self._task.cancel()  # no stream open: no reads at all
            self._task = None

    async def _run(self) -> None:
        mark: int | None = None
        woken = True
        while self._readers:
            tickets = [signal.ticket() for signal in self._signals]  # before reading: none missed
            # On PostgreSQL, a poll reads the history only if its sequence moved since the last
            # read (the mark is taken before reading, so a write in between is not missed).
            seen, mark = mark, await self._store.history_mark()
            if not woken and mark is not None and mark == seen:
                woken = await self._wait(tickets)
                continue
            page = await self._store.events_after(self._cursor, self.timing.page)
            self.reads += 1
            for event in page:
                self._cursor = event.id
                for reader in list(self._readers):
                    if not reader.offer(event):
                        self._drop(reader, event)
            woken = len(page) == self.timing.page or await self._wait(tickets)

    def _drop(self, reader: Reader, event: FeedEvent) -> None:
        reader.dropped_at = event.id
        reader.buffer.clear()  # its client reads them again when it resumes
        reader.arrived.set()
        self._readers.discard(reader)

    async def _wait(self, tickets: list[asyncio.Event]) -> bool:
        """Wait for a signal (True) or, where the database does not announce every history
        write, ``poll_seconds`` (False)."""
        announced = self._store.history_announced
        seconds = IDLE_SECONDS if announced else self.timing.poll_seconds
        waits = [
            asyncio.ensure_future(signal.wait(ticket, seconds))
            for signal, ticket in zip(self._signals, tickets, strict=True)
        ]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        return announced or any(ticket.is_set() for ticket in tickets)

    async def stop(self) -> None:
        """End the task (the app's shutdown); open streams end by ``stopping()``."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


__all__ = ["Feed", "Reader"]
