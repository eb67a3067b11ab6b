"""The store's dependency verbs (API.md B.5) on every database: edges and marks written with an
insert, blocked dependants read in pages, marks cleared as a compare-and-set, and deletes and
the retention purge that respect them."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from taskmanager.engine.clock import FrozenClock
from taskmanager.engine.records import TaskStatus
from taskmanager.engine.store import DependantsQuery, InsertOutcome, PurgeQuery, Retention
from taskmanager.store import SqlStore
from tests.contract.builders import add_task, claim, make_type, new_task, set_columns


async def test_an_insert_with_dependencies_marks_them_and_is_blocked(
    store: SqlStore, clock: FrozenClock
) -> None:
    now = clock.now()
    task_type = await make_type(store, "t", now)
    first, second = await add_task(store, task_type, now), await add_task(store, task_type, now)
    waiting = await add_task(store, task_type, now, depends_on=(second.id, first.id))
    assert (waiting.blocked, waiting.depends_on, waiting.dependant_marks) == (True, (second.id, first.id), 0)
    read = await store.get_task(waiting.id)
    assert read is not None
    assert (read.blocked, read.depends_on) == (True, (second.id, first.id))
    marks = {t.id: t.dependant_marks for t in await store.get_tasks([first.id, second.id])}
    assert marks == {first.id: 1, second.id: 1}
    assert [t.id for t in await claim(store, now, limit=10)] == [first.id, second.id]  # never the blocked


async def test_a_batch_resolves_depends_on_index_to_earlier_items(
    store: SqlStore, clock: FrozenClock
) -> None:
    now = clock.now()
    task_type = await make_type(store, "t", now)
    head = new_task(task_type, now)
    tail = replace(new_task(task_type, now), depends_on_index=(0,))
    results = await store.insert_tasks([head, tail])
    assert [r.outcome for r in results] == [InsertOutcome.CREATED, InsertOutcome.CREATED]
    first, second = (r.task for r in results)
    assert first is not None
    assert second is not None
    assert second.depends_on == (first.id,)
    full = replace(new_task(task_type, now), max_pending=0)
    after_full = replace(new_task(task_type, now), depends_on_index=(0,))
    refused = await store.insert_tasks([full, after_full])
    assert [r.outcome for r in refused] == [InsertOutcome.QUEUE_FULL, InsertOutcome.DEPENDENCY_NOT_CREATED]


async def test_blocked_dependants_come_in_pages_with_their_dependencies(
    store: SqlStore, clock: FrozenClock
) -> None:
    now = clock.now()
    task_type = await make_type(store, "t", now)
    root, other = await add_task(store, task_type, now), await add_task(store, task_type, now)
    waiting = [await add_task(store, task_type, now, depends_on=(root.id, other.id)) for _ in range(5)]
    await set_columns(store, other.id, now, status=TaskStatus.COMPLETED)
    await set_columns(store, waiting[0].id, now, blocked=False)  # not blocked: not a page member
    page = await store.blocked_dependants(DependantsQuery((root.id,), limit=2))
    assert [d.task.id for d in page] == [w.id for w in waiting[1:3]]
    assert page[0].dependencies == ((root.id, TaskStatus.PENDING), (other.id, TaskStatus.COMPLETED))
    rest = await store.blocked_dependants(DependantsQuery((root.id,), after_id=page[-1].task.id, limit=2))
    assert [d.task.id for d in rest] == [w.id for w in waiting[3:]]
    only = await store.blocked_dependants(DependantsQuery((), ids=(waiting[4].id, root.id)))
    assert [d.task.id for d in only] == [waiting[4].id]


async def test_marks_are_cleared_only_on_the_row_as_it_was_settled(
    store: SqlStore, clock: FrozenClock
) -> None:
    now = clock.now()
    task_type = await make_type(store, "t", now)
    root = await add_task(store, task_type, now)
    await add_task(store, task_type, now, depends_on=(root.id,))
    ended = await set_columns(store, root.id, now, status=TaskStatus.CANCELLED, completed_at=now)
    assert [t.id for t in await store.unsettled_tasks(10)] == [root.id]
    await store.mark_dependencies([root.id])  # another dependant attached since it was read
    assert await store.clear_dependant_marks([ended]) == 0
    (again,) = await store.unsettled_tasks(10)
    assert await store.clear_dependant_marks([again]) == 1
    assert await store.unsettled_tasks(10) == []


async def test_retention_keeps_a_task_with_marks_and_deletes_take_their_edges(
    store: SqlStore, clock: FrozenClock
) -> None:
    now = clock.now()
    task_type = await make_type(store, "t", now)
    old = now - timedelta(days=2)
    root = await add_task(store, task_type, old)
    child = await add_task(store, task_type, now, depends_on=(root.id,))
    await set_columns(store, root.id, now, status=TaskStatus.FAILED, completed_at=old)
    due = Retention(((("failed", "cancelled"), now - timedelta(days=1), (task_type.id,)),))
    assert await store.purge_tasks(PurgeQuery(due)) == 0  # its dependants are not settled yet
    (marked,) = await store.unsettled_tasks(10)
    await store.clear_dependant_marks([marked])
    assert await store.purge_tasks(PurgeQuery(due)) == 1
    assert await store.blocked_dependants(DependantsQuery((root.id,))) == []
    found = await store.blocked_dependants(DependantsQuery((), ids=(child.id,)))
    assert [d.dependencies for d in found] == [()]  # the edge to the deleted task went with it
    assert await store.delete_tasks([child.id]) == 1
