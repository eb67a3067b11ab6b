"""SqlStore: the ``Store`` protocol on SQLAlchemy Core, one implementation for every database.

Each operation is a plain function on a synchronous ``Connection`` that ``Database.run`` executes
inside one transaction (in a thread for SQLite, through the async bridge for the others). What
differs between databases is small: SQLite serialises writers (BEGIN IMMEDIATE) so a plain SELECT
then UPDATE is atomic; PostgreSQL and MySQL lock the chosen rows with ``FOR UPDATE SKIP LOCKED``
so concurrent claimers never wait on, or take, the same row.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from taskmanager.engine.records import DedupeScope, Event, NewEvent, Task, TaskStatus, TaskType
from taskmanager.engine.records import TypePolicy as Policy
from taskmanager.engine.store import (
    ClaimQuery,
    Decide,
    InsertOutcome,
    InsertResult,
    InsertTask,
    ListResult,
    SaveType,
    SettleQuery,
    TaskQuery,
    Transition,
)
from taskmanager.store.database import Database
from taskmanager.store.listen import PgListener
from taskmanager.store.tables import task_history, task_types, tasks

T, TT, H = tasks.c, task_types.c, task_history.c
#: PostgreSQL NOTIFY channel on which a commit that made work claimable wakes every server.
WORK_CHANNEL = "taskmanager_work"
#: Seconds between claim retries of a long-polling claimer when no other process can wake it
#: (SQLite and MySQL across processes; within one process a create wakes it at once).
SHARED_POLL_INTERVAL = 0.25
R = TypeVar("R")

_TASK_COLUMNS = [
    T.id,
    T.type_id,
    T.status,
    T.params,
    T.result,
    T.error_message,
    T.priority,
    T.progress,
    T.attempts,
    T.max_attempts,
    T.claimed_by,
    T.claimed_at,
    T.lease_expires_at,
    T.lease_token,
    T.completed_at,
    T.run_after,
    T.expires_at,
    T.assigned_to,
    T.created_at,
    T.updated_at,
    T.dedupe_key,
    TT.name.label("type_name"),
    TT.claim_timeout,
    TT.retry_delay,
    TT.retry_max_delay,
    TT.dedupe.label("type_dedupe"),
]
_TASK_SELECT = select(*_TASK_COLUMNS).select_from(tasks.join(task_types, T.type_id == TT.id))
#: Columns a transition may change (anything else in ``changes`` is a programming error).
_WRITABLE = frozenset(c.name for c in tasks.columns) - {"id", "type_id", "created_at"}


def _json_or_none(value: str | None) -> Any:
    return None if value is None else json.loads(value)


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _task(row: Any) -> Task:
    return Task(
        id=row.id,
        type_id=row.type_id,
        type=row.type_name,
        status=TaskStatus(row.status),
        params=json.loads(row.params),
        result=_json_or_none(row.result),
        error_message=row.error_message,
        priority=row.priority,
        progress=row.progress,
        attempts=row.attempts,
        max_attempts=row.max_attempts,
        claimed_by=row.claimed_by,
        claimed_at=row.claimed_at,
        lease_expires_at=row.lease_expires_at,
        lease_token=row.lease_token,
        completed_at=row.completed_at,
        run_after=row.run_after,
        expires_at=row.expires_at,
        assigned_to=row.assigned_to,
        created_at=row.created_at,
        updated_at=row.updated_at,
        dedupe_key=row.dedupe_key,
        policy=Policy(row.claim_timeout, row.retry_delay, row.retry_max_delay, DedupeScope(row.type_dedupe)),
    )


def _task_type(row: Any) -> TaskType:
    return TaskType(
        id=row.id,
        name=row.name,
        version=row.version,
        param_schema=json.loads(row.param_schema),
        is_active=bool(row.is_active),
        max_attempts=row.max_attempts,
        claim_timeout=row.claim_timeout,
        retry_delay=row.retry_delay,
        retry_max_delay=row.retry_max_delay,
        dedupe=DedupeScope(row.dedupe),
        max_pending=row.max_pending,
        description=row.description,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _encode(changes: dict[str, Any]) -> dict[str, Any]:
    unknown = set(changes) - _WRITABLE
    if unknown:
        raise ValueError(f"not writable task columns: {sorted(unknown)}")
    values = dict(changes)
    if "status" in values:
        values["status"] = TaskStatus(values["status"]).value
    if "result" in values:
        values["result"] = _dump(values["result"])
    return values


def _event_row(task_id: int, event: NewEvent, now: datetime) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "event": event.event.value,
        "worker_id": event.worker_id,
        "message": event.message,
        "metadata": _dump(event.metadata),
        "created_at": now,
    }


def _one_type(conn: Connection, name: str) -> TaskType | None:
    row = conn.execute(select(task_types).where(TT.name == name)).first()
    return None if row is None else _task_type(row)


def _save_type(params: SaveType, conn: Connection) -> tuple[TaskType, bool] | None:
    """Update by name, else insert; None when a concurrent insert won (the caller retries)."""
    values = {
        "version": params.version,
        "param_schema": _dump(params.param_schema),
        "is_active": True,
        "updated_at": params.now,
        **params.settings,
    }
    if conn.execute(update(task_types).where(TT.name == params.name).values(**values)).rowcount:
        found = _one_type(conn, params.name)
        assert found is not None
        return found, False
    try:
        with conn.begin_nested():
            conn.execute(insert(task_types).values(name=params.name, created_at=params.now, **values))
    except IntegrityError:
        return None
    created = _one_type(conn, params.name)
    assert created is not None
    return created, True


def _set_type_active(name: str, active: bool, now: datetime, conn: Connection) -> TaskType | None:
    conn.execute(update(task_types).where(TT.name == name).values(is_active=active, updated_at=now))
    return _one_type(conn, name)


def _existing(conn: Connection, item: InsertTask) -> Task | None:
    query = _TASK_SELECT.where(T.type_id == item.type_id, T.dedupe_lock == item.dedupe_key)
    row = conn.execute(query).first()
    return None if row is None else _task(row)


def _insert_one(conn: Connection, item: InsertTask) -> InsertResult:
    dedupe = item.dedupe_scope != DedupeScope.NONE and item.dedupe_key is not None
    if dedupe:
        found = _existing(conn, item)
        if found is not None:
            return InsertResult(InsertOutcome.DUPLICATE, found)
    if item.max_pending is not None:
        pending = conn.scalar(
            select(func.count())
            .select_from(tasks)
            .where(T.type_id == item.type_id, T.status == TaskStatus.PENDING.value)
        )
        if (pending or 0) >= item.max_pending:
            return InsertResult(InsertOutcome.QUEUE_FULL, None)
    values = {
        "type_id": item.type_id,
        "status": TaskStatus.PENDING.value,
        "params": item.params_json,
        "priority": item.priority,
        "progress": 0,
        "attempts": 0,
        "max_attempts": item.max_attempts,
        "run_after": item.run_after,
        "expires_at": item.expires_at,
        "assigned_to": item.assigned_to,
        "created_at": item.now,
        "updated_at": item.now,
        "dedupe_key": item.dedupe_key,
        "dedupe_lock": item.dedupe_key if dedupe else None,
    }
    # The savepoint is handled by hand, not with ``with``: after any other error (a deadlock on
    # MySQL) the server has already rolled the whole transaction back, and rolling back to the
    # savepoint would only replace that error with "SAVEPOINT does not exist".
    savepoint = conn.begin_nested()
    try:
        result = conn.execute(insert(tasks).values(**values))
    except IntegrityError:
        savepoint.rollback()
        # An identical create committed first: answer with its task, never an error.
        found = _existing(conn, item)
        if found is None:
            raise
        return InsertResult(InsertOutcome.DUPLICATE, found)
    savepoint.commit()
    (task_id,) = result.inserted_primary_key or (None,)
    assert task_id is not None
    if item.event is not None:
        conn.execute(insert(task_history).values(_event_row(task_id, item.event, item.now)))
    task = Task(
        id=task_id,
        type_id=item.type_id,
        type=item.type_name,
        status=TaskStatus.PENDING,
        params=item.params,
        result=None,
        error_message=None,
        priority=item.priority,
        progress=0,
        attempts=0,
        max_attempts=item.max_attempts,
        claimed_by=None,
        claimed_at=None,
        lease_expires_at=None,
        lease_token=None,
        completed_at=None,
        run_after=item.run_after,
        expires_at=item.expires_at,
        assigned_to=item.assigned_to,
        created_at=item.now,
        updated_at=item.now,
        dedupe_key=item.dedupe_key,
        policy=item.policy,
    )
    return InsertResult(InsertOutcome.CREATED, task)


def _announce_work(conn: Connection) -> None:
    """On PostgreSQL, wake long-polling claimers in every server process when this commits."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_notify(:channel, '')"), {"channel": WORK_CHANNEL})


