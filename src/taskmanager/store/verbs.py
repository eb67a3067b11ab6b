"""The SQL of the lifecycle verbs: a claim's conditions and writes, the compare-and-set, expiry.

Plain functions on a synchronous ``Connection``, as ``operations.py``'s; the engine decides what
they write (``ClaimParams``, ``TaskChange``) and they only apply it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    bindparam,
    false,
    func,
    insert,
    literal_column,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.sql.dml import Update

from taskmanager.engine.records import Task, TaskStatus
from taskmanager.engine.scope import LIKE_ESCAPE
from taskmanager.engine.store import ClaimParams, ClaimQuery, DueQuery, TaskChange
from taskmanager.store.operations import INSERT_HISTORY, announce_end, announce_work, like_any, load
from taskmanager.store.rows import TT, Selects, T, encode_changes, event_row, task_from_row, with_changes
from taskmanager.store.tables import UTCDateTime, callback_deliveries, tasks


def delivery_row(task_id: int, url: str, now: datetime) -> dict[str, Any]:
    """The outbox row of a task's end (B.5): no try taken yet, due at once."""
    return {"task_id": task_id, "url": url, "tries": 0, "next_try_at": now, "created_at": now}


def write_claims(conn: Connection, picked: list[Task], params: ClaimParams) -> list[Task]:
    """Claim the picked rows as ``params.applied`` says: one executemany, one INSERT of events."""
    rows: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    claimed: list[Task] = []
    for index, task in enumerate(picked):
        transition = params.applied(task, index)
        rows.append({"_id": task.id, **encode_changes(transition.changes)})
        events.extend(event_row(task.id, event, params.now) for event in transition.events)
        claimed.append(with_changes(task, transition.changes))
    if rows:
        conn.execute(update_by_id(tuple(c for c in rows[0] if c != "_id")), rows)
    if events:
        conn.execute(INSERT_HISTORY, events)
    return claimed


#: The statements a compare-and-set or a claim writes with, made once (SQLAlchemy remembers the
#: key of its compiled form on the statement object: a statement made anew is walked every time).
INSERT_DELIVERIES = insert(callback_deliveries)
LOCK_IDS = select(T.id).where(T.id.in_(bindparam("ids", expanding=True))).order_by(T.id).with_for_update()


@lru_cache(maxsize=256)
def update_by_id(columns: tuple[str, ...]) -> Update:
    """``UPDATE tasks SET <columns> WHERE id = :_id``, one per set of columns written."""
    return update(tasks).where(T.id == bindparam("_id")).values({c: bindparam(c) for c in columns})


