"""Store contract: a type's ``max_running`` (API.md B.9) — never more of its tasks claimed under a
live lease than that, however many claimers race; other types' tasks are claimed instead; an
expired lease frees its slot."""

from __future__ import annotations

import asyncio

from taskmanager.engine.clock import FrozenClock
from taskmanager.engine.records import Task, TaskStatus
from taskmanager.engine.store import TaskQuery
from taskmanager.store import SqlStore, open_store
from tests.conftest import TestDatabase
from tests.contract.builders import add_task, claim, make_type


def types_of(found: list[Task]) -> list[str]:
    return [t.type for t in found]


async def test_a_claim_takes_no_more_than_the_types_free_slots(store: SqlStore, clock: FrozenClock) -> None:
    limited = await make_type(store, "limited", clock.now(), max_running=2)
    for _ in range(5):
        await add_task(store, limited, clock.now())
    assert types_of(await claim(store, clock.now(), limit=10)) == ["limited", "limited"]
    assert await claim(store, clock.now(), limit=10) == []
    assert await claim(store, clock.now(), "w2") == []


async def test_a_full_type_gives_way_to_the_next_eligible_task_of_another(
    store: SqlStore, clock: FrozenClock
) -> None:
    limited = await make_type(store, "limited", clock.now(), max_running=1)
    other = await make_type(store, "other", clock.now())
    for _ in range(3):
        await add_task(store, limited, clock.now(), priority=9)
    low = [await add_task(store, other, clock.now(), priority=0) for _ in range(3)]
    (first,) = await claim(store, clock.now())
    assert first.type == "limited"
    (second,) = await claim(store, clock.now())
    assert second.id == low[0].id
    # A claim of many: one more of the limited type would overshoot, so the rest are the other's.
    many = await claim(store, clock.now(), limit=5)
    assert [t.id for t in many] == [t.id for t in low[1:]]


async def test_a_claim_of_many_fills_up_from_other_types_once_one_is_full(
    store: SqlStore, clock: FrozenClock
) -> None:
    limited = await make_type(store, "limited", clock.now(), max_running=2)
    other = await make_type(store, "other", clock.now())
    for _ in range(4):
        await add_task(store, limited, clock.now(), priority=5)
    for _ in range(4):
        await add_task(store, other, clock.now())
    taken = await claim(store, clock.now(), limit=5)
    assert types_of(taken) == ["limited", "limited", "other", "other", "other"]


async def test_an_expired_lease_frees_its_slot(store: SqlStore, clock: FrozenClock) -> None:
    limited = await make_type(store, "limited", clock.now(), max_running=1, claim_timeout=60)
    first = await add_task(store, limited, clock.now())
    second = await add_task(store, limited, clock.now())
    assert [t.id for t in await claim(store, clock.now())] == [first.id]
    clock.advance(59)
    assert await claim(store, clock.now()) == []
    clock.advance(1)  # the first lease ends now: its slot is free, though the row says claimed
    assert [t.id for t in await claim(store, clock.now())] == [second.id]


async def test_limits_follow_the_claims_type_filters(store: SqlStore, clock: FrozenClock) -> None:
    limited = await make_type(store, "limited", clock.now(), max_running=1)
    other = await make_type(store, "other", clock.now())
    await add_task(store, limited, clock.now())
    await add_task(store, limited, clock.now())
    await add_task(store, other, clock.now())
    assert types_of(await claim(store, clock.now(), type_names=("limited",))) == ["limited"]
    assert await claim(store, clock.now(), type_names=("limited",)) == []
    assert types_of(await claim(store, clock.now(), type_ids=(other.id,))) == ["other"]
    await add_task(store, other, clock.now())
    assert await claim(store, clock.now(), type_like="lim%") == []
    assert types_of(await claim(store, clock.now(), type_like="oth%")) == ["other"]


async def test_an_unlimited_type_is_not_limited(store: SqlStore, clock: FrozenClock) -> None:
    free = await make_type(store, "free", clock.now(), max_running=None)
    for _ in range(4):
        await add_task(store, free, clock.now())
    assert len(await claim(store, clock.now(), limit=10)) == 4


async def _claimed(store: SqlStore, type_name: str, clock: FrozenClock) -> int:
    found = await store.list_tasks(TaskQuery(statuses=(TaskStatus.CLAIMED,), type_name=type_name, limit=1000))
    return sum(1 for t in found.tasks if t.lease_expires_at is not None and t.lease_expires_at > clock.now())


async def test_concurrent_claimers_on_several_stores_never_overshoot(
    store: SqlStore, clock: FrozenClock, clean_database: TestDatabase
) -> None:
    """Sixteen claimers on four stores (their own connections, as four server processes have)
    race for one limited type and one unlimited one; twice, the second time after the first
    leases ran out. Each time exactly ``max_running`` of the limited type are held, never more."""
    limit = 3
    limited = await make_type(store, "limited", clock.now(), max_running=limit, claim_timeout=60)
    other = await make_type(store, "other", clock.now())
    for _ in range(40):
        await add_task(store, limited, clock.now(), priority=1)
    for _ in range(20):
        await add_task(store, other, clock.now())
    stores = [open_store(clean_database.url, pool_size=4) for _ in range(4)]

    async def claimer(n: int, own: SqlStore) -> list[Task]:
        taken: list[Task] = []
        for round_ in range(3):
            taken += await claim(own, clock.now(), f"w{n}", limit=1 + (n + round_) % 3)
        return taken

    async def race() -> list[Task]:
        results = await asyncio.gather(*(claimer(n, stores[n % 4]) for n in range(16)))
        return [task for taken in results for task in taken]

    try:
        await asyncio.gather(*(own.ping() for own in stores))
        first = await race()
        assert types_of(first).count("limited") == limit
        assert await _claimed(store, "limited", clock) == limit
        assert types_of(first).count("other") >= 1
        clock.advance(60)  # every lease of the first race runs out together
        second = await race()
    finally:
        await asyncio.gather(*(own.close() for own in stores))
    assert types_of(second).count("limited") == limit
    assert await _claimed(store, "limited", clock) == limit
    every = [t.id for t in first + second]
    assert len(every) == len(set(every))