def _insert_tasks(items: Sequence[InsertTask], conn: Connection) -> list[InsertResult]:
    results = [_insert_one(conn, item) for item in items]
    if any(r.outcome == InsertOutcome.CREATED for r in results):
        _announce_work(conn)
    return results


def _get_task(task_id: int, conn: Connection) -> Task | None:
    row = conn.execute(_TASK_SELECT.where(T.id == task_id)).first()
    return None if row is None else _task(row)


def _list_tasks(query: TaskQuery, conn: Connection) -> ListResult:
    conditions: list[ColumnElement[bool]] = []
    if query.statuses:
        conditions.append(T.status.in_([s.value for s in query.statuses]))
    if query.type_name is not None:
        conditions.append(TT.name == query.type_name)
    if query.type_like is not None:
        conditions.append(TT.name.like(query.type_like))
    if query.worker_id is not None:
        conditions.append(T.claimed_by == query.worker_id)
    page = (
        _TASK_SELECT.where(*conditions)
        .order_by(T.created_at.desc(), T.id.desc())
        .limit(query.limit)
        .offset(query.offset)
    )
    count = select(func.count()).select_from(tasks.join(task_types, T.type_id == TT.id)).where(*conditions)
    rows = [_task(row) for row in conn.execute(page)]
    return ListResult(rows, int(conn.scalar(count) or 0))


