"""Store contract: the class each database family gets, hearing about work, and a database that
goes away — on every family, through the store's public face only."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Connection

from taskmanager.engine.clock import FrozenClock
from taskmanager.errors import Unavailable
from taskmanager.store import MySQLStore, PostgresStore, SqliteStore, SqlStore, open_store
from tests.conftest import TestDatabase
from tests.contract.builders import add_task, make_type, run_raw

FAMILIES = {"sqlite": SqliteStore, "postgresql": PostgresStore, "mysql": MySQLStore}
#: Where no database listens.
UNREACHABLE = {
    "postgresql": "postgresql://postgres@127.0.0.1:1/nowhere",
    "mysql": "mysql://root@127.0.0.1:1/nowhere",
}


async def test_open_store_gives_each_family_its_class(store: SqlStore, clean_database: TestDatabase) -> None:
    assert type(store) is FAMILIES[clean_database.kind]


async def test_memory_sqlite_is_a_sqlite_store() -> None:
    store = open_store("sqlite:///:memory:")
    try:
        assert isinstance(store, SqliteStore)
        await store.listen(lambda: None, threading.Event())  # no other process can write to it
        assert store.wake_interval > 0
    finally:
        await store.close()


async def test_listening_starts_once_and_stops_with_the_store(clean_database: TestDatabase) -> None:
    store = open_store(clean_database.url, pool_size=2)
    try:
        waiting = threading.Event()
        await store.listen(lambda: None, waiting)
        await store.listen(lambda: None, waiting)  # a second call changes nothing
        assert 0 < store.wake_interval <= 5
        await store.ping()
    finally:
        await store.close()


@pytest.mark.parametrize("kind", sorted(UNREACHABLE))
async def test_an_unreachable_database_is_unavailable(kind: str) -> None:
    store = open_store(UNREACHABLE[kind], pool_size=1)
    try:
        with pytest.raises(Unavailable):
            await store.ping()
        with pytest.raises(Unavailable):
            await store.get_task(1)
    finally:
        await store.close()


async def test_reads_survive_connections_the_database_dropped(
    pg_database: TestDatabase, clock: FrozenClock
) -> None:
    """A read on PostgreSQL's own pool that meets a connection the server has closed (a restart,
    a killed backend) is answered from a fresh one."""
    store = open_store(pg_database.url, pool_size=5)
    try:
        await _read_after_kill(store, clock, pg_database)
    finally:
        await store.close()


async def _read_after_kill(store: SqlStore, clock: FrozenClock, pg_database: TestDatabase) -> None:
    task_type = await make_type(store, "t", clock.now())
    task = await add_task(store, task_type, clock.now())
    assert await store.get_task(task.id) == task

    def kill(conn: Connection) -> None:
        conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )

    await run_raw(pg_database.url, kill)
    assert await store.get_task(task.id) == task
    assert await store.get_type("t") == task_type
