"""TaskService over a real store: whole task lifecycles, with the frozen clock advanced instead of
sleeping. Every test runs on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from taskmanager import models
from taskmanager.engine.clock import FrozenClock
from taskmanager.engine.policy import Defaults, compute_dedupe_key
from taskmanager.engine.service import Reply, TaskService
from taskmanager.errors import (
    Conflict,
    Forbidden,
    LeaseLost,
    NoTasks,
    NotFound,
    QueueFull,
    TaskManagerError,
    ValidationFailed,
)
from taskmanager.store import SqlStore

TYPE = "PrismQ.Script.Generate"
SCHEMA = {"type": "object", "properties": {"topic": {"type": "string"}}, "required": ["topic"]}


@pytest.fixture
def service(store: SqlStore, clock: FrozenClock) -> TaskService:
    return TaskService(store, clock=clock, rng=random.Random(1), version="9.9.9")


async def register(service: TaskService, name: str = TYPE, **fields: Any) -> dict[str, Any]:
    body = {"name": name, "version": "1.0.0", "param_schema": SCHEMA, **fields}
    return (await service.register_type(models.RegisterTaskType(**body))).data


async def create(service: TaskService, params: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    body = {"type": TYPE, "params": {"topic": "AI"} if params is None else params, **fields}
    return (await service.create_task(models.CreateTask(**body))).data


async def claim(service: TaskService, worker: str = "w1", **fields: Any) -> dict[str, Any]:
    return (await service.claim(models.ClaimTasks(worker_id=worker, **fields))).data


async def complete(service: TaskService, task_id: int, worker: str = "w1", **fields: Any) -> Reply:
    return await service.complete(
        task_id, models.CompleteTask(worker_id=worker, **{"success": True, **fields})
    )


async def history(service: TaskService, task_id: int) -> list[str]:
    return [e["event"] for e in (await service.history(task_id)).data["events"]]


async def raises(kind: type[TaskManagerError], call: Callable[[], Awaitable[object]]) -> TaskManagerError:
    with pytest.raises(kind) as raised:
        await call()
    return raised.value


def iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- the happy path --------------------------------------------------------------------------------


async def test_register_create_claim_progress_complete(service: TaskService, clock: FrozenClock) -> None:
    registered = await register(service)
    assert registered["created"] is True
    assert (registered["max_attempts"], registered["claim_timeout"], registered["dedupe"]) == (3, 300, "all")

    created = await create(service, {"topic": "AI in Healthcare", "style": "formal", "length": 1500})
    assert created["status"] == "pending"
    assert (created["duplicate"], created["deduplicated"]) == (False, False)
    assert created["message"] == "Task created successfully"
    assert created["dedupe_key"] == "44ff8188369983e6a8010c424790a4e9326c3db1f84539bfcb356b8927316d71"
    task_id = created["id"]

    clock.advance(1)
    claimed = await claim(service)
    assert claimed["id"] == task_id
    assert (claimed["attempts"], claimed["claimed_by"], claimed["status"]) == (1, "w1", "claimed")
    assert claimed["claimed_at"] == iso(clock.now())
    assert claimed["lease_expires_at"] == iso(clock.now() + timedelta(seconds=300))
    assert claimed["message"] == "Task claimed successfully"
    token = claimed["lease_token"]

    clock.advance(100)
    progressed = await service.progress(
        task_id, models.ReportProgress(worker_id="w1", progress=40, message="drafting", lease_token=token)
    )
    assert progressed.data == {
        "id": task_id,
        "progress": 40,
        "lease_expires_at": iso(clock.now() + timedelta(seconds=300)),
        "message": "Task progress updated successfully",
    }

    clock.advance(1)
    done = await complete(service, task_id, result={"script": "…"}, lease_token=token)
    assert done.message == "Task completed successfully"
    assert done.data["status"] == "completed"
    assert done.data["attempts"] == 1

    task = (await service.get_task(task_id)).data
    assert task["status"] == "completed"
    assert task["result"] == {"script": "…"}
    assert task["completed_at"] == iso(clock.now())
    assert task["progress"] == 100
    assert await history(service, task_id) == ["created", "claimed", "progress", "completed"]
    events = (await service.history(task_id)).data["events"]
    assert events[2]["message"] == "drafting"


async def test_nothing_to_claim_is_no_tasks(service: TaskService) -> None:
    await register(service)
    error = await raises(NoTasks, lambda: claim(service))
    assert error.message == "No available tasks"
    assert (await claim(service, limit=5)) == {"tasks": [], "count": 0}


async def test_health_reports_the_database(service: TaskService, clock: FrozenClock) -> None:
    reply = await service.health()
    assert reply.data == {
        "status": "healthy",
        "database": "connected",
        "version": "9.9.9",
        "timestamp": int(clock.now().timestamp()),
    }


# -- retries and failures --------------------------------------------------------------------------


async def test_failure_is_retried_after_the_backoff_then_fails_for_good(
    service: TaskService, clock: FrozenClock
) -> None:
    await register(service, max_attempts=2, retry_delay=10)
    task_id = (await create(service))["id"]
    await claim(service)
    failed = await complete(service, task_id, success=False, error="boom")
    assert failed.data["status"] == "pending (retry)"
    assert failed.message == "Task failed, retry scheduled"
    run_after = datetime.fromisoformat(failed.data["run_after"])
    assert clock.now() + timedelta(seconds=9) <= run_after <= clock.now() + timedelta(seconds=11)
    task = (await service.get_task(task_id)).data
    assert (task["status"], task["error_message"], task["claimed_by"]) == ("pending", "boom", None)

    await raises(NoTasks, lambda: claim(service))  # not due yet
    clock.set(run_after)
    again = await claim(service, "w2")
    assert (again["id"], again["attempts"], again["claimed_by"]) == (task_id, 2, "w2")

    final = await complete(service, task_id, "w2", success=False, error="boom again")
    assert final.data["status"] == "failed"
    assert final.message == "Task marked as failed"
    task = (await service.get_task(task_id)).data
    assert (task["status"], task["error_message"], task["attempts"]) == ("failed", "boom again", 2)
    assert await history(service, task_id) == [
        "created",
        "claimed",
        "failed",
        "retry_scheduled",
        "claimed",
        "failed",
    ]
    await raises(NoTasks, lambda: claim(service))


async def test_retry_delay_zero_retries_at_once(service: TaskService) -> None:
    await register(service, retry_delay=0)
    task_id = (await create(service))["id"]
    await claim(service)
    await complete(service, task_id, success=False)
    assert (await claim(service))["attempts"] == 2


async def test_expired_lease_goes_to_another_worker(service: TaskService, clock: FrozenClock) -> None:
    await register(service, claim_timeout=30)
    task_id = (await create(service))["id"]
    first = await claim(service, "w1")
    clock.advance(29)
    await raises(NoTasks, lambda: claim(service, "w2"))
    clock.advance(1)
    second = await claim(service, "w2")
    assert (second["id"], second["attempts"]) == (task_id, 2)
    assert second["lease_token"] != first["lease_token"]

    lost = await raises(LeaseLost, lambda: complete(service, task_id, "w1", lease_token=first["lease_token"]))
    assert lost.message == "Lease lost"
    forbidden = await raises(Forbidden, lambda: complete(service, task_id, "w1"))
    assert forbidden.message == "Task is claimed by another worker"
    done = await complete(service, task_id, "w2", lease_token=second["lease_token"])
    assert done.data["status"] == "completed"
    assert await history(service, task_id) == ["created", "claimed", "lease_expired", "claimed", "completed"]


async def test_a_lease_expiring_on_the_last_attempt_fails_the_task(
    service: TaskService, clock: FrozenClock
) -> None:
    await register(service, claim_timeout=60, max_attempts=1)
    task_id = (await create(service))["id"]
    await claim(service)
    clock.advance(60)
    task = (await service.get_task(task_id)).data
    assert task["status"] == "failed"
    assert task["error_message"] == "Claim timeout exceeded after 1 attempts"
    await raises(NoTasks, lambda: claim(service))
    assert await history(service, task_id) == ["created", "claimed", "lease_expired", "failed"]
    error = await raises(ValidationFailed, lambda: complete(service, task_id))
    assert error.message == "Task is not in claimed state"


async def test_progress_and_heartbeat_keep_a_lease_alive(service: TaskService, clock: FrozenClock) -> None:
    await register(service, claim_timeout=60)
    task_id = (await create(service))["id"]
    token = (await claim(service))["lease_token"]
    for _ in range(3):
        clock.advance(50)
        beat = await service.heartbeat(task_id, models.Heartbeat(worker_id="w1", lease_token=token))
        assert beat.data == {
            "id": task_id,
            "lease_expires_at": iso(clock.now() + timedelta(seconds=60)),
            "cancel_requested": False,
        }
    clock.advance(50)
    await service.progress(task_id, models.ReportProgress(worker_id="w1", progress=90))
    clock.advance(50)
    longer = await service.heartbeat(task_id, models.Heartbeat(worker_id="w1", lease_seconds=600))
    assert longer.data["lease_expires_at"] == iso(clock.now() + timedelta(seconds=600))
    clock.advance(500)
    await raises(NoTasks, lambda: claim(service, "w2"))
    assert (await complete(service, task_id, lease_token=token)).data["status"] == "completed"
    # Heartbeats are not stored by default.
    assert await history(service, task_id) == ["created", "claimed", "progress", "completed"]


async def test_repeated_complete_is_idempotent(service: TaskService, clock: FrozenClock) -> None:
    await register(service)
    task_id = (await create(service))["id"]
    token = (await claim(service))["lease_token"]
    first = await complete(service, task_id, result={"n": 1}, lease_token=token)
    clock.advance(5)
    again = await complete(service, task_id, result={"n": 1}, lease_token=token)
    assert again.data == first.data
    assert await history(service, task_id) == ["created", "claimed", "completed"]
    await raises(ValidationFailed, lambda: complete(service, task_id))


# -- cancel, retry, delete -------------------------------------------------------------------------


async def test_cancelling_a_claimed_task_tells_its_worker(service: TaskService) -> None:
    await register(service)
    task_id = (await create(service))["id"]
    token = (await claim(service))["lease_token"]
    cancelled = await service.cancel(task_id, models.CancelTask(reason="not needed"))
    assert (cancelled.data["status"], cancelled.data["error_message"]) == ("cancelled", "not needed")
    beat = await service.heartbeat(task_id, models.Heartbeat(worker_id="w1", lease_token=token))
    assert beat.data["cancel_requested"] is True
    await raises(LeaseLost, lambda: complete(service, task_id, lease_token=token))
    await raises(ValidationFailed, lambda: service.cancel(task_id, models.CancelTask()))

    retried = await service.retry(task_id)
    assert (retried.data["status"], retried.data["attempts"], retried.data["error_message"]) == (
        "pending",
        0,
        None,
    )
    again = await claim(service, "w2")
    assert (again["id"], again["attempts"]) == (task_id, 1)
    assert await history(service, task_id) == ["created", "claimed", "cancelled", "retried", "claimed"]


async def test_retry_of_a_task_that_did_not_fail_is_refused(service: TaskService) -> None:
    await register(service)
    task_id = (await create(service))["id"]
    await raises(ValidationFailed, lambda: service.retry(task_id))


async def test_delete_removes_task_and_history(service: TaskService) -> None:
    await register(service)
    task_id = (await create(service))["id"]
    assert (await service.delete(task_id)).data == {"id": task_id, "deleted": True}
    assert (await raises(NotFound, lambda: service.get_task(task_id))).message == "Task not found"
    await raises(NotFound, lambda: service.history(task_id))
    await raises(NotFound, lambda: service.delete(task_id))


async def test_unknown_task_is_not_found_everywhere(service: TaskService) -> None:
    await register(service)
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: service.get_task(77),
        lambda: complete(service, 77),
        lambda: service.progress(77, models.ReportProgress(worker_id="w1", progress=1)),
        lambda: service.heartbeat(77, models.Heartbeat(worker_id="w1")),
        lambda: service.cancel(77, models.CancelTask()),
        lambda: service.retry(77),
    ]
    for call in calls:
        assert (await raises(NotFound, call)).message == "Task not found"


# -- dedupe, limits, scheduling --------------------------------------------------------------------


async def test_duplicate_create_returns_the_existing_task(service: TaskService) -> None:
    await register(service)
    first = await create(service, {"topic": "AI"})
    again = await create(service, {"topic": "AI"})
    assert again == {
        "id": first["id"],
        "type": TYPE,
        "status": "pending",
        "dedupe_key": compute_dedupe_key(TYPE, {"topic": "AI"}),
        "duplicate": True,
        "deduplicated": True,
        "message": "Task already exists (deduplicated)",
    }
    own_key = await create(service, {"topic": "other"}, dedupe_key="mine")
    assert own_key["dedupe_key"] == "mine"
    assert (await create(service, {"topic": "third"}, dedupe_key="mine"))["id"] == own_key["id"]


@pytest.mark.parametrize(("dedupe", "after_completion"), [("all", True), ("active", False), ("none", False)])
async def test_dedupe_scopes(dedupe: str, after_completion: bool, service: TaskService) -> None:
    await register(service, dedupe=dedupe)
    first = await create(service)
    while_pending = await create(service)
    assert while_pending["duplicate"] is (dedupe != "none")
    await claim(service, limit=10)
    for task in (await service.list_tasks(status="claimed")).data["tasks"]:
        await complete(service, task["id"])
    later = await create(service)
    assert later["duplicate"] is after_completion
    assert (later["id"] == first["id"]) is after_completion
    if after_completion:
        assert later["status"] == "completed"


async def test_a_full_queue_is_refused(service: TaskService) -> None:
    await register(service, max_pending=2)
    await create(service, {"topic": "a"})
    await create(service, {"topic": "b"})
    error = await raises(QueueFull, lambda: create(service, {"topic": "c"}))
    assert (error.message, error.code, error.status) == ("Queue is full", "queue_full", 429)
    await claim(service)
    assert (await create(service, {"topic": "c"}))["duplicate"] is False


async def test_delayed_task_is_claimable_only_when_due(service: TaskService, clock: FrozenClock) -> None:
    await register(service)
    task_id = (await create(service, delay_seconds=30))["id"]
    await raises(NoTasks, lambda: claim(service))
    clock.advance(30)
    assert (await claim(service))["id"] == task_id


async def test_a_task_pending_past_its_ttl_expires(service: TaskService, clock: FrozenClock) -> None:
    await register(service)
    task_id = (await create(service, ttl_seconds=60))["id"]
    clock.advance(60)
    task = (await service.get_task(task_id)).data
    assert (task["status"], task["error_message"]) == ("cancelled", "expired")
    await raises(NoTasks, lambda: claim(service))
    assert await history(service, task_id) == ["created", "expired"]


async def test_an_assigned_task_goes_to_its_worker_only(service: TaskService) -> None:
    await register(service)
    task_id = (await create(service, assigned_to="w9"))["id"]
    await raises(NoTasks, lambda: claim(service, "w1"))
    assert (await claim(service, "w9"))["id"] == task_id


# -- types -----------------------------------------------------------------------------------------


async def test_a_paused_type_keeps_its_tasks_but_hands_none_out(service: TaskService) -> None:
    await register(service)
    task_id = (await create(service))["id"]
    paused = await service.deactivate_type(TYPE)
    assert paused.data["is_active"] is False
    await raises(NoTasks, lambda: claim(service))
    error = await raises(ValidationFailed, lambda: create(service, {"topic": "new"}))
    assert error.message == "Task type is not active"
    again = await register(service)
    assert (again["updated"], again["is_active"]) == (True, True)
    assert (await claim(service))["id"] == task_id


async def test_re_register_keeps_settings_not_sent(service: TaskService) -> None:
    await register(service, max_attempts=7, claim_timeout=90)
    again = await register(service, claim_timeout=120)
    assert (again["max_attempts"], again["claim_timeout"]) == (7, 120)
    listed = (await service.list_types()).data
    assert listed["count"] == 1
    assert listed["task_types"] == listed["items"]


async def test_unknown_type_is_not_found(service: TaskService) -> None:
    assert (await raises(NotFound, lambda: service.get_type("nope"))).message == "Task type not found"
    assert (await raises(NotFound, lambda: create(service))).message == "Task type not found"
    await raises(NotFound, lambda: service.deactivate_type("nope"))


async def test_params_are_validated_against_the_schema(service: TaskService) -> None:
    await register(service)
    error = await raises(ValidationFailed, lambda: create(service, {"topic": 5}))
    assert error.message == "Parameter validation failed: $.topic: 5 is not of type 'string'"
    assert error.details == ["$.topic: 5 is not of type 'string'"]


async def test_schema_validation_can_be_switched_off(store: SqlStore, clock: FrozenClock) -> None:
    service = TaskService(store, clock=clock, defaults=Defaults(enable_schema_validation=False))
    await register(service)
    assert (await create(service, {"topic": 5}))["status"] == "pending"


async def test_register_refuses_a_broken_schema(service: TaskService) -> None:
    error = await raises(ValidationFailed, lambda: register(service, param_schema={"properties": {}}))
    assert error.message == 'JSON schema must have a "type" property'
    assert (await service.list_types()).data["count"] == 0


# -- listing and claiming order --------------------------------------------------------------------


async def test_list_tasks_filters_and_pages(service: TaskService, clock: FrozenClock) -> None:
    await register(service)
    ids = []
    for n in range(5):
        ids.append((await create(service, {"topic": str(n)}))["id"])
        clock.advance(1)
    await claim(service, limit=2)
    page = (await service.list_tasks(status="pending,claimed", limit=2, offset=1)).data
    assert [t["id"] for t in page["tasks"]] == [ids[3], ids[2]]
    assert (page["count"], page["total"], page["limit"], page["offset"]) == (2, 5, 2, 1)
    assert (await service.list_tasks(status="claimed")).data["total"] == 2
    assert (await service.list_tasks(type="PrismQ.%")).data["total"] == 5
    assert (await service.list_tasks(worker_id="w1")).data["total"] == 2
    error = await raises(ValidationFailed, lambda: service.list_tasks(status="done"))
    assert error.details is not None
    assert error.details[0].startswith("status: 'done' is not one of")


async def test_invalid_claim_order_is_refused(service: TaskService) -> None:
    await register(service)
    error = await raises(ValidationFailed, lambda: claim(service, sort_by="name"))
    assert error.message == "Invalid sort_by field. Allowed values: created_at, priority, id, attempts"
    error = await raises(ValidationFailed, lambda: claim(service, sort_by="id", sort_order="UP"))
    assert error.message == "Invalid sort_order. Allowed values: ASC, DESC"


@pytest.mark.parametrize(
    ("sort_by", "sort_order", "expected"),
    [
        (None, None, ["high", "old", "new"]),
        ("created_at", "asc", ["old", "high", "new"]),
        ("created_at", "DESC", ["new", "high", "old"]),
        ("priority", None, ["old", "new", "high"]),
        ("priority", "desc", ["high", "old", "new"]),
        ("id", "DESC", ["new", "high", "old"]),
    ],
)
async def test_claim_sort_options(
    sort_by: str | None, sort_order: str | None, expected: list[str], service: TaskService, clock: FrozenClock
) -> None:
    await register(service)
    names = {}
    for name, priority in (("old", 1), ("high", 5), ("new", 1)):
        names[(await create(service, {"topic": name}, priority=priority))["id"]] = name
        clock.advance(1)
    taken = (await claim(service, limit=3, sort_by=sort_by, sort_order=sort_order))["tasks"]
    assert [names[t["id"]] for t in taken] == expected


async def test_batch_create(service: TaskService) -> None:
    await register(service, max_pending=3)
    body = models.CreateTasksBatch(
        tasks=[
            {"type": TYPE, "params": {"topic": "a"}},
            {"type": TYPE, "params": {"topic": "a"}},
            {"type": TYPE, "params": {"topic": 1}},
            {"type": "Unknown", "params": {}},
            {"type": TYPE},
            {"type": TYPE, "params": {"topic": "b"}},
            {"type": TYPE, "params": {"topic": "c"}},
            {"type": TYPE, "params": {"topic": "d"}},
        ]
    )
    reply = await service.create_tasks(body)
    results = reply.data["results"]
    assert (reply.data["created"], reply.data["duplicates"], reply.data["failed"]) == (3, 1, 4)
    assert results[1]["id"] == results[0]["id"]
    assert results[1]["duplicate"] is True
    assert results[2]["error"].startswith("Parameter validation failed")
    assert results[3]["error"] == "Task type not found"
    assert results[4]["error"] == "Validation failed: params: field required"
    assert results[7]["error"] == "Queue is full"
    assert [r["index"] for r in results] == list(range(8))


# -- history switched off --------------------------------------------------------------------------


async def test_a_whole_lifecycle_without_history(store: SqlStore, clock: FrozenClock) -> None:
    service = TaskService(store, clock=clock, defaults=Defaults(enable_history=False), rng=random.Random(1))
    await register(service, max_attempts=2, retry_delay=0, claim_timeout=30)
    task_id = (await create(service))["id"]
    first = await claim(service)
    clock.advance(30)  # lease expires: back to pending
    second = await claim(service, "w2")
    assert second["attempts"] == 2
    await raises(LeaseLost, lambda: complete(service, task_id, lease_token=first["lease_token"]))
    await service.progress(task_id, models.ReportProgress(worker_id="w2", progress=10, message="x"))
    await complete(service, task_id, "w2", success=False, error="boom")
    assert (await service.get_task(task_id)).data["status"] == "failed"
    await service.retry(task_id)
    await claim(service)
    await service.cancel(task_id, models.CancelTask())
    assert (await service.history(task_id)).data == {"events": [], "count": 0}
    assert await store.list_events(task_id) == []
    other = (await create(service, {"topic": "expiring"}, ttl_seconds=1))["id"]
    clock.advance(1)
    assert (await service.get_task(other)).data["error_message"] == "expired"
    assert await store.list_events(other) == []
    done = (await create(service, {"topic": "done"}))["id"]
    await claim(service)
    await complete(service, done)
    assert (await service.get_task(done)).data["status"] == "completed"
    assert await store.list_events(done) == []


# -- composition: the retry policy, and changes that lose a race -----------------------------------


async def test_the_retry_policy_is_injectable(store: SqlStore, clock: FrozenClock) -> None:
    seen: list[int] = []

    def fixed(policy: Any, attempts: int, rng: random.Random) -> float:
        seen.append(attempts)
        return 7.0

    service = TaskService(store, clock=clock, retry_policy=fixed)
    await register(service)
    task = await create(service)
    await claim(service)
    reply = await complete(service, task["id"], success=False, error="boom")
    assert reply.data["run_after"] == iso(clock.now() + timedelta(seconds=7))
    assert seen == [1]


class Interfering:
    """A store whose ``update_task`` first lets another request change the row (``times`` times),
    as a request racing this one would."""

    def __init__(self, store: SqlStore, clock: FrozenClock, times: int) -> None:
        self.store, self.clock, self.times, self.calls = store, clock, times, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def update_task(self, change: Any) -> Any:
        self.calls += 1
        if self.times:
            self.times -= 1
            current = await self.store.get_task(change.task_id)
            assert current is not None
            racing = TaskService(self.store, clock=self.clock)  # another request: a heartbeat
            await racing.heartbeat(
                change.task_id,
                models.Heartbeat(worker_id=current.claimed_by or "w1", lease_seconds=900 + self.calls),
            )
        return await self.store.update_task(change)

    async def update_tasks(self, changes: Any) -> Any:
        if self.times:  # the racing request changes the first row; the rest go through
            first = await self.update_task(changes[0])
            return [first, *await self.store.update_tasks(changes[1:])]
        return await self.store.update_tasks(changes)


async def test_a_change_that_loses_a_race_is_read_and_decided_again(
    store: SqlStore, clock: FrozenClock
) -> None:
    interfering = Interfering(store, clock, times=1)
    service = TaskService(interfering, clock=clock)  # type: ignore[arg-type]
    await register(service)
    task = await create(service)
    await claim(service)
    reply = await service.progress(task["id"], models.ReportProgress(worker_id="w1", progress=40))
    assert reply.data["progress"] == 40
    assert interfering.calls == 2  # the first compare-and-set missed: the heartbeat moved the lease
    assert await history(service, task["id"]) == ["created", "claimed", "progress"]


async def test_a_change_that_keeps_losing_is_a_conflict(store: SqlStore, clock: FrozenClock) -> None:
    service = TaskService(Interfering(store, clock, times=100), clock=clock)  # type: ignore[arg-type]
    await register(service)
    task = await create(service)
    await claim(service)
    await raises(Conflict, lambda: service.cancel(task["id"], models.CancelTask(reason="stop")))
    assert (await service.get_task(task["id"])).data["status"] == "claimed"


async def _three_claimed_with_a_race_ahead(
    store: SqlStore, clock: FrozenClock
) -> tuple[Interfering, TaskService, list[int]]:
    """Three tasks claimed by w1, through a store whose next batch write a heartbeat races."""
    interfering = Interfering(store, clock, times=0)
    service = TaskService(interfering, clock=clock)  # type: ignore[arg-type]
    await register(service)
    ids = [(await create(service, {"topic": str(n)}))["id"] for n in range(3)]
    await claim(service, limit=3)
    interfering.times = 1
    return interfering, service, ids


async def test_a_batch_complete_judges_a_row_changed_meanwhile_again(
    store: SqlStore, clock: FrozenClock
) -> None:
    """Failures are decided on their rows: a heartbeat racing the first one's write moves its
    lease, the compare-and-set misses, and the row is read and judged again."""
    interfering, service, ids = await _three_claimed_with_a_race_ahead(store, clock)
    items = [{"id": i, "success": False, "error": f"boom {i}"} for i in ids]
    reply = await service.complete_batch(models.CompleteBatch(worker_id="w1", results=items))
    assert [r["error"] for r in reply.data["results"]] == [None, None, None]
    assert interfering.calls == 1  # the racing heartbeat happened
    for task_id in ids:
        task = (await service.get_task(task_id)).data
        assert (task["status"], task["error_message"]) == ("pending", f"boom {task_id}")
        assert await history(service, task_id) == ["created", "claimed", "failed", "retry_scheduled"]


async def test_a_batch_completes_successes_at_once_even_when_a_heartbeat_raced(
    store: SqlStore, clock: FrozenClock
) -> None:
    """Successes by their holder are written without reading their rows first (as a single
    complete is): a heartbeat that moved the lease meanwhile does not make them miss."""
    interfering, service, ids = await _three_claimed_with_a_race_ahead(store, clock)
    items = [{"id": i, "success": True, "result": {"n": i}} for i in ids]
    reply = await service.complete_batch(models.CompleteBatch(worker_id="w1", results=items))
    assert [r["error"] for r in reply.data["results"]] == [None, None, None]
    assert interfering.calls == 1  # the racing heartbeat happened
    for task_id in ids:
        task = (await service.get_task(task_id)).data
        assert (task["status"], task["result"]) == ("completed", {"n": task_id})