def _list_events(task_id: int, conn: Connection) -> list[Event]:
    query = select(task_history).where(H.task_id == task_id).order_by(H.id)
    return [
        Event(
            row.id,
            row.task_id,
            row.event,
            row.worker_id,
            row.message,
            _json_or_none(row.metadata),
            row.created_at,
        )
        for row in conn.execute(query)
    ]


def _load(conn: Connection, ids: Sequence[int]) -> list[Task]:
    if not ids:
        return []
    by_id = {row.id: _task(row) for row in conn.execute(_TASK_SELECT.where(T.id.in_(ids)))}
    return [by_id[i] for i in ids if i in by_id]


def _apply(conn: Connection, locked: list[Task], decide: Decide, now: datetime) -> list[Task]:
    """Run ``decide`` on each locked task and write the transitions back."""
    changed: list[Task] = []
    events: list[dict[str, Any]] = []
    wakes = False
    updates: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for task in locked:
        transition: Transition | None = decide(task)
        if transition is None:
            changed.append(task)
            continue
        values = _encode(transition.changes)
        updates.setdefault(tuple(sorted(values)), []).append({"_id": task.id, **values})
        events.extend(_event_row(task.id, e, now) for e in transition.events)
        kept = {k: v for k, v in transition.changes.items() if k != "dedupe_lock"}
        changed.append(replace(task, **kept))
        wakes = wakes or transition.changes.get("status") == TaskStatus.PENDING
    for columns, rows in updates.items():
        # One statement per shape of change: a batch claim is one executemany, not N updates.
        statement = update(tasks).where(T.id == bindparam("_id"))
        conn.execute(statement.values({c: bindparam(c) for c in columns}), rows)
    if events:
        conn.execute(insert(task_history), events)
    if wakes:
        _announce_work(conn)
    return changed


def _claimable_types(query: ClaimQuery) -> Select[Any]:
    types = select(TT.id).where(TT.is_active.is_(True))
    if query.type_like is not None:
        types = types.where(TT.name.like(query.type_like))
    if query.type_names is not None:
        types = types.where(TT.name.in_(query.type_names))
    return types


def _delete_task(task_id: int, conn: Connection) -> bool:
    conn.execute(delete(task_history).where(H.task_id == task_id))
    return bool(conn.execute(delete(tasks).where(T.id == task_id)).rowcount)


def _due(query: SettleQuery) -> Select[Any]:
    """Rows whose lease expired, or that are still pending past their expiry."""
    due = or_(
        and_(T.status == TaskStatus.CLAIMED.value, T.lease_expires_at <= query.now),
        and_(T.status == TaskStatus.PENDING.value, T.expires_at <= query.now),
    )
    pick = select(T.id).where(due).limit(query.limit)
    return pick if query.task_id is None else pick.where(T.id == query.task_id)


