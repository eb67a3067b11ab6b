"""Writing a snapshot into our (migrated) schema in one transaction, or checking that it could be."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import func, insert, inspect, select, text
from sqlalchemy.engine import Connection

from taskmanager.engine.records import TERMINAL_STATUSES, DedupeScope, TaskStatus
from taskmanager.prismq.errors import IdsTaken, ImportRefused
from taskmanager.prismq.shapes import SHOWN_PROBLEMS, ImportOptions, ImportReport, Snapshot
from taskmanager.store.database import Database
from taskmanager.store.tables import task_history, task_types, tasks

T, TT = tasks.c, task_types.c
R = TypeVar("R")

#: Rows per INSERT and ids per ``IN (...)``: far below every driver's bind-parameter limit.
BATCH = 500


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
        total, written = len(plan.types) + len(plan.tasks) + len(plan.history), 0
        for target, rows in ((task_types, plan.types), (tasks, plan.tasks), (task_history, plan.history)):
            for chunk in _chunks(rows):
                conn.execute(insert(target), list(chunk))
                written += len(chunk)
                if options.progress is not None:
                    options.progress(written, total)
        _advance_sequences(conn)
    return plan.report(snapshot, options.dry_run)


async def write_snapshot(target: Database, snapshot: Snapshot, options: ImportOptions) -> ImportReport:
    """Insert ``snapshot`` into the (migrated) target in one transaction; with ``dry_run``, only
    check that it could be (nothing is written)."""
    return await target.run(lambda conn: _write(snapshot, options, conn), write=not options.dry_run)


def plan_report(snapshot: Snapshot) -> ImportReport:
    """What a dry run reports for a target that does not exist yet: every row would be written."""
    return _Plan(snapshot.types, snapshot.tasks, snapshot.history, 0, 0).report(snapshot, dry_run=True)
