"""The SQL of task dependencies (API.md B.5): edges, dependant marks, blocked dependants.

The engine decides what becomes of a dependant (``lifecycle.dependencies``); these functions
only attach edges, find the dependants to judge, and clear the marks of settled dependencies.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, insert, select, true, update
from sqlalchemy.engine import Connection

from taskmanager.engine.records import TERMINAL_STATUSES, Task, TaskStatus
from taskmanager.engine.store import Dependant, DependantsQuery
from taskmanager.store.rows import Selects, T, task_from_row
from taskmanager.store.tables import task_dependencies, tasks

D = task_dependencies.c
_STATUSES = {status.value: status for status in TaskStatus}
_ENDED = sorted(status.value for status in TERMINAL_STATUSES)


def mark(task_ids: Sequence[int], conn: Connection) -> None:
    """One more dependant mark on each of ``task_ids`` (their rows locked until commit, in id
    order, so an end racing the attach waits for it and then sees the mark)."""
    if task_ids:
        ids = sorted(set(task_ids))
        conn.execute(update(tasks).where(T.id.in_(ids)).values(dependant_marks=T.dependant_marks + 1))


def attach(conn: Connection, task_id: int, depends_on: Sequence[int]) -> None:
    """The edges of a new task to the tasks it depends on."""
    conn.execute(
        insert(task_dependencies),
        [{"task_id": task_id, "depends_on_id": other} for other in sorted(set(depends_on))],
    )


def blocked_dependants(q: Selects, query: DependantsQuery, conn: Connection) -> list[Dependant]:
    """A keyset page of the blocked dependants of ``query.of`` (through the dependency index),
    each with the status of every task it depends on (None: gone)."""
    blocked = (T.status == TaskStatus.PENDING.value, T.blocked == true())
    if query.ids is None:
        page = (
            select(D.task_id)
            .distinct()
            .select_from(task_dependencies.join(tasks, T.id == D.task_id))
            .where(D.depends_on_id.in_(sorted(set(query.of))), D.task_id > query.after_id, *blocked)
            .order_by(D.task_id)
            .limit(query.limit)
        )
    else:  # these tasks, even one whose every dependency was deleted since (no edge left)
        page = select(T.id).where(T.id.in_(query.ids), T.id > query.after_id, *blocked).order_by(T.id)
        page = page.limit(query.limit)
    ids = list(conn.execute(page).scalars())
    if not ids:
        return []
    found = {row.id: task_from_row(row) for row in conn.execute(q.task.where(T.id.in_(ids)))}
    edges = (
        select(D.task_id, D.depends_on_id, T.status)
        .select_from(task_dependencies.outerjoin(tasks, T.id == D.depends_on_id))
        .where(D.task_id.in_(ids))
        .order_by(D.task_id, D.depends_on_id)
    )
    statuses: dict[int, list[tuple[int, TaskStatus | None]]] = {}
    for task_id, other, status in conn.execute(edges):
        statuses.setdefault(task_id, []).append((other, None if status is None else _STATUSES[status]))
    return [Dependant(found[i], tuple(statuses.get(i, ()))) for i in ids if i in found]


def unsettled(q: Selects, limit: int, conn: Connection) -> list[Task]:
    """Ended tasks that still carry dependant marks (``ix_tasks_dependant_marks``)."""
    query = q.task.where(T.dependant_marks > 0, T.status.in_(_ENDED)).order_by(T.id).limit(limit)
    return [task_from_row(row) for row in conn.execute(query)]


def clear_marks(settled: Sequence[Task], conn: Connection) -> int:
    """Each task's marks back to 0, as a compare-and-set on the row as it was settled."""
    cleared = 0
    for task in sorted(settled, key=lambda t: t.id):
        statement = (
            update(tasks)
            .where(
                T.id == task.id,
                T.status == task.status.value,
                T.updated_at == task.updated_at,
                T.dependant_marks == task.dependant_marks,
            )
            .values(dependant_marks=0)
        )
        cleared += conn.execute(statement).rowcount or 0
    return cleared


def delete_edges(task_ids: Sequence[int], conn: Connection) -> None:
    """The edges of deleted tasks, both ways: what they depended on and what depended on them."""
    ids = sorted(set(task_ids))
    conn.execute(delete(task_dependencies).where(D.task_id.in_(ids)))
    conn.execute(delete(task_dependencies).where(D.depends_on_id.in_(ids)))