class SqlStore:
    """The one ``Store`` implementation, for SQLite, PostgreSQL and MySQL/MariaDB."""

    def __init__(self, database: Database) -> None:
        self.db = database
        self.listener: PgListener | None = None

    def _lock(self, query: Select[Any], *, skip_locked: bool) -> Select[Any]:
        return query.with_for_update(skip_locked=skip_locked) if self.db.locks_rows else query

    async def _read(self, fn: Callable[[Connection], R]) -> R:
        return await self.db.run(fn, write=False)

    async def _write(self, fn: Callable[[Connection], R]) -> R:
        return await self.db.run(fn, write=True)

    async def ping(self) -> None:
        await self._read(lambda conn: conn.execute(text("SELECT 1")).scalar())

    async def close(self) -> None:
        if self.listener is not None:
            await self.listener.stop()
        await self.db.dispose()

    # -- task types -----------------------------------------------------------------------------

    async def get_type(self, name: str) -> TaskType | None:
        return await self._read(lambda conn: _one_type(conn, name))

    async def list_types(self, active_only: bool) -> list[TaskType]:
        query = select(task_types).order_by(TT.name)
        if active_only:
            query = query.where(TT.is_active.is_(True))
        return await self._read(lambda conn: [_task_type(row) for row in conn.execute(query)])

    async def save_type(self, params: SaveType) -> tuple[TaskType, bool]:
        for _ in range(3):
            saved = await self._write(partial(_save_type, params))
            if saved is not None:
                return saved
        raise RuntimeError(f"could not save task type {params.name!r}")

    async def set_type_active(self, name: str, active: bool, now: datetime) -> TaskType | None:
        return await self._write(partial(_set_type_active, name, active, now))

    # -- tasks ----------------------------------------------------------------------------------

    async def insert_tasks(self, items: Sequence[InsertTask]) -> list[InsertResult]:
        return await self._write(partial(_insert_tasks, items))

    async def get_task(self, task_id: int) -> Task | None:
        return await self._read(partial(_get_task, task_id))

    async def list_tasks(self, query: TaskQuery) -> ListResult:
        return await self._read(partial(_list_tasks, query))

    async def list_events(self, task_id: int) -> list[Event]:
        return await self._read(partial(_list_events, task_id))

    async def claim_tasks(self, query: ClaimQuery, decide: Decide) -> list[Task]:
        conditions = [
            T.status == TaskStatus.PENDING.value,
            or_(T.run_after.is_(None), T.run_after <= query.now),
            or_(T.expires_at.is_(None), T.expires_at > query.now),
            or_(T.assigned_to.is_(None), T.assigned_to == query.worker_id),
            T.type_id.in_(_claimable_types(query)),
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
        rows = _TASK_SELECT.where(*conditions).order_by(*order).limit(query.limit)
        if self.db.locks_rows:
            rows = rows.with_for_update(skip_locked=True, of=tasks)

        def claim(conn: Connection) -> list[Task]:
            if one_step:
                locked = [_task(row) for row in conn.execute(rows)]
            else:
                locked = _load(conn, list(conn.execute(pick).scalars()))
            return _apply(conn, locked, decide, query.now)

        return await self._write(claim)

    async def transition_task(self, task_id: int, decide: Decide, now: datetime) -> Task | None:
        pick = self._lock(select(T.id).where(T.id == task_id), skip_locked=False)

        def transition(conn: Connection) -> Task | None:
            if conn.execute(pick).first() is None:
                return None
            (task,) = _apply(conn, _load(conn, [task_id]), decide, now)
            return task

        return await self._write(transition)

    async def transition_tasks(self, task_ids: Sequence[int], decide: Decide, now: datetime) -> list[Task]:
        # Lock in id order, so two batches over the same tasks cannot deadlock each other.
        ordered = sorted(set(task_ids))
        pick = self._lock(select(T.id).where(T.id.in_(ordered)).order_by(T.id), skip_locked=False)

        def transition(conn: Connection) -> list[Task]:
            found = list(conn.execute(pick).scalars())
            return _apply(conn, _load(conn, found), decide, now)

        return await self._write(transition)

    @property
    def wake_interval(self) -> float:
        return self.listener.interval if self.listener else SHARED_POLL_INTERVAL

    async def listen(self, on_work: Callable[[], None]) -> None:
        """Call ``on_work`` whenever another process announces work (PostgreSQL LISTEN)."""
        if self.db.dialect == "postgresql" and self.listener is None:
            self.listener = PgListener(self.db.url, WORK_CHANNEL, on_work)
            await self.listener.start()

    async def settle_tasks(self, query: SettleQuery, decide: Decide) -> int:
        due = _due(query)
        if await self._read(lambda conn: conn.execute(due.limit(1)).first()) is None:
            return 0  # the common case: nothing is due, and no write lock was taken
        pick = self._lock(due, skip_locked=True)

        def settle(conn: Connection) -> int:
            locked = _load(conn, list(conn.execute(pick).scalars()))
            changed = _apply(conn, locked, decide, query.now)
            return sum(1 for before, after in zip(locked, changed, strict=True) if before != after)

        return await self._write(settle)

    async def delete_task(self, task_id: int) -> bool:
        return await self._write(partial(_delete_task, task_id))


__all__ = ["SqlStore"]
