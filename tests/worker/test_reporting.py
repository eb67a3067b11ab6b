"""Batched reports: outcomes finishing together go in one ``complete-batch`` request, and each
task still gets its own answer (on an embedded client over the test database)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from taskmanager import AsyncTaskManagerClient, LeaseLostError, TaskManagerNotFoundError
from taskmanager.worker.reporting import Reporter
from tests.conftest import TestDatabase

WORKER = "reporter-test"


@pytest.fixture
async def client(clean_database: TestDatabase) -> AsyncIterator[AsyncTaskManagerClient]:
    async with AsyncTaskManagerClient(clean_database.url, worker_id=WORKER) as made:
        await made.register_task_type("r.noop", "1", {"type": "object"}, max_attempts=1)
        yield made


class CountingClient:
    """The client, counting the batches it sends and their sizes."""

    def __init__(self, client: AsyncTaskManagerClient) -> None:
        self.client = client
        self.batches: list[int] = []

    async def complete_tasks(self, outcomes: list[dict[str, Any]], worker_id: str | None = None) -> Any:
        self.batches.append(len(outcomes))
        return await self.client.complete_tasks(outcomes, worker_id=worker_id)


async def claimed(client: AsyncTaskManagerClient, count: int) -> list[int]:
    await client.create_tasks([{"type": "r.noop", "params": {"n": n}} for n in range(count)])
    return [task.id for task in await client.claim_tasks("r.noop", limit=count)]


async def test_outcomes_finishing_together_share_requests(client: AsyncTaskManagerClient) -> None:
    ids = await claimed(client, 40)
    counting = CountingClient(client)
    reporter = Reporter(counting, WORKER, batch=25)  # type: ignore[arg-type]
    statuses = await asyncio.gather(
        *(reporter.report(i, success=i % 2 == 0, result={"i": i}, error="odd") for i in ids)
    )
    assert statuses == ["completed" if i % 2 == 0 else "failed" for i in ids]
    assert sum(counting.batches) == 40
    assert max(counting.batches) == 25, "a batch never exceeds its size"
    assert len(counting.batches) <= 3, f"40 outcomes went in {counting.batches}"
    done = {t.id: t async for t in client.list_tasks()}
    assert all(done[i].result == {"i": i} for i in ids[::2])
    assert all(done[i].error_message == "odd" for i in ids[1::2])


async def test_each_task_gets_its_own_refusal(client: AsyncTaskManagerClient) -> None:
    first, second = await claimed(client, 2)
    await client.cancel_task(first)
    reporter = Reporter(client, WORKER)
    results = await asyncio.gather(
        reporter.report(first, success=True),
        reporter.report(second, success=True),
        reporter.report(123_456, success=True),
        return_exceptions=True,
    )
    assert isinstance(results[0], LeaseLostError)
    assert results[1] == "completed"
    assert isinstance(results[2], TaskManagerNotFoundError)


async def test_a_result_that_is_not_json_is_refused_before_it_joins_a_batch(
    client: AsyncTaskManagerClient,
) -> None:
    (task_id,) = await claimed(client, 1)
    reporter = Reporter(client, WORKER)
    with pytest.raises(TypeError):
        await reporter.report(task_id, success=True, result=object())
    assert await reporter.report(task_id, success=True, result=[1]) == "completed"
