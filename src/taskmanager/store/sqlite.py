"""SqliteStore: the shared store, plus a file's watcher and a single create on the driver.

SQLite serialises writers (``BEGIN IMMEDIATE``), so a claim's plain SELECT then UPDATE is atomic
and needs no row locks. Another process's new tasks are noticed by watching the file while a
claimer waits (``watch.py``), and any commit while a request waits for a task to end; an
in-memory database has no other process.

A single create (the path one producer takes for every task) runs its statements on the stdlib
driver, compiled once from the same SQLAlchemy Core statements the shared path executes: the
same transaction, without SQLAlchemy's execution around each of its four statements (ADR 0025).
What it cannot answer by itself — a duplicate, whose holder it would have to read — it leaves to
the shared path.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from sqlalchemy import Dialect

from taskmanager.engine.policy import Defaults
from taskmanager.engine.store import InsertOutcome, InsertResult, InsertTask
from taskmanager.store import operations as ops
from taskmanager.store.base import Listener, SqlStore
from taskmanager.store.compiled import Compiled
from taskmanager.store.database import Database, is_memory
from taskmanager.store.rows import event_row
from taskmanager.store.watch import SqliteCommitWatcher, SqliteWatcher


class _Creates:
    """The statements of a single create, for the driver (``SqliteStore.insert_tasks``)."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.revision = Compiled.of(ops.TYPE_REVISION, dialect, processed=True)
        self.holder = Compiled.of(ops.KEY_HOLDER, dialect, processed=True)
        self.pending = Compiled.of(ops.PENDING_COUNT, dialect, processed=True)
        #: The inserts by the columns they write (one shape each, in practice).
        self._inserts: dict[tuple[Any, tuple[str, ...]], Compiled] = {}

    def _run(self, conn: sqlite3.Connection, table_insert: Any, values: dict[str, Any]) -> int | None:
        """``table_insert`` (``ops.INSERT_TASK`` or ``ops.INSERT_HISTORY``) of ``values``; the
        new row's id."""
        shape = (table_insert, tuple(values))
        prepared = self._inserts.get(shape)
        if prepared is None:
            prepared = self._inserts[shape] = Compiled.of(
                table_insert, self.dialect, shape[1], processed=True
            )
        return conn.execute(prepared.sql, prepared.args(values)).lastrowid

    def insert(self, item: InsertTask, conn: sqlite3.Connection) -> InsertResult | None:
        """The item inserted, or refused; None where the shared path must answer (a duplicate)."""
        if item.type_revision is not None:
            found = conn.execute(self.revision.sql, self.revision.args({"id": item.type_id})).fetchone()
            if found is None or found[0] != item.type_revision:
                return InsertResult(InsertOutcome.STALE_TYPE, None)
        if item.dedupe_lock is not None:
            key = {"type_id": item.type_id, "lock": item.dedupe_lock}
            if conn.execute(self.holder.sql, self.holder.args(key)).fetchone() is not None:
                return None
        if item.max_pending is not None:
            (count,) = conn.execute(self.pending.sql, self.pending.args({"type_id": item.type_id})).fetchone()
            if count >= item.max_pending:
                return InsertResult(InsertOutcome.QUEUE_FULL, None)
        task_id = self._run(conn, ops.INSERT_TASK, ops.task_values(item))
        assert task_id is not None
        if item.event is not None:
            self._run(conn, ops.INSERT_HISTORY, event_row(task_id, item.event, item.now))
        return ops.created(item, task_id)


class SqliteStore(SqlStore):
    explain_prefix = "EXPLAIN QUERY PLAN "

    def __init__(self, database: Database, defaults: Defaults | None = None) -> None:
        super().__init__(database, defaults)
        assert database.sync_engine is not None
        self._creates = _Creates(database.sync_engine.dialect)

    async def insert_tasks(self, items: Sequence[InsertTask]) -> list[InsertResult]:
        if len(items) == 1 and not items[0].depends_on:
            done = await self.db.write_on_driver(partial(self._creates.insert, items[0]))
            if done is not None:
                return [done]
        return await super().insert_tasks(items)

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
