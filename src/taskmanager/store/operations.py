"""The store's operations as plain functions on a synchronous ``Connection``.

``Database.run`` executes each inside one transaction (in a thread on SQLite, through the async
bridge elsewhere); ``SqlStore`` in ``sql.py`` is the async face that picks which to run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

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

from taskmanager.engine.records import DedupeScope, Event, Task, TaskStatus, TaskType
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
from taskmanager.store.rows import (
    TT,
    H,
    Selects,
    T,
    dump,
    encode_changes,
    event_row,
    json_or_none,
    task_from_row,
    type_from_row,
)
from taskmanager.store.tables import task_history, task_types, tasks

WORK_CHANNEL = "taskmanager_work"
#: Seconds between claim retries of a long-polling claimer when no other process can wake it
#: (SQLite and MySQL across processes; within one process a create wakes it at once).
SHARED_POLL_INTERVAL = 0.25


def one_type(conn: Connection, q: Selects, name: str) -> TaskType | None:
    row = conn.execute(q.task_type.where(TT.name == name)).first()
    return None if row is None else type_from_row(row)


def save_type(q: Selects, params: SaveType, conn: Connection) -> tuple[TaskType, bool] | None:
    """Update by name, else insert; None when a concurrent insert won (the caller retries)."""
    values = {
        "version": params.version,
        "param_schema": dump(params.param_schema),
        "is_active": True,
        "updated_at": params.now,
        **params.settings,
    }
    if conn.execute(update(task_types).where(TT.name == params.name).values(**values)).rowcount:
        found = one_type(conn, q, params.name)
        assert found is not None
        return found, False
    try:
        with conn.begin_nested():
            conn.execute(insert(task_types).values(name=params.name, created_at=params.now, **values))
    except IntegrityError:
        return None
    created = one_type(conn, q, params.name)
    assert created is not None
    return created, True


def set_type_active(q: Selects, name: str, active: bool, now: datetime, conn: Connection) -> TaskType | None:
    conn.execute(update(task_types).where(TT.name == name).values(is_active=active, updated_at=now))
    return one_type(conn, q, name)


def existing(conn: Connection, q: Selects, item: InsertTask) -> Task | None:
    query = q.task.where(T.type_id == item.type_id, T.dedupe_lock == item.dedupe_key)
    row = conn.execute(query).first()
    return None if row is None else task_from_row(row)


def insert_one(conn: Connection, q: Selects, item: InsertTask) -> InsertResult:
    dedupe = item.dedupe_scope != DedupeScope.NONE and item.dedupe_key is not None
    if dedupe:
        found = existing(conn, q, item)
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
        found = existing(conn, q, item)
        if found is None:
            raise
        return InsertResult(InsertOutcome.DUPLICATE, found)
    savepoint.commit()
    (task_id,) = result.inserted_primary_key or (None,)
    assert task_id is not None
    if item.event is not None:
        conn.execute(insert(task_history).values(event_row(task_id, item.event, item.now)))
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


def announce_work(conn: Connection) -> None:
    """On PostgreSQL, wake long-polling claimers in every server process when this commits."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_notify(:channel, '')"), {"channel": WORK_CHANNEL})


def insert_tasks(q: Selects, items: Sequence[InsertTask], conn: Connection) -> list[InsertResult]:
    results = [insert_one(conn, q, item) for item in items]
    if any(r.outcome == InsertOutcome.CREATED for r in results):
        announce_work(conn)
    return results


def get_task(q: Selects, task_id: int, conn: Connection) -> Task | None:
    row = conn.execute(q.task.where(T.id == task_id)).first()
    return None if row is None else task_from_row(row)


def list_tasks(q: Selects, query: TaskQuery, conn: Connection) -> ListResult:
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
        q.task.where(*conditions)
        .order_by(T.created_at.desc(), T.id.desc())
        .limit(query.limit)
        .offset(query.offset)
    )
    count = select(func.count()).select_from(tasks.join(task_types, T.type_id == TT.id)).where(*conditions)
    rows = [task_from_row(row) for row in conn.execute(page)]
    return ListResult(rows, int(conn.scalar(count) or 0))


def list_events(task_id: int, conn: Connection) -> list[Event]:
    query = select(task_history).where(H.task_id == task_id).order_by(H.id)
    return [
        Event(
            row.id,
            row.task_id,
            row.event,
            row.worker_id,
            row.message,
            json_or_none(row.metadata),
            row.created_at,
        )
        for row in conn.execute(query)
    ]


def load(conn: Connection, q: Selects, ids: Sequence[int]) -> list[Task]:
    if not ids:
        return []
    by_id = {row.id: task_from_row(row) for row in conn.execute(q.task.where(T.id.in_(ids)))}
    return [by_id[i] for i in ids if i in by_id]


def apply(conn: Connection, locked: list[Task], decide: Decide, now: datetime) -> list[Task]:
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
        values = encode_changes(transition.changes)
        updates.setdefault(tuple(sorted(values)), []).append({"_id": task.id, **values})
        events.extend(event_row(task.id, e, now) for e in transition.events)
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
        announce_work(conn)
    return changed


def claimable_types(query: ClaimQuery) -> Select[Any]:
    types = select(TT.id).where(TT.is_active.is_(True))
    if query.type_like is not None:
        types = types.where(TT.name.like(query.type_like))
    if query.type_names is not None:
        types = types.where(TT.name.in_(query.type_names))
    return types


def delete_task(task_id: int, conn: Connection) -> bool:
    conn.execute(delete(task_history).where(H.task_id == task_id))
    return bool(conn.execute(delete(tasks).where(T.id == task_id)).rowcount)


def due(query: SettleQuery) -> Select[Any]:
    """Rows whose lease expired, or that are still pending past their expiry."""
    due = or_(
        and_(T.status == TaskStatus.CLAIMED.value, T.lease_expires_at <= query.now),
        and_(T.status == TaskStatus.PENDING.value, T.expires_at <= query.now),
    )
    pick = select(T.id).where(due).limit(query.limit)
    return pick if query.task_id is None else pick.where(T.id == query.task_id)
