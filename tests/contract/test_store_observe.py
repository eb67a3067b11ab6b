"""Store contract: the observing verbs (queue_stats, worker_stats, events_after, last_event_id)."""

from __future__ import annotations

from datetime import timedelta

from taskmanager.engine.clock import FrozenClock
from taskmanager.engine.records import HistoryEvent, NewEvent, TaskStatus
from taskmanager.store import SqlStore
from tests.contract.builders import add_task, claim, make_type, set_columns


async def test_events_after_reads_history_by_id_with_type_and_status(
    store: SqlStore, clock: FrozenClock
) -> None:
    assert await store.last_event_id() == 0
    a, b = await make_type(store, "a", clock.now()), await make_type(store, "b", clock.now())
    first = await add_task(store, a, clock.now())
    second = await add_task(store, b, clock.now())
    (claimed,) = await claim(store, clock.now(), "w7", type_names=("a",))
    assert claimed.id == first.id
    found = await store.events_after(0, 10)
    assert [(e.task_id, e.event, e.type, e.worker_id) for e in found] == [
        (first.id, "created", "a", None),
        (second.id, "created", "b", None),
        (first.id, "claimed", "a", "w7"),
    ]
    assert [e.status for e in found] == ["claimed", "pending", "claimed"]  # the task's status now
    ids = [e.id for e in found]
    assert ids == sorted(ids)
    assert await store.last_event_id() == ids[-1]
    assert [e.id for e in await store.events_after(ids[0], 1)] == [ids[1]]
    assert await store.events_after(ids[-1], 10) == []
    assert found[0].created_at == clock.now()


async def test_events_of_a_deleted_task_have_no_type(store: SqlStore, clock: FrozenClock) -> None:
    task_type = await make_type(store, "t", clock.now())
    task = await add_task(store, task_type, clock.now())
    after = await store.last_event_id()
    await set_columns(
        store, task.id, clock.now(), status=TaskStatus.CANCELLED, events=[NewEvent(HistoryEvent.CANCELLED)]
    )
    assert await store.delete_task(task.id)
    assert await store.events_after(after, 10) == []  # the history went with the task


async def test_queue_stats_counts_per_type_and_the_recent_ends(store: SqlStore, clock: FrozenClock) -> None:
    a = await make_type(store, "a", clock.now())
    await make_type(store, "empty", clock.now())
    old = await add_task(store, a, clock.now())
    clock.advance(5)
    await add_task(store, a, clock.now())
    done = await add_task(store, a, clock.now())
    await set_columns(
        store,
        done.id,
        clock.now(),
        status=TaskStatus.COMPLETED,
        claimed_at=clock.now() - timedelta(seconds=3),
        completed_at=clock.now(),
    )
    found = await store.queue_stats(clock.now(), clock.now() - timedelta(hours=1))
    stats_a, empty = found.types
    assert (stats_a.type, stats_a.counts) == ("a", {"pending": 2, "completed": 1})
    assert stats_a.oldest_pending_at == old.created_at
    assert (stats_a.completed_recent, stats_a.failed_recent) == (1, 0)
    assert stats_a.avg_run_seconds is not None
    assert abs(stats_a.avg_run_seconds - 3) < 0.001
    assert (empty.type, empty.counts, empty.oldest_pending_at) == ("empty", {}, None)
    minute = clock.now().strftime("%Y-%m-%d %H:%M")
    assert found.minutes == [(minute, "a", "completed", 1)]
    assert found.workers_active == 0
    later = await store.queue_stats(clock.now() + timedelta(hours=2), clock.now() + timedelta(hours=1))
    assert (later.types[0].completed_recent, later.minutes) == (0, [])


async def test_worker_stats_from_history_and_held_tasks(store: SqlStore, clock: FrozenClock) -> None:
    task_type = await make_type(store, "t", clock.now())
    await add_task(store, task_type, clock.now())
    clock.advance(10)
    (held,) = await claim(store, clock.now(), "w1")
    (w1,) = await store.worker_stats(clock.now() - timedelta(days=1))
    assert (w1.worker_id, w1.claimed, w1.completed, w1.failed) == ("w1", 1, 0, 0)
    assert w1.last_seen_at == clock.now()
    (later,) = await store.worker_stats(clock.now() + timedelta(seconds=1))
    assert later == type(w1)("w1", 1, 0, 0, held.updated_at, None, later.by_type)  # held: seen by its row
    assert [(t.type, t.claimed, t.completed) for t in later.by_type] == [("t", 1, 0)]
