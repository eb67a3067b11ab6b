"""TaskService over a real store: a bulk action works in bounded batches — every page of ids it
reads and every batch of compare-and-sets it writes holds at most ``batch`` tasks."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from taskmanager import models
from taskmanager.engine.bulk import BulkOperations
from taskmanager.engine.clock import FrozenClock
from taskmanager.engine.service import TaskService
from taskmanager.engine.store import TaskChange, TaskFilter
from taskmanager.store import SqlStore


class Recording:
    """The real store, with the size of each page read and each batch written recorded."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.pages: list[int] = []
        self.writes: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def find_task_ids(self, query: TaskFilter) -> list[int]:
        found = await self.store.find_task_ids(query)
        self.pages.append(len(found))
        return found

    async def update_tasks(self, changes: Sequence[TaskChange]) -> list[Any]:
        self.writes.append(len(changes))
        return await self.store.update_tasks(changes)

    async def delete_tasks(self, task_ids: Sequence[int]) -> int:
        self.writes.append(len(task_ids))
        return await self.store.delete_tasks(task_ids)


async def test_every_page_and_write_of_a_bulk_action_is_bounded(store: SqlStore, clock: FrozenClock) -> None:
    recording = Recording(store)
    service = TaskService(recording, clock=clock, rng=random.Random(1))  # type: ignore[arg-type]
    bulk = BulkOperations(service.core, service.retention, batch=3)
    schema: dict[str, Any] = {"type": "object"}
    await service.register_type(models.RegisterTaskType(name="t", version="1", param_schema=schema))
    for n in range(8):
        await service.create_task(models.CreateTask(type="t", params={"n": n}))
    cancel = models.BulkAction(action="cancel", filter=models.BulkFilter(type="t"))
    assert (await bulk.bulk(cancel)).data == {"matched": 8, "changed": 8}
    assert (recording.pages, recording.writes) == ([3, 3, 2], [3, 3, 2])
    recording.pages.clear()
    recording.writes.clear()
    delete = models.BulkAction(action="delete", filter=models.BulkFilter(status="cancelled"))
    assert (await bulk.bulk(delete)).data == {"matched": 8, "changed": 8}
    assert (recording.pages, recording.writes) == ([3, 3, 2], [3, 3, 2])
