"""Task dependencies (API.md B.5) through TaskService over a real store, on every database:
blocked until every dependency completes, cancelled down the chain when one fails or is
cancelled, ``depends_on_index`` in a batch, retries, deletes, and a long cascade settled in
bounded pages that the sweep resumes."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from taskmanager import models
from taskmanager.engine.clock import FrozenClock
from taskmanager.engine.dependencies import INLINE_PAGES
from taskmanager.engine.service import TaskService
from taskmanager.errors import NoTasks, ValidationFailed
from taskmanager.store import SqlStore

TYPE = "deps.Step"


@pytest.fixture
async def service(store: SqlStore, clock: FrozenClock) -> TaskService:
    engine = TaskService(store, clock=clock, rng=random.Random(1))
    body = {"name": TYPE, "version": "1", "param_schema": {"type": "object"}, "max_attempts": 1}
    await engine.register_type(models.RegisterTaskType(**body))
    return engine


async def create(service: TaskService, **fields: Any) -> dict[str, Any]:
    body = {"type": TYPE, "params": {"n": random.random()}, **fields}
    return (await service.create_task(models.CreateTask(**body))).data


async def task(service: TaskService, task_id: int) -> dict[str, Any]:
    return (await service.get_task(task_id)).data


async def count(service: TaskService, status: str) -> int:
    return int((await service.list_tasks(status=status, limit=1)).data["total"])


async def claim_ids(service: TaskService, limit: int = 100) -> list[int]:
    found = (await service.claim(models.ClaimTasks(worker_id="w", limit=limit))).data
    return [t["id"] for t in found["tasks"]]


async def finish(service: TaskService, task_id: int, *, success: bool = True) -> None:
    await service.complete(task_id, models.CompleteTask(worker_id="w", success=success))


async def test_a_task_waits_until_every_dependency_completes(service: TaskService) -> None:
    a, b = await create(service), await create(service)
    c = await create(service, depends_on=[a["id"], b["id"]], priority=10)
    assert c["depends_on"] == [a["id"], b["id"]]
    assert c["blocked"] is True
    assert c["status"] == "pending"
    assert (await task(service, a["id"]))["depends_on"] == []
    assert (await task(service, a["id"]))["blocked"] is False

    assert sorted(await claim_ids(service)) == [a["id"], b["id"]]  # never the blocked one
    await finish(service, a["id"])
    assert (await task(service, c["id"]))["blocked"] is True
    with pytest.raises(NoTasks):
        await service.claim(models.ClaimTasks(worker_id="w"))
    await finish(service, b["id"])
    assert (await task(service, c["id"]))["blocked"] is False
    assert await claim_ids(service) == [c["id"]]


async def test_a_task_on_completed_dependencies_is_claimable_at_once(service: TaskService) -> None:
    a = await create(service)
    await claim_ids(service)
    await finish(service, a["id"])
    b = await create(service, depends_on=[a["id"]])
    assert b["blocked"] is False
    assert await claim_ids(service) == [b["id"]]


async def test_a_failure_cancels_the_chain_below_it(service: TaskService) -> None:
    a = await create(service)
    b = await create(service, depends_on=[a["id"]])
    c = await create(service, depends_on=[b["id"]])
    other = await create(service)
    await claim_ids(service)
    await finish(service, a["id"], success=False)  # max_attempts 1: failed for good
    b_now, c_now = await task(service, b["id"]), await task(service, c["id"])
    assert (b_now["status"], b_now["error_message"]) == ("cancelled", f"dependency {a['id']} failed")
    assert (c_now["status"], c_now["error_message"]) == ("cancelled", f"dependency {b['id']} cancelled")
    assert b_now["blocked"] is False
    assert (await task(service, other["id"]))["status"] == "claimed"  # untouched


async def test_a_failure_with_a_retry_left_does_not_cancel(service: TaskService) -> None:
    a = await create(service, max_attempts=2)
    b = await create(service, depends_on=[a["id"]])
    await claim_ids(service)
    await finish(service, a["id"], success=False)  # pending again, retry scheduled
    assert (await task(service, b["id"]))["status"] == "pending"
    assert (await task(service, b["id"]))["blocked"] is True


async def test_cancelling_a_dependency_cancels_its_dependants(service: TaskService) -> None:
    a = await create(service)
    b = await create(service, depends_on=[a["id"]])
    await service.cancel(a["id"], models.CancelTask())
    found = await task(service, b["id"])
    assert (found["status"], found["error_message"]) == ("cancelled", f"dependency {a['id']} cancelled")


async def test_retry_semantics(service: TaskService) -> None:
    a = await create(service)
    b = await create(service, depends_on=[a["id"]])
    await claim_ids(service)
    await finish(service, a["id"], success=False)
    assert (await task(service, b["id"]))["status"] == "cancelled"

    # A retried dependency does not revive its cancelled dependant.
    await service.retry(a["id"])
    assert (await task(service, b["id"]))["status"] == "cancelled"
    # Retrying the dependant while its dependency is unfinished: pending, still blocked.
    retried = (await service.retry(b["id"])).data
    assert (retried["status"], retried["blocked"]) == ("pending", True)
    assert await claim_ids(service) == [a["id"]]
    await finish(service, a["id"])
    assert await claim_ids(service) == [b["id"]]
    await finish(service, b["id"], success=False)

    # Retrying a dependant whose dependencies all completed: claimable at once.
    again = (await service.retry(b["id"])).data
    assert (again["status"], again["blocked"]) == ("pending", False)
    assert await claim_ids(service) == [b["id"]]


async def test_retrying_a_dependant_of_a_failed_task_cancels_it_again(service: TaskService) -> None:
    a = await create(service)
    b = await create(service, depends_on=[a["id"]])
    await claim_ids(service)
    await finish(service, a["id"], success=False)
    again = (await service.retry(b["id"])).data
    assert (again["status"], again["error_message"]) == ("cancelled", f"dependency {a['id']} failed")


async def test_an_unknown_dependency_is_refused(service: TaskService) -> None:
    a = await create(service)
    with pytest.raises(ValidationFailed) as refused:
        await create(service, depends_on=[a["id"], 999_999])
    assert refused.value.details == ["depends_on: task 999999 does not exist"]
    with pytest.raises(ValidationFailed) as alone:
        await create(service, depends_on_index=[0])
    assert alone.value.details == ["depends_on_index: only in a batch (POST /tasks/batch)"]


async def test_a_batch_names_earlier_items(service: TaskService) -> None:
    items = [
        {"type": TYPE, "params": {"step": 0}},
        {"type": TYPE, "params": {"step": 1}, "depends_on_index": [0]},
        {"type": "no.such.type", "params": {}},
        {"type": TYPE, "params": {"step": 3}, "depends_on_index": [2]},
        {"type": TYPE, "params": {"step": 4}, "depends_on_index": [4]},
        {"type": TYPE, "params": {"step": 5}, "depends_on_index": [0, 1]},
    ]
    data = (await service.create_tasks(models.CreateTasksBatch(tasks=items))).data
    results = data["results"]
    assert (data["created"], data["failed"]) == (3, 3)
    first, second = results[0]["id"], results[1]["id"]
    assert results[3]["error"] == "Validation failed: depends_on_index: item 2 failed"
    assert results[4]["error"] == "Validation failed: depends_on_index: 4 is not an earlier item of the batch"
    assert (await task(service, second))["depends_on"] == [first]
    assert (await task(service, results[5]["id"]))["depends_on"] == [first, second]
    assert await claim_ids(service) == [first]


async def test_deleting_an_unfinished_dependency_cancels_its_dependants(service: TaskService) -> None:
    a = await create(service)
    b = await create(service, depends_on=[a["id"]])
    await service.delete(a["id"])
    found = await task(service, b["id"])
    assert (found["status"], found["error_message"]) == ("cancelled", f"dependency {a['id']} cancelled")
    await service.delete(b["id"])  # and a deleted dependant takes its edges with it


async def test_a_long_chain_is_cancelled_in_bounded_pages_the_sweep_resumes(service: TaskService) -> None:
    length = 500  # more than INLINE_PAGES pages and two bounded sweeps
    items: list[dict[str, Any]] = [{"type": TYPE, "params": {"step": 0}}]
    items += [{"type": TYPE, "params": {"step": n}, "depends_on_index": [n - 1]} for n in range(1, length)]
    data = (await service.create_tasks(models.CreateTasksBatch(tasks=items))).data
    assert data["created"] == length
    ids = [r["id"] for r in data["results"]]

    await service.cancel(ids[0], models.CancelTask())
    # The request settled a bounded part itself (a page per level of a chain); the rest waits.
    assert await count(service, "cancelled") == 1 + INLINE_PAGES
    sweeps = 0
    while await service.dependencies.sweep():
        sweeps += 1
    assert sweeps >= (length - 1 - INLINE_PAGES) // 200  # each sweep is bounded too
    last = await task(service, ids[-1])
    assert (last["status"], last["error_message"]) == ("cancelled", f"dependency {ids[-2]} cancelled")
    assert await count(service, "cancelled") == length


async def test_a_task_without_dependants_costs_its_complete_nothing(
    store: SqlStore, clock: FrozenClock
) -> None:
    """The plain complete path: no dependency verb is called for a task nobody depends on."""
    calls: Counter[str] = Counter()

    class Counting:
        def __getattr__(self, name: str) -> Any:
            attribute = getattr(store, name)
            if not callable(attribute):
                return attribute

            def counted(*args: Any, **kwargs: Any) -> Any:
                calls[name] += 1
                return attribute(*args, **kwargs)

            return counted

    engine = TaskService(Counting(), clock=clock)
    body = {"name": TYPE, "version": "1", "param_schema": {"type": "object"}}
    await engine.register_type(models.RegisterTaskType(**body))
    created = await create(engine)
    await claim_ids(engine)
    calls.clear()
    await finish(engine, created["id"])
    assert calls == {"update_task": 1}


async def test_a_bulk_retry_judges_dependants_as_a_retry_does(service: TaskService) -> None:
    a = await create(service)
    waiting = [await create(service, depends_on=[a["id"]]) for _ in range(3)]
    await service.cancel(a["id"], models.CancelTask())
    bulk = models.BulkAction(action="retry", filter=models.BulkFilter(status="cancelled"))
    done = (await service.bulk(bulk)).data
    assert (done["matched"], done["changed"]) == (4, 4)
    assert [(await task(service, w["id"]))["blocked"] for w in waiting] == [True, True, True]
    assert await claim_ids(service) == [a["id"]]
    await finish(service, a["id"])
    assert sorted(await claim_ids(service)) == [w["id"] for w in waiting]


async def test_a_dependant_retried_after_its_dependency_was_deleted_runs(service: TaskService) -> None:
    a = await create(service)
    b = await create(service, depends_on=[a["id"]])
    await service.cancel(b["id"], models.CancelTask())
    await service.delete(a["id"])
    again = (await service.retry(b["id"])).data
    assert (again["status"], again["blocked"], again["depends_on"]) == ("pending", False, [a["id"]])
