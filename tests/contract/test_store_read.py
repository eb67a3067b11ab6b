"""Store contract: get_task, list_tasks (filters, order, paging, total) and list_events."""

from __future__ import annotations

from datetime import timedelta

from taskmanager.engine.clock import FrozenClock
from taskmanager.engine.records import HistoryEvent, NewEvent, TaskStatus, TaskType
from taskmanager.engine.store import ListResult, TaskQuery
from taskmanager.store import SqlStore
from tests.contract.builders import add_task, change, claim_params, claim_query, make_type, set_columns


async def test_get_task_of_an_unknown_id_is_none(store: SqlStore, clock: FrozenClock) -> None:
    task_type = await make_type(store, "t", clock.now())
    task = await add_task(store, task_type, clock.now())
    assert await store.get_task(task.id + 1000) is None


async def _three_apart(store: SqlStore, task_type: TaskType, clock: FrozenClock) -> list[int]:
    ids = []
    for _ in range(3):
        ids.append((await add_task(store, task_type, clock.now())).id)
        clock.advance(1)
    return ids


async def test_list_tasks_is_newest_first(store: SqlStore, clock: FrozenClock) -> None:
    task_type = await make_type(store, "t", clock.now())
    ids = await _three_apart(store, task_type, clock)
    listed = await store.list_tasks(TaskQuery())
    assert [t.id for t in listed.tasks] == ids[::-1]
    assert listed.total == 3


async def test_list_tasks_breaks_ties_by_id_descending(store: SqlStore, clock: FrozenClock) -> None:
    task_type = await make_type(store, "t", clock.now())
    later = await add_task(store, task_type, clock.now() + timedelta(seconds=1))
    same = [(await add_task(store, task_type, clock.now())).id for _ in range(3)]
    listed = await store.list_tasks(TaskQuery())
    assert [t.id for t in listed.tasks] == [later.id, *sorted(same, reverse=True)]


async def test_list_tasks_pages_with_limit_and_offset(store: SqlStore, clock: FrozenClock) -> None:
    task_type = await make_type(store, "t", clock.now())
    ids = []
    for _ in range(7):
        ids.append((await add_task(store, task_type, clock.now())).id)
        clock.advance(1)
    newest_first = ids[::-1]
    page = await store.list_tasks(TaskQuery(limit=3, offset=2))
    assert [t.id for t in page.tasks] == newest_first[2:5]
    assert page.total == 7
    tail = await store.list_tasks(TaskQuery(limit=3, offset=6))
    assert [t.id for t in tail.tasks] == newest_first[6:]
    assert tail.total == 7
    beyond = await store.list_tasks(TaskQuery(limit=3, offset=50))
    assert (beyond.tasks, beyond.total) == ([], 7)


async def test_list_tasks_filters_by_one_or_more_statuses(store: SqlStore, clock: FrozenClock) -> None:
    task_type = await make_type(store, "t", clock.now())
    pending, claimed, completed, failed = await _four(store, task_type, clock)
    assert _ids(await store.list_tasks(TaskQuery(statuses=(TaskStatus.PENDING,)))) == [pending]
    both = await store.list_tasks(TaskQuery(statuses=(TaskStatus.PENDING, TaskStatus.CLAIMED)))
    assert sorted(_ids(both)) == sorted([pending, claimed])
    assert both.total == 2
    finished = await store.list_tasks(TaskQuery(statuses=(TaskStatus.COMPLETED, TaskStatus.FAILED)))
    assert sorted(_ids(finished)) == sorted([completed, failed])
    assert (await store.list_tasks(TaskQuery(statuses=(TaskStatus.CANCELLED,)))).total == 0


async def test_list_tasks_filters_by_worker(store: SqlStore, clock: FrozenClock) -> None:
    task_type = await make_type(store, "t", clock.now())
    _, claimed, completed, _ = await _four(store, task_type, clock)
    by_w1 = await store.list_tasks(TaskQuery(worker_id="w1"))
    assert sorted(_ids(by_w1)) == sorted([claimed, completed])
    assert (await store.list_tasks(TaskQuery(worker_id="nobody"))).total == 0


