"""The SQL of observing the queue (``GET /stats``, ``/workers``, ``/events``, ``/metrics``).

Every query here reads an index range, never the whole table (migration 0004 added the indexes;
``tests/contract/test_query_plans.py`` checks the plans): counts per type and status from
``ix_tasks_type_status_created`` (index only), the oldest pending task per type from the same
index (one entry per type), the tasks that ended recently from ``ix_tasks_status_completed`` and
the workers seen recently from ``ix_task_history_created``. Times are differenced and bucketed by
the database, in each dialect's own words.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Float, Select, cast, distinct, func, literal_column, select
from sqlalchemy.engine import Connection

from taskmanager.engine.records import TaskStatus
from taskmanager.engine.store import FeedEvent, QueueStats, TypeStats, WorkerStats, WorkerTypeStats
from taskmanager.store.rows import TT, H, T
from taskmanager.store.tables import naive_utc, task_history, task_types, tasks

ENDED = (TaskStatus.COMPLETED.value, TaskStatus.FAILED.value)
#: History events that mean a worker's attempt failed (a retry is scheduled, or the task failed).
FAILED_EVENTS = ("failed", "retry_scheduled")


def seconds_between(conn: Connection, start: Any, end: Any) -> ColumnElement[Any]:
    """``end - start`` in seconds, as a float, in the connection's dialect."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        return func.extract("epoch", end - start)
    if dialect in ("mysql", "mariadb"):
        return func.timestampdiff(literal_column("MICROSECOND"), start, end) / 1_000_000.0
    return (func.julianday(end) - func.julianday(start)) * 86400.0


def minute_of(conn: Connection, column: Any) -> ColumnElement[Any]:
    """``column``'s minute as the text ``YYYY-MM-DD HH:MM``."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        return func.to_char(column, "YYYY-MM-DD HH24:MI")
    if dialect in ("mysql", "mariadb"):
        return func.date_format(column, "%Y-%m-%d %H:%i")
    return func.strftime("%Y-%m-%d %H:%M", column)


def stats_statements(conn: Connection, now: datetime, since: datetime) -> dict[str, Select[Any]]:
    """The statements of ``queue_stats`` by name (``tests/contract/test_query_plans.py`` reads
    their plans): types with their oldest pending task, counts per type and status, the ended
    tasks per type and per minute, the workers holding live leases."""
    pending = TaskStatus.PENDING.value
    oldest = select(func.min(T.created_at)).where(T.type_id == TT.id, T.status == pending).scalar_subquery()
    ended = (T.status.in_(ENDED), T.completed_at >= since)
    run = cast(seconds_between(conn, T.claimed_at, T.completed_at), Float)
    minute = minute_of(conn, T.completed_at).label("minute")
    live = (T.status == TaskStatus.CLAIMED.value, T.lease_expires_at > now)
    return {
        "types": select(TT.id, TT.name, oldest).order_by(TT.name),
        "counts": select(T.type_id, T.status, func.count()).group_by(T.type_id, T.status),
        "ended": select(T.type_id, T.status, func.count(), func.avg(run))
        .where(*ended)
        .group_by(T.type_id, T.status),
        "minutes": select(minute, T.type_id, T.status, func.count())
        .where(*ended)
        .group_by(minute, T.type_id, T.status),
        "workers": select(func.count(distinct(T.claimed_by))).where(*live),
        "workers_by_type": select(T.type_id, func.count(distinct(T.claimed_by)))
        .where(*live)
        .group_by(T.type_id),
    }


def queue_stats(now: datetime, since: datetime, conn: Connection) -> QueueStats:
    statements = stats_statements(conn, now, since)
    types = conn.execute(statements["types"]).all()
    counts: dict[int, dict[str, int]] = {}
    for type_id, status, n in conn.execute(statements["counts"]):
        counts.setdefault(type_id, {})[status] = n
    recent: dict[tuple[int, str], tuple[int, float | None]] = {}
    for type_id, status, n, avg in conn.execute(statements["ended"]):
        recent[type_id, status] = (n, None if avg is None else float(avg))
    names = {row[0]: row[1] for row in types}
    minutes = [(m, names[t], s, n) for m, t, s, n in conn.execute(statements["minutes"]) if t in names]
    workers = conn.execute(statements["workers"]).scalar_one()
    by_type = {names[t]: n for t, n in conn.execute(statements["workers_by_type"]) if t in names}
    return QueueStats(
        types=[_type_stats(row, counts.get(row[0], {}), recent) for row in types],
        minutes=minutes,
        workers_active=workers,
        workers_by_type=by_type,
    )


def _type_stats(
    row: Any, counts: dict[str, int], recent: dict[tuple[int, str], tuple[int, float | None]]
) -> TypeStats:
    type_id, name, oldest = row
    done, avg = recent.get((type_id, TaskStatus.COMPLETED.value), (0, None))
    failed, _ = recent.get((type_id, TaskStatus.FAILED.value), (0, None))
    return TypeStats(name, counts, _aware(oldest), done, failed, avg)


def _aware(value: Any) -> datetime | None:
    """A scalar subquery's timestamp loses the column's type: read it as the column would."""
    if value is None:
        return None
    if isinstance(value, str):  # SQLite hands an aggregate's timestamp back as its text
        value = datetime.fromisoformat(value)
    return naive_utc(value).replace(tzinfo=UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def worker_statements(conn: Connection, since: datetime) -> dict[str, Select[Any]]:
    """The statements of ``worker_stats`` by name, each per worker and task type: the history's
    last day per event, the tasks each worker holds now, and the run times of the tasks each
    finished. (A history row's type is its task's, read by primary key; a deleted task's history
    has none.)"""
    run = cast(seconds_between(conn, T.claimed_at, T.completed_at), Float)
    with_type = tasks.outerjoin(task_types, TT.id == T.type_id)
    # A subquery by primary key per history row of the window, not a join (a planner may hash
    # the whole tasks table to join the few rows of a day).
    type_of_task = (
        select(TT.name)
        .select_from(tasks.join(task_types, TT.id == T.type_id))
        .where(T.id == H.task_id)
        .scalar_subquery()
    )
    return {
        "events": select(H.worker_id, type_of_task, H.event, func.count(), func.max(H.created_at))
        .where(H.created_at >= since, H.worker_id.is_not(None))
        .group_by(H.worker_id, type_of_task, H.event),
        "holding": select(T.claimed_by, TT.name, func.count(), func.max(T.updated_at))
        .select_from(with_type)
        .where(T.status == TaskStatus.CLAIMED.value, T.claimed_by.is_not(None))
        .group_by(T.claimed_by, TT.name),
        "processing": select(T.claimed_by, TT.name, func.count(), func.sum(run))
        .select_from(with_type)
        .where(T.status.in_(ENDED), T.completed_at >= since, T.claimed_by.is_not(None))
        .group_by(T.claimed_by, TT.name),
    }


class _Share:
    """A worker's counts for one type (or, ``None``, for tasks since deleted) while they are read."""

    def __init__(self) -> None:
        self.claimed = self.completed = self.failed = self.processed = 0
        self.seconds = 0.0
        self.last: datetime | None = None

    def seen(self, at: Any) -> None:
        self.last = _later(self.last, _aware(at))


