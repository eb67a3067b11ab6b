"""The callbacks' outbox (API.md B.5) in the store: a terminal change with ``callback`` writes its
delivery in the same statement/transaction, concurrent claims never take one row twice, and a try
is written only by the server that still holds it."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from taskmanager.engine.clock import FrozenClock
from taskmanager.engine.records import HistoryEvent, NewEvent, TaskStatus
from taskmanager.engine.store import DeliveryClaim, DeliveryOutcome, Expected, TaskChange
from taskmanager.store import SqlStore
from tests.contract.builders import add_task, make_type

HOOK = "https://hooks.example.com/done"


def ended(task_id: int, now: datetime, *, callback: bool, expected_status: str = "pending") -> TaskChange:
    changes = {"status": TaskStatus.CANCELLED, "completed_at": now, "updated_at": now}
    expected = Expected({"status": TaskStatus(expected_status)})
    return TaskChange(task_id, expected, changes, (), now, ends=True, callback=callback)


async def test_a_terminal_change_with_callback_writes_one_delivery(
    store: SqlStore, clock: FrozenClock
) -> None:
    now = clock.now()
    task_type = await make_type(store, "t", now)
    task = await add_task(store, task_type, now, callback_url=HOOK)
    assert task.callback_url == HOOK
    stored = await store.get_task(task.id)
    assert stored is not None
    assert stored.callback_url == HOOK
    assert await store.next_delivery_at() is None
    missed = await store.update_task(ended(task.id, now, callback=True, expected_status="claimed"))
    assert missed is None
    assert await store.next_delivery_at() is None  # no match, no delivery
    assert await store.update_task(ended(task.id, now, callback=True)) is not None
    assert await store.next_delivery_at() == now
    (taken,) = await store.claim_deliveries(DeliveryClaim(now, now + timedelta(seconds=60), 10))
    assert (taken.task_id, taken.url, taken.tries) == (task.id, HOOK, 1)


async def test_a_batch_writes_the_deliveries_of_its_changes_with_callback(
    store: SqlStore, clock: FrozenClock
) -> None:
    now = clock.now()
    task_type = await make_type(store, "t", now)
    tasks = [await add_task(store, task_type, now, callback_url=HOOK if n % 2 else None) for n in range(6)]
    changes = [ended(t.id, now, callback=t.callback_url is not None) for t in tasks]
    assert all(after is not None for after in await store.update_tasks(changes))
    taken = await store.claim_deliveries(DeliveryClaim(now, now + timedelta(seconds=60), 10))
    assert sorted(d.task_id for d in taken) == [t.id for t in tasks[1::2]]


async def test_concurrent_claims_never_take_one_delivery_twice(store: SqlStore, clock: FrozenClock) -> None:
    now = clock.now()
    task_type = await make_type(store, "t", now)
    tasks = [await add_task(store, task_type, now, callback_url=HOOK) for _ in range(12)]
    await store.update_tasks([ended(t.id, now, callback=True) for t in tasks])
    lease = now + timedelta(seconds=60)
    claims = await asyncio.gather(*(store.claim_deliveries(DeliveryClaim(now, lease, 3)) for _ in range(6)))
    ids = [d.id for taken in claims for d in taken]
    assert len(ids) == len(set(ids)) == 12
    assert await store.claim_deliveries(DeliveryClaim(now, lease, 3)) == []  # leased
    assert await store.next_delivery_at() == lease


async def test_a_try_is_written_only_by_the_server_still_holding_it(
    store: SqlStore, clock: FrozenClock
) -> None:
    now = clock.now()
    task_type = await make_type(store, "t", now)
    task = await add_task(store, task_type, now, callback_url=HOOK, event=False)
    await store.update_task(ended(task.id, now, callback=True))
    (first,) = await store.claim_deliveries(DeliveryClaim(now, now + timedelta(seconds=60), 1))
    later = now + timedelta(seconds=60)
    (second,) = await store.claim_deliveries(DeliveryClaim(later, later + timedelta(seconds=60), 1))
    assert (first.id, first.tries, second.tries) == (second.id, 1, 2)
    event = NewEvent(HistoryEvent.CALLBACK_FAILED, None, "HTTP 500", {"try": 1})
    stale = DeliveryOutcome(first.id, task.id, 1, later + timedelta(seconds=15), "HTTP 500", event, later)
    assert not await store.finish_delivery(stale)
    assert await store.list_events(task.id) == []
    retry_at = later + timedelta(seconds=30)
    failed = DeliveryOutcome(second.id, task.id, 2, retry_at, "HTTP 500", event, later)
    assert await store.finish_delivery(failed)
    assert await store.next_delivery_at() == retry_at
    assert [e.event for e in await store.list_events(task.id)] == ["callback_failed"]
    (third,) = await store.claim_deliveries(DeliveryClaim(retry_at, retry_at + timedelta(seconds=60), 1))
    assert third.tries == 3
    delivered = DeliveryOutcome(third.id, task.id, 3, None, None, None, retry_at)
    assert await store.finish_delivery(delivered)
    assert await store.next_delivery_at() is None
