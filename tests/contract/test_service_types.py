"""A server's copy of its task types (TaskService): a single create reads no type when the copy
is current, and is judged against the type as stored when another server changed it. Two
services over two stores of one database stand for two server processes. The clock does not move:
a change is told apart by the type's revision, not its updated_at."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from taskmanager import models
from taskmanager.engine.clock import FrozenClock
from taskmanager.engine.service import TaskService
from taskmanager.errors import ValidationFailed
from taskmanager.store import SqlStore, open_store
from tests.conftest import TestDatabase

TYPE = "Report.Render"
STRICT = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
LOOSE = {"type": "object"}


@pytest.fixture
def here(store: SqlStore, clock: FrozenClock) -> TaskService:
    return TaskService(store, clock=clock, rng=random.Random(1))


@pytest.fixture
async def elsewhere(clean_database: TestDatabase, clock: FrozenClock) -> AsyncIterator[TaskService]:
    other = open_store(clean_database.url, pool_size=2)
    yield TaskService(other, clock=clock, rng=random.Random(2))
    await other.close()


class TypeReads:
    """Counts the store's reads of a task type (the store itself is real)."""

    def __init__(self, store: SqlStore) -> None:
        self.count = 0
        read = store.get_type

        async def counted(name: str) -> Any:
            self.count += 1
            return await read(name)

        store.get_type = counted  # type: ignore[method-assign]


async def register(service: TaskService, schema: dict[str, Any], **settings: Any) -> None:
    body = {"name": TYPE, "version": "1", "param_schema": schema, **settings}
    await service.register_type(models.RegisterTaskType(**body))


async def create(service: TaskService, params: dict[str, Any]) -> dict[str, Any]:
    return (await service.create_task(models.CreateTask(type=TYPE, params=params))).data


async def test_a_create_with_the_type_known_reads_no_type(here: TaskService, store: SqlStore) -> None:
    await register(here, STRICT)
    reads = TypeReads(store)
    await create(here, {"n": 1})
    assert reads.count == 1  # the first create reads its type
    for n in range(2, 5):
        assert (await create(here, {"n": n}))["status"] == "pending"
    assert reads.count == 1


async def test_a_stricter_schema_saved_elsewhere_holds_at_once(
    here: TaskService, elsewhere: TaskService
) -> None:
    await register(here, LOOSE)
    await create(here, {"anything": True})  # here now knows the loose revision
    await register(elsewhere, STRICT)
    with pytest.raises(ValidationFailed) as refused:
        await create(here, {"anything": "else"})
    assert refused.value.details == ["$: 'n' is a required property"]
    assert (await here.list_tasks()).data["total"] == 1


async def test_a_looser_schema_saved_elsewhere_holds_at_once(
    here: TaskService, elsewhere: TaskService
) -> None:
    await register(here, STRICT)
    await create(here, {"n": 1})  # here now knows the strict revision
    await register(elsewhere, LOOSE)
    assert (await create(here, {"anything": True}))["params"] == {"anything": True}


async def test_a_type_paused_and_resumed_elsewhere_is_seen_at_once(
    here: TaskService, elsewhere: TaskService
) -> None:
    await register(here, STRICT)
    await create(here, {"n": 1})
    await elsewhere.deactivate_type(TYPE)
    with pytest.raises(ValidationFailed) as refused:
        await create(here, {"n": 2})
    assert refused.value.message == "Task type is not active"
    await register(elsewhere, STRICT)  # registering a type again resumes it
    assert (await create(here, {"n": 3}))["status"] == "pending"


async def test_settings_changed_elsewhere_apply_to_the_next_create(
    here: TaskService, elsewhere: TaskService
) -> None:
    await register(here, STRICT, max_attempts=2, dedupe="none")
    assert (await create(here, {"n": 1}))["max_attempts"] == 2
    await register(elsewhere, STRICT, max_attempts=7, dedupe="all")
    first = await create(here, {"n": 1})
    assert first["max_attempts"] == 7
    again = await create(here, {"n": 1})  # deduplicated now, by the new setting
    assert again["id"] == first["id"]


async def test_a_batch_reads_its_types_as_stored(here: TaskService, elsewhere: TaskService) -> None:
    await register(here, LOOSE)
    await create(here, {"anything": True})
    await register(elsewhere, STRICT)
    body = models.CreateTasksBatch(tasks=[{"type": TYPE, "params": {"n": 1}}, {"type": TYPE, "params": {}}])
    data = (await here.create_tasks(body)).data
    assert (data["created"], data["failed"]) == (1, 1)
    assert data["results"][1]["error"] == "Parameter validation failed: $: 'n' is a required property"
