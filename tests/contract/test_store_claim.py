"""Store contract: claim_tasks — eligibility, filters, order, limit, atomicity and SKIP LOCKED."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from taskmanager.engine.clock import FrozenClock
from taskmanager.engine.policy import Defaults
from taskmanager.engine.records import HistoryEvent, Task, TaskStatus
from taskmanager.engine.store import TaskQuery
from taskmanager.store import SqlStore, open_store
from taskmanager.store.tables import tasks
from tests.conftest import TestDatabase
from tests.contract.builders import (
    add_task,
    claim_params,
    claim_query,
    make_type,
    raw_async_engine,
    set_columns,
)


def ids(found: list[Task]) -> list[int]:
    return [t.id for t in found]


async def test_claim_takes_the_task_and_records_it(store: SqlStore, clock: FrozenClock) -> None:
    task_type = await make_type(store, "t", clock.now(), claim_timeout=60)
    task = await add_task(store, task_type, clock.now())
    clock.advance(5)
    (claimed,) = await store.claim_tasks(claim_query(clock.now()), claim_params(clock.now(), "w1"))
    assert claimed.id == task.id
    assert (claimed.status, claimed.claimed_by, claimed.attempts) == (TaskStatus.CLAIMED, "w1", 1)
    assert claimed.claimed_at == clock.now()
    assert claimed.lease_expires_at == clock.now() + timedelta(seconds=60)
    assert claimed.lease_token
    assert await store.get_task(task.id) == claimed
    events = await store.list_events(task.id)
    assert [e.event for e in events] == [HistoryEvent.CREATED, HistoryEvent.CLAIMED]
    assert (events[1].worker_id, events[1].metadata, events[1].created_at) == (
        "w1",
        {"attempt": 1},
        clock.now(),
    )


@pytest.mark.parametrize("lease_seconds", [None, 45])
@pytest.mark.parametrize("history", [True, False])
async def test_a_claim_applies_its_params_to_each_row_as_the_engine_states_them(
    store: SqlStore, clock: FrozenClock, lease_seconds: int | None, history: bool
) -> None:
    """Each row picked gets what ``ClaimParams.applied`` makes of it (PostgreSQL applies it in
    SQL, in the statement that picks the rows), in the claim's order."""
    short = await make_type(store, "short", clock.now(), claim_timeout=60)
    default = await make_type(store, "default", clock.now(), claim_timeout=None)  # the server's
    start = clock.now()
    low = await add_task(store, short, start, priority=0)
    high = await add_task(store, default, start, priority=5)
    retried = await add_task(store, short, start, priority=5)
    await set_columns(store, retried.id, start, attempts=2)
    before = {task.id: await _get(store, task.id) for task in (low, high, retried)}
    clock.advance(7)
    now = clock.now()
    params = claim_params(now, lease_seconds=lease_seconds)
    if not history:
        params = replace(params, event=None)
    claimed = await store.claim_tasks(claim_query(now, limit=10), params)
    assert ids(claimed) == [high.id, retried.id, low.id]  # priority first, then first in
    default_timeout = Defaults().claim_timeout
    timeouts = {high.id: default_timeout, retried.id: 60, low.id: 60}
    attempts = {high.id: 1, retried.id: 3, low.id: 1}
    for index, task in enumerate(claimed):
        applied = params.applied(before[task.id], index)
        assert task == replace(before[task.id], **applied.changes)
        assert (task.status, task.claimed_by, task.claimed_at, task.progress) == (
            TaskStatus.CLAIMED,
            "w1",
            now,
            0,
        )
        assert task.attempts == attempts[task.id]
        assert task.lease_expires_at == now + timedelta(seconds=lease_seconds or timeouts[task.id])
        assert task.lease_token == params.tokens[index]
        assert await store.get_task(task.id) == task
        events = await store.list_events(task.id)
        if history:
            assert [(e.event, e.worker_id, e.metadata, e.created_at) for e in events[1:]] == [
                ("claimed", "w1", {"attempt": attempts[task.id]}, now)
            ]
        else:
            assert [e.event for e in events] == ["created"]
    assert len({task.lease_token for task in claimed}) == 3


