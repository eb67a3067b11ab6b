"""SqliteStore: the shared store as it is, plus a file's watcher.

SQLite serialises writers (``BEGIN IMMEDIATE``), so a claim's plain SELECT then UPDATE is atomic
and needs no row locks. Another process's new tasks are noticed by watching the file while a
claimer waits (``watch.py``), and any commit while a request waits for a task to end; an
in-memory database has no other process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from taskmanager.store.base import Listener, SqlStore
from taskmanager.store.database import is_memory
from taskmanager.store.watch import SqliteCommitWatcher, SqliteWatcher


class SqliteStore(SqlStore):
    explain_prefix = "EXPLAIN QUERY PLAN "

    def listener_for(self, on_work: Callable[[], None], waiting: threading.Event) -> Listener | None:
        if is_memory(self.db.url):
            return None
        return SqliteWatcher(str(self.db.url.database), on_work, waiting)  # a file's path

    def ends_listener_for(self, on_end: Callable[[], None], waiting: threading.Event) -> Listener | None:
        if is_memory(self.db.url):
            return None  # one process: its own ends wake its waiters
        return SqliteCommitWatcher(str(self.db.url.database), on_end, waiting)

    @property
    def history_announced(self) -> bool:
        # The commit watcher of ``listen_ends`` fires on any commit of any process.
        return self.ends_listener is not None


__all__ = ["SqliteStore"]
