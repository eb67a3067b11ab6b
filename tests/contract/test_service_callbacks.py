"""TaskService over a real store: signed callbacks through the outbox (API.md B.5, ADR 0018).

A terminal change of a task with a ``callback_url`` writes its delivery in the same transaction;
the ``Deliverer`` takes it under a lease, sends it through a transport (here a fake one that
records what it is given) and writes each try to the history; retries follow
``callbacks.retry_delay`` on the frozen clock, and after ``MAX_TRIES`` the delivery is given up.
On every database family."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from taskmanager import models
from taskmanager.engine import callbacks
from taskmanager.engine.clock import FrozenClock
from taskmanager.engine.deliveries import LEASE_SECONDS, Deliverer
from taskmanager.engine.retention import Retainer
from taskmanager.engine.service import TaskService
from taskmanager.errors import ValidationFailed
from taskmanager.store import SqlStore

SECRET = "s3cret"
HOOK = "https://hooks.example.com/done"
REFUSED = "http://internal.example/hook"
SCHEMA = {"type": "object"}


@dataclass
class Sent:
    url: str
    body: bytes
    headers: dict[str, str]


@dataclass
class FakeTransport:
    """Records every send; answers ``statuses`` in turn (then 200), raising an exception given
    instead of a status; ``hold`` (when set) keeps a send waiting until it is set."""

    statuses: list[int | Exception] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    hold: asyncio.Event | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)

    async def check(self, url: str) -> object:
        if "internal" in url:
            raise ValueError("internal.example resolves to 10.0.0.1, which is not a public address")
        return url

    async def send(self, url: str, body: bytes, headers: Mapping[str, str], seconds: float) -> int:
        self.sent.append(Sent(url, body, dict(headers)))
        self.started.set()
        if self.hold is not None:
            await self.hold.wait()
        answer = self.statuses.pop(0) if self.statuses else 200
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture
def transport() -> FakeTransport:
    return FakeTransport()


def make_service(
    store: SqlStore, clock: FrozenClock, transport: FakeTransport, secret: str | None
) -> TaskService:
    webhooks = callbacks.Webhooks(secret, transport)
    return TaskService(store, clock=clock, rng=random.Random(1), webhooks=webhooks)


@pytest.fixture
def service(store: SqlStore, clock: FrozenClock, transport: FakeTransport) -> TaskService:
    return make_service(store, clock, transport, SECRET)


@pytest.fixture
def deliverer(service: TaskService, transport: FakeTransport) -> Deliverer:
    return Deliverer(service.core, callbacks.Webhooks(SECRET, transport))


async def register(service: TaskService, name: str = "t", **settings: Any) -> None:
    body = models.RegisterTaskType(name=name, version="1", param_schema=SCHEMA, max_attempts=1, **settings)
    await service.register_type(body)


async def create(service: TaskService, n: int = 0, type: str = "t", **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = (
        await service.create_task(models.CreateTask(type=type, params={"n": n}, **fields))
    ).data
    return data


async def claim_and_complete(service: TaskService, task_id: int, success: bool = True) -> None:
    claimed = await service.claim(models.ClaimTasks(worker_id="w"))
    assert claimed.data["id"] == task_id
    body = models.CompleteTask(worker_id="w", success=success, error=None if success else "boom")
    await service.complete(task_id, body)


async def deliver(deliverer: Deliverer) -> None:
    """One pass of the loop, and the sends it started to their end."""
    await deliverer.pass_once()
    await deliverer.drain()


async def events(service: TaskService, task_id: int, *names: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = (await service.history(task_id)).data["events"]
    return [e for e in found if e["event"] in names]


async def test_a_create_or_register_with_a_callback_url_needs_the_secret(
    store: SqlStore, clock: FrozenClock, transport: FakeTransport
) -> None:
    service = make_service(store, clock, transport, None)
    with pytest.raises(ValidationFailed) as refused:
        await register(service, callback_url=HOOK)
    assert refused.value.details[0].startswith("callback_url: ")
    await register(service)
    with pytest.raises(ValidationFailed) as refused:
        await create(service, callback_url=HOOK)
    assert refused.value.details[0].startswith("callback_url: ")
    assert "TASKMANAGER_WEBHOOK_SECRET" in refused.value.details[0]


async def test_an_address_the_policy_refuses_is_400_naming_the_field(service: TaskService) -> None:
    with pytest.raises(ValidationFailed) as refused:
        await register(service, callback_url=REFUSED)
    assert refused.value.details == [
        "callback_url: internal.example resolves to 10.0.0.1, which is not a public address"
    ]
    await register(service)
    with pytest.raises(ValidationFailed) as refused:
        await create(service, callback_url=REFUSED)
    assert refused.value.details[0].startswith("callback_url: internal.example")
    batch = models.CreateTasksBatch(tasks=[{"type": "t", "params": {}, "callback_url": REFUSED}])
    result = (await service.create_tasks(batch)).data
    assert result["failed"] == 1
    assert "callback_url" in result["results"][0]["error"]


async def test_a_task_takes_its_own_url_else_its_types(service: TaskService) -> None:
    await register(service, callback_url=HOOK)
    assert (await service.get_type("t")).data["callback_url"] == HOOK
    assert (await create(service, 1))["callback_url"] == HOOK
    assert (await create(service, 2, callback_url="https://other.example/x"))[
        "callback_url"
    ] == "https://other.example/x"
    await register(service, "plain")
    assert (await create(service, 3, type="plain"))["callback_url"] is None


async def test_a_completed_task_is_posted_signed_once_and_the_try_is_in_its_history(
    service: TaskService, store: SqlStore, deliverer: Deliverer, transport: FakeTransport, clock: FrozenClock
) -> None:
    await register(service)
    task = await create(service, callback_url=HOOK)
    assert await store.next_delivery_at() is None  # nothing until it ends
    await claim_and_complete(service, task["id"])
    assert await store.next_delivery_at() == clock.now()
    await deliver(deliverer)
    (sent,) = transport.sent
    assert sent.url == HOOK
    assert json.loads(sent.body) == (await service.get_task(task["id"])).data
    assert json.loads(sent.body)["status"] == "completed"
    assert sent.headers[callbacks.SIGNATURE_HEADER] == callbacks.signature(SECRET, sent.body)
    delivery_id = sent.headers[callbacks.DELIVERY_HEADER]
    (delivered,) = await events(service, task["id"], "callback_delivered", "callback_failed")
    assert delivered["event"] == "callback_delivered"
    assert delivered["metadata"] == {"delivery": int(delivery_id), "try": 1, "status_code": 200}
    assert await store.next_delivery_at() is None  # delivered: gone from the outbox
    await deliver(deliverer)
    assert len(transport.sent) == 1


async def test_every_terminal_change_writes_a_delivery_and_no_other_does(
    service: TaskService, store: SqlStore, deliverer: Deliverer, transport: FakeTransport, clock: FrozenClock
) -> None:
    await register(service)
    plain = await create(service, 0)
    await claim_and_complete(service, plain["id"])
    assert await store.next_delivery_at() is None  # no callback_url: no delivery
    failed = await create(service, 1, callback_url=HOOK)
    await claim_and_complete(service, failed["id"], success=False)  # max_attempts 1: failed for good
    cancelled = await create(service, 2, callback_url=HOOK)
    await service.cancel(cancelled["id"], models.CancelTask(reason="no"))
    expiring = await create(service, 3, callback_url=HOOK, ttl_seconds=5)
    clock.advance(6)
    assert (await service.get_task(expiring["id"])).data["status"] == "cancelled"  # expired
    lapsing = await create(service, 4, callback_url=HOOK)
    await service.claim(models.ClaimTasks(worker_id="w", lease_seconds=5))
    clock.advance(6)
    assert (await service.get_task(lapsing["id"])).data["status"] == "failed"  # its lease ran out
    await deliver(deliverer)
    statuses = sorted((json.loads(s.body)["id"], json.loads(s.body)["status"]) for s in transport.sent)
    assert statuses == [
        (failed["id"], "failed"),
        (cancelled["id"], "cancelled"),
        (expiring["id"], "cancelled"),
        (lapsing["id"], "failed"),
    ]


async def test_a_batch_complete_writes_deliveries_for_the_tasks_with_a_callback_only(
    service: TaskService, store: SqlStore, deliverer: Deliverer, transport: FakeTransport
) -> None:
    await register(service)
    ids = [(await create(service, n, callback_url=HOOK if n % 2 else None))["id"] for n in range(6)]
    await service.claim(models.ClaimTasks(worker_id="w", limit=6))
    results = [{"id": i, "success": True} for i in ids]
    reply = await service.complete_batch(models.CompleteBatch(worker_id="w", results=results))
    assert [r["status"] for r in reply.data["results"]] == ["completed"] * 6
    await deliver(deliverer)
    assert sorted(json.loads(s.body)["id"] for s in transport.sent) == ids[1::2]


async def test_a_failing_receiver_is_retried_on_the_schedule_then_given_up(
    service: TaskService, store: SqlStore, deliverer: Deliverer, transport: FakeTransport, clock: FrozenClock
) -> None:
    await register(service)
    task = await create(service, callback_url=HOOK)
    await claim_and_complete(service, task["id"])
    transport.statuses = [500, ConnectionRefusedError("refused"), *[503] * 8]
    await deliver(deliverer)
    (failed,) = await events(service, task["id"], "callback_failed")
    assert failed["metadata"]["status_code"] == 500
    assert failed["metadata"]["try"] == 1
    assert await store.next_delivery_at() == clock.now() + timedelta(seconds=15)
    clock.advance(14)
    await deliver(deliverer)  # not due yet
    assert len(transport.sent) == 1
    for tries in range(1, callbacks.MAX_TRIES):
        delay = callbacks.retry_delay(tries)
        assert delay is not None
        clock.advance(delay)
        await deliver(deliverer)
    assert len(transport.sent) == callbacks.MAX_TRIES
    assert len({s.headers[callbacks.DELIVERY_HEADER] for s in transport.sent}) == 1  # one delivery id
    tries = await events(service, task["id"], "callback_failed")
    assert [e["metadata"]["try"] for e in tries] == list(range(1, 11))
    assert tries[1]["metadata"]["error"].startswith("ConnectionRefusedError")
    assert "status_code" not in tries[1]["metadata"]
    assert tries[-1]["metadata"]["gave_up"] is True
    assert "gave up after 10 tries" in tries[-1]["message"]
    assert await store.next_delivery_at() is None
    clock.advance(3600)
    await deliver(deliverer)
    assert len(transport.sent) == callbacks.MAX_TRIES


async def test_a_try_under_way_is_leased_and_another_server_takes_it_only_after_the_lease(
    service: TaskService, store: SqlStore, transport: FakeTransport, clock: FrozenClock
) -> None:
    await register(service)
    task = await create(service, callback_url=HOOK)
    await claim_and_complete(service, task["id"])
    transport.hold = asyncio.Event()
    first = Deliverer(service.core, callbacks.Webhooks(SECRET, transport))
    second = Deliverer(service.core, callbacks.Webhooks(SECRET, transport))
    await first.pass_once()
    await transport.started.wait()
    # The row is leased: the second server takes nothing (a pass that takes rows asks for
    # another at once, 0 s), and the lease is what it sees as the next due time.
    assert await second.pass_once() > 0
    assert await store.next_delivery_at() == clock.now() + timedelta(seconds=LEASE_SECONDS)
    clock.advance(LEASE_SECONDS)  # the first server hangs past its lease
    transport.started.clear()
    await second.pass_once()
    await transport.started.wait()
    assert len(transport.sent) == 2
    transport.hold.set()
    await second.drain()
    await first.drain()  # its try was taken again: what it came to is not written
    (delivered,) = await events(service, task["id"], "callback_delivered", "callback_failed")
    assert delivered["metadata"]["try"] == 2
    assert await store.next_delivery_at() is None


async def test_deleting_a_task_deletes_its_deliveries(
    service: TaskService, store: SqlStore, deliverer: Deliverer, transport: FakeTransport, clock: FrozenClock
) -> None:
    await register(service, keep_completed_seconds=100)
    ids = [(await create(service, n, callback_url=HOOK))["id"] for n in range(4)]
    await service.claim(models.ClaimTasks(worker_id="w", limit=4))
    results = [{"id": i, "success": True} for i in ids]
    await service.complete_batch(models.CompleteBatch(worker_id="w", results=results))
    await service.delete(ids[0])
    bulk = models.BulkAction(action="delete", filter=models.BulkFilter(ids=[ids[1]]))
    await service.bulk(bulk)
    clock.advance(100)
    await Retainer(store, clock).purge_due()  # the last two are past their retention
    assert await store.next_delivery_at() is None
    await deliver(deliverer)
    assert transport.sent == []


async def test_history_off_records_no_tries(
    store: SqlStore, clock: FrozenClock, transport: FakeTransport
) -> None:
    from taskmanager.engine.policy import Defaults

    webhooks = callbacks.Webhooks(SECRET, transport)
    service = TaskService(store, clock=clock, defaults=Defaults(enable_history=False), webhooks=webhooks)
    await register(service)
    task = await create(service, callback_url=HOOK)
    await claim_and_complete(service, task["id"])
    await deliver(Deliverer(service.core, webhooks))
    assert len(transport.sent) == 1
    assert await store.list_events(task["id"]) == []
    assert await store.next_delivery_at() is None


async def test_tasks_without_a_callback_cost_no_statement_more(
    service: TaskService, store: SqlStore, clock: FrozenClock
) -> None:
    """The plain path pays nothing for callbacks: ending tasks without a ``callback_url`` (one
    complete, a batch, a cancel) runs no statement that touches the outbox — the INSERT is sent
    only when a change has a delivery to write. (PostgreSQL's statements: ``test_pg_statements``.)"""
    if store.db.dialect == "postgresql":
        pytest.skip("PostgreSQL ends tasks on raw asyncpg: its shapes are checked in test_pg_statements")
    from sqlalchemy import event

    engine = store.db.sync_engine or store.db.async_engine.sync_engine  # type: ignore[union-attr]
    await register(service)
    ids = [(await create(service, n))["id"] for n in range(4)]
    await service.claim(models.ClaimTasks(worker_id="w", limit=3))
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(args[2])

    event.listen(engine, "before_cursor_execute", record)
    try:
        await service.complete(ids[0], models.CompleteTask(worker_id="w", success=True))
        results = [{"id": i, "success": True} for i in ids[1:3]]
        await service.complete_batch(models.CompleteBatch(worker_id="w", results=results))
        await service.cancel(ids[3], models.CancelTask())
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert seen
    assert not [sql for sql in seen if "callback_deliveries" in sql]
