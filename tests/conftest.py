"""Shared fixtures: real databases (SQLite, PostgreSQL, MariaDB) and real HTTP servers.

Every database test runs once per database in ``TASKMANAGER_TEST_DATABASES`` (default: all
three). A database that cannot be reached fails the run: nothing is skipped.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from taskmanager.engine.clock import FrozenClock
from taskmanager.server.app import create_app
from taskmanager.settings import Settings
from taskmanager.store import SqlStore, open_store
from taskmanager.store.database import driver_url
from taskmanager.store.migrate import upgrade

ALL_DATABASES = ("sqlite", "postgresql", "mysql")
ADMIN_KEY = "test-admin-key-0123456789"
PG_ADMIN_URL = os.environ.get("TASKMANAGER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_ADMIN_URL = os.environ.get("TASKMANAGER_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
START = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def selected_databases() -> tuple[str, ...]:
    wanted = os.environ.get("TASKMANAGER_TEST_DATABASES", ",".join(ALL_DATABASES))
    chosen = tuple(name.strip() for name in wanted.split(",") if name.strip())
    unknown = set(chosen) - set(ALL_DATABASES)
    if unknown:
        raise pytest.UsageError(f"unknown TASKMANAGER_TEST_DATABASES entries: {sorted(unknown)}")
    return chosen


async def _admin(url: str, statements: list[str]) -> None:
    engine = create_async_engine(driver_url(url), isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            for statement in statements:
                await conn.execute(text(statement))
    finally:
        await engine.dispose()


async def _migrate(url: str) -> None:
    store = open_store(url, pool_size=1)
    try:
        await upgrade(store.db)
    finally:
        await store.close()


@dataclass
class TestDatabase:
    """A throwaway database of one kind, migrated once per session and emptied per test."""

    __test__ = False  # not a test class, despite its name
    kind: str
    url: str

    async def reset(self) -> None:
        tables = ("task_history", "tasks", "task_types", "api_keys")

        def empty(conn: Connection) -> None:
            for table in tables:
                conn.execute(text(f"DELETE FROM {table}"))
            if self.kind == "sqlite":
                conn.execute(text("DELETE FROM sqlite_sequence"))
            for table in tables:
                if self.kind == "postgresql":
                    conn.execute(text(f"ALTER SEQUENCE {table}_id_seq RESTART WITH 1"))
                elif self.kind == "mysql":
                    conn.execute(text(f"ALTER TABLE {table} AUTO_INCREMENT = 1"))

        store = open_store(self.url, pool_size=1)
        try:
            await store.db.run(empty, write=True)
        finally:
            await store.close()


def _create(kind: str, tmp: Path) -> TestDatabase:
    name = f"tm_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    if kind == "sqlite":
        return TestDatabase(kind, f"sqlite:///{tmp / 'taskmanager.db'}")
    if kind == "postgresql":
        asyncio.run(_admin(PG_ADMIN_URL, [f'CREATE DATABASE "{name}"']))
        base = PG_ADMIN_URL.rsplit("/", 1)[0]
        return TestDatabase(kind, f"{base}/{name}")
    asyncio.run(_admin(MYSQL_ADMIN_URL, [f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"]))
    base = MYSQL_ADMIN_URL.rsplit("/", 1)[0]
    return TestDatabase(kind, f"{base}/{name}")


def _drop(db: TestDatabase) -> None:
    name = db.url.rsplit("/", 1)[1]
    if db.kind == "postgresql":
        asyncio.run(_admin(PG_ADMIN_URL, [f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)']))
    elif db.kind == "mysql":
        asyncio.run(_admin(MYSQL_ADMIN_URL, [f"DROP DATABASE IF EXISTS `{name}`"]))


@pytest.fixture(scope="session", params=selected_databases())
def database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestDatabase]:
    """A migrated database of each selected kind, shared by the session."""
    db = _create(request.param, tmp_path_factory.mktemp(request.param))
    asyncio.run(_migrate(db.url))
    yield db
    _drop(db)


@pytest.fixture
def clean_database(database: TestDatabase) -> TestDatabase:
    asyncio.run(database.reset())
    return database


@pytest.fixture
def pg_database(tmp_path: Path) -> Iterator[TestDatabase]:
    """A throwaway PostgreSQL database of this test's own (fresh statistics, free to kill)."""
    db = _create("postgresql", tmp_path)
    asyncio.run(_migrate(db.url))
    yield db
    _drop(db)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
async def store(clean_database: TestDatabase) -> AsyncIterator[SqlStore]:
    opened = open_store(clean_database.url, pool_size=5)
    yield opened
    await opened.close()


# -- real HTTP servers ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RunningServer:
    """A uvicorn server on a real port, in a background thread of the test process."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
            access_log=False,
            # The app decides whose X-Forwarded-For to believe (TASKMANAGER_TRUSTED_PROXIES).
            proxy_headers=False,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> RunningServer:
        self.thread.start()
        for _ in range(3000):
            if self.server.started:
                return self
            if not self.thread.is_alive():
                raise RuntimeError("test server failed to start")
            threading.Event().wait(0.01)
        raise RuntimeError("test server did not start in 30 s")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@dataclass
class Api:
    """An HTTP client for one running server, plus the server's frozen clock."""

    client: httpx.Client
    clock: FrozenClock
    url: str
    database: TestDatabase

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


ServerFactory = Callable[..., Api]


@pytest.fixture
def make_api(clean_database: TestDatabase) -> Iterator[ServerFactory]:
    """Start a server with the given settings on the test database; stopped after the test."""
    stack: list[tuple[RunningServer, httpx.Client]] = []

    def start(*, api_key: str | None = ADMIN_KEY, send_key: bool = True, **settings: Any) -> Api:
        clock = FrozenClock(START)
        config = Settings(database_url=clean_database.url, api_key=api_key, **settings)
        running = RunningServer(create_app(config, clock=clock)).__enter__()
        headers = {"X-API-Key": api_key} if api_key and send_key else {}
        client = httpx.Client(base_url=running.url, headers=headers, timeout=30)
        stack.append((running, client))
        return Api(client, clock, running.url, clean_database)

    yield start
    for running, client in reversed(stack):
        client.close()
        running.__exit__()


@pytest.fixture
def api(make_api: ServerFactory) -> Api:
    """A server with an admin key, a frozen clock, and a client that sends the key."""
    return make_api()
