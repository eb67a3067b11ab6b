"""Store contract: insert_tasks — round trip, history, dedupe scopes, queue limits and races."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from typing import Any

from sqlalchemy import String, cast, select
from sqlalchemy.engine import Connection

from taskmanager.engine.clock import FrozenClock
from taskmanager.engine.records import DedupeScope, HistoryEvent, TaskStatus
from taskmanager.engine.store import InsertOutcome, TaskFilter, TaskQuery
from taskmanager.store import SqlStore, open_store
from taskmanager.store.tables import tasks
from tests.conftest import TestDatabase
from tests.contract.builders import (
    add_task,
    claim_params,
    claim_query,
    make_type,
    new_task,
    run_raw,
    save_type,
    set_columns,
)


async def test_inserted_task_reads_back_field_for_field(store: SqlStore, clock: FrozenClock) -> None:
    task_type = await make_type(store, "PrismQ.Script.Generate", clock.now(), claim_timeout=45)
    now = clock.now()
    params = {"topic": "Zdraví 🤖", "nested": {"list": [1, 2.5, None, True]}, "z": "last", "a": "first"}
    item = new_task(
        task_type,
        now,
        params=params,
        priority=-7,
        max_attempts=9,
        run_after=now + timedelta(seconds=30, microseconds=123456),
        expires_at=now + timedelta(hours=1),
        assigned_to="w-7",
    )
    (result,) = await store.insert_tasks([item])
    assert result.outcome == InsertOutcome.CREATED
    task = result.task
    assert task is not None
    assert task.id > 0
    assert (task.type_id, task.type, task.status) == (
        task_type.id,
        "PrismQ.Script.Generate",
        TaskStatus.PENDING,
    )
    assert (task.priority, task.max_attempts, task.attempts, task.progress) == (-7, 9, 0, 0)
    assert task.dedupe_key == item.dedupe_key
    assert task.policy.claim_timeout == 45
    found = await store.get_task(task.id)
    assert found == task
    assert found is not None
    assert list(found.params) == ["topic", "nested", "z", "a"]
    assert found.run_after == now + timedelta(seconds=30, microseconds=123456)
    assert found.created_at.tzinfo is not None


async def test_insert_records_the_creation_event(store: SqlStore, clock: FrozenClock) -> None:
    task_type = await make_type(store, "t", clock.now())
    with_event = await add_task(store, task_type, clock.now())
    without = await add_task(store, task_type, clock.now(), event=False)
    (event,) = await store.list_events(with_event.id)
    assert (event.task_id, event.event, event.created_at) == (
        with_event.id,
        HistoryEvent.CREATED,
        clock.now(),
    )
    assert await store.list_events(without.id) == []


async def test_same_key_returns_the_existing_task(store: SqlStore, clock: FrozenClock) -> None:
    task_type = await make_type(store, "t", clock.now())
    first = await add_task(store, task_type, clock.now(), params={"x": 1})
    clock.advance(10)
    (again,) = await store.insert_tasks([new_task(task_type, clock.now(), params={"x": 1})])
    assert again.outcome == InsertOutcome.DUPLICATE
    assert again.task == first
    assert (await store.list_tasks(TaskQuery())).total == 1


async def test_scope_all_deduplicates_against_finished_tasks(store: SqlStore, clock: FrozenClock) -> None:
    task_type = await make_type(store, "t", clock.now(), dedupe="all")
    first = await add_task(store, task_type, clock.now(), params={"x": 1})
    await set_columns(store, first.id, clock.now(), status=TaskStatus.COMPLETED)
    (again,) = await store.insert_tasks([new_task(task_type, clock.now(), params={"x": 1})])
    assert again.outcome == InsertOutcome.DUPLICATE
    assert again.task is not None
    assert (again.task.id, again.task.status) == (first.id, TaskStatus.COMPLETED)


async def test_scope_active_frees_the_key_once_the_lock_is_released(
    store: SqlStore, clock: FrozenClock
) -> None:
    task_type = await make_type(store, "t", clock.now(), dedupe="active")
    first = await add_task(store, task_type, clock.now(), params={"x": 1})
    (while_pending,) = await store.insert_tasks([new_task(task_type, clock.now(), params={"x": 1})])
    assert while_pending.outcome == InsertOutcome.DUPLICATE
    await set_columns(store, first.id, clock.now(), status=TaskStatus.COMPLETED, dedupe_lock=None)
    (after,) = await store.insert_tasks([new_task(task_type, clock.now(), params={"x": 1})])
    assert after.outcome == InsertOutcome.CREATED
    assert after.task is not None
    assert after.task.id != first.id
    assert after.task.dedupe_key == first.dedupe_key
    # The new task holds the key now.
    (third,) = await store.insert_tasks([new_task(task_type, clock.now(), params={"x": 1})])
    assert third.outcome == InsertOutcome.DUPLICATE
    assert third.task is not None
    assert third.task.id == after.task.id


async def test_scope_none_never_deduplicates(store: SqlStore, clock: FrozenClock) -> None:
    task_type = await make_type(store, "t", clock.now(), dedupe="none")
    results = await store.insert_tasks([new_task(task_type, clock.now(), params={"x": 1}) for _ in range(3)])
    assert [r.outcome for r in results] == [InsertOutcome.CREATED] * 3
    tasks = [r.task for r in results if r.task is not None]
    assert len({t.id for t in tasks}) == 3
    assert len({t.dedupe_key for t in tasks}) == 1
    # A key inserted without dedupe does not block a deduplicated insert of the same key.
    (scoped,) = await store.insert_tasks(
        [new_task(task_type, clock.now(), params={"x": 1}, scope=DedupeScope.ALL)]
    )
    assert scoped.outcome == InsertOutcome.CREATED


async def test_a_task_without_a_key_is_never_a_duplicate(store: SqlStore, clock: FrozenClock) -> None:
    task_type = await make_type(store, "t", clock.now())
    results = await store.insert_tasks(
        [new_task(task_type, clock.now(), params={"x": 1}, dedupe_key=None) for _ in range(2)]
    )
    assert [r.outcome for r in results] == [InsertOutcome.CREATED] * 2


async def test_keys_are_per_type(store: SqlStore, clock: FrozenClock) -> None:
    one = await make_type(store, "one", clock.now())
    two = await make_type(store, "two", clock.now())
    results = await store.insert_tasks(
        [
            new_task(one, clock.now(), params={}, dedupe_key="same"),
            new_task(two, clock.now(), params={}, dedupe_key="same"),
        ]
    )
    assert [r.outcome for r in results] == [InsertOutcome.CREATED] * 2


async def test_a_batch_deduplicates_against_itself(store: SqlStore, clock: FrozenClock) -> None:
    task_type = await make_type(store, "t", clock.now())
    results = await store.insert_tasks(
        [
            new_task(task_type, clock.now(), params={"x": 1}),
            new_task(task_type, clock.now(), params={"x": 2}),
            new_task(task_type, clock.now(), params={"x": 1}),
            new_task(task_type, clock.now(), params={"y": 0}, dedupe_key="custom"),
            new_task(task_type, clock.now(), params={"y": 1}, dedupe_key="custom"),
        ]
    )
    assert [r.outcome for r in results] == [
        InsertOutcome.CREATED,
        InsertOutcome.CREATED,
        InsertOutcome.DUPLICATE,
        InsertOutcome.CREATED,
        InsertOutcome.DUPLICATE,
    ]
    ids = [r.task.id for r in results if r.task is not None]
    assert ids[2] == ids[0]
    assert ids[4] == ids[3]
    assert (await store.list_tasks(TaskQuery())).total == 3


async def test_a_batch_answers_each_item_as_the_stored_row_reads(store: SqlStore, clock: FrozenClock) -> None:
    """A batch is written with a few multi-row statements: every created task it answers with is
    the row as stored (id, fields, event), and a stored duplicate comes back in its place."""
    task_type = await make_type(store, "t", clock.now())
    (stored,) = await store.insert_tasks([new_task(task_type, clock.now(), params={"n": 1})])
    clock.advance(5)
    items = [
        new_task(task_type, clock.now(), params={"n": n}, priority=n, assigned_to=f"w{n}") for n in range(4)
    ]
    results = await store.insert_tasks(items)
    assert [r.outcome for r in results] == [InsertOutcome.CREATED, InsertOutcome.DUPLICATE] + [
        InsertOutcome.CREATED
    ] * 2
    assert results[1].task == stored.task
    for result in (results[0], results[2], results[3]):
        assert result.task is not None
        assert await store.get_task(result.task.id) == result.task
        events = await store.list_events(result.task.id)
        assert [e.event for e in events] == [HistoryEvent.CREATED]
    assert [r.task.params for r in results if r.task] == [{"n": 0}, {"n": 1}, {"n": 2}, {"n": 3}]


async def test_a_full_queue_refuses_new_tasks(store: SqlStore, clock: FrozenClock) -> None:
    task_type = await make_type(store, "t", clock.now(), max_pending=2)
    results = await store.insert_tasks([new_task(task_type, clock.now()) for _ in range(3)])
    assert [r.outcome for r in results] == [
        InsertOutcome.CREATED,
        InsertOutcome.CREATED,
        InsertOutcome.QUEUE_FULL,
    ]
    assert results[2].task is None
    assert (await store.list_tasks(TaskQuery())).total == 2
    # A duplicate of a queued task is still answered with that task.
    first = results[0].task
    assert first is not None
    (again,) = await store.insert_tasks([new_task(task_type, clock.now(), params=first.params)])
    assert again.outcome == InsertOutcome.DUPLICATE


async def test_only_pending_tasks_count_against_the_queue_limit(store: SqlStore, clock: FrozenClock) -> None:
    task_type = await make_type(store, "t", clock.now(), max_pending=1)
    await add_task(store, task_type, clock.now())
    (full,) = await store.insert_tasks([new_task(task_type, clock.now())])
    assert full.outcome == InsertOutcome.QUEUE_FULL
    assert len(await store.claim_tasks(claim_query(clock.now()), claim_params(clock.now(), "w1"))) == 1
    (room,) = await store.insert_tasks([new_task(task_type, clock.now())])
    assert room.outcome == InsertOutcome.CREATED


async def test_queue_limit_is_per_type(store: SqlStore, clock: FrozenClock) -> None:
    limited = await make_type(store, "limited", clock.now(), max_pending=1)
    free = await make_type(store, "free", clock.now())
    await add_task(store, limited, clock.now())
    results = await store.insert_tasks([new_task(free, clock.now()), new_task(limited, clock.now())])
    assert [r.outcome for r in results] == [InsertOutcome.CREATED, InsertOutcome.QUEUE_FULL]


async def test_racing_inserts_of_one_key_yield_one_task(
    store: SqlStore, clock: FrozenClock, clean_database: TestDatabase
) -> None:
    task_type = await make_type(store, "t", clock.now())
    racers = [open_store(clean_database.url, pool_size=2) for _ in range(8)]
    try:
        await asyncio.gather(*(racer.ping() for racer in racers))  # connect before the race
        item = new_task(task_type, clock.now(), params={"same": "params"})
        results = await asyncio.gather(*(racer.insert_tasks([item]) for racer in racers))
    finally:
        await asyncio.gather(*(racer.close() for racer in racers))
    outcomes = [result.outcome for (result,) in results]
    assert outcomes.count(InsertOutcome.CREATED) == 1
    assert outcomes.count(InsertOutcome.DUPLICATE) == 7
    ids = {result.task.id for (result,) in results if result.task is not None}
    assert len(ids) == 1
    listed = await store.list_tasks(TaskQuery())
    assert listed.total == 1
    assert listed.tasks[0].id in ids
    assert len(await store.list_events(listed.tasks[0].id)) == 1


async def test_racing_inserts_of_many_keys_lose_none(
    store: SqlStore, clock: FrozenClock, clean_database: TestDatabase
) -> None:
    task_type = await make_type(store, "t", clock.now())
    racers = [open_store(clean_database.url, pool_size=2) for _ in range(4)]
    items = [new_task(task_type, clock.now(), params={"k": k}) for k in range(10)]
    try:
        await asyncio.gather(*(racer.ping() for racer in racers))
        results = await asyncio.gather(*(racer.insert_tasks(items) for racer in racers))
    finally:
        await asyncio.gather(*(racer.close() for racer in racers))
    for index in range(10):
        tasks = [batch[index].task for batch in results]
        assert len({task.id for task in tasks if task is not None}) == 1
        assert None not in tasks
    assert sum(r.outcome == InsertOutcome.CREATED for batch in results for r in batch) == 10
    assert (await store.list_tasks(TaskQuery())).total == 10


async def test_an_insert_holds_only_while_its_type_is_at_the_revision_it_names(
    store: SqlStore, clock: FrozenClock
) -> None:
    task_type = await make_type(store, "t", clock.now(), max_pending=1)
    first = new_task(task_type, clock.now(), params={"n": 1}, type_revision=task_type.revision)
    (created,) = await store.insert_tasks([first])
    assert created.outcome == InsertOutcome.CREATED
    changed, _ = await store.save_type(save_type("t", clock.now(), max_pending=1, version="2.0.0"))
    # Stale before anything else is judged: a duplicate of the task, or a full queue.
    for params in ({"n": 1}, {"n": 2}):
        (stale,) = await store.insert_tasks(
            [new_task(task_type, clock.now(), params=params, type_revision=1)]
        )
        assert (stale.outcome, stale.task) == (InsertOutcome.STALE_TYPE, None)
    (duplicate,) = await store.insert_tasks([replace(first, type_revision=changed.revision)])
    assert duplicate.outcome == InsertOutcome.DUPLICATE
    (unchecked,) = await store.insert_tasks([new_task(task_type, clock.now(), params={"n": 3})])
    assert unchecked.outcome == InsertOutcome.QUEUE_FULL
    assert (await store.list_tasks(TaskQuery())).total == 1
    assert created.task is not None
    assert [e.event for e in await store.list_events(created.task.id)] == [HistoryEvent.CREATED]


async def test_a_batch_with_one_stale_type_writes_nothing(store: SqlStore, clock: FrozenClock) -> None:
    kept = await make_type(store, "kept", clock.now())
    moved = await make_type(store, "moved", clock.now())
    await store.set_type_active("moved", True, clock.now())  # now at revision 2
    items = [
        new_task(kept, clock.now(), type_revision=kept.revision),
        new_task(moved, clock.now(), type_revision=moved.revision),
        new_task(kept, clock.now()),
    ]
    results = await store.insert_tasks(items)
    assert [(r.outcome, r.task) for r in results] == [(InsertOutcome.STALE_TYPE, None)] * 3
    assert (await store.list_tasks(TaskQuery())).total == 0
    fresh = [replace(items[0], type_revision=1), replace(items[1], type_revision=2), items[2]]
    assert [r.outcome for r in await store.insert_tasks(fresh)] == [InsertOutcome.CREATED] * 3


async def test_a_task_created_alone_is_stored_as_one_created_in_a_batch(
    store: SqlStore, clock: FrozenClock, clean_database: TestDatabase
) -> None:
    # A store may write a single create its own way (SQLite: on the driver): the stored row must
    # not differ from the shared path's, down to the text of a timestamp with no microseconds.
    now = clock.now().replace(microsecond=0)
    task_type = await make_type(store, "t", now)
    fields: dict[str, Any] = {
        "params": {"same": "row"},
        "run_after": now,
        "expires_at": now,
        "assigned_to": "w",
    }
    (alone,) = await store.insert_tasks([new_task(task_type, now, **fields)])
    batch = await store.insert_tasks(
        [new_task(task_type, now, dedupe_key=None, **fields), new_task(task_type, now)]
    )
    ids = [result.task.id for result in (alone, *batch) if result.task is not None]
    assert len(ids) == 3

    def stored(conn: Connection) -> list[tuple[object, ...]]:
        # As text: a value read back through its column type would hide how it is written.
        columns = [cast(c, String) for c in tasks.c if c.name not in ("id", "dedupe_key", "dedupe_lock")]
        return [tuple(row) for row in conn.execute(select(*columns).where(tasks.c.id.in_(ids[:2])))]

    first, second = await run_raw(clean_database.url, stored)
    assert first == second
    (event_alone,), (event_batch,) = [await store.list_events(task_id) for task_id in ids[:2]]
    assert (event_alone.event, event_alone.created_at) == (event_batch.event, event_batch.created_at)
    # Compared as stored: the instant is before the next microsecond, and not before itself.
    assert await store.find_task_ids(TaskFilter(created_before=now + timedelta(microseconds=1))) == ids
    assert await store.find_task_ids(TaskFilter(created_before=now)) == []