async def test_list_tasks_filters_by_type_name_or_pattern(store: SqlStore, clock: FrozenClock) -> None:
    script = await make_type(store, "PrismQ.Script.Generate", clock.now())
    audio = await make_type(store, "PrismQ.Audio.Render", clock.now())
    other = await make_type(store, "Other", clock.now())
    s = await add_task(store, script, clock.now())
    a = await add_task(store, audio, clock.now())
    o = await add_task(store, other, clock.now())
    assert _ids(await store.list_tasks(TaskQuery(type_name="PrismQ.Script.Generate"))) == [s.id]
    assert _ids(await store.list_tasks(TaskQuery(type_name="PrismQ.%"))) == []
    prismq = await store.list_tasks(TaskQuery(type_like="PrismQ.%"))
    assert sorted(_ids(prismq)) == sorted([s.id, a.id])
    assert prismq.total == 2
    assert _ids(await store.list_tasks(TaskQuery(type_like="Oth%"))) == [o.id]


async def test_list_tasks_combines_filters_and_counts_all_matches(
    store: SqlStore, clock: FrozenClock
) -> None:
    one = await make_type(store, "one", clock.now())
    two = await make_type(store, "two", clock.now())
    for _ in range(4):
        await add_task(store, one, clock.now())
        await add_task(store, two, clock.now())
    await store.claim_tasks(
        claim_query(clock.now(), limit=1, type_ids=(one.id,)), claim_params(clock.now(), "w1")
    )
    query = TaskQuery(statuses=(TaskStatus.PENDING,), type_name="one", limit=2)
    page = await store.list_tasks(query)
    assert len(page.tasks) == 2
    assert page.total == 3
    assert all(t.type == "one" and t.status == TaskStatus.PENDING for t in page.tasks)


async def test_list_events_in_order_with_their_fields(store: SqlStore, clock: FrozenClock) -> None:
    task_type = await make_type(store, "t", clock.now())
    task = await add_task(store, task_type, clock.now())
    other = await add_task(store, task_type, clock.now())
    clock.advance(2)
    events = (
        NewEvent(HistoryEvent.PROGRESS, "w1", "Zpráva ✓", {"progress": 10, "nested": {"a": [1]}}),
        NewEvent(HistoryEvent.HEARTBEAT, "w1"),
    )
    assert await store.update_task(change(task.id, clock.now(), events=events, progress=10)) is not None
    events = await store.list_events(task.id)
    assert [e.event for e in events] == ["created", "progress", "heartbeat"]
    assert [e.id for e in events] == sorted(e.id for e in events)
    assert {e.task_id for e in events} == {task.id}
    progress = events[1]
    assert (progress.worker_id, progress.message) == ("w1", "Zpráva ✓")
    assert progress.metadata == {"progress": 10, "nested": {"a": [1]}}
    assert progress.created_at == clock.now()
    assert (events[2].message, events[2].metadata) == (None, None)
    assert [e.event for e in await store.list_events(other.id)] == ["created"]


async def test_list_events_of_an_unknown_task_is_empty(store: SqlStore) -> None:
    assert await store.list_events(4242) == []


def _ids(result: ListResult) -> list[int]:
    return [t.id for t in result.tasks]


async def _four(store: SqlStore, task_type: TaskType, clock: FrozenClock) -> tuple[int, int, int, int]:
    """A pending, a claimed (w1), a completed (w1) and a failed (w2) task."""
    ids = [(await add_task(store, task_type, clock.now())).id for _ in range(4)]
    now = clock.now()
    for task_id, worker in zip(ids[1:], ("w1", "w1", "w2"), strict=True):
        await set_columns(store, task_id, now, status=TaskStatus.CLAIMED, claimed_by=worker, attempts=1)
    await set_columns(store, ids[2], now, status=TaskStatus.COMPLETED)
    await set_columns(store, ids[3], now, status=TaskStatus.FAILED)
    return ids[0], ids[1], ids[2], ids[3]