@dataclass
class BatchPlan:
    """What a batch of compare-and-sets writes, once its rows are locked and read: the result of
    each change (None: its row no longer matched, or is gone), the rows to update grouped by the
    columns they change (each row a dict of column values and ``_id``), the history rows, the
    callback deliveries, whether a task became claimable again and whether an awaited one ended
    (``Store.await_end``)."""

    results: list[Task | None] = field(default_factory=list)
    updates: dict[tuple[str, ...], list[dict[str, Any]]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    #: The outbox rows (B.5) of the changes with ``callback`` that matched.
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    wakes: bool = False
    ends: bool = False


def plan_updates(changes: Sequence[TaskChange], locked: Sequence[Task]) -> BatchPlan:
    """Compare each change's ``expected`` with its locked row — the same compare-and-set as an
    ``UPDATE … WHERE <expected>``, decided under the lock — and gather what the matching ones
    write. A second change of the same task is judged on the first one's result."""
    rows = {task.id: task for task in locked}
    plan = BatchPlan()
    for change in changes:
        task = rows.get(change.task_id)
        if task is None or not change.expected.matches(task):
            plan.results.append(None)
            continue
        values = encode_changes(change.changes)
        plan.updates.setdefault(tuple(values), []).append({"_id": task.id, **values})
        plan.events.extend(event_row(task.id, event, change.now) for event in change.events)
        plan.wakes = plan.wakes or change.wakes
        plan.ends = plan.ends or (change.ends and task.awaited)
        rows[task.id] = after = with_changes(task, change.changes)
        if change.callback and after.callback_url is not None:
            plan.deliveries.append(delivery_row(after.id, after.callback_url, change.now))
        plan.results.append(after)
    return plan


def update_tasks(
    q: Selects, changes: Sequence[TaskChange], conn: Connection, *, lock_rows: bool = True
) -> list[Task | None]:
    """A compare-and-set for each change (``SqlStore.update_task`` is a batch of one), in one
    pass: the rows locked in ascending id order (so two batches over the same tasks cannot
    deadlock each other; ``lock_rows`` False — SQLite, whose writer holds the whole database
    already — reads them without that first statement) and read once, the
    changes judged by ``plan_updates``, and the matching ones written with one statement per
    shape of change, one INSERT of their events and (only if some have ``callback``) one of
    their deliveries. The results are in the order of ``changes``."""
    ids = sorted({change.task_id for change in changes})
    if lock_rows:
        ids = list(conn.execute(LOCK_IDS, {"ids": ids}).scalars())
    plan = plan_updates(changes, load(conn, q, ids))
    for columns, group in plan.updates.items():
        conn.execute(update_by_id(columns), group)
    if plan.events:
        conn.execute(INSERT_HISTORY, plan.events)
    if plan.deliveries:
        conn.execute(INSERT_DELIVERIES, plan.deliveries)
    if plan.wakes:
        announce_work(conn)
    if plan.ends:
        announce_end(conn)
    return plan.results


class ClaimValues:
    """How a claim's values enter its SQL: here as values; a statement compiled once per shape
    (PostgreSQL's) binds them as parameters instead."""

    def value(self, name: str, value: Any) -> Any:
        return value

    def member(self, column: ColumnElement[Any], name: str, values: tuple[Any, ...]) -> ColumnElement[bool]:
        return column.in_(values)

    def like_any(
        self, column: ColumnElement[str], name: str, patterns: tuple[str, ...]
    ) -> ColumnElement[bool]:
        return like_any(column, patterns)


class SharedBinds(ClaimValues):
    """A claim's values as parameters of a statement made once per shape (``claim_shape``) on
    the shared path, given at each run by ``claim_values``: SQLAlchemy then walks the statement
    once, not at every claim."""

    TYPES: dict[str, Any] = {"now": UTCDateTime(), "worker_id": T.claimed_by.type, "type_like": TT.name.type}

    def value(self, name: str, value: Any) -> Any:
        return bindparam(name, type_=self.TYPES[name])

    def member(self, column: ColumnElement[Any], name: str, values: tuple[Any, ...]) -> ColumnElement[bool]:
        return column.in_(bindparam(name, expanding=True))

    def like_any(
        self, column: ColumnElement[str], name: str, patterns: tuple[str, ...]
    ) -> ColumnElement[bool]:
        return or_(
            *(
                column.like(bindparam(f"{name}_{n}", type_=TT.name.type), escape=LIKE_ESCAPE)
                for n in range(len(patterns))
            )
        )


def claim_shape(query: ClaimQuery, skip_types: Sequence[int]) -> tuple[Any, ...]:
    """What decides the text of a claim's pick on the shared path (``SharedBinds``)."""
    return (
        query.type_like is not None,
        query.type_names is not None,
        None if query.type_scope is None else len(query.type_scope),
        query.type_ids is not None,
        query.order,
        query.limit,
        bool(skip_types),
    )


def claim_values(query: ClaimQuery, skip_types: Sequence[int]) -> dict[str, Any]:
    """The parameters of a claim's pick made with ``SharedBinds``."""
    values: dict[str, Any] = {"now": query.now, "worker_id": query.worker_id}
    if query.type_like is not None:
        values["type_like"] = query.type_like
    if query.type_names is not None:
        values["type_names"] = list(query.type_names)
    if query.type_scope is not None:
        values.update({f"type_scope_{n}": pattern for n, pattern in enumerate(query.type_scope)})
    if query.type_ids is not None:
        values["type_ids"] = list(query.type_ids)
    if skip_types:
        values["skip_types"] = list(skip_types)
    return values


def skipping(skip: bool) -> list[ColumnElement[bool]]:
    """The condition leaving out the types at their ``max_running`` (``skip_types``), if any."""
    return [T.type_id.not_in(bindparam("skip_types", expanding=True))] if skip else []


def claim_conditions(query: ClaimQuery, values: ClaimValues | None = None) -> list[ColumnElement[bool]]:
    """Which tasks a claim may take: pending, due, not expired, for this worker, of an active
    type the claim asks for."""
    values = values or ClaimValues()
    now = values.value("now", query.now)
    types = select(TT.id).where(TT.is_active.is_(True))
    if query.type_like is not None:
        types = types.where(TT.name.like(values.value("type_like", query.type_like)))
    if query.type_names is not None:
        types = types.where(values.member(TT.name, "type_names", query.type_names))
    if query.type_scope is not None:
        # The key's types: a claim by a key limited to some types never sees another's task.
        types = types.where(values.like_any(TT.name, "type_scope", query.type_scope))
    conditions = [
        T.status == literal_column(f"'{TaskStatus.PENDING.value}'"),
        T.blocked == false(),  # not waiting for its dependencies (B.5): the claim index's 2nd column
        or_(T.run_after.is_(None), T.run_after <= now),
        # Not expired: "unset or later", written so that no planner takes it for an index range
        # (SQLite's would otherwise OR two indexes and sort, not walk the claim index).
        func.coalesce(T.expires_at > now, true()),
        or_(T.assigned_to.is_(None), T.assigned_to == values.value("worker_id", query.worker_id)),
        T.type_id.in_(types),
    ]
    if query.type_ids is not None:
        conditions.append(values.member(T.type_id, "type_ids", query.type_ids))
    return conditions


def limited_types(query: ClaimQuery, values: ClaimValues | None = None) -> Select[Any]:
    """The active types with a ``max_running`` that a claim may take tasks of (B.9), by the
    claim's own type filters (a superset of its scope is safe: it only serialises more)."""
    values = values or ClaimValues()
    types = select(TT.id, TT.max_running).where(TT.is_active.is_(True), TT.max_running.is_not(None))
    if query.type_like is not None:
        types = types.where(TT.name.like(values.value("type_like", query.type_like)))
    if query.type_names is not None:
        types = types.where(values.member(TT.name, "type_names", query.type_names))
    if query.type_ids is not None:
        types = types.where(values.member(TT.id, "type_ids", query.type_ids))
    if query.type_scope is not None:
        types = types.where(values.like_any(TT.name, "type_scope", query.type_scope))
    return types


def free_slots(conn: Connection, query: ClaimQuery) -> dict[int, int]:
    """For each limited type a claim may take (``limited_types``), how many more of its tasks
    may be claimed now: ``max_running`` less those claimed under a lease alive at ``query.now``
    (an expired lease frees its slot). The type rows are locked first (``FOR UPDATE``, in id
    order), so concurrent claims of a limited type run one after the other, each counting what
    the one before committed (READ COMMITTED: the count is a later statement, with a fresh
    snapshot). SQLite's single writer serialises them already."""
    limits = dict(conn.execute(_limited_statement(query), claim_values(query, ())).tuples().all())
    if not limits:
        return {}
    running = (
        select(T.type_id, func.count())
        .where(
            T.type_id.in_(list(limits)),
            T.status == TaskStatus.CLAIMED.value,
            T.lease_expires_at > query.now,
        )
        .group_by(T.type_id)
    )
    counts = dict(conn.execute(running).tuples().all())
    return {type_id: max(0, limit - counts.get(type_id, 0)) for type_id, limit in limits.items()}


#: ``free_slots``'s statements by the shape of their claim's filters (a handful in practice).
_LIMITED: dict[tuple[Any, ...], Select[Any]] = {}


def _limited_statement(query: ClaimQuery) -> Select[Any]:
    """``free_slots``'s locked read of the limited types, made once per shape of claim (every
    claim on the shared path runs it, mostly to find no limited type); its values are
    ``claim_values``'s, bound at each run (``SharedBinds``)."""
    shape = claim_shape(query, ())[:4]  # the type filters: what ``limited_types`` reads
    found = _LIMITED.get(shape)
    if found is None:
        if len(_LIMITED) >= 64:
            _LIMITED.clear()
        found = _LIMITED[shape] = limited_types(query, SharedBinds()).order_by(TT.id).with_for_update()
    return found


def within_limits(picked: list[Task], free: dict[int, int], room: int) -> list[Task]:
    """Up to ``room`` of the picked rows that fit their type's free slots, in the claim's
    order; ``free`` is spent as they are taken."""
    kept: list[Task] = []
    for task in picked:
        if len(kept) == room:
            break
        left = free.get(task.type_id)
        if left is not None:
            if left <= 0:
                continue
            free[task.type_id] = left - 1
        kept.append(task)
    return kept


def claim_order(query: ClaimQuery) -> list[ColumnElement[Any]]:
    return [T[name].desc() if descending else T[name].asc() for name, descending in query.order]


def due_tasks(q: Selects, query: DueQuery, conn: Connection) -> list[Task]:
    """Tasks whose lease expired, or that are still pending past their expiry."""
    due = or_(
        and_(T.status == TaskStatus.CLAIMED.value, T.lease_expires_at <= query.now),
        and_(T.status == TaskStatus.PENDING.value, T.expires_at <= query.now),
    )
    return [task_from_row(row) for row in conn.execute(q.task.where(due).order_by(T.id).limit(query.limit))]