async def test_claim_of_an_empty_queue_is_empty(store: SqlStore, clock: FrozenClock) -> None:
    await make_type(store, "t", clock.now())
    assert await store.claim_tasks(claim_query(clock.now()), claim_params(clock.now(), "w1")) == []


async def test_default_order_is_priority_first_then_first_in_first_out(
    store: SqlStore, clock: FrozenClock
) -> None:
    task_type = await make_type(store, "t", clock.now())
    low_old = await add_task(store, task_type, clock.now(), priority=1)
    clock.advance(1)
    high_new = await add_task(store, task_type, clock.now(), priority=5)
    clock.advance(1)
    low_new = await add_task(store, task_type, clock.now(), priority=1)
    high_old = await add_task(store, task_type, clock.now() - timedelta(seconds=10), priority=5)
    negative = await add_task(store, task_type, clock.now() - timedelta(hours=1), priority=-3)
    same_time = [await add_task(store, task_type, clock.now(), priority=1) for _ in range(2)]
    expected = [high_old.id, high_new.id, low_old.id, low_new.id, *ids(same_time), negative.id]
    claimed = await store.claim_tasks(claim_query(clock.now(), limit=10), claim_params(clock.now(), "w1"))
    assert ids(claimed) == expected


async def test_default_order_one_claim_at_a_time(store: SqlStore, clock: FrozenClock) -> None:
    task_type = await make_type(store, "t", clock.now())
    first = await add_task(store, task_type, clock.now(), priority=0)
    second = await add_task(store, task_type, clock.now(), priority=9)
    got = []
    for _ in range(3):
        got.append(ids(await store.claim_tasks(claim_query(clock.now()), claim_params(clock.now(), "w1"))))
    assert got == [[second.id], [first.id], []]


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        pytest.param((("created_at", False), ("id", False)), ["a", "b", "c", "d"], id="fifo"),
        pytest.param((("created_at", True), ("id", True)), ["d", "c", "b", "a"], id="lifo"),
        pytest.param(
            (("priority", False), ("created_at", False), ("id", False)),
            ["c", "a", "d", "b"],
            id="priority-asc",
        ),
        pytest.param(
            (("priority", True), ("created_at", False), ("id", False)),
            ["b", "a", "d", "c"],
            id="priority-desc",
        ),
        pytest.param((("id", True),), ["d", "c", "b", "a"], id="id-desc"),
        pytest.param((("attempts", True), ("id", True)), ["c", "a", "d", "b"], id="attempts-desc"),
    ],
)
async def test_claim_follows_the_requested_order(
    order: tuple[tuple[str, bool], ...], expected: list[str], store: SqlStore, clock: FrozenClock
) -> None:
    task_type = await make_type(store, "t", clock.now())
    made = {}
    for name, priority, attempts in (("a", 1, 1), ("b", 2, 0), ("c", 0, 2), ("d", 1, 0)):
        made[name] = await add_task(store, task_type, clock.now(), priority=priority)
        if attempts:
            await set_columns(store, made[name].id, clock.now(), attempts=attempts)
        clock.advance(1)
    claimed = await store.claim_tasks(
        claim_query(clock.now(), limit=4, order=order), claim_params(clock.now(), "w")
    )
    by_id = {task.id: name for name, task in made.items()}
    assert [by_id[i] for i in ids(claimed)] == expected


async def test_claim_takes_at_most_limit_tasks(store: SqlStore, clock: FrozenClock) -> None:
    task_type = await make_type(store, "t", clock.now())
    for _ in range(5):
        await add_task(store, task_type, clock.now())
    assert (
        len(await store.claim_tasks(claim_query(clock.now(), limit=3), claim_params(clock.now(), "w1"))) == 3
    )
    assert (
        len(await store.claim_tasks(claim_query(clock.now(), limit=3), claim_params(clock.now(), "w1"))) == 2
    )
    pending = await store.list_tasks(TaskQuery(statuses=(TaskStatus.PENDING,)))
    assert pending.total == 0


