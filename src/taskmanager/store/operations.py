"""The store's operations as plain functions on a synchronous ``Connection``.

``Database.run`` executes each inside one transaction (in a thread on SQLite, through the async
bridge elsewhere); the store classes (``base.py`` and one per database family) are the async face
that picks which to run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
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

from taskmanager.engine.records import Event, Task, TaskStatus, TaskType
from taskmanager.engine.scope import LIKE_ESCAPE
from taskmanager.engine.store import (
    InsertOutcome,
    InsertResult,
    InsertTask,
    ListResult,
    PurgeQuery,
    Retention,
    SaveType,
    TaskFilter,
    TaskQuery,
)
from taskmanager.store import dependencies
from taskmanager.store.rows import (
    TT,
    H,
    Selects,
    T,
    dump,
    event_row,
    json_or_none,
    task_from_row,
    type_from_row,
)
from taskmanager.store.tables import callback_deliveries, task_history, task_types, tasks

D = callback_deliveries.c

WORK_CHANNEL = "taskmanager_work"
#: PostgreSQL's channel for "a task ended" (wakes ``GET /tasks/{id}/wait`` in every process).
ENDS_CHANNEL = "taskmanager_ends"
#: Seconds between a waiter's reads of its task where no other process can wake it (MySQL and
#: MariaDB have no NOTIFY; an in-memory SQLite has no other process, so this never matters there).
END_POLL_INTERVAL = 1.0
#: Seconds between claim retries of a long-polling claimer when no other process can wake it
#: (MySQL across processes, and SQLite while its watcher cannot read the file; within one process
#: a create wakes it at once).
SHARED_POLL_INTERVAL = 0.25


#: Inserts made once: SQLAlchemy remembers the key of a statement's compiled form on the
#: statement object, so one made anew per call is walked every time.
INSERT_TASK = insert(tasks)
INSERT_HISTORY = insert(task_history)
#: The revision a type is at (what an insert naming ``type_revision`` checks first), the task
#: holding a dedupe key (its id), and a type's pending tasks.
TYPE_REVISION = select(TT.revision).where(TT.id == bindparam("id"))
KEY_HOLDER = select(T.id).where(T.type_id == bindparam("type_id"), T.dedupe_lock == bindparam("lock"))
PENDING_COUNT = (
    select(func.count())
    .select_from(tasks)
    .where(T.type_id == bindparam("type_id"), T.status == TaskStatus.PENDING.value)
)


def one_type(conn: Connection, q: Selects, name: str) -> TaskType | None:
    row = conn.execute(q.type_by_name, {"name": name}).first()
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
    changed = update(task_types).where(TT.name == params.name).values(revision=TT.revision + 1, **values)
    if conn.execute(changed).rowcount:
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
    changed = {"is_active": active, "updated_at": now, "revision": TT.revision + 1}
    conn.execute(update(task_types).where(TT.name == name).values(changed))
    return one_type(conn, q, name)


def existing(conn: Connection, q: Selects, item: InsertTask) -> Task | None:
    row = conn.execute(q.task_by_lock, {"type_id": item.type_id, "lock": item.dedupe_lock}).first()
    return None if row is None else task_from_row(row)


def _pending_count(conn: Connection, type_id: int) -> int:
    return conn.scalar(PENDING_COUNT, {"type_id": type_id}) or 0


def task_values(item: InsertTask) -> dict[str, Any]:
    return {
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
        "dedupe_lock": item.dedupe_lock,
        "schedule": item.schedule,
        "scheduled_for": item.scheduled_for,
        "depends_on": dump(list(item.depends_on)) if item.depends_on else None,
        "blocked": bool(item.depends_on),
        "callback_url": item.callback_url,
    }


def created(item: InsertTask, task_id: int) -> InsertResult:
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
        schedule=item.schedule,
        scheduled_for=item.scheduled_for,
        depends_on=item.depends_on,
        blocked=bool(item.depends_on),
        dependant_marks=0,
        awaited=False,
        callback_url=item.callback_url,
        policy=item.policy,
    )
    return InsertResult(InsertOutcome.CREATED, task)


def insert_one(conn: Connection, q: Selects, item: InsertTask) -> InsertResult:
    if item.dedupe_lock is not None:
        found = existing(conn, q, item)
        if found is not None:
            return InsertResult(InsertOutcome.DUPLICATE, found)
    if item.max_pending is not None and _pending_count(conn, item.type_id) >= item.max_pending:
        return InsertResult(InsertOutcome.QUEUE_FULL, None)
    if conn.dialect.name == "sqlite":
        # SQLite's writer holds the whole database since BEGIN IMMEDIATE: no create can have
        # taken the key between the lookup above and this insert, so no savepoint is needed.
        result = conn.execute(INSERT_TASK, task_values(item))
        return _created_with_event(conn, item, result)
    # The savepoint is handled by hand, not with ``with``: after any other error (a deadlock on
    # MySQL) the server has already rolled the whole transaction back, and rolling back to the
    # savepoint would only replace that error with "SAVEPOINT does not exist".
    savepoint = conn.begin_nested()
    try:
        result = conn.execute(INSERT_TASK, task_values(item))
    except IntegrityError:
        savepoint.rollback()
        # An identical create committed first: answer with its task, never an error.
        found = existing(conn, q, item)
        if found is None:
            raise
        return InsertResult(InsertOutcome.DUPLICATE, found)
    savepoint.commit()
    return _created_with_event(conn, item, result)


def _created_with_event(conn: Connection, item: InsertTask, result: Any) -> InsertResult:
    (task_id,) = result.inserted_primary_key or (None,)
    assert task_id is not None
    if item.event is not None:
        conn.execute(INSERT_HISTORY, event_row(task_id, item.event, item.now))
    return created(item, task_id)


#: Dedupe keys looked up per query when a batch checks for stored duplicates.
KEYS_PER_LOOKUP = 500


def _stored_duplicates(
    conn: Connection, q: Selects, items: Sequence[InsertTask]
) -> dict[tuple[int, str], Task]:
    """The stored tasks that hold the dedupe key of an item, by (type id, key)."""
    keys: dict[int, set[str]] = {}
    for item in items:
        if item.dedupe_lock is not None:
            keys.setdefault(item.type_id, set()).add(item.dedupe_lock)
    found: dict[tuple[int, str], Task] = {}
    for type_id, wanted in keys.items():
        ordered = sorted(wanted)
        for start in range(0, len(ordered), KEYS_PER_LOOKUP):
            chunk = ordered[start : start + KEYS_PER_LOOKUP]
            query = q.task.add_columns(T.dedupe_lock).where(T.type_id == type_id, T.dedupe_lock.in_(chunk))
            for row in conn.execute(query):
                task = task_from_row(row)
                found[(type_id, row.dedupe_lock)] = task
    return found


def _insert_many(conn: Connection, q: Selects, items: Sequence[InsertTask]) -> list[InsertResult]:
    """Judge every item as ``insert_one`` would, one after the other, with a few statements in all:
    one lookup of stored duplicates, one multi-row INSERT, one INSERT of their events. Raises
    ``IntegrityError`` when a concurrent create took a key first (the caller judges them one by one)."""
    stored = _stored_duplicates(conn, q, items)
    pending: dict[int, int] = {}
    creator: dict[tuple[int, str], int] = {}  # key -> index of the item creating it in this batch
    results: list[InsertResult | int | None] = []  # an int: a duplicate of that earlier item
    inserting: list[int] = []
    for index, item in enumerate(items):
        key = (item.type_id, item.dedupe_lock or "")
        dedupes = item.dedupe_lock is not None
        if dedupes and key in stored:
            results.append(InsertResult(InsertOutcome.DUPLICATE, stored[key]))
            continue
        if dedupes and key in creator:
            results.append(creator[key])
            continue
        if item.max_pending is not None:
            count = pending[item.type_id] if item.type_id in pending else _pending_count(conn, item.type_id)
            if count >= item.max_pending:
                results.append(InsertResult(InsertOutcome.QUEUE_FULL, None))
                continue
            pending[item.type_id] = count + 1
        if dedupes:
            creator[key] = index
        results.append(None)
        inserting.append(index)
    if inserting:
        savepoint = conn.begin_nested()
        try:
            statement = insert(tasks).returning(T.id, sort_by_parameter_order=True)
            ids = conn.execute(statement, [task_values(items[i]) for i in inserting]).scalars().all()
        except IntegrityError:
            savepoint.rollback()
            raise
        savepoint.commit()
        events = []
        for index, task_id in zip(inserting, ids, strict=True):
            item = items[index]
            results[index] = created(item, task_id)
            if item.event is not None:
                events.append(event_row(task_id, item.event, item.now))
        if events:
            conn.execute(INSERT_HISTORY, events)
    final: list[InsertResult] = []
    for result in results:
        if isinstance(result, int):
            first = results[result]
            assert isinstance(first, InsertResult)
            final.append(InsertResult(InsertOutcome.DUPLICATE, first.task))
        else:
            assert result is not None
            final.append(result)
    return final


def announce_work(conn: Connection) -> None:
    """On PostgreSQL, wake long-polling claimers in every server process when this commits."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_notify(:channel, '')"), {"channel": WORK_CHANNEL})


