"""Importing a PrismQ TaskManager database: its task types, tasks and history, ids kept.

PrismQ (the PHP service this project is compatible with) keeps its queue in MySQL/MariaDB:
``task_types(id, name, version, param_schema_json, is_active, created_at, updated_at)``,
``tasks(id, type_id, status, params_json, dedupe_key, result_json, error_message, priority,
progress, attempts, claimed_by, claimed_at, completed_at, created_at, updated_at)`` (``priority``
and ``progress`` came with later migrations, so either may be missing) and, optionally,
``task_history(id, task_id, status_change, worker_id, message, created_at)``.

The import reads all of it in one consistent snapshot, then writes it into our schema in one
transaction: either everything is imported or nothing is. Ids, statuses, params and results (as
the exact JSON text PrismQ stored) and dedupe keys are kept, so PrismQ workers and clients carry
on against our server: a create with the same params is deduplicated against the imported task.

Times: PrismQ's columns are ``TIMESTAMP`` (an instant; read here in a UTC session, so exact).
A ``DATETIME`` column (a naive wall-clock time, as some hand-made PrismQ schemas have) is read as
a time in ``source_timezone``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import column, func, insert, inspect, select, table, text
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from sqlalchemy.types import TIMESTAMP

from taskmanager.engine.policy import Defaults, compute_dedupe_key
from taskmanager.engine.records import TERMINAL_STATUSES, DedupeScope, TaskStatus
from taskmanager.store.database import Database, connect, driver_url, is_memory
from taskmanager.store.migrate import upgrade
from taskmanager.store.tables import task_history, task_types, tasks

T, TT = tasks.c, task_types.c
R = TypeVar("R")

#: Rows per INSERT and ids per ``IN (...)``: far below every driver's bind-parameter limit.
BATCH = 500
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
#: Bad rows named in one refusal; the rest are counted.
SHOWN_PROBLEMS = 10


class PrismqImportError(Exception):
    """The import did not run; nothing was written."""


class ImportRefused(PrismqImportError):
    """The source holds data the import cannot take, or the target cannot take it as it is."""


class IdsTaken(ImportRefused):
    """The target already holds rows with some of the ids (or dedupe keys) being imported."""


@dataclass(frozen=True, slots=True)
class ImportOptions:
    """How to import: type settings come from ``defaults``, as for a newly registered type."""

    defaults: Defaults = field(default_factory=Defaults)
    source_timezone: tzinfo = UTC
    skip_existing: bool = False
    dry_run: bool = False


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What was read from PrismQ, already shaped as rows of our tables."""

    types: list[dict[str, Any]]
    tasks: list[dict[str, Any]]
    history: list[dict[str, Any]]
    #: Tasks whose stored dedupe key is not the one our server computes from their params.
    unmatched_keys: int


@dataclass(frozen=True, slots=True)
class ImportReport:
    types: int
    tasks_by_status: dict[str, int]
    history: int
    skipped_types: int = 0
    skipped_tasks: int = 0
    unmatched_keys: int = 0
    dry_run: bool = False

    def lines(self) -> list[str]:
        """The summary printed by ``taskmanager import-prismq``."""
        total = sum(self.tasks_by_status.values())
        statuses = ", ".join(f"{s} {n}" for s, n in sorted(self.tasks_by_status.items()))
        lines = [
            "Dry run: nothing was written. Would import:" if self.dry_run else "Imported:",
            f"  task types: {self.types}",
            f"  tasks: {total}" + (f" ({statuses})" if statuses else ""),
            f"  history events: {self.history}",
        ]
        if self.skipped_types or self.skipped_tasks:
            lines.append(
                f"  skipped (already in the target): {self.skipped_types} task types, "
                f"{self.skipped_tasks} tasks"
            )
        if self.unmatched_keys:
            lines.append(
                f"  note: {self.unmatched_keys} tasks keep a dedupe key that differs from the one "
                "computed from their params (stored as other than compact JSON, e.g. escaped "
                "slashes): a create with the same params is not deduplicated against them"
            )
        return lines