async def test_only_pending_tasks_are_claimed(store: SqlStore, clock: FrozenClock) -> None:
    task_type = await make_type(store, "t", clock.now())
    pending = await add_task(store, task_type, clock.now())
    for status in (TaskStatus.CLAIMED, TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED):
        other = await add_task(store, task_type, clock.now())
        # An expired lease on a claimed row is expired by the engine first, never claimed directly.
        past = clock.now() - timedelta(hours=1)
        await set_columns(store, other.id, clock.now(), status=status, lease_expires_at=past)
    claimed = await store.claim_tasks(claim_query(clock.now(), limit=10), claim_params(clock.now(), "w1"))
    assert ids(claimed) == [pending.id]


async def test_a_task_is_not_claimed_before_run_after(store: SqlStore, clock: FrozenClock) -> None:
    task_type = await make_type(store, "t", clock.now())
    later = await add_task(store, task_type, clock.now(), run_after=clock.now() + timedelta(seconds=30))
    assert await store.claim_tasks(claim_query(clock.now()), claim_params(clock.now(), "w1")) == []
    clock.advance(29)
    assert await store.claim_tasks(claim_query(clock.now()), claim_params(clock.now(), "w1")) == []
    clock.advance(1)
    assert ids(await store.claim_tasks(claim_query(clock.now()), claim_params(clock.now(), "w1"))) == [
        later.id
    ]


async def test_a_task_is_not_claimed_from_expires_at_on(store: SqlStore, clock: FrozenClock) -> None:
    task_type = await make_type(store, "t", clock.now())
    await add_task(store, task_type, clock.now(), expires_at=clock.now())
    live = await add_task(store, task_type, clock.now(), expires_at=clock.now() + timedelta(microseconds=1))
    claimed = await store.claim_tasks(claim_query(clock.now(), limit=5), claim_params(clock.now(), "w1"))
    assert ids(claimed) == [live.id]


async def test_an_assigned_task_goes_only_to_its_worker(store: SqlStore, clock: FrozenClock) -> None:
    task_type = await make_type(store, "t", clock.now())
    mine = await add_task(store, task_type, clock.now(), assigned_to="w2", priority=5)
    anyones = await add_task(store, task_type, clock.now())
    first = await store.claim_tasks(claim_query(clock.now(), "w1", limit=5), claim_params(clock.now(), "w1"))
    assert ids(first) == [anyones.id]
    second = await store.claim_tasks(claim_query(clock.now(), "w2", limit=5), claim_params(clock.now(), "w2"))
    assert ids(second) == [mine.id]


async def test_tasks_of_an_inactive_type_are_not_claimed(store: SqlStore, clock: FrozenClock) -> None:
    paused = await make_type(store, "paused", clock.now())
    await add_task(store, paused, clock.now())
    await store.set_type_active("paused", False, clock.now())
    assert await store.claim_tasks(claim_query(clock.now()), claim_params(clock.now(), "w1")) == []
    by_id = claim_query(clock.now(), type_ids=(paused.id,))
    assert await store.claim_tasks(by_id, claim_params(clock.now(), "w1")) == []
    await store.set_type_active("paused", True, clock.now())
    assert len(await store.claim_tasks(claim_query(clock.now()), claim_params(clock.now(), "w1"))) == 1


async def test_claim_filters_by_type(store: SqlStore, clock: FrozenClock) -> None:
    script = await make_type(store, "PrismQ.Script.Generate", clock.now())
    audio = await make_type(store, "PrismQ.Audio.Render", clock.now())
    other = await make_type(store, "Other.Job", clock.now())
    made = {t.name: await add_task(store, t, clock.now()) for t in (script, audio, other)}

    async def claim(**filters: Any) -> list[str]:
        query = claim_query(clock.now(), limit=5, **filters)
        claimed = await store.claim_tasks(query, claim_params(clock.now()))
        for task in claimed:  # put it back for the next look
            await set_columns(store, task.id, clock.now(), status=TaskStatus.PENDING)
        return sorted(t.type for t in claimed)

    assert await claim(type_ids=(audio.id,)) == ["PrismQ.Audio.Render"]
    assert await claim(type_ids=(audio.id, other.id)) == ["Other.Job", "PrismQ.Audio.Render"]
    assert await claim(type_like="PrismQ.%") == ["PrismQ.Audio.Render", "PrismQ.Script.Generate"]
    assert await claim(type_names=("Other.Job", "PrismQ.Script.Generate")) == [
        "Other.Job",
        "PrismQ.Script.Generate",
    ]
    assert await claim(type_like="PrismQ.%", type_names=("Other.Job",)) == []
    assert await claim(type_ids=()) == []
    assert all(t.status == TaskStatus.PENDING for t in [await _get(store, t.id) for t in made.values()])


