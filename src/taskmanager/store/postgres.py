"""PostgresStore: the shared store, with the operations every task goes through on raw asyncpg.

SQLAlchemy's async bridge costs more CPU per statement than the statement itself on these paths
(ADR 0007, 0012). So create, claim, the compare-and-set of a single task, and the reads of one task
or type run on asyncpg directly, over a pool of their own (``pgpool.py``), each as one statement
built with SQLAlchemy Core and compiled once per shape (``pgstatements.py``):

* **create** — the INSERT (unless a task holds the dedupe key, checked first so a duplicate does
  not spend an id; ``ON CONFLICT DO NOTHING`` for one that commits meanwhile; guarded by the
  ``max_pending`` count), its history event and the NOTIFY that wakes claimers;
* **claim** — pick with ``FOR UPDATE OF tasks SKIP LOCKED``, update, history, in CTEs;
* **update_task** — ``UPDATE … WHERE <expected> RETURNING``, its history and NOTIFY in CTEs;
* **update_tasks** — a batch whose changes share one shape on distinct tasks (a worker's batch of
  successes) as one statement: ``update_task``'s, with each row's values unnested; any other batch
  (the expiry sweep, mixed outcomes) with its rows locked in id order and read, the changes judged
  on them (``verbs.plan_updates``), then one UPDATE per shape of change and one history INSERT
  with their values unnested, in one transaction;
* **get_tasks** — one statement.

Everything else (batch creates, listing, types, keys) is the shared SQLAlchemy implementation.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Hashable, Sequence
from operator import attrgetter
from typing import Any

import asyncpg
from sqlalchemy import Select, select
from sqlalchemy.engine import Connection

from taskmanager.engine.policy import Defaults
from taskmanager.engine.records import Task, TaskType
from taskmanager.engine.store import (
    ClaimParams,
    ClaimQuery,
    InsertOutcome,
    InsertResult,
    InsertTask,
    PurgeQuery,
    TaskChange,
)
from taskmanager.errors import Unavailable
from taskmanager.store import operations as ops
from taskmanager.store import verbs
from taskmanager.store.base import Listener, SqlStore
from taskmanager.store.database import (
    ASYNCPG_CONNECTION_ERRORS,
    CONNECT_TIMEOUT,
    DEADLOCK_RETRIES,
    STATEMENT_TIMEOUT,
    Database,
)
from taskmanager.store.listen import PgListener
from taskmanager.store.operations import ENDS_CHANNEL, WORK_CHANNEL, created
from taskmanager.store.pgpool import ConnectionPool
from taskmanager.store.pgstatements import PgStatements, Statement
from taskmanager.store.rows import T, task_from_row, type_from_row
from taskmanager.store.tables import tasks

#: A claim must walk the claim index in order and stop at its limit, however stale the table's
#: statistics: a queue table changes faster than autovacuum analyses it, and with estimates from
#: a nearly empty table the planner collects and sorts every pending row instead (the numbers
#: are in ADR 0007). These statements need no sort and no bitmap scan, so on the pool's
#: connections both are discouraged.
PLANNER_SETTINGS = {"enable_sort": "off", "enable_bitmapscan": "off"}
#: Times a create whose dedupe key was released between its INSERT and its lookup is tried again.
CREATE_ATTEMPTS = 3

#: Errors meaning the database or the connection to it is gone (a 503, never a 500).
_CONNECTION_ERRORS = (OSError, TimeoutError, *ASYNCPG_CONNECTION_ERRORS)


class PostgresStore(SqlStore):
    def __init__(self, database: Database, defaults: Defaults | None = None, *, pool_size: int = 10) -> None:
        super().__init__(database, defaults)
        self._dsn = database.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._pool = ConnectionPool(self._connect, pool_size, timeout=CONNECT_TIMEOUT)
        self.statements = PgStatements(self.defaults)

    async def _connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(
            self._dsn,
            timeout=CONNECT_TIMEOUT,
            command_timeout=STATEMENT_TIMEOUT,
            server_settings=PLANNER_SETTINGS,
        )

    async def close(self) -> None:
        await self._pool.close()
        await super().close()

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; a database that cannot be reached is 503 ``unavailable``.

        An error the database reported for a statement leaves the connection usable (a
        transaction it was in has been rolled back by then), so it goes back to the pool; after
        anything else — the connection dropped, the operation cancelled, an error of ours —
        its state is unknown, and it is closed (the pool opens a fresh one when needed)."""
        pool = self._pool
        try:
            conn = await pool.acquire()
        except _CONNECTION_ERRORS as exc:
            raise Unavailable("Database unavailable") from exc
        try:
            yield conn
        except _CONNECTION_ERRORS as exc:
            pool.release(conn, discard=True)
            raise Unavailable("Database unavailable") from exc
        except asyncpg.PostgresError:
            pool.release(conn)
            raise
        except BaseException:
            pool.release(conn, discard=True)
            raise
        pool.release(conn)

    async def _fetch_rows(self, statement: Statement) -> list[asyncpg.Record]:
        """The rows of a read. A read is safe to repeat, so one that met a connection the database
        had dropped while it sat in the pool (a restart, a killed backend) is tried once more."""
        for attempt in range(2):
            try:
                async with self._connection() as conn:
                    rows: list[asyncpg.Record] = await conn.fetch(statement.sql, *statement.args)
                    return rows
            except Unavailable:
                if attempt:
                    raise
        raise AssertionError("unreachable")

    async def _fetch_one(self, statement: Statement) -> asyncpg.Record | None:
        rows = await self._fetch_rows(statement)
        return rows[0] if rows else None

    async def ping(self) -> None:
        async with self._connection() as conn:
            await conn.fetchval("SELECT 1")

    async def get_type(self, name: str) -> TaskType | None:
        row = await self._fetch_one(self.statements.type_by_name(name))
        return None if row is None else type_from_row(row)

    async def get_task(self, task_id: int) -> Task | None:
        row = await self._fetch_one(self.statements.task_by_id(task_id))
        return None if row is None else task_from_row(row)

    async def get_tasks(self, task_ids: Sequence[int]) -> list[Task]:
        rows = await self._fetch_rows(self.statements.tasks_by_ids(sorted(set(task_ids))))
        return [task_from_row(row) for row in rows]

    async def insert_tasks(self, items: Sequence[InsertTask]) -> list[InsertResult]:
        if len(items) != 1 or items[0].depends_on:
            # A batch: a few statements in one transaction; a task with dependencies: its marks
            # and edges beside the insert (not the hot path).
            return await super().insert_tasks(items)
        return [await self._insert_one(items[0])]

    async def _insert_one(self, item: InsertTask) -> InsertResult:
        statement = self.statements.create(item)
        lock = item.dedupe_lock
        async with self._connection() as conn:
            for _ in range(CREATE_ATTEMPTS):
                task_id, _woken, stale = await conn.fetchrow(statement.sql, *statement.args)
                if task_id is not None:
                    return created(item, task_id)
                if stale:
                    return InsertResult(InsertOutcome.STALE_TYPE, None)
                if lock is not None:
                    found = self.statements.task_by_dedupe_lock(item.type_id, lock)
                    row = await conn.fetchrow(found.sql, *found.args)
                    if row is not None:
                        return InsertResult(InsertOutcome.DUPLICATE, task_from_row(row))
                if item.max_pending is not None:
                    return InsertResult(InsertOutcome.QUEUE_FULL, None)
                # The key's holder let it go between the INSERT and the lookup: try again.
        raise RuntimeError("could not create the task: its dedupe key kept changing hands")

    async def claim_tasks(self, query: ClaimQuery, params: ClaimParams) -> list[Task]:
        statement = self.statements.claim(query, params)
        async with self._connection() as conn:
            rows = await conn.fetch(statement.sql, *statement.args)
        if rows and rows[0]["limited"]:
            # A type with a max_running is in reach: the shared claim, its types locked (B.9).
            return await super().claim_tasks(query, params)
        claimed = [task_from_row(row) for row in rows if row["claimed_id"] is not None]
        return _in_order(claimed, query.order)

    def build_claim(self, query: ClaimQuery, skip: bool) -> Select[Any]:
        """The shared claim's pick (a claim within ``max_running``): ids locked with ``SKIP
        LOCKED``, then read, as MySQL's."""
        return (
            select(T.id)
            .where(*verbs.claim_conditions(query, verbs.SharedBinds()), *verbs.skipping(skip))
            .order_by(*verbs.claim_order(query))
            .limit(query.limit)
            .with_for_update(skip_locked=True, of=tasks)
        )

    def pick(self, conn: Connection, query: ClaimQuery, skip_types: Sequence[int] = ()) -> list[Task]:
        statement, values = self.claim_statement(query, skip_types), verbs.claim_values(query, skip_types)
        return ops.load(conn, self.q, list(conn.execute(statement, values).scalars()))

    async def explain_claim(self, query: ClaimQuery, params: ClaimParams) -> list[tuple[Any, ...]]:
        return await self._explain(self.statements.claim(query, params))

    async def explain_purge(self, query: PurgeQuery) -> list[tuple[Any, ...]]:
        """The plan of the retention sweep's statement (EXPLAIN only: nothing is deleted)."""
        return await self._explain(self.statements.purge(query))

    async def explain_updates(self, changes: Sequence[TaskChange]) -> list[tuple[Any, ...]]:
        """The plan of a batch compare-and-set of one shape (``update_many``; EXPLAIN only:
        nothing is written)."""
        return await self._explain(self._update_many_statement(changes))

    async def _explain(self, statement: Statement) -> list[tuple[Any, ...]]:
        async with self._connection() as conn:  # EXPLAIN without ANALYZE runs nothing
            return [(row[0],) for row in await conn.fetch("EXPLAIN " + statement.sql, *statement.args)]

    async def update_task(self, change: TaskChange) -> Task | None:
        statement = self.statements.update(change)
        async with self._connection() as conn:
            row = await conn.fetchrow(statement.sql, *statement.args)
        return None if row is None else task_from_row(row)

    async def update_tasks(self, changes: Sequence[TaskChange]) -> list[Task | None]:
        """A batch of one shape on distinct tasks (a worker's successes, the usual batch
        complete) is one statement, ``update_many``: the compare-and-set of each row in SQL, as
        a single change's. Any other batch runs in one transaction: its rows locked in id order
        and read, the changes judged on them (``verbs.plan_updates``), then one UPDATE per shape
        of change, one INSERT of the history rows and the NOTIFY, each with its values unnested."""
        if not changes:
            return []
        statements = self.statements
        if _one_shape(changes, statements.update_shape):
            return await self._update_many(changes)
        locked = statements.tasks_by_ids(sorted({change.task_id for change in changes}), lock=True)
        async with self._connection() as conn, conn.transaction():
            rows = await conn.fetch(locked.sql, *locked.args)
            plan = verbs.plan_updates(changes, [task_from_row(row) for row in rows])
            writes = [statements.update_rows(columns, group) for columns, group in plan.updates.items()]
            if plan.events:
                writes.append(statements.history_rows(plan.events))
            if plan.deliveries:
                writes.append(statements.delivery_rows(plan.deliveries))
            if plan.wakes:
                writes.append(statements.notify())
            if plan.ends:
                writes.append(statements.notify_ended())
            for write in writes:
                await conn.execute(write.sql, *write.args)
        return plan.results

    def _update_many_statement(self, changes: Sequence[TaskChange]) -> Statement:
        # The rows go in id order, so two batches over the same tasks lock them in the same order;
        # should the plan take them otherwise and deadlock, the statement is whole or nothing,
        # and run again (``_update_many``).
        return self.statements.update_many(sorted(changes, key=attrgetter("task_id")))

    async def _update_many(self, changes: Sequence[TaskChange]) -> list[Task | None]:
        statement = self._update_many_statement(changes)
        for attempt in range(DEADLOCK_RETRIES):
            try:
                async with self._connection() as conn:
                    rows = await conn.fetch(statement.sql, *statement.args)
                break
            except asyncpg.DeadlockDetectedError:
                if attempt == DEADLOCK_RETRIES - 1:
                    raise
        after = {task.id: task for task in map(task_from_row, rows)}
        return [after.get(change.task_id) for change in changes]

    async def purge_tasks(self, query: PurgeQuery) -> int:
        """One statement per batch on asyncpg (``PgStatements.purge``): the sweep runs on the
        server's event loop, and the shared path's SQL building would hold it up for each batch."""
        if not query.retention.due:
            return 0
        statement = self.statements.purge(query)
        async with self._connection() as conn:
            return len(await conn.fetch(statement.sql, *statement.args))

    async def await_end(self, task_id: int) -> None:
        """Mark the task awaited: its end is then NOTIFYed (``PgStatements.await_end``). The
        UPDATE waits for a statement ending the task at that moment, so the read that follows
        sees either the end or a mark the ending statement will see."""
        statement = self.statements.await_end(task_id)
        async with self._connection() as conn:
            await conn.execute(statement.sql, *statement.args)

    def listener_for(self, on_work: Callable[[], None], waiting: threading.Event) -> Listener | None:
        return PgListener(self.db.url, WORK_CHANNEL, on_work)

    def ends_listener_for(self, on_end: Callable[[], None], waiting: threading.Event) -> Listener | None:
        # A second LISTEN connection: ends are heard apart from work, so a complete never wakes
        # idle claimers, and a create never wakes waiters.
        return PgListener(self.db.url, ENDS_CHANNEL, on_end)

    async def history_mark(self) -> int | None:
        """The history's id sequence: moved by every history write of every process (and by
        rolled-back ones: a read for nothing), read without touching the table. A NOTIFY from
        claims and progress was measured and rejected (ADR 0017): it serialises their commits."""
        async with self._connection() as conn:
            return int(await conn.fetchval(HISTORY_MARK))


#: The last value of ``task_history.id``'s sequence (0 before the first row ever written).
HISTORY_MARK = (
    "SELECT coalesce(pg_sequence_last_value(pg_get_serial_sequence('task_history', 'id')::regclass), 0)"
)


def _one_shape(changes: Sequence[TaskChange], shape_of: Callable[[TaskChange], Hashable]) -> bool:
    """Whether ``changes`` touch distinct tasks and share one statement shape."""
    if len({change.task_id for change in changes}) != len(changes):
        return False
    first = shape_of(changes[0])
    return all(shape_of(change) == first for change in changes[1:])


def _in_order(claimed: list[Task], order: tuple[tuple[str, bool], ...]) -> list[Task]:
    """Claimed tasks in the claim's order (an UPDATE returns its rows in no particular order)."""
    for name, descending in reversed(order):  # a stable sort per key, the least significant first
        claimed.sort(key=attrgetter(name), reverse=descending)
    return claimed


__all__ = ["PLANNER_SETTINGS", "PostgresStore"]
