"""Reading a PrismQ database: every table in one consistent snapshot, shaped as our rows.

Times: PrismQ's columns are ``TIMESTAMP`` (an instant; read here in a UTC session, so exact).
A ``DATETIME`` column (a naive wall-clock time, as some hand-made PrismQ schemas have) is read as
a time in the import's ``source_timezone``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import column, inspect, select, table, text
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from sqlalchemy.types import TIMESTAMP

from taskmanager.engine.policy import Defaults, compute_dedupe_key
from taskmanager.engine.records import TERMINAL_STATUSES, DedupeScope, TaskStatus
from taskmanager.prismq.errors import ImportRefused, PrismqImportError
from taskmanager.prismq.shapes import SHOWN_PROBLEMS, ImportOptions, Snapshot
from taskmanager.store.database import driver_url

#: Columns without which a table is not PrismQ's (the others are optional).
REQUIRED = {
    "task_types": {"id", "name", "version", "param_schema_json"},
    "tasks": {"id", "type_id", "status", "params_json", "dedupe_key"},
    "task_history": {"task_id", "status_change"},
}
#: Columns read when the table has them.
WANTED = {
    "task_types": REQUIRED["task_types"] | {"is_active", "created_at", "updated_at"},
    "tasks": REQUIRED["tasks"]
    | {"result_json", "error_message", "priority", "progress", "attempts", "claimed_by"}
    | {"claimed_at", "completed_at", "created_at", "updated_at"},
    "task_history": REQUIRED["task_history"] | {"id", "worker_id", "message", "created_at"},
}
#: PrismQ history entries whose name differs from our event for the same thing.
PRISMQ_EVENTS = {"pending (retry)": "retry_scheduled", "progress_update": "progress"}
#: Longest event name our ``task_history.event`` column holds.
MAX_EVENT_LENGTH = 32


@dataclass(frozen=True, slots=True)
class _Columns:
    """The columns one PrismQ table has, and how to read its times as UTC."""

    table: str
    names: frozenset[str]
    instants: frozenset[str]
    zone: tzinfo

    @classmethod
    def of(cls, conn: Connection, name: str, zone: tzinfo) -> _Columns:
        found = inspect(conn).get_columns(name)
        names = frozenset(c["name"] for c in found)
        missing = REQUIRED[name] - names
        if missing:
            raise ImportRefused(f"Not a PrismQ database: table {name} has no {', '.join(sorted(missing))}")
        instants = frozenset(c["name"] for c in found if isinstance(c["type"], TIMESTAMP))
        return cls(name, names, instants, zone)

    def rows(self, conn: Connection) -> Iterator[RowMapping]:
        chosen = sorted(WANTED[self.table] & self.names)
        order = "id" if "id" in self.names else "task_id"
        query = select(*(column(c) for c in chosen)).select_from(table(self.table)).order_by(column(order))
        for row in conn.execute(query):
            yield row._mapping

    def time(self, row: RowMapping, name: str) -> datetime | None:
        value = row.get(name)
        if not isinstance(value, datetime):
            return None  # absent, NULL, or MySQL's zero date
        if name in self.instants:
            return value.replace(tzinfo=UTC)
        return value.replace(tzinfo=self.zone).astimezone(UTC)


def _is_json(value: object) -> bool:
    try:
        json.loads(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def _type_row(row: RowMapping, cols: _Columns, defaults: Defaults, now: datetime) -> dict[str, Any]:
    created = cols.time(row, "created_at") or now
    return {
        "id": row["id"],
        "name": row["name"],
        "version": row["version"],
        "param_schema": row["param_schema_json"],
        "is_active": row.get("is_active") is None or bool(row["is_active"]),
        # The settings (models.TypeSettings) are left out, so they are stored NULL and follow the
        # server's defaults (section C) as for a type registered without them; only the dedupe
        # scope is PrismQ's own.
        "dedupe": DedupeScope.ALL.value,
        "created_at": created,
        "updated_at": cols.time(row, "updated_at") or created,
    }


def _task_row(row: RowMapping, cols: _Columns, defaults: Defaults, now: datetime) -> dict[str, Any]:
    status = TaskStatus(row["status"] or TaskStatus.PENDING.value)
    created = cols.time(row, "created_at") or now
    updated = cols.time(row, "updated_at") or created
    claimed_at = cols.time(row, "claimed_at")
    lease_expires_at = None
    if status == TaskStatus.CLAIMED:
        claimed_at = claimed_at or updated
        lease_expires_at = claimed_at + timedelta(seconds=defaults.claim_timeout)
    return {
        "id": row["id"],
        "type_id": row["type_id"],
        "status": status.value,
        "params": row["params_json"],
        "result": row.get("result_json"),
        "error_message": row.get("error_message"),
        "priority": row.get("priority") or 0,
        "progress": min(100, max(0, row.get("progress") or 0)),
        "attempts": row.get("attempts") or 0,
        "max_attempts": defaults.max_attempts,
        "claimed_by": row.get("claimed_by"),
        "claimed_at": claimed_at,
        "lease_expires_at": lease_expires_at,
        "lease_token": None,
        # PrismQ leaves completed_at set on a task that went back to pending for a retry.
        "completed_at": cols.time(row, "completed_at") if status in TERMINAL_STATUSES else None,
        "run_after": None,
        "expires_at": None,
        "assigned_to": None,
        "created_at": created,
        "updated_at": updated,
        "dedupe_key": row["dedupe_key"],
        # PrismQ has no callbacks: an imported task's end is POSTed nowhere (callback_url NULL),
        # and its type's callback_url is NULL too (a setting, left out above).
    }


def _task_problem(row: RowMapping, type_names: dict[int, str]) -> str | None:
    if row["status"] is not None and row["status"] not in set(TaskStatus):
        return f"task {row['id']}: unknown status {row['status']!r}"
    if row["type_id"] not in type_names:
        return f"task {row['id']}: no task type {row['type_id']}"
    if not _is_json(row["params_json"]):
        return f"task {row['id']}: params_json is not JSON"
    if row.get("result_json") is not None and not _is_json(row["result_json"]):
        return f"task {row['id']}: result_json is not JSON"
    return None


def _history_row(row: RowMapping, cols: _Columns, now: datetime) -> dict[str, Any]:
    raw = str(row["status_change"])
    event = PRISMQ_EVENTS.get(raw, raw)[:MAX_EVENT_LENGTH]
    metadata = None if event == raw else json.dumps({"prismq_status_change": raw}, ensure_ascii=False)
    return {
        "task_id": row["task_id"],
        "event": event,
        "worker_id": row.get("worker_id"),
        "message": row.get("message"),
        "metadata": metadata,
        "created_at": cols.time(row, "created_at") or now,
    }


def _refuse_problems(problems: list[str]) -> None:
    if problems:
        more = len(problems) - SHOWN_PROBLEMS
        shown = "; ".join(problems[:SHOWN_PROBLEMS]) + (f"; and {more} more" if more > 0 else "")
        raise ImportRefused(f"The PrismQ database holds rows that cannot be imported: {shown}")


def _read(options: ImportOptions, now: datetime, conn: Connection) -> Snapshot:
    if conn.dialect.name in ("mysql", "mariadb"):
        conn.execute(text("SET time_zone = '+00:00'"))  # TIMESTAMP columns read as UTC
    zone, defaults = options.source_timezone, options.defaults
    present = set(inspect(conn).get_table_names())
    if not {"task_types", "tasks"} <= present:
        raise ImportRefused("Not a PrismQ database: it has no task_types and tasks tables")
    type_cols = _Columns.of(conn, "task_types", zone)
    types = [_type_row(row, type_cols, defaults, now) for row in type_cols.rows(conn)]
    problems = [
        f"task type {t['id']}: param_schema_json is not JSON"
        for t in types
        if not _is_json(t["param_schema"])
    ]
    names = {t["id"]: t["name"] for t in types}
    task_cols = _Columns.of(conn, "tasks", zone)
    rows, unmatched = [], 0
    for row in task_cols.rows(conn):
        problem = _task_problem(row, names)
        if problem is not None:
            problems.append(problem)
            continue
        rows.append(_task_row(row, task_cols, defaults, now))
        params = json.loads(row["params_json"])
        unmatched += compute_dedupe_key(names[row["type_id"]], params) != row["dedupe_key"]
    _refuse_problems(problems)
    history: list[dict[str, Any]] = []
    if "task_history" in present:
        history_cols = _Columns.of(conn, "task_history", zone)
        history = [_history_row(row, history_cols, now) for row in history_cols.rows(conn)]
    return Snapshot(types, rows, history, unmatched)


async def read_prismq(source_url: str, options: ImportOptions, now: datetime) -> Snapshot:
    """Everything in the PrismQ database at ``source_url``, read in one consistent snapshot."""
    url = driver_url(source_url)
    if url.get_backend_name() not in ("mysql", "mariadb"):
        raise PrismqImportError("A PrismQ database is MySQL or MariaDB: give a mysql://… URL")
    engine = create_async_engine(url, isolation_level="REPEATABLE READ", poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            return await conn.run_sync(lambda sync: _read(options, now, sync))
    except (DBAPIError, OSError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise PrismqImportError(f"Cannot read the PrismQ database: {reason}") from exc
    finally:
        await engine.dispose()