# -- reading PrismQ --------------------------------------------------------------------------------


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
        "description": None,
        # Settings left NULL follow the server's defaults (section C), as for a registered type.
        "max_attempts": None,
        "claim_timeout": None,
        "retry_delay": None,
        "retry_max_delay": None,
        "dedupe": DedupeScope.ALL.value,
        "max_pending": None,
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


# -- writing into our schema -----------------------------------------------------------------------


def _chunks(items: Sequence[R]) -> Iterator[Sequence[R]]:
    for start in range(0, len(items), BATCH):
        yield items[start : start + BATCH]


def _shown(ids: Sequence[int]) -> str:
    listed = ", ".join(str(i) for i in sorted(ids)[:SHOWN_PROBLEMS])
    return listed + (", …" if len(ids) > SHOWN_PROBLEMS else "")


@dataclass(frozen=True, slots=True)
class _Plan:
    """The rows to insert, once the target's existing rows are set aside."""

    types: list[dict[str, Any]]
    tasks: list[dict[str, Any]]
    history: list[dict[str, Any]]
    skipped_types: int
    skipped_tasks: int

    def report(self, snapshot: Snapshot, dry_run: bool) -> ImportReport:
        return ImportReport(
            types=len(self.types),
            tasks_by_status=dict(Counter(t["status"] for t in self.tasks)),
            history=len(self.history),
            skipped_types=self.skipped_types,
            skipped_tasks=self.skipped_tasks,
            unmatched_keys=snapshot.unmatched_keys,
            dry_run=dry_run,
        )


def _existing_types(conn: Connection, types: list[dict[str, Any]]) -> dict[int, DedupeScope]:
    """Target types that are the same as PrismQ's (same id and name); refuse any other overlap."""
    ids, names = [t["id"] for t in types], [t["name"] for t in types]
    found: dict[int, tuple[str, str]] = {}
    for id_chunk, name_chunk in zip(_chunks(ids), _chunks(names), strict=True):
        query = select(TT.id, TT.name, TT.dedupe).where(TT.id.in_(id_chunk) | TT.name.in_(name_chunk))
        found.update({row.id: (row.name, row.dedupe) for row in conn.execute(query)})
    wanted = {t["id"]: t["name"] for t in types}
    clashes = [
        f"type id {type_id} is {name!r} in the target but {wanted.get(type_id)!r} in PrismQ"
        if type_id in wanted
        else f"type {name!r} has id {type_id} in the target but another id in PrismQ"
        for type_id, (name, _scope) in sorted(found.items())
        if wanted.get(type_id) != name
    ]
    if clashes:
        raise ImportRefused("Task types clash with the target's: " + "; ".join(clashes[:SHOWN_PROBLEMS]))
    return {type_id: DedupeScope(scope) for type_id, (_name, scope) in found.items()}


def _dedupe_lock(task: dict[str, Any], scope: DedupeScope) -> str | None:
    """The key while it blocks another create with the same key (as the engine keeps it)."""
    if scope == DedupeScope.ALL:
        return str(task["dedupe_key"])
    if scope == DedupeScope.ACTIVE and TaskStatus(task["status"]) not in TERMINAL_STATUSES:
        return str(task["dedupe_key"])
    return None


def _taken_tasks(conn: Connection, rows: list[dict[str, Any]]) -> set[int]:
    """Ids of the tasks to import whose id, or whose dedupe key for their type, is taken."""
    taken: set[int] = set()
    for chunk in _chunks(rows):
        taken.update(conn.scalars(select(T.id).where(T.id.in_([t["id"] for t in chunk]))))
        locks = {(t["type_id"], t["dedupe_lock"]): t["id"] for t in chunk if t["dedupe_lock"]}
        query = select(T.type_id, T.dedupe_lock).where(T.dedupe_lock.in_([lock for _, lock in locks]))
        taken.update(
            locks[(row.type_id, row.dedupe_lock)]
            for row in conn.execute(query)
            if (row.type_id, row.dedupe_lock) in locks
        )
    return taken