def worker_stats(since: datetime, conn: Connection) -> list[WorkerStats]:
    seen: dict[str, dict[str | None, _Share]] = {}

    def share(worker_id: str, type_name: str | None) -> _Share:
        return seen.setdefault(worker_id, {}).setdefault(type_name, _Share())

    statements = worker_statements(conn, since)
    for worker_id, type_name, event, n, last in conn.execute(statements["events"]):
        entry = share(worker_id, type_name)
        if event == "completed":
            entry.completed += n
        elif event in FAILED_EVENTS:
            entry.failed += n
        entry.seen(last)
    for worker_id, type_name, n, last in conn.execute(statements["holding"]):
        entry = share(worker_id, type_name)
        entry.claimed = n
        entry.seen(last)  # heartbeats are not in the history
    for worker_id, type_name, n, total in conn.execute(statements["processing"]):
        if worker_id in seen and total is not None:
            entry = share(worker_id, type_name)
            entry.processed, entry.seconds = n, float(total)
    return [_worker(w, shares) for w, shares in sorted(seen.items())]


def _worker(worker_id: str, shares: dict[str | None, _Share]) -> WorkerStats:
    every = list(shares.values())
    processed = sum(s.processed for s in every)
    last = None
    for s in every:
        last = _later(last, s.last)
    by_type = tuple(
        WorkerTypeStats(t, s.claimed, s.completed, s.failed, s.last, s.processed, s.seconds)
        for t, s in sorted((t, s) for t, s in shares.items() if t is not None)
    )
    return WorkerStats(
        worker_id,
        sum(s.claimed for s in every),
        sum(s.completed for s in every),
        sum(s.failed for s in every),
        last,
        sum(s.seconds for s in every) / processed if processed else None,
        by_type,
    )


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None or b is None:
        return a or b
    return max(a, b)


def events_after(after_id: int, limit: int, conn: Connection) -> list[FeedEvent]:
    query = (
        select(H.id, H.task_id, H.event, H.worker_id, H.created_at, TT.name, T.status)
        .select_from(
            task_history.outerjoin(tasks, T.id == H.task_id).outerjoin(task_types, TT.id == T.type_id)
        )
        .where(H.id > after_id)
        .order_by(H.id)
        .limit(limit)
    )
    return [FeedEvent(*row) for row in conn.execute(query)]


def last_event_id(conn: Connection) -> int:
    found = conn.execute(select(func.max(H.id))).scalar()
    return int(found or 0)
