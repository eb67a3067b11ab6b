"""Embedded mode: the server's own app in-process, behind a transport, with no network.

``TaskManagerClient("sqlite:///local.db")`` sends the core's requests here instead of over HTTP.
Each request is handed to the same ASGI app ``taskmanager serve`` runs (`server.app.create_app`),
as a loopback caller in open mode, and its answer comes back as the bytes the server would have
sent — so embedded mode answers exactly as the server does, by construction: the same routes,
body checks, envelopes and errors. The app's startup (migrating the database unless
``migrate=False``, starting the engine) runs once, on the first request; ``aclose`` runs its
shutdown.

This is the only client module that imports the server (the import contract in
``pyproject.toml`` says so).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import MutableMapping
from contextlib import AsyncExitStack
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette

from taskmanager.client.errors import TaskManagerConnectionError
from taskmanager.client.protocol import Request, Response
from taskmanager.engine.clock import Clock
from taskmanager.engine.policy import Defaults
from taskmanager.server.app import create_app
from taskmanager.settings import Settings

#: Connections the embedded app keeps to a PostgreSQL or MySQL database.
EMBEDDED_POOL_SIZE = 5
#: The address the embedded caller and listener have: loopback, as open mode requires.
LOOPBACK = ("127.0.0.1", 0)
Message = dict[str, Any]


def embedded_settings(
    database_url: str, *, defaults: Defaults | None, migrate: bool, pool_size: int
) -> Settings:
    """The app's settings, from these arguments only: nothing is read from the environment (a
    ``TASKMANAGER_API_KEY`` meant for a server must not lock the embedded caller out)."""
    chosen = defaults or Defaults()
    return Settings.model_construct(
        database_url=database_url,
        db_pool_size=pool_size,
        migrate_on_start=migrate,
        max_attempts=chosen.max_attempts,
        claim_timeout=chosen.claim_timeout,
        retry_delay=chosen.retry_delay,
        enable_history=chosen.enable_history,
        enable_schema_validation=chosen.enable_schema_validation,
    )


def asgi_scope(request: Request) -> Message:
    """The HTTP scope of ``request``, sent from and to the loopback address."""
    headers = [(b"content-type", b"application/json")]
    if request.content is not None:
        headers.append((b"content-length", str(len(request.content)).encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": "http",
        "path": request.path,
        "raw_path": request.path.encode(),
        "query_string": urlencode(request.params).encode(),
        "root_path": "",
        "headers": headers,
        "client": LOOPBACK,
        "server": LOOPBACK,
        "state": {},
    }


class Exchange:
    """One request's ASGI channel: the body once, then nothing until the answer is complete
    (a long-poll claim asks meanwhile whether its caller went away: it did not)."""

    def __init__(self, content: bytes) -> None:
        self.content = content
        self.sent = False
        self.done = asyncio.Event()
        self.status = 500
        self.headers: dict[str, str] = {}
        self.body = bytearray()

    async def receive(self) -> Message:
        if not self.sent:
            self.sent = True
            return {"type": "http.request", "body": self.content, "more_body": False}
        await self.done.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            self.body += message.get("body", b"")
            if not message.get("more_body", False):
                self.done.set()


class EmbeddedTransport:
    """Runs the server's app in the caller's event loop, on the database at ``database_url``.

    The schema is migrated to the latest version on first use (``migrate=False`` to skip).
    ``clock`` and ``defaults`` are the engine's (tests inject a frozen clock).
    """

    def __init__(
        self,
        database_url: str,
        *,
        clock: Clock | None = None,
        defaults: Defaults | None = None,
        migrate: bool = True,
        pool_size: int = EMBEDDED_POOL_SIZE,
    ) -> None:
        self.database_url = database_url
        self._settings = embedded_settings(
            database_url, defaults=defaults, migrate=migrate, pool_size=pool_size
        )
        self._clock = clock
        self._app: Starlette | None = None
        self._running: AsyncExitStack | None = None
        self._lock: asyncio.Lock | None = None

    async def _started(self) -> Starlette:
        """The app, made and started once, in the loop that serves it (the first request waits)."""
        if self._app is not None:
            return self._app
        self._lock = self._lock or asyncio.Lock()
        async with self._lock:
            if self._app is None:
                app = create_app(self._settings, clock=self._clock, open_access=True)
                running = AsyncExitStack()
                try:
                    await running.enter_async_context(app.router.lifespan_context(app))
                except Exception as exc:
                    raise TaskManagerConnectionError(
                        f"The embedded TaskManager could not start: {exc}", request_sent=False
                    ) from exc
                self._app, self._running = app, running
        return self._app

    async def send(self, request: Request) -> Response:
        started = time.perf_counter()
        app = await self._started()
        exchange = Exchange(request.content or b"")
        await app(asgi_scope(request), exchange.receive, exchange.send)
        exchange.done.set()
        return Response(
            exchange.status, exchange.headers, bytes(exchange.body), time.perf_counter() - started
        )

    async def aclose(self) -> None:
        if self._running is not None:
            running, self._running, self._app = self._running, None, None
            await running.aclose()


class SyncEmbeddedTransport:
    """The embedded app for the blocking client: it runs in an event loop of its own, on a
    background thread; each request waits for its answer from there."""

    def __init__(self, database_url: str, **options: Any) -> None:
        self._inner = EmbeddedTransport(database_url, **options)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="taskmanager-embedded", daemon=True
        )
        self._thread.start()
        self._closed = False

    def send(self, request: Request) -> Response:
        return asyncio.run_coroutine_threadsafe(self._inner.send(request), self._loop).result()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        asyncio.run_coroutine_threadsafe(self._inner.aclose(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


__all__ = ["EmbeddedTransport", "SyncEmbeddedTransport"]
