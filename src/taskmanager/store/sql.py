"""SqlStore: the ``Store`` protocol on SQLAlchemy Core, one implementation for every database
(on PostgreSQL, create, claim and complete go to ``store/pg.py`` instead: ADR 0007).

Each operation is a plain function on a synchronous ``Connection`` that ``Database.run`` executes
inside one transaction (in a thread for SQLite, through the async bridge for the others). What
differs between databases is small: SQLite serialises writers (BEGIN IMMEDIATE) so a plain SELECT
then UPDATE is atomic; PostgreSQL and MySQL lock the chosen rows with ``FOR UPDATE SKIP LOCKED``
so concurrent claimers never wait on, or take, the same row.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import Select, or_, select, text
from sqlalchemy.engine import Connection

from taskmanager.engine.policy import Defaults
from taskmanager.engine.records import Event, Task, TaskStatus, TaskType
from taskmanager.engine.store import (
    Ahead,
    ClaimAhead,
    ClaimQuery,
    Decide,
    InsertResult,
    InsertTask,
    ListResult,
    SaveType,
    SettleQuery,
    TaskQuery,
)
from taskmanager.store import operations as ops
from taskmanager.store.database import Database, is_memory
from taskmanager.store.keys import KeyOperations
from taskmanager.store.listen import PgListener
from taskmanager.store.operations import SHARED_POLL_INTERVAL, WORK_CHANNEL
from taskmanager.store.pg import PgHotPath
from taskmanager.store.rows import TT, Selects, T, task_from_row, type_from_row
from taskmanager.store.tables import tasks
from taskmanager.store.watch import SqliteWatcher

R = TypeVar("R")


class SqlStore(KeyOperations):
    """The one ``Store`` (and ``KeyStore``) implementation, for SQLite, PostgreSQL and MySQL/MariaDB."""

    def __init__(self, database: Database, defaults: Defaults | None = None, *, pool_size: int = 10) -> None:
        self.db = database
        defaults = defaults or Defaults()
        self.q = Selects.with_defaults(defaults)
        self.listener: PgListener | SqliteWatcher | None = None
        # PostgreSQL runs create, claim and complete on asyncpg directly (store/pg.py).
        self.hot = PgHotPath(database.url, defaults, pool_size) if database.dialect == "postgresql" else None

    def _lock(self, query: Select[Any], *, skip_locked: bool) -> Select[Any]:
        return query.with_for_update(skip_locked=skip_locked) if self.db.locks_rows else query

    async def _read(self, fn: Callable[[Connection], R]) -> R:
        return await self.db.run(fn, write=False)

    async def _write(self, fn: Callable[[Connection], R]) -> R:
        return await self.db.run(fn, write=True)

    async def ping(self) -> None:
        if self.hot is not None:
            await self.hot.ping()
        else:
            await self._read(lambda conn: conn.execute(text("SELECT 1")).scalar())

    async def close(self) -> None:
        if self.listener is not None:
            await self.listener.stop()
        if self.hot is not None:
            await self.hot.close()
        await self.db.dispose()

    # -- task types -----------------------------------------------------------------------------

    async def get_type(self, name: str) -> TaskType | None:
        if self.hot is not None:
            return await self.hot.get_type(name)
        return await self._read(lambda conn: ops.one_type(conn, self.q, name))

    async def list_types(self, active_only: bool) -> list[TaskType]:
        query = self.q.task_type.order_by(TT.name)
        if active_only:
            query = query.where(TT.is_active.is_(True))
        return await self._read(lambda conn: [type_from_row(row) for row in conn.execute(query)])

    async def save_type(self, params: SaveType) -> tuple[TaskType, bool]:
        for _ in range(3):
            saved = await self._write(partial(ops.save_type, self.q, params))
            if saved is not None:
                return saved
        raise RuntimeError(f"could not save task type {params.name!r}")

    async def set_type_active(self, name: str, active: bool, now: datetime) -> TaskType | None:
        return await self._write(partial(ops.set_type_active, self.q, name, active, now))

    # -- tasks ----------------------------------------------------------------------------------

    async def insert_tasks(self, items: Sequence[InsertTask]) -> list[InsertResult]:
        if self.hot is not None and len(items) == 1:
            return [await self.hot.insert_one(items[0])]
        return await self._write(partial(ops.insert_tasks, self.q, items))

    async def get_task(self, task_id: int) -> Task | None:
        if self.hot is not None:
            return await self.hot.get_task(task_id)
        return await self._read(partial(ops.get_task, self.q, task_id))

    async def list_tasks(self, query: TaskQuery) -> ListResult:
        return await self._read(partial(ops.list_tasks, self.q, query))

    async def list_events(self, task_id: int) -> list[Event]:
        return await self._read(partial(ops.list_events, task_id))

    async def claim_tasks(
        self, query: ClaimQuery, decide: Decide, ahead: ClaimAhead | None = None
    ) -> list[Task]:
        if self.hot is not None:
            return await self.hot.claim(query, decide, ahead)
        # One transaction either way here: ``decide`` claims each row as ``ahead`` would.
        conditions = [
            T.status == TaskStatus.PENDING.value,
            or_(T.run_after.is_(None), T.run_after <= query.now),
            or_(T.expires_at.is_(None), T.expires_at > query.now),
            or_(T.assigned_to.is_(None), T.assigned_to == query.worker_id),
            T.type_id.in_(ops.claimable_types(query)),
        ]
        if query.type_ids is not None:
            conditions.append(T.type_id.in_(query.type_ids))
        order = [T[name].desc() if descending else T[name].asc() for name, descending in query.order]
        # MariaDB would otherwise join task_types first and sort every pending row, locking them
        # all (SKIP LOCKED then hands concurrent claimers nothing); STRAIGHT_JOIN keeps it on the
        # claim index, reading rows in order and stopping at the limit.
        pick = (
            select(T.id)
            .prefix_with("STRAIGHT_JOIN", dialect="mysql")
            .prefix_with("STRAIGHT_JOIN", dialect="mariadb")
            .where(*conditions)
            .order_by(*order)
            .limit(query.limit)
        )
        pick = self._lock(pick, skip_locked=True)
        # PostgreSQL locks just the task rows of a join (FOR UPDATE OF), so one statement picks,
        # locks and reads them; SQLite needs no lock. MySQL cannot limit the lock to one table of
        # a join (it would lock the shared task_types row), so it locks ids first, then reads.
        one_step = self.db.dialect != "mysql"
        rows = self.q.task.where(*conditions).order_by(*order).limit(query.limit)
        if self.db.locks_rows:
            rows = rows.with_for_update(skip_locked=True, of=tasks)

        def claim(conn: Connection) -> list[Task]:
            if one_step:
                locked = [task_from_row(row) for row in conn.execute(rows)]
            else:
                locked = ops.load(conn, self.q, list(conn.execute(pick).scalars()))
            return ops.apply(conn, locked, decide, query.now)

        return await self._write(claim)

    async def transition_task(
        self, task_id: int, decide: Decide, now: datetime, ahead: Ahead | None = None
    ) -> Task | None:
        if self.hot is not None:
            if (
                ahead is not None
                and (done := await self.hot.transition_ahead(task_id, ahead, now)) is not None
            ):
                return done
            found = await self.hot.transition([task_id], decide, now)
            return found[0] if found else None
        # One transaction either way here: ``decide`` gives what ``ahead`` would on a matching row.
        pick = self._lock(select(T.id).where(T.id == task_id), skip_locked=False)

        def transition(conn: Connection) -> Task | None:
            if conn.execute(pick).first() is None:
                return None
            (task,) = ops.apply(conn, ops.load(conn, self.q, [task_id]), decide, now)
            return task

        return await self._write(transition)

    async def transition_tasks(self, task_ids: Sequence[int], decide: Decide, now: datetime) -> list[Task]:
        if self.hot is not None:
            return await self.hot.transition(task_ids, decide, now)
        # Lock in id order, so two batches over the same tasks cannot deadlock each other.
        ordered = sorted(set(task_ids))
        pick = self._lock(select(T.id).where(T.id.in_(ordered)).order_by(T.id), skip_locked=False)

        def transition(conn: Connection) -> list[Task]:
            found = list(conn.execute(pick).scalars())
            return ops.apply(conn, ops.load(conn, self.q, found), decide, now)

        return await self._write(transition)

    @property
    def wake_interval(self) -> float:
        return self.listener.interval if self.listener else SHARED_POLL_INTERVAL

    async def listen(self, on_work: Callable[[], None], waiting: threading.Event) -> None:
        """Call ``on_work`` whenever another process announces work (PostgreSQL LISTEN) or, on a
        SQLite file, creates a task while a claimer waits (``store/watch.py``)."""
        if self.listener is not None:
            return
        if self.db.dialect == "postgresql":
            self.listener = PgListener(self.db.url, WORK_CHANNEL, on_work)
        elif self.db.dialect == "sqlite" and not is_memory(self.db.url):
            self.listener = SqliteWatcher(str(self.db.url.database), on_work, waiting)  # a file's path
        else:
            return
        await self.listener.start()

    async def settle_tasks(self, query: SettleQuery, decide: Decide) -> int:
        due = ops.due(query)
        if await self._read(lambda conn: conn.execute(due.limit(1)).first()) is None:
            return 0  # the common case: nothing is due, and no write lock was taken
        pick = self._lock(due, skip_locked=True)

        def settle(conn: Connection) -> int:
            locked = ops.load(conn, self.q, list(conn.execute(pick).scalars()))
            changed = ops.apply(conn, locked, decide, query.now)
            return sum(1 for before, after in zip(locked, changed, strict=True) if before != after)

        return await self._write(settle)

    async def delete_task(self, task_id: int) -> bool:
        return await self._write(partial(ops.delete_task, task_id))


__all__ = ["SqlStore"]
