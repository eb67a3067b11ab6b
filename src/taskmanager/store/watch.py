"""SQLite across processes: a thread that notices tasks created through other connections.

SQLite has no NOTIFY. ``PRAGMA data_version`` on a connection changes whenever another connection
commits to the same database, and it reads only the WAL index in shared memory. Every
``WATCH_INTERVAL`` seconds a thread asks it; when it changed, ``SELECT max(id) FROM tasks`` says
whether the commit created tasks; only then are this process's long-polling claimers woken — within
a ``WATCH_INTERVAL`` of a create in another server process, instead of their
``SHARED_POLL_INTERVAL`` re-check.

Creates are what the watcher looks for because they are the common new work and cheap to see;
every other commit (a claim, a complete) wakes nobody, so idle claimers do not all take the write
lock on each of them. Work that becomes claimable otherwise in another process (a retry, an expired
lease, a scheduled task coming due) is found by the re-check, as before.

The thread looks only while a claimer of this process waits (``waiting``, set by the engine's
``WorkSignal``); otherwise it sleeps on that event, so a server nobody long-polls spends nothing
on it. What its wake-ups cost while one does is measured in ADR 0009.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable

from taskmanager.store.operations import SHARED_POLL_INTERVAL

log = logging.getLogger("taskmanager.store")

#: Seconds between two looks at ``PRAGMA data_version`` (the cross-process wake-up delay).
WATCH_INTERVAL = 0.01
#: Seconds ``start`` waits for the watcher's connection and first look (a locked file may delay
#: them).
START_TIMEOUT = 5.0
_UNSEEN = object()  # the newest task id before the first look (None is an empty table's)
#: What a look saw: ``PRAGMA data_version`` and the newest task id.
_Seen = tuple[int | None, object]


class SqliteWatcher:
    """Calls ``on_work`` on the event loop that started it when a task was created in the file
    while ``waiting`` was set."""

    def __init__(self, path: str, on_work: Callable[[], None], waiting: threading.Event) -> None:
        self._path = path
        self._on_work = on_work
        self._waiting = waiting
        self._stop = threading.Event()
        self._ready = threading.Event()  # the first look is taken (or cannot be)
        self._looked = threading.Event()  # set after every look (a test clears it to await one)
        self._asleep = threading.Event()  # set while it sleeps for want of a waiting claimer
        self._thread: threading.Thread | None = None

    @property
    def interval(self) -> float:
        return SHARED_POLL_INTERVAL

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._thread = threading.Thread(
            target=self._run, args=(loop,), name="taskmanager-sqlite-watch", daemon=True
        )
        self._thread.start()
        await asyncio.to_thread(self._ready.wait, START_TIMEOUT)

    async def stop(self) -> None:
        self._stop.set()
        self._waiting.set()  # wakes the thread if it sleeps for want of claimers (it then ends)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            conn = sqlite3.connect(self._path, isolation_level=None)
        except sqlite3.Error as exc:  # claimers keep re-checking every SHARED_POLL_INTERVAL
            log.warning("cannot watch %s for new tasks: %s", self._path, exc)
            self._ready.set()
            return
        try:
            # The first look, before start returns, whether or not a claimer waits: it is what
            # later looks compare with, so a create from then on wakes the first claimer to wait
            # (were it taken only then, a create just before that wait would be the baseline).
            seen = self._look(conn, loop, (None, _UNSEEN))
            self._ready.set()
            self._watch(conn, loop, seen)
        finally:
            self._ready.set()
            conn.close()

    def _look(self, conn: sqlite3.Connection, loop: asyncio.AbstractEventLoop, seen: _Seen) -> _Seen:
        """One look: wake the claimers if tasks were created since ``seen`` (the data version and
        newest id of the last look); what this look saw."""
        version, newest = seen
        try:
            (now,) = conn.execute("PRAGMA data_version").fetchone()
            if now != version:
                (latest,) = conn.execute("SELECT max(id) FROM tasks").fetchone()
                if newest is not _UNSEEN and latest != newest:
                    with contextlib.suppress(RuntimeError):  # the loop closed under us
                        loop.call_soon_threadsafe(self._on_work)
                return now, latest
        except sqlite3.Error as exc:  # busy, or not migrated yet: look again next time
            log.debug("sqlite watcher: %s", exc)
        return seen

    def _watch(self, conn: sqlite3.Connection, loop: asyncio.AbstractEventLoop, seen: _Seen) -> None:
        while not self._stop.is_set():
            if not self._waiting.is_set():
                # Nobody to wake. Looks resume from the last ones seen, so a create made
                # meanwhile wakes the first claimer to wait (it may have claimed it already).
                self._asleep.set()
                self._waiting.wait()
                self._asleep.clear()
                continue
            seen = self._look(conn, loop, seen)
            self._looked.set()
            self._stop.wait(WATCH_INTERVAL)


class SqliteCommitWatcher(SqliteWatcher):
    """Calls ``on_work`` when anything was committed to the file while ``waiting`` was set: the
    wake-up of requests waiting for a task to end (``GET /tasks/{id}/wait``), which re-read their
    task. It looks only while one waits, like the claimers' watcher."""

    def _look(self, conn: sqlite3.Connection, loop: asyncio.AbstractEventLoop, seen: _Seen) -> _Seen:
        version, first = seen
        try:
            (now,) = conn.execute("PRAGMA data_version").fetchone()
        except sqlite3.Error as exc:  # busy: look again next time
            log.debug("sqlite commit watcher: %s", exc)
            return seen
        if first is not _UNSEEN and now != version:
            with contextlib.suppress(RuntimeError):  # the loop closed under us
                loop.call_soon_threadsafe(self._on_work)
        return now, None
