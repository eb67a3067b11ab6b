"""Store contract: the class each database family gets, hearing about work, and a database that
goes away — on every family, through the store's public face only."""

from __future__ import annotations

import asyncio
import random
import threading

import asyncpg
import pytest
from sqlalchemy import make_url, text
from sqlalchemy.engine import Connection

from taskmanager import models
from taskmanager.engine.clock import FrozenClock
from taskmanager.engine.service import TaskService
from taskmanager.errors import Unavailable
from taskmanager.store import MySQLStore, PostgresStore, SqliteStore, SqlStore, open_store
from taskmanager.store.operations import ENDS_CHANNEL
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


async def test_on_postgresql_only_an_awaited_end_is_announced(
    pg_database: TestDatabase, clock: FrozenClock
) -> None:
    """An ending statement NOTIFYs the ends channel only if a waiter marked its task first
    (``await_end``): a NOTIFY serialises commits, and a queue nobody waits on needs none. A
    listener hears a channel's NOTIFYs in commit order, so once it hears a sentinel sent after
    both ends, it has heard every NOTIFY they sent."""
    store = open_store(pg_database.url, pool_size=2)
    dsn = make_url(pg_database.url).set(drivername="postgresql").render_as_string(hide_password=False)
    listener = await asyncpg.connect(dsn)
    heard: list[str] = []
    sentinel = asyncio.Event()

    def on_notify(_conn: object, _pid: int, _channel: str, payload: str) -> None:
        heard.append(payload)
        if payload == "sentinel":
            sentinel.set()

    try:
        await listener.add_listener(ENDS_CHANNEL, on_notify)
        service = TaskService(store, clock=clock, rng=random.Random(1), version="9.9.9")
        await service.register_type(
            models.RegisterTaskType(name="t", version="1", param_schema={"type": "object"})
        )
        created = [await service.create_task(models.CreateTask(type="t", params={"n": n})) for n in (1, 2, 3)]
        ids = [reply.data["id"] for reply in created]
        await service.claim(models.ClaimTasks(worker_id="w", limit=3))

        await service.complete(ids[0], models.CompleteTask(worker_id="w", success=True))  # not awaited
        await store.await_end(ids[1])
        await service.complete(ids[1], models.CompleteTask(worker_id="w", success=True))
        await service.cancel(ids[2], models.CancelTask())  # not awaited
        await run_raw(pg_database.url, lambda conn: conn.execute(text(f"NOTIFY {ENDS_CHANNEL}, 'sentinel'")))
        await asyncio.wait_for(sentinel.wait(), 10)
        assert heard == ["", "sentinel"]
    finally:
        await listener.close()
        await store.close()
