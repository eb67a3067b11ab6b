"""TaskService over a real store: retention (API.md B.10) — the purge deletes tasks past their
retention, with their history, a bounded batch per transaction, and their dedupe keys are free."""

from __future__ import annotations

import random

import pytest

from taskmanager import models
from taskmanager.engine.clock import FrozenClock
from taskmanager.engine.retention import Retainer
from taskmanager.engine.service import TaskService
from taskmanager.errors import NotFound
from taskmanager.store import SqlStore

SCHEMA = {"type": "object"}


@pytest.fixture
def service(store: SqlStore, clock: FrozenClock) -> TaskService:
    return TaskService(store, clock=clock, rng=random.Random(1))


async def finished(service: TaskService, count: int, *, success: bool = True, start: int = 0) -> list[int]:
    ids = []
    for n in range(start, start + count):
        created = await service.create_task(models.CreateTask(type="t", params={"n": n}))
        ids.append(created.data["id"])
    claimed = await service.claim(models.ClaimTasks(worker_id="w", limit=count))
    assert claimed.data["count"] == count
    results = [{"id": i, "success": success, "error": None if success else "x"} for i in ids]
    await service.complete_batch(models.CompleteBatch(worker_id="w", results=results))
    return ids


async def register(service: TaskService, **settings: int) -> None:
    body = models.RegisterTaskType(name="t", version="1", param_schema=SCHEMA, max_attempts=1, **settings)
    await service.register_type(body)


async def test_purge_deletes_only_what_is_due_in_bounded_batches(
    service: TaskService, store: SqlStore, clock: FrozenClock
) -> None:
    await register(service, keep_completed_seconds=100, keep_failed_seconds=300)
    early = await finished(service, 5)
    failed = await finished(service, 2, success=False, start=100)
    clock.advance(50)
    late = await finished(service, 3, start=200)
    retainer = Retainer(store, clock, batch=2)
    assert await retainer.purge_due() == 0
    clock.advance(50)  # the early ones are due now, the late ones in 50 s, the failed in 250 s
    assert await retainer.purge_due(max_batches=2) == 4  # two batches of two, then it stops
    assert await retainer.purge_due() == 1
    assert [t.id for t in await store.get_tasks(early + late + failed)] == sorted(failed + late)
    assert [await store.list_events(i) for i in early] == [[]] * 5
    clock.advance(250)
    assert await retainer.purge_due() == 5
    assert await store.get_tasks(failed + late) == []


async def test_a_create_frees_the_key_of_a_task_past_its_retention_before_the_sweep(
    service: TaskService, store: SqlStore, clock: FrozenClock
) -> None:
    await register(service, keep_completed_seconds=60)
    (old,) = await finished(service, 1)
    clock.advance(59)
    duplicate = await service.create_task(models.CreateTask(type="t", params={"n": 0}))
    assert (duplicate.data["duplicate"], duplicate.data["id"]) == (True, old)
    clock.advance(1)
    fresh = await service.create_task(models.CreateTask(type="t", params={"n": 0}))
    assert fresh.data["duplicate"] is False
    assert fresh.data["id"] != old
    assert await store.get_task(old) is None
    with pytest.raises(NotFound):
        await service.get_task(old)
