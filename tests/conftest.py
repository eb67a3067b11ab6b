"""Shared fixtures: real databases (SQLite, PostgreSQL, MariaDB) and real HTTP servers.

Every database test runs once per database in ``TASKMANAGER_TEST_DATABASES`` (default: all
three). A database that cannot be reached fails the run: nothing is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from taskmanager.engine.clock import FrozenClock
from taskmanager.engine.observe import FeedTiming
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
T = TypeVar("T")


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
        tables = ("callback_deliveries", "schedules", "task_history", "tasks", "task_types", "api_keys")

        def empty(conn: Connection) -> None:
            conn.execute(text("DELETE FROM task_dependencies"))  # no id sequence to restart
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


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In pytest-xdist workers, hand the ``slow`` tests out first: each takes a worker for seconds
    to minutes, so one dealt out last would leave the other workers idle until it ends. The others
    keep pytest's order, which groups the tests of each database."""
    if not hasattr(config, "workerinput"):
        return  # one process: the order changes nothing but when you see what fails
    slow = [item for item in items if item.get_closest_marker("slow")]
    items[:] = slow + [item for item in items if not item.get_closest_marker("slow")]


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


# -- the app, in-process or behind a real socket ---------------------------------------------------
#
# ``api``/``make_api`` drive the app in-process: requests go through an httpx transport straight
# into the ASGI app, whose lifespan and requests run on an event loop in a thread of its own (no
# uvicorn, no socket, no port). ``live_api``/``make_live_api`` start a real uvicorn server for
# what only a socket shows: client timeouts and hang-ups (long-poll ``gone``), raw and streamed
# request bodies, client addresses and proxies, other processes talking to the server.


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


#: Where an in-process app's requests come from, as uvicorn would report a local client.
IN_PROCESS_CLIENT = ("127.0.0.1", 50000)
#: Its URL: a loopback listener, as the app checks (open mode serves only one), on a port nothing
#: listens on, so a client that bypasses the in-process transport fails at once.
IN_PROCESS_URL = "http://127.0.0.1:9"


class InProcessServer:
    """An ASGI app run in-process: its lifespan and its requests on one event loop in a thread of
    its own, so blocking test code (and several clients at once) can call it as a server."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.url = IN_PROCESS_URL
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="in-process-app", daemon=True)
        self._messages: asyncio.Queue[dict[str, Any]] | None = None
        self._lifespan: asyncio.Future[None] | None = None
        self._replies: dict[str, asyncio.Future[None]] = {}

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def __enter__(self) -> InProcessServer:
        self.thread.start()
        try:
            self.run(self._start())
        except BaseException:
            self._stop_loop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.run(self._stop())
        finally:
            self._stop_loop()

    def transport(self, client: tuple[str, int] = IN_PROCESS_CLIENT) -> httpx.BaseTransport:
        return _InProcessTransport(self, httpx.ASGITransport(self.app, client=client))

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        self._messages = asyncio.Queue()
        self._replies = {"startup": loop.create_future(), "shutdown": loop.create_future()}
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
        self._lifespan = asyncio.ensure_future(self.app(scope, self._messages.get, self._send))
        await self._step("startup")

    async def _stop(self) -> None:
        await self._step("shutdown")
        assert self._lifespan is not None
        await self._lifespan
        # An app that leaves work running past its shutdown would have it cut off when the
        # process exits (and its database connections dropped unclosed): fail the test instead.
        left = asyncio.all_tasks() - {asyncio.current_task()}
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)
        assert not left, f"the app left tasks running after its shutdown: {sorted(map(repr, left))}"

    async def _step(self, step: str) -> None:
        assert self._messages is not None
        assert self._lifespan is not None
        await self._messages.put({"type": f"lifespan.{step}"})
        reply = self._replies[step]
        await asyncio.wait([reply, self._lifespan], return_when=asyncio.FIRST_COMPLETED)
        if reply.done():
            reply.result()
        else:
            self._lifespan.result()  # the app raised: raise that
            raise RuntimeError(f"the app's lifespan ended before its {step} completed")

    async def _send(self, message: dict[str, Any]) -> None:
        kind = message["type"].removeprefix("lifespan.")
        step, _, outcome = kind.partition(".")
        reply = self._replies[step]
        if outcome == "complete":
            reply.set_result(None)
        else:
            reply.set_exception(RuntimeError(f"{step} failed: {message.get('message', '')}"))

    def _stop_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


class _InProcessTransport(httpx.BaseTransport):
    """A blocking httpx transport that hands each request to the app on its loop's thread."""

    def __init__(self, server: InProcessServer, asgi: httpx.ASGITransport) -> None:
        self._server = server
        self._asgi = asgi

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()  # a streamed body arrives whole, as a proxy that buffers would send it
        forwarded = httpx.Request(request.method, request.url, headers=request.headers, content=body)

        async def send() -> httpx.Response:
            response = await self._asgi.handle_async_request(forwarded)
            content = await response.aread()
            return httpx.Response(response.status_code, headers=response.headers, content=content)

        return self._server.run(send())