def announce_end(conn: Connection) -> None:
    """On PostgreSQL, wake the requests waiting for tasks to end, in every server process, when
    this commits (once per transaction, however many tasks it ends)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_notify(:channel, '')"), {"channel": ENDS_CHANNEL})


def _insert_in_order(conn: Connection, q: Selects, items: Sequence[InsertTask]) -> list[InsertResult]:
    """Items with dependencies, one after the other: an item's ``depends_on_index`` names
    earlier items, whose ids are known by then. The tasks depended on get a dependant mark
    before the insert (locking their rows), and a created task its edges."""
    results: list[InsertResult] = []
    for item in items:
        earlier = [results[position].task for position in item.depends_on_index]
        if any(task is None for task in earlier):
            results.append(InsertResult(InsertOutcome.DEPENDENCY_NOT_CREATED, None))
            continue
        named = [*item.depends_on, *(task.id for task in earlier if task is not None)]
        ids = tuple(dict.fromkeys(named))  # as named, each once
        resolved = replace(item, depends_on=ids, depends_on_index=())
        dependencies.mark(ids, conn)
        result = insert_one(conn, q, resolved)
        if result.outcome == InsertOutcome.CREATED and result.task is not None and ids:
            dependencies.attach(conn, result.task.id, ids)
        results.append(result)
    return results


def stale_types(conn: Connection, items: Sequence[InsertTask]) -> bool:
    """Whether the type of an item that names a ``type_revision`` is no longer at it."""
    wanted = {item.type_id: item.type_revision for item in items if item.type_revision is not None}
    return any(
        conn.execute(TYPE_REVISION, {"id": type_id}).scalar() != revision
        for type_id, revision in wanted.items()
    )


def insert_tasks(q: Selects, items: Sequence[InsertTask], conn: Connection) -> list[InsertResult]:
    if stale_types(conn, items):
        return [InsertResult(InsertOutcome.STALE_TYPE, None) for _ in items]
    if any(item.depends_on or item.depends_on_index for item in items):
        results = _insert_in_order(conn, q, items)
    elif len(items) == 1:
        results = [insert_one(conn, q, items[0])]
    else:
        try:
            results = _insert_many(conn, q, items)
        except IntegrityError:  # raced by an identical create: judge them one by one
            results = [insert_one(conn, q, item) for item in items]
    if any(r.outcome == InsertOutcome.CREATED for r in results):
        announce_work(conn)
    return results


def get_task(q: Selects, task_id: int, conn: Connection) -> Task | None:
    row = conn.execute(q.task_by_id, {"id": task_id}).first()
    return None if row is None else task_from_row(row)


def like_any(column: ColumnElement[str], patterns: tuple[str, ...]) -> ColumnElement[bool]:
    """``column`` matches one of the LIKE ``patterns`` (escaped with ``LIKE_ESCAPE``)."""
    return or_(*(column.like(p, escape=LIKE_ESCAPE) for p in patterns))


def list_tasks(q: Selects, query: TaskQuery, conn: Connection) -> ListResult:
    conditions: list[ColumnElement[bool]] = []
    if query.type_scope is not None:
        conditions.append(like_any(TT.name, query.type_scope))
    if query.statuses:
        conditions.append(T.status.in_([s.value for s in query.statuses]))
    if query.type_name is not None:
        conditions.append(TT.name == query.type_name)
    if query.type_like is not None:
        conditions.append(TT.name.like(query.type_like))
    if query.worker_id is not None:
        conditions.append(T.claimed_by == query.worker_id)
    conditions += kept(query.retention)
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
    """The tasks of ``ids`` that exist, in the order of ``ids``."""
    if not ids:
        return []
    by_id = {row.id: task_from_row(row) for row in conn.execute(q.tasks_by_ids, {"ids": list(ids)})}
    return [by_id[i] for i in ids if i in by_id]


def delete_task(task_id: int, conn: Connection) -> bool:
    dependencies.delete_edges([task_id], conn)
    conn.execute(delete(task_history).where(H.task_id == task_id))
    conn.execute(delete(callback_deliveries).where(D.task_id == task_id))
    return bool(conn.execute(delete(tasks).where(T.id == task_id)).rowcount)


def find_task_ids(query: TaskFilter, conn: Connection) -> list[int]:
    """A keyset page of the ids ``query`` matches: on the primary key, so each is a short read."""
    statement = select(T.id).where(T.id > query.after_id)
    if query.ids is not None:
        statement = statement.where(T.id.in_(sorted(set(query.ids))))
    if query.type_name is not None:
        statement = statement.where(T.type_id.in_(select(TT.id).where(TT.name == query.type_name)))
    if query.status is not None:
        statement = statement.where(T.status == query.status.value)
    if query.created_before is not None:
        statement = statement.where(T.created_at < query.created_before)
    if query.type_scope is not None:
        statement = statement.where(T.type_id.in_(select(TT.id).where(like_any(TT.name, query.type_scope))))
    statement = statement.where(*kept(query.retention))
    return list(conn.execute(statement.order_by(T.id).limit(query.limit)).scalars())


def delete_tasks(task_ids: Sequence[int], conn: Connection) -> int:
    ids = sorted(set(task_ids))
    dependencies.delete_edges(ids, conn)
    conn.execute(delete(task_history).where(H.task_id.in_(ids)))
    conn.execute(delete(callback_deliveries).where(D.task_id.in_(ids)))
    return int(conn.execute(delete(tasks).where(T.id.in_(ids))).rowcount or 0)


def kept(retention: Retention | None) -> list[ColumnElement[bool]]:
    """The condition of a task not past its retention (none: every task is kept)."""
    if retention is None:
        return []
    return [
        or_(
            T.status.not_in(statuses),
            T.type_id.not_in(type_ids),
            T.completed_at.is_(None),
            T.completed_at > cutoff,
        )
        for statuses, cutoff, type_ids in retention.due
    ]


def _due(retention: Retention) -> list[ColumnElement[bool]]:
    """Each rule of ``retention`` as a condition on ``ix_tasks_status_created``: a task that
    finished by the cutoff was created by it too, so the walk is bounded by the cutoff, not by
    the whole table."""
    return [
        and_(
            T.status.in_(statuses),
            T.created_at <= cutoff,
            T.completed_at <= cutoff,
            T.type_id.in_(type_ids),
            T.dependant_marks == 0,  # its dependants settled first (a cascade resumes from it)
        )
        for statuses, cutoff, type_ids in retention.due
    ]


def due_for_purge(query: PurgeQuery, conn: Connection) -> list[int]:
    """Up to ``query.limit`` ids of tasks past their retention (a plain read: no lock taken)."""
    ids: list[int] = []
    for condition in _due(query.retention):
        room = query.limit - len(ids)
        if room <= 0:
            break
        ids += conn.execute(select(T.id).where(condition).limit(room)).scalars()
    return ids


def purge_tasks(query: PurgeQuery, ids: Sequence[int], conn: Connection) -> int:
    """Delete the tasks of ``ids`` still past their retention, and their history. Their rows are
    locked first with ``SKIP LOCKED``, so two servers sweeping at once never wait on each other."""
    locked = (
        select(T.id)
        .where(T.id.in_(sorted(set(ids))), or_(*_due(query.retention)))
        .order_by(T.id)
        .with_for_update(skip_locked=True)
    )
    doomed = list(conn.execute(locked).scalars())
    return delete_tasks(doomed, conn) if doomed else 0