def _plan(conn: Connection, snapshot: Snapshot, skip_existing: bool) -> _Plan:
    if not inspect(conn).has_table("tasks"):  # a dry run on a database not migrated yet
        return _Plan(snapshot.types, snapshot.tasks, snapshot.history, 0, 0)
    existing = _existing_types(conn, snapshot.types)
    scopes = {t["id"]: DedupeScope.ALL for t in snapshot.types} | existing
    rows = [t | {"dedupe_lock": _dedupe_lock(t, scopes[t["type_id"]])} for t in snapshot.tasks]
    taken = _taken_tasks(conn, rows)
    if (existing or taken) and not skip_existing:
        held = [f"{len(existing)} of the task type ids ({_shown(list(existing))})"] if existing else []
        if taken:
            held.append(f"{len(taken)} of the tasks ({_shown(list(taken))}; by id or by dedupe key)")
        raise IdsTaken(f"The target already holds {' and '.join(held)} being imported")
    rows = [t for t in rows if t["id"] not in taken]
    kept = {t["id"] for t in rows}
    return _Plan(
        types=[t for t in snapshot.types if t["id"] not in existing],
        tasks=rows,
        history=[h for h in snapshot.history if h["task_id"] in kept],
        skipped_types=len(existing),
        skipped_tasks=len(taken),
    )


def _advance_sequences(conn: Connection) -> None:
    """PostgreSQL: make the id sequences continue after the highest id inserted explicitly.

    (MySQL's AUTO_INCREMENT and SQLite's rowid follow explicit ids by themselves.)
    """
    if conn.dialect.name != "postgresql":
        return
    for table_ in (task_types, tasks):
        sequence = conn.scalar(text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": table_.name})
        top = conn.scalar(select(func.max(table_.c.id)))
        if sequence is None or top is None:
            continue
        # The name comes from PostgreSQL itself, already quoted where it needs to be.
        last, called = conn.execute(text(f"SELECT last_value, is_called FROM {sequence}")).one()
        if (last + 1 if called else last) <= top:
            conn.execute(text("SELECT setval(CAST(:s AS regclass), :v)"), {"s": sequence, "v": top})


def _write(snapshot: Snapshot, options: ImportOptions, conn: Connection) -> ImportReport:
    plan = _plan(conn, snapshot, options.skip_existing)
    if not options.dry_run:
        for target, rows in ((task_types, plan.types), (tasks, plan.tasks), (task_history, plan.history)):
            for chunk in _chunks(rows):
                conn.execute(insert(target), list(chunk))
        _advance_sequences(conn)
    return plan.report(snapshot, options.dry_run)


async def write_snapshot(target: Database, snapshot: Snapshot, options: ImportOptions) -> ImportReport:
    """Insert ``snapshot`` into the (migrated) target in one transaction; with ``dry_run``, only
    check that it could be (nothing is written)."""
    return await target.run(lambda conn: _write(snapshot, options, conn), write=not options.dry_run)


def _file_missing(url: str) -> bool:
    """A SQLite file that does not exist yet (opening it would create it)."""
    parsed = driver_url(url)
    name = parsed.database
    return parsed.get_backend_name() == "sqlite" and not is_memory(parsed) and not Path(str(name)).exists()


async def import_prismq(source_url: str, target_url: str, options: ImportOptions) -> ImportReport:
    """Copy the PrismQ database at ``source_url`` into ours at ``target_url`` (migrated first)."""
    snapshot = await read_prismq(source_url, options, datetime.now(UTC))
    if options.dry_run and _file_missing(target_url):
        return _Plan(snapshot.types, snapshot.tasks, snapshot.history, 0, 0).report(snapshot, dry_run=True)
    target = connect(target_url, pool_size=1)
    try:
        if not options.dry_run:
            await upgrade(target)
        return await write_snapshot(target, snapshot, options)
    finally:
        await target.dispose()
