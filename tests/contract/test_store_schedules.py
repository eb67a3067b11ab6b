"""Store contract: schedules (save_schedule, get/list/delete, due_schedules, next_schedule_at) and
fire_tick — the compare-and-set that lets one of many racing servers fire a tick."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from taskmanager.engine.clock import FrozenClock
from taskmanager.engine.store import FireTick, InsertOutcome, SaveSchedule, TaskQuery
from taskmanager.store import SqlStore, open_store
from tests.conftest import TestDatabase
from tests.contract.builders import make_type, new_task


def schedule(name: str, now: datetime, *, next_run_at: datetime | None, **fields: object) -> SaveSchedule:
    values: dict[str, object] = {
        "type": "t",
        "cron": None,
        "interval_seconds": 60,
        "params_json": '{"a":1}',
        "priority": 0,
        "timezone": "UTC",
        "enabled": next_run_at is not None,
        "reschedule": True,
        **fields,
    }
    return SaveSchedule(name=name, next_run_at=next_run_at, now=now, **values)  # type: ignore[arg-type]


async def test_a_schedule_is_saved_by_name_read_listed_and_deleted(
    store: SqlStore, clock: FrozenClock
) -> None:
    now = clock.now()
    first, created = await store.save_schedule(schedule("b", now, next_run_at=now + timedelta(minutes=1)))
    assert created
    assert (first.name, first.type, first.interval_seconds, first.params) == ("b", "t", 60, {"a": 1})
    assert first.next_run_at == now + timedelta(minutes=1)
    assert first.last_run_at is None
    later = now + timedelta(seconds=5)
    kept, created = await store.save_schedule(
        schedule("b", later, next_run_at=now + timedelta(hours=1), priority=4, reschedule=False)
    )
    assert not created
    assert (kept.id, kept.priority, kept.updated_at, kept.created_at) == (first.id, 4, later, now)
    assert kept.next_run_at == now + timedelta(minutes=1)  # not rescheduled: the due tick is kept
    moved, _ = await store.save_schedule(schedule("b", later, next_run_at=now + timedelta(hours=1)))
    assert moved.next_run_at == now + timedelta(hours=1)
    await store.save_schedule(schedule("a", now, next_run_at=None))
    assert [s.name for s in await store.list_schedules()] == ["a", "b"]
    assert await store.get_schedule("a") is not None
    assert await store.delete_schedule("a")
    assert not await store.delete_schedule("a")
    assert await store.get_schedule("a") is None


async def test_due_schedules_are_the_enabled_ones_whose_tick_has_come(
    store: SqlStore, clock: FrozenClock
) -> None:
    now = clock.now()
    await store.save_schedule(schedule("later", now, next_run_at=now + timedelta(seconds=1)))
    await store.save_schedule(schedule("now", now, next_run_at=now))
    await store.save_schedule(schedule("earlier", now, next_run_at=now - timedelta(seconds=1)))
    await store.save_schedule(schedule("off", now, next_run_at=None))
    assert [s.name for s in await store.due_schedules(now, 10)] == ["earlier", "now"]
    assert [s.name for s in await store.due_schedules(now, 1)] == ["earlier"]
    assert await store.next_schedule_at() == now - timedelta(seconds=1)


async def test_a_tick_is_fired_once_and_its_task_inserted_with_it(
    store: SqlStore, clock: FrozenClock
) -> None:
    now = clock.now()
    task_type = await make_type(store, "t", now)
    saved, _ = await store.save_schedule(schedule("s", now, next_run_at=now))
    task = new_task(task_type, now, schedule="s", scheduled_for=now)
    fire = FireTick(saved.id, now, saved.updated_at, now, now + timedelta(minutes=1), task)
    won, result = await store.fire_tick(fire)
    assert won
    assert result is not None
    assert result.outcome == InsertOutcome.CREATED
    assert result.task is not None
    stored = await store.get_task(result.task.id)
    assert stored is not None
    assert (stored.schedule, stored.scheduled_for) == ("s", now)
    after = await store.get_schedule("s")
    assert after is not None
    assert (after.next_run_at, after.last_run_at) == (now + timedelta(minutes=1), now)
    assert await store.fire_tick(fire) == (False, None)  # the same tick again: nothing


async def test_an_edit_after_the_read_makes_the_tick_miss(store: SqlStore, clock: FrozenClock) -> None:
    now = clock.now()
    task_type = await make_type(store, "t", now)
    saved, _ = await store.save_schedule(schedule("s", now, next_run_at=now))
    await store.save_schedule(schedule("s", now + timedelta(seconds=1), next_run_at=now, reschedule=False))
    task = new_task(task_type, now)
    fire = FireTick(saved.id, now, saved.updated_at, now, now + timedelta(minutes=1), task)
    assert await store.fire_tick(fire) == (False, None)
    assert (await store.list_tasks(TaskQuery())).total == 0


async def test_stores_racing_the_same_tick_fire_it_once(
    clean_database: TestDatabase, clock: FrozenClock
) -> None:
    now = clock.now()
    stores = [open_store(clean_database.url, pool_size=2) for _ in range(4)]
    try:
        task_type = await make_type(stores[0], "t", now)
        saved, _ = await stores[0].save_schedule(schedule("s", now, next_run_at=now))
        fire = FireTick(
            saved.id, now, saved.updated_at, now, now + timedelta(minutes=1), new_task(task_type, now)
        )
        outcomes = await asyncio.gather(*(s.fire_tick(fire) for s in stores for _ in range(3)))
        assert sum(won for won, _ in outcomes) == 1
        tasks = await stores[0].get_tasks(range(1, 100))
        assert len(tasks) == 1
    finally:
        for opened in stores:
            await opened.close()