@dataclass
class Api:
    """An HTTP client for one server (in-process or on a socket), plus the server's frozen clock."""

    client: httpx.Client
    clock: FrozenClock
    url: str
    database: TestDatabase
    transport: httpx.BaseTransport | None = None  # None: the server is on a real socket
    server: Any = None  # the InProcessServer (in-process only): its app, and ``run`` on its loop

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def new_client(self, headers: dict[str, str] | None = None, timeout: float = 30) -> httpx.Client:
        """Another client of the same server (another key, say); the caller closes it."""
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=self.transport)


ServerFactory = Callable[..., Api]
#: ``GET /events`` in-process: the transport reads a whole response, so a stream ends by itself.
IN_PROCESS_FEED = FeedTiming(poll_seconds=0.01, lifetime=0.3)


def _settings(database: TestDatabase, api_key: str | None, settings: dict[str, Any]) -> Settings:
    return Settings(database_url=database.url, api_key=api_key, **settings)


@pytest.fixture
def make_api(clean_database: TestDatabase) -> Iterator[ServerFactory]:
    """Run the app in-process with the given settings on the test database, its clock frozen;
    stopped after the test."""
    stack = contextlib.ExitStack()

    def start(
        *,
        api_key: str | None = ADMIN_KEY,
        send_key: bool = True,
        feed: FeedTiming = IN_PROCESS_FEED,
        clock: FrozenClock | None = None,
        **settings: Any,
    ) -> Api:
        clock = clock or FrozenClock(START)  # several apps may share one (several servers)
        app = create_app(_settings(clean_database, api_key, settings), clock=clock, feed=feed)
        server = stack.enter_context(InProcessServer(app))
        transport = server.transport()
        headers = {"X-API-Key": api_key} if api_key and send_key else {}
        client = stack.enter_context(
            httpx.Client(base_url=server.url, headers=headers, timeout=30, transport=transport)
        )
        return Api(client, clock, server.url, clean_database, transport, server)

    with stack:
        yield start


@pytest.fixture
def api(make_api: ServerFactory) -> Api:
    """The app with an admin key, a frozen clock, and a client that sends the key."""
    return make_api()


@pytest.fixture
def make_live_api(clean_database: TestDatabase) -> Iterator[ServerFactory]:
    """Like ``make_api``, but a uvicorn server on a real port: for the tests that need a socket."""
    stack = contextlib.ExitStack()

    def start(
        *,
        api_key: str | None = ADMIN_KEY,
        send_key: bool = True,
        feed: FeedTiming | None = None,
        **settings: Any,
    ) -> Api:
        clock = FrozenClock(START)
        app = create_app(_settings(clean_database, api_key, settings), clock=clock, feed=feed)
        running = stack.enter_context(RunningServer(app))
        headers = {"X-API-Key": api_key} if api_key and send_key else {}
        client = stack.enter_context(httpx.Client(base_url=running.url, headers=headers, timeout=30))
        return Api(client, clock, running.url, clean_database)

    with stack:
        yield start


@pytest.fixture
def live_api(make_live_api: ServerFactory) -> Api:
    """A real server on a socket with an admin key, a frozen clock, and a client that sends it."""
    return make_live_api()
