"""The client under test, four ways: sync and async over HTTP to a real server, and sync and async
embedded (the engine in-process) on the same database with the server's frozen clock.

Test code is written once, blocking: an async client is driven through ``Blocking``, which runs
each coroutine on an event loop of its own in a background thread.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from taskmanager import AsyncTaskManagerClient, TaskManagerClient
from taskmanager.client.embedded import EmbeddedTransport, SyncEmbeddedTransport
from tests.conftest import ADMIN_KEY, Api, ServerFactory

T = TypeVar("T")
KINDS = ("sync", "async", "embedded", "embedded-async")
HTTP_KINDS = ("sync", "async")
EMBEDDED_KINDS = ("embedded", "embedded-async")
WORKER = "client-test-worker"


class LoopThread:
    """An event loop running in a daemon thread; ``run`` waits for a coroutine's result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=120)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


class Blocking:
    """An ``AsyncTaskManagerClient`` behind blocking methods, so one test body serves both."""

    def __init__(self, client: AsyncTaskManagerClient, loop: LoopThread) -> None:
        self._client = client
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if inspect.isasyncgenfunction(attr):
            return lambda *a, **kw: self._iterate(attr(*a, **kw))
        if inspect.iscoroutinefunction(attr):
            return lambda *a, **kw: self._loop.run(attr(*a, **kw))
        return attr

    def _iterate(self, items: AsyncIterator[T]) -> Iterator[T]:
        while True:
            try:
                yield self._loop.run(anext_of(items))
            except StopAsyncIteration:
                return

    def close(self) -> None:
        self._loop.run(self._client.aclose())
        self._loop.close()


async def anext_of(items: AsyncIterator[T]) -> T:
    return await items.__anext__()


def make_client(kind: str, api: Api, **options: Any) -> Any:
    """A client of ``kind`` talking to ``api``'s server, or embedded on its database and clock."""
    options = {"worker_id": WORKER, "retry_backoff": 0.01, **options}
    if kind == "sync":
        return TaskManagerClient(api.url, options.pop("api_key", ADMIN_KEY), **options)
    # The session fixture migrated the database already (and the server holds MySQL's migration
    # lock on a pooled connection: store/migrate.py never releases it).
    if kind == "embedded":
        transport = SyncEmbeddedTransport(api.database.url, clock=api.clock, migrate=False)
        return TaskManagerClient(api.database.url, transport=transport, **options)
    loop = LoopThread()
    if kind == "async":
        client = AsyncTaskManagerClient(api.url, options.pop("api_key", ADMIN_KEY), **options)
    else:
        transport_async = EmbeddedTransport(api.database.url, clock=api.clock, migrate=False)
        client = AsyncTaskManagerClient(api.database.url, transport=transport_async, **options)
    return Blocking(client, loop)


ClientFactory = Callable[..., Any]


@pytest.fixture
def api(request: pytest.FixtureRequest, make_api: ServerFactory, make_live_api: ServerFactory) -> Api:
    """The test's server. The HTTP clients (``sync``, ``async``, and tests of no kind) open their own
    connections, so they get a real one on a socket; the embedded ones only share its database and
    clock, so the app runs in-process."""
    callspec = getattr(request.node, "callspec", None)
    kind = callspec.params.get("kind") if callspec is not None else None
    return make_live_api() if kind not in EMBEDDED_KINDS else make_api()


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def make(kind: str, api: Api) -> Iterator[ClientFactory]:
    """Make clients of this test's kind (closed after the test)."""
    made: list[Any] = []

    def factory(**options: Any) -> Any:
        made.append(make_client(kind, api, **options))
        return made[-1]

    yield factory
    for client in made:
        client.close()


@pytest.fixture
def client(make: ClientFactory) -> Any:
    """A client of each kind (sync, async, embedded, embedded-async) on the test's server."""
    return make()
