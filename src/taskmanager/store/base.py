"""SqlStore: the ``Store`` protocol on SQLAlchemy Core, shared by every database family.

Each operation is a plain function on a synchronous ``Connection`` (``operations.py``) that
``Database.run`` executes inside one transaction (in a thread for SQLite, through the async
bridge for the others). A class per family (``sqlite.py``, ``postgres.py``, ``mysql.py``)
overrides only what differs there: how a claim picks its rows, how other processes are heard,
and on PostgreSQL the operations every task goes through (ADR 0012).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial
from typing import Any, Protocol, TypeVar

from sqlalchemy import Select, event, text
from sqlalchemy.engine import Connection

from taskmanager.engine.policy import Defaults
from taskmanager.engine.records import Delivery, Event, Schedule, Task, TaskType
from taskmanager.engine.store import (
    ClaimParams,
    ClaimQuery,
    DeliveryClaim,
    DeliveryOutcome,
    Dependant,
    DependantsQuery,
    DueQuery,
    FeedEvent,
    FireTick,
    InsertResult,
    InsertTask,
    ListResult,
    PurgeQuery,
    QueueStats,
    SaveSchedule,
    SaveType,
    TaskChange,
    TaskFilter,
    TaskQuery,
    WorkerStats,
)
from taskmanager.store import deliveries, dependencies, observe, schedules, verbs
from taskmanager.store import operations as ops
from taskmanager.store.database import Database
from taskmanager.store.keys import SqlKeyStore
from taskmanager.store.operations import END_POLL_INTERVAL, SHARED_POLL_INTERVAL
from taskmanager.store.rows import TT, Selects, task_from_row, type_from_row

R = TypeVar("R")
#: Claim shapes (filters, order, limit) whose pick statement a store keeps made.
MAX_CLAIM_SHAPES = 512


class Listener(Protocol):
    """What a store starts to hear about work from other processes."""

    @property
    def interval(self) -> float: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class SqlStore:
    """The shared implementation; on its own it serves a database whose writers are serialised
    (SQLite's ``BEGIN IMMEDIATE``), where a plain SELECT then UPDATE is atomic."""

    #: What ``explain_claim`` prefixes the claim's statement with.
    explain_prefix = "EXPLAIN "

    def __init__(self, database: Database, defaults: Defaults | None = None) -> None:
        self.db = database
        self.defaults = defaults or Defaults()
        self.q = Selects.with_defaults(self.defaults)
        #: The claim's pick by shape (``claim_statement``).
        self._claims: dict[tuple[Any, ...], Select[Any]] = {}
        self.listener: Listener | None = None
        self.ends_listener: Listener | None = None
        self._keys = SqlKeyStore(database)

    @property
    def keys(self) -> SqlKeyStore:
        return self._keys

    async def _read(self, fn: Callable[[Connection], R]) -> R:
        return await self.db.run(fn, write=False)

    async def _write(self, fn: Callable[[Connection], R]) -> R:
        return await self.db.run(fn, write=True)

    async def ping(self) -> None:
        await self._read(lambda conn: conn.execute(text("SELECT 1")).scalar())

    async def close(self) -> None:
        if self.listener is not None:
            await self.listener.stop()
        if self.ends_listener is not None:
            await self.ends_listener.stop()
        await self.db.dispose()

    # -- task types -----------------------------------------------------------------------------

    async def get_type(self, name: str) -> TaskType | None:
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
        return await self._write(partial(ops.insert_tasks, self.q, items))

    async def get_task(self, task_id: int) -> Task | None:
        return await self._read(partial(ops.get_task, self.q, task_id))

    async def get_tasks(self, task_ids: Sequence[int]) -> list[Task]:
        ordered = sorted(set(task_ids))
        return await self._read(lambda conn: ops.load(conn, self.q, ordered))

    async def list_tasks(self, query: TaskQuery) -> ListResult:
        return await self._read(partial(ops.list_tasks, self.q, query))

    async def list_events(self, task_id: int) -> list[Event]:
        return await self._read(partial(ops.list_events, task_id))

    # -- dependencies (B.5) ----------------------------------------------------------------------

    async def mark_dependencies(self, task_ids: Sequence[int]) -> None:
        if task_ids:
            await self._write(partial(dependencies.mark, task_ids))

    async def blocked_dependants(self, query: DependantsQuery) -> list[Dependant]:
        return await self._read(partial(dependencies.blocked_dependants, self.q, query))

    async def unsettled_tasks(self, limit: int) -> list[Task]:
        return await self._read(partial(dependencies.unsettled, self.q, limit))

    async def clear_dependant_marks(self, tasks: Sequence[Task]) -> int:
        if not tasks:
            return 0
        return await self._write(partial(dependencies.clear_marks, tasks))

    async def delete_task(self, task_id: int) -> bool:
        return await self._write(partial(ops.delete_task, task_id))

    async def find_task_ids(self, query: TaskFilter) -> list[int]:
        return await self._read(partial(ops.find_task_ids, query))

    async def delete_tasks(self, task_ids: Sequence[int]) -> int:
        if not task_ids:
            return 0
        return await self._write(partial(ops.delete_tasks, task_ids))

    async def purge_tasks(self, query: PurgeQuery) -> int:
        # Found by a read, deleted by a write only when there is something to delete (SQLite's
        # one writer is not taken every second for nothing).
        ids = await self._read(partial(ops.due_for_purge, query)) if query.retention.due else []
        return await self._write(partial(ops.purge_tasks, query, ids)) if ids else 0

    # -- schedules ------------------------------------------------------------------------------

    async def save_schedule(self, params: SaveSchedule) -> tuple[Schedule, bool]:
        for _ in range(3):
            saved = await self._write(partial(schedules.save, params))
            if saved is not None:
                return saved
        raise RuntimeError(f"could not save schedule {params.name!r}")

    async def get_schedule(self, name: str) -> Schedule | None:
        return await self._read(lambda conn: schedules.one(conn, name))

    async def list_schedules(self) -> list[Schedule]:
        return await self._read(schedules.listed)

    async def delete_schedule(self, name: str) -> bool:
        return await self._write(partial(schedules.remove, name))

    async def due_schedules(self, now: datetime, limit: int) -> list[Schedule]:
        return await self._read(partial(schedules.due, now, limit))

    async def next_schedule_at(self) -> datetime | None:
        return await self._read(schedules.next_at)

    async def fire_tick(self, params: FireTick) -> tuple[bool, InsertResult | None]:
        return await self._write(partial(schedules.fire, self.q, params))

    # -- callback deliveries (B.5) ------------------------------------------------------------

    async def next_delivery_at(self) -> datetime | None:
        return await self._read(deliveries.next_at)

    async def claim_deliveries(self, claim: DeliveryClaim) -> list[Delivery]:
        return await self._write(partial(deliveries.claim, claim))

    async def finish_delivery(self, outcome: DeliveryOutcome) -> bool:
        return await self._write(partial(deliveries.finish, outcome))

    # -- observing ------------------------------------------------------------------------------

    async def queue_stats(self, now: datetime, since: datetime) -> QueueStats:
        return await self._read(partial(observe.queue_stats, now, since))

    async def worker_stats(self, since: datetime) -> list[WorkerStats]:
        return await self._read(partial(observe.worker_stats, since))

    async def events_after(self, after_id: int, limit: int) -> list[FeedEvent]:
        return await self._read(partial(observe.events_after, after_id, limit))

    async def last_event_id(self) -> int:
        return await self._read(observe.last_event_id)

    # -- claims ---------------------------------------------------------------------------------

    def claim_statement(self, query: ClaimQuery, skip_types: Sequence[int] = ()) -> Select[Any]:
        """The statement that picks a claim's rows, leaving out the tasks of ``skip_types``
        (types at their ``max_running``): made once per shape (``verbs.claim_shape``), its
        values given at each run by ``verbs.claim_values``."""
        shape = verbs.claim_shape(query, skip_types)
        found = self._claims.get(shape)
        if found is None:
            if len(self._claims) >= MAX_CLAIM_SHAPES:
                self._claims.clear()
            found = self._claims[shape] = self.build_claim(query, bool(skip_types))
        return found

    def build_claim(self, query: ClaimQuery, skip: bool) -> Select[Any]:
        """``claim_statement`` for a shape: here the rows themselves, read with the pick."""
        binds = verbs.SharedBinds()
        return (
            self.q.task.where(*verbs.claim_conditions(query, binds), *verbs.skipping(skip))
            .order_by(*verbs.claim_order(query))
            .limit(query.limit)
        )

    def pick(self, conn: Connection, query: ClaimQuery, skip_types: Sequence[int] = ()) -> list[Task]:
        """The rows a claim takes, in its order, read inside the claim's transaction."""
        statement, values = self.claim_statement(query, skip_types), verbs.claim_values(query, skip_types)
        return [task_from_row(row) for row in conn.execute(statement, values)]

    def claim(self, query: ClaimQuery, params: ClaimParams, conn: Connection) -> list[Task]:
        """Pick and claim in one transaction, within the ``max_running`` of each type (B.9):
        the limited types' free slots are counted under their lock (``verbs.free_slots``), full
        types are left out of the pick, and rows beyond a type's free slots are dropped — then
        the pick is run again without the types that filled up, so the claim takes other types'
        tasks instead (at most once per limited type)."""
        free = verbs.free_slots(conn, query)
        if not free:
            return verbs.write_claims(conn, self.pick(conn, query), params)
        taken: list[Task] = []
        while len(taken) < query.limit:
            full = [type_id for type_id, left in free.items() if left <= 0]
            seen = {task.id for task in taken}
            picked = [task for task in self.pick(conn, query, full) if task.id not in seen]
            kept = verbs.within_limits(picked, free, query.limit - len(taken))
            taken += kept
            if len(kept) == len(picked) or len(taken) == query.limit:
                break
        return verbs.write_claims(conn, taken, params)

    async def claim_tasks(self, query: ClaimQuery, params: ClaimParams) -> list[Task]:
        return await self._write(partial(self.claim, query, params))

    async def explain_claim(self, query: ClaimQuery, params: ClaimParams) -> list[tuple[Any, ...]]:
        """The database's plan for the statement that picks a claim's rows, as it is sent."""
        statement, values = self.claim_statement(query), verbs.claim_values(query, ())
        prefix = self.explain_prefix

        def explain(conn: Connection) -> list[tuple[Any, ...]]:
            def prefixed(*args: Any) -> tuple[str, Any]:
                return prefix + args[2], args[3]

            event.listen(conn, "before_cursor_execute", prefixed, retval=True)
            try:
                return [tuple(row) for row in conn.execute(statement, values)]
            finally:
                event.remove(conn, "before_cursor_execute", prefixed)

        return await self._read(explain)

    # -- compare-and-set and expiry -------------------------------------------------------------

    async def update_task(self, change: TaskChange) -> Task | None:
        (after,) = await self.update_tasks([change])  # one compare-and-set is a batch of one
        return after

    async def update_tasks(self, changes: Sequence[TaskChange]) -> list[Task | None]:
        if not changes:
            return []
        return await self._write(partial(verbs.update_tasks, self.q, changes, lock_rows=self.db.locks_rows))

    async def due_tasks(self, query: DueQuery) -> list[Task]:
        return await self._read(partial(verbs.due_tasks, self.q, query))

    # -- hearing about work ---------------------------------------------------------------------

    @property
    def wake_interval(self) -> float:
        return self.listener.interval if self.listener else SHARED_POLL_INTERVAL

    def listener_for(self, on_work: Callable[[], None], waiting: threading.Event) -> Listener | None:
        """What hears this database's other processes announce work (None: nothing can)."""
        return None

    async def listen(self, on_work: Callable[[], None], waiting: threading.Event) -> None:
        if self.listener is not None:
            return
        self.listener = self.listener_for(on_work, waiting)
        if self.listener is not None:
            await self.listener.start()

    # -- hearing about ends (GET /tasks/{id}/wait) ---------------------------------------------

    @property
    def end_poll_interval(self) -> float | None:
        return None if self.ends_listener is not None else END_POLL_INTERVAL

    async def await_end(self, task_id: int) -> None:
        """Nothing here: a SQLite file's watcher hears every commit, and MySQL waiters poll."""

    def ends_listener_for(self, on_end: Callable[[], None], waiting: threading.Event) -> Listener | None:
        """What hears this database's other processes end tasks (None: nothing can; waiters
        then read their task every ``END_POLL_INTERVAL``)."""
        return None

    async def listen_ends(self, on_end: Callable[[], None], waiting: threading.Event) -> None:
        if self.ends_listener is not None:
            return
        self.ends_listener = self.ends_listener_for(on_end, waiting)
        if self.ends_listener is not None:
            await self.ends_listener.start()

    # -- hearing about history writes (GET /events) -------------------------------------------

    @property
    def history_announced(self) -> bool:
        return False

    async def history_mark(self) -> int | None:
        return None


__all__ = ["SqlStore"]