async def _get(store: SqlStore, task_id: int) -> Task:
    found = await store.get_task(task_id)
    assert found is not None
    return found


async def test_concurrent_claims_never_return_the_same_task(
    store: SqlStore, clock: FrozenClock, clean_database: TestDatabase
) -> None:
    task_type = await make_type(store, "t", clock.now())
    for _ in range(40):
        await add_task(store, task_type, clock.now())
    workers = [f"w{n}" for n in range(8)]
    stores = [open_store(clean_database.url, pool_size=2) for _ in workers]

    async def work(worker: str, own: SqlStore) -> list[Task]:
        taken: list[Task] = []
        for _ in range(4):
            taken += await own.claim_tasks(
                claim_query(clock.now(), worker, limit=2), claim_params(clock.now(), worker)
            )
        return taken

    try:
        await asyncio.gather(*(own.ping() for own in stores))
        results = await asyncio.gather(*(work(w, own) for w, own in zip(workers, stores, strict=True)))
    finally:
        await asyncio.gather(*(own.close() for own in stores))
    everything = [task.id for taken in results for task in taken]
    assert len(everything) == len(set(everything))
    assert len(everything) > 8
    for worker, taken in zip(workers, results, strict=True):
        for task in taken:
            stored = await _get(store, task.id)
            assert (stored.status, stored.claimed_by, stored.attempts) == (TaskStatus.CLAIMED, worker, 1)
            assert stored.lease_token == task.lease_token
    claimed = await store.list_tasks(TaskQuery(statuses=(TaskStatus.CLAIMED,), limit=100))
    assert claimed.total == len(everything)


async def test_claim_skips_a_row_another_transaction_holds(
    store: SqlStore, clock: FrozenClock, clean_database: TestDatabase
) -> None:
    task_type = await make_type(store, "t", clock.now())
    first = await add_task(store, task_type, clock.now(), priority=1)
    second = await add_task(store, task_type, clock.now(), priority=0)
    query = claim_query(clock.now())
    if clean_database.kind != "sqlite":
        # PostgreSQL and MySQL: FOR UPDATE SKIP LOCKED passes over the held row without waiting.
        holder = raw_async_engine(clean_database.url)
        try:
            async with holder.connect() as conn, conn.begin():
                await conn.execute(select(tasks.c.id).where(tasks.c.id == first.id).with_for_update())
                claimed = await asyncio.wait_for(
                    store.claim_tasks(query, claim_params(clock.now(), "w1")), 20
                )
                assert ids(claimed) == [second.id]
        finally:
            await holder.dispose()
        assert (await _get(store, first.id)).status == TaskStatus.PENDING
    else:
        # SQLite locks the whole database: a claim racing another writer's transaction waits for
        # it (busy timeout) and then sees its change, so it never takes the row that writer took.
        writer = sqlite3.connect(make_url(clean_database.url).database or "", check_same_thread=False)
        writer.isolation_level = None
        try:
            writer.execute("BEGIN IMMEDIATE")
            writer.execute(
                "UPDATE tasks SET status = 'claimed', claimed_by = 'other' WHERE id = ?", (first.id,)
            )
            racing = asyncio.ensure_future(store.claim_tasks(query, claim_params(clock.now(), "w1")))
            await asyncio.to_thread(writer.execute, "COMMIT")
            claimed = await asyncio.wait_for(racing, 20)
        finally:
            writer.close()
        assert ids(claimed) == [second.id]
        assert (await _get(store, first.id)).claimed_by == "other"
