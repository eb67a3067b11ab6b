"""Store contract: API keys (insert, find by hash, list, revoke, batched last-used, count)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.exc import IntegrityError

from taskmanager.engine.clock import FrozenClock
from taskmanager.engine.keys import NewApiKey, generate_key, key_hash
from taskmanager.store import SqlStore


def new_key(clock: FrozenClock, name: str = "workers", **fields: object) -> NewApiKey:
    secret, prefix = generate_key()
    values: dict[str, object] = {
        "name": name,
        "prefix": prefix,
        "key_hash": key_hash(secret),
        "scopes": ("tasks:work", "types:read"),
        "rate_limit": 60,
        "now": clock.now(),
        **fields,
    }
    return NewApiKey(**values)  # type: ignore[arg-type]


async def test_an_inserted_key_is_found_by_its_hash_only(store: SqlStore, clock: FrozenClock) -> None:
    made = new_key(clock, name="render wörkers ✓")
    stored = await store.keys.insert_api_key(made)
    assert stored.id > 0
    assert (stored.name, stored.prefix, stored.key_hash) == (made.name, made.prefix, made.key_hash)
    assert stored.scopes == ("tasks:work", "types:read")
    assert (stored.rate_limit, stored.is_active) == (60, True)
    assert stored.created_at == clock.now()
    assert stored.last_used_at is None
    assert await store.keys.find_api_key(made.key_hash) == stored
    assert await store.keys.find_api_key(made.key_hash.upper()) is None
    assert await store.keys.find_api_key(key_hash("something else")) is None


async def test_a_key_without_a_rate_limit_stores_null(store: SqlStore, clock: FrozenClock) -> None:
    stored = await store.keys.insert_api_key(new_key(clock, rate_limit=None, scopes=("admin",)))
    assert stored.rate_limit is None
    assert stored.scopes == ("admin",)


async def test_two_keys_cannot_share_a_hash(store: SqlStore, clock: FrozenClock) -> None:
    first = new_key(clock)
    await store.keys.insert_api_key(first)
    with pytest.raises(IntegrityError):
        await store.keys.insert_api_key(new_key(clock, key_hash=first.key_hash))


async def test_list_returns_every_key_in_id_order_and_count_includes_revoked(
    store: SqlStore, clock: FrozenClock
) -> None:
    assert await store.keys.list_api_keys() == []
    assert await store.keys.count_api_keys() == 0
    a = await store.keys.insert_api_key(new_key(clock, name="a"))
    b = await store.keys.insert_api_key(new_key(clock, name="b"))
    await store.keys.revoke_api_key(a.id, clock.now())
    assert [k.name for k in await store.keys.list_api_keys()] == ["a", "b"]
    assert await store.keys.count_api_keys() == 2
    assert b.id > a.id


async def test_revoke_deactivates_once_and_keeps_the_first_time(store: SqlStore, clock: FrozenClock) -> None:
    stored = await store.keys.insert_api_key(new_key(clock))
    first = clock.advance(10)
    revoked = await store.keys.revoke_api_key(stored.id, first)
    assert revoked is not None
    assert (revoked.is_active, revoked.revoked_at) == (False, first)
    again = await store.keys.revoke_api_key(stored.id, clock.advance(10))
    assert again is not None
    assert again.revoked_at == first
    found = await store.keys.find_api_key(stored.key_hash)
    assert found is not None
    assert found.is_active is False
    assert await store.keys.revoke_api_key(stored.id + 1000, clock.now()) is None


async def test_touch_moves_last_used_forward_in_one_batch_and_never_back(
    store: SqlStore, clock: FrozenClock
) -> None:
    a = await store.keys.insert_api_key(new_key(clock, name="a"))
    b = await store.keys.insert_api_key(new_key(clock, name="b"))
    later = clock.now() + timedelta(seconds=30)
    await store.keys.touch_api_keys({a.id: later, b.id: clock.now()})
    found = {k.name: k.last_used_at for k in await store.keys.list_api_keys()}
    assert found == {"a": later, "b": clock.now()}
    await store.keys.touch_api_keys({a.id: clock.now()})  # an older time (another server's batch)
    assert (await store.keys.list_api_keys())[0].last_used_at == later
    await store.keys.touch_api_keys({})
    await store.keys.touch_api_keys({a.id + b.id + 1000: later})  # a deleted key: nothing happens
