"""The SQL of schedules (API.md B.8): saving by name, and firing a tick as a compare-and-set on
the schedule's row in the transaction that inserts the tick's task.

Two servers that read the same due tick both run ``fire_tick``; the UPDATE of the first moves
``next_run_at`` on, and the second's ``WHERE next_run_at = <the tick it read>`` then matches no
row (PostgreSQL and MariaDB re-check the WHERE on the committed row after waiting for its lock;
SQLite runs one writer at a time), so it inserts nothing: one task per tick.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from taskmanager.engine.records import Schedule
from taskmanager.engine.store import FireTick, InsertResult, SaveSchedule
from taskmanager.store.operations import announce_work, insert_one
from taskmanager.store.rows import Selects
from taskmanager.store.tables import schedules

S = schedules.c


def schedule_from_row(row: Any) -> Schedule:
    return Schedule(
        id=row.id,
        name=row.name,
        type=row.type,
        cron=row.cron,
        interval_seconds=row.interval_seconds,
        params=json.loads(row.params),
        priority=row.priority,
        timezone=row.timezone,
        enabled=bool(row.enabled),
        next_run_at=row.next_run_at,
        last_run_at=row.last_run_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def one(conn: Connection, name: str) -> Schedule | None:
    row = conn.execute(select(schedules).where(S.name == name)).first()
    return None if row is None else schedule_from_row(row)


def save(params: SaveSchedule, conn: Connection) -> tuple[Schedule, bool] | None:
    """Update by name, else insert; None when a concurrent insert won (the caller retries)."""
    values: dict[str, Any] = {
        "type": params.type,
        "cron": params.cron,
        "interval_seconds": params.interval_seconds,
        "params": params.params_json,
        "priority": params.priority,
        "timezone": params.timezone,
        "enabled": params.enabled,
        "updated_at": params.now,
    }
    changed = {**values, "next_run_at": params.next_run_at} if params.reschedule else values
    if conn.execute(update(schedules).where(S.name == params.name).values(**changed)).rowcount:
        found = one(conn, params.name)
        assert found is not None
        return found, False
    try:
        with conn.begin_nested():
            conn.execute(
                insert(schedules).values(
                    name=params.name, created_at=params.now, next_run_at=params.next_run_at, **values
                )
            )
    except IntegrityError:
        return None
    created = one(conn, params.name)
    assert created is not None
    return created, True


def listed(conn: Connection) -> list[Schedule]:
    return [schedule_from_row(row) for row in conn.execute(select(schedules).order_by(S.name))]


def remove(name: str, conn: Connection) -> bool:
    return bool(conn.execute(delete(schedules).where(S.name == name)).rowcount)


def due(now: datetime, limit: int, conn: Connection) -> list[Schedule]:
    query = select(schedules).where(S.next_run_at <= now, S.enabled.is_(True))
    rows = conn.execute(query.order_by(S.next_run_at, S.id).limit(limit))
    return [schedule_from_row(row) for row in rows]


def next_at(conn: Connection) -> datetime | None:
    found: datetime | None = conn.scalar(select(func.min(S.next_run_at)).where(S.enabled.is_(True)))
    return found


def fire(q: Selects, params: FireTick, conn: Connection) -> tuple[bool, InsertResult | None]:
    """Whether this call fired the tick, and its task's insert (None: no task to insert)."""
    claimed = conn.execute(
        update(schedules)
        .where(
            S.id == params.schedule_id,
            S.next_run_at == params.expected_next,
            S.updated_at == params.expected_updated,
        )
        .values(next_run_at=params.next_run_at, last_run_at=params.tick)
    ).rowcount
    if not claimed:
        return False, None  # another server fired this tick, or the schedule changed meanwhile
    if params.task is None:
        return True, None
    result = insert_one(conn, q, params.task)
    announce_work(conn)
    return True, result
