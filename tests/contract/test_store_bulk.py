"""Store contract: the verbs of bulk actions — keyset pages of matching ids, and deleting many
tasks with their history in one transaction."""

from __future__ import annotations

from taskmanager.engine.clock import FrozenClock
from taskmanager.engine.records import TaskStatus
from taskmanager.engine.store import TaskFilter
from taskmanager.store import SqlStore
from tests.contract.builders import add_task, claim, make_type


async def test_find_task_ids_pages_the_matches_in_id_order(store: SqlStore, clock: FrozenClock) -> None:
    a = await make_type(store, "a", clock.now())
    b = await make_type(store, "b", clock.now())
    made = [await add_task(store, a, clock.now()) for _ in range(5)]
    clock.advance(10)
    late = await add_task(store, a, clock.now())
    other = await add_task(store, b, clock.now())
    (claimed,) = await claim(store, clock.now(), type_ids=(a.id,))
    every_a = [t.id for t in [*made, late]]
    assert await store.find_task_ids(TaskFilter(type_name="a", limit=100)) == every_a
    first = await store.find_task_ids(TaskFilter(type_name="a", limit=4))
    rest = await store.find_task_ids(TaskFilter(type_name="a", after_id=first[-1], limit=4))
    assert (first, rest) == (every_a[:4], every_a[4:])
    assert await store.find_task_ids(TaskFilter(status=TaskStatus.CLAIMED)) == [claimed.id]
    assert await store.find_task_ids(TaskFilter(created_before=clock.now())) == [t.id for t in made]
    assert await store.find_task_ids(TaskFilter(ids=(other.id, late.id, 10**9), type_name="b")) == [other.id]
    assert await store.find_task_ids(TaskFilter(type_name="missing")) == []


async def test_delete_tasks_removes_them_and_their_history(store: SqlStore, clock: FrozenClock) -> None:
    a = await make_type(store, "a", clock.now())
    doomed = [await add_task(store, a, clock.now()) for _ in range(3)]
    kept = await add_task(store, a, clock.now())
    assert await store.delete_tasks([t.id for t in doomed] + [10**9]) == 3
    assert await store.get_tasks([t.id for t in [*doomed, kept]]) == [kept]
    assert [await store.list_events(t.id) for t in doomed] == [[], [], []]
    assert len(await store.list_events(kept.id)) == 1
    assert await store.delete_tasks([]) == 0
