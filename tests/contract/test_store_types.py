"""Store contract: task types (save_type, get_type, list_types, set_type_active) and ping."""

from __future__ import annotations

from datetime import timedelta

from taskmanager.engine.clock import FrozenClock
from taskmanager.engine.records import DedupeScope
from taskmanager.store import SqlStore
from tests.contract.builders import make_type, save_type


async def test_ping_answers(store: SqlStore) -> None:
    await store.ping()


async def test_save_type_inserts_a_new_type_with_every_setting(store: SqlStore, clock: FrozenClock) -> None:
    schema = {"type": "object", "properties": {"tópico": {"type": "string"}}, "required": ["tópico"]}
    saved, created = await store.save_type(
        save_type(
            "PrismQ.Script.Generate",
            clock.now(),
            version="1.2.3",
            schema=schema,
            max_attempts=5,
            claim_timeout=60,
            retry_delay=0.5,
            retry_max_delay=30.0,
            dedupe="active",
            max_pending=10,
            description="Writes scripts ✍",
        )
    )
    assert created is True
    assert saved.id > 0
    assert (saved.name, saved.version, saved.param_schema) == ("PrismQ.Script.Generate", "1.2.3", schema)
    assert saved.is_active is True
    assert (saved.max_attempts, saved.claim_timeout) == (5, 60)
    assert (saved.retry_delay, saved.retry_max_delay) == (0.5, 30.0)
    assert saved.dedupe == DedupeScope.ACTIVE
    assert saved.max_pending == 10
    assert saved.description == "Writes scripts ✍"
    assert saved.created_at == saved.updated_at == clock.now()
    assert await store.get_type("PrismQ.Script.Generate") == saved


async def test_save_type_of_an_existing_name_updates_it(store: SqlStore, clock: FrozenClock) -> None:
    first = await make_type(store, "t", clock.now(), max_attempts=3)
    clock.advance(60)
    new_schema = {"type": "object", "required": ["a"]}
    second, created = await store.save_type(
        save_type("t", clock.now(), version="2.0.0", schema=new_schema, max_attempts=7, dedupe="none")
    )
    assert created is False
    assert second.id == first.id
    assert (second.version, second.param_schema) == ("2.0.0", new_schema)
    assert (second.max_attempts, second.dedupe) == (7, DedupeScope.NONE)
    assert second.created_at == first.created_at
    assert second.updated_at == clock.now() == first.updated_at + timedelta(seconds=60)
    assert await store.list_types(active_only=False) == [second]


async def test_save_type_reactivates_a_deactivated_type(store: SqlStore, clock: FrozenClock) -> None:
    await make_type(store, "t", clock.now())
    paused = await store.set_type_active("t", False, clock.now())
    assert paused is not None
    assert paused.is_active is False
    saved, created = await store.save_type(save_type("t", clock.now()))
    assert created is False
    assert saved.is_active is True
    found = await store.get_type("t")
    assert found is not None
    assert found.is_active is True


async def test_get_type_of_an_unknown_name_is_none(store: SqlStore, clock: FrozenClock) -> None:
    await make_type(store, "known", clock.now())
    assert await store.get_type("unknown") is None
    assert await store.get_type("know%") is None


async def test_list_types_is_sorted_by_name(store: SqlStore, clock: FrozenClock) -> None:
    for name in ("gamma.render", "alpha", "beta.x", "alpha.z"):
        await make_type(store, name, clock.now())
    names = [t.name for t in await store.list_types(active_only=False)]
    assert names == ["alpha", "alpha.z", "beta.x", "gamma.render"]


async def test_list_types_active_only_leaves_out_paused_types(store: SqlStore, clock: FrozenClock) -> None:
    for name in ("a", "b", "c"):
        await make_type(store, name, clock.now())
    await store.set_type_active("b", False, clock.now())
    assert [t.name for t in await store.list_types(active_only=True)] == ["a", "c"]
    everything = await store.list_types(active_only=False)
    assert [(t.name, t.is_active) for t in everything] == [("a", True), ("b", False), ("c", True)]


async def test_list_types_of_an_empty_store(store: SqlStore) -> None:
    assert await store.list_types(active_only=False) == []
    assert await store.list_types(active_only=True) == []


async def test_set_type_active_switches_and_stamps_the_type(store: SqlStore, clock: FrozenClock) -> None:
    created = await make_type(store, "t", clock.now())
    clock.advance(5)
    paused = await store.set_type_active("t", False, clock.now())
    assert paused is not None
    assert (paused.id, paused.is_active, paused.updated_at) == (created.id, False, clock.now())
    assert paused.created_at == created.created_at
    clock.advance(5)
    resumed = await store.set_type_active("t", True, clock.now())
    assert resumed is not None
    assert (resumed.is_active, resumed.updated_at) == (True, clock.now())
    assert await store.get_type("t") == resumed


async def test_set_type_active_of_an_unknown_name_is_none(store: SqlStore, clock: FrozenClock) -> None:
    assert await store.set_type_active("missing", False, clock.now()) is None
    assert await store.list_types(active_only=False) == []


async def test_every_change_of_a_type_adds_one_to_its_revision(store: SqlStore, clock: FrozenClock) -> None:
    # The clock does not move: the revision tells changes apart where updated_at cannot.
    created = await make_type(store, "t", clock.now())
    saved, _ = await store.save_type(save_type("t", clock.now(), version="2.0.0"))
    paused = await store.set_type_active("t", False, clock.now())
    resumed = await store.set_type_active("t", True, clock.now())
    assert paused is not None
    assert resumed is not None
    assert [created.revision, saved.revision, paused.revision, resumed.revision] == [1, 2, 3, 4]
    assert len({created.updated_at, saved.updated_at, resumed.updated_at}) == 1
    other = await make_type(store, "other", clock.now())
    assert other.revision == 1
    found = await store.get_type("t")
    assert found is not None
    assert found.revision == 4
