"""Embedded mode: the engine in-process, behind a transport, with no server.

``TaskManagerClient("sqlite:///local.db")`` sends the core's requests here instead of over HTTP.
Each request is routed to the ``TaskService`` method the server's route would call, and the
answer is encoded as the same envelope bytes the server would send — so the core decodes them,
maps errors and retries exactly as it does for HTTP, and both modes behave the same.

This is the only client module that imports the engine and the store (the import contract in
``pyproject.toml`` says so).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import unquote

from pydantic import BaseModel

from taskmanager import models
from taskmanager.client.protocol import Request, Response
from taskmanager.engine.clock import Clock
from taskmanager.engine.policy import Defaults
from taskmanager.engine.service import Reply, TaskService
from taskmanager.errors import InternalError, InvalidJSON, NotFound, TaskManagerError, ValidationFailed
from taskmanager.store import SqlStore, open_store
from taskmanager.store.migrate import upgrade

log = logging.getLogger("taskmanager.client.embedded")

M = TypeVar("M", bound=BaseModel)
#: The register route reports a missing field as PrismQ does (server/routes.py says the same).
REGISTER_MISSING = "Missing required field: {}"
#: Connections the embedded engine keeps to a PostgreSQL or MySQL database.
EMBEDDED_POOL_SIZE = 5

Handler = Callable[[TaskService, "Routed"], Awaitable[Reply]]


class Routed:
    """A request matched to a route: its path values, query and JSON body."""

    def __init__(self, request: Request, match: re.Match[str]) -> None:
        self.request = request
        self.match = match
        self.query = dict(request.params)

    @property
    def task_id(self) -> int:
        return int(self.match["id"])

    @property
    def name(self) -> str:
        return unquote(self.match["name"])

    def body(self, model: type[M], *, optional: bool = False, missing: str | None = None) -> M:
        raw = self.request.content or b""
        if not raw.strip():
            if not optional:
                raise InvalidJSON()
            data: Any = {}
        else:
            try:
                data = json.loads(raw)
            except ValueError:
                raise InvalidJSON() from None
        return models.parse_body(model, data, missing_message=missing)

    def integer(self, name: str, default: int) -> int:
        try:
            return int(self.query.get(name, default))
        except ValueError:
            raise ValidationFailed("Validation failed", details=[f"{name}: must be an integer"]) from None

    def flag(self, name: str) -> bool:
        return self.query.get(name, "").lower() in ("1", "true", "yes", "on")


def _list_tasks(service: TaskService, r: Routed) -> Awaitable[Reply]:
    q = r.query
    return service.list_tasks(
        status=q.get("status"),
        type=q.get("type"),
        worker_id=q.get("worker_id"),
        limit=r.integer("limit", 50),
        offset=r.integer("offset", 0),
    )


ID = r"(?P<id>\d+)"
NAME = r"(?P<name>[^/]+)"
ROUTES: list[tuple[str, re.Pattern[str], Handler]] = [
    (method, re.compile(f"^{path}$"), handler)
    for method, path, handler in [
        ("GET", "/health", lambda s, r: s.health()),
        (
            "POST",
            "/task-types/register",
            lambda s, r: s.register_type(r.body(models.RegisterTaskType, missing=REGISTER_MISSING)),
        ),
        ("GET", "/task-types", lambda s, r: s.list_types(r.flag("active_only"))),
        ("GET", f"/task-types/{NAME}", lambda s, r: s.get_type(r.name)),
        ("DELETE", f"/task-types/{NAME}", lambda s, r: s.deactivate_type(r.name)),
        ("POST", "/tasks", lambda s, r: s.create_task(r.body(models.CreateTask))),
        ("POST", "/tasks/batch", lambda s, r: s.create_tasks(r.body(models.CreateTasksBatch))),
        ("POST", "/tasks/claim", lambda s, r: s.claim(r.body(models.ClaimTasks))),
        ("POST", "/tasks/complete-batch", lambda s, r: s.complete_batch(r.body(models.CompleteBatch))),
        ("GET", "/tasks", _list_tasks),
        ("GET", f"/tasks/{ID}", lambda s, r: s.get_task(r.task_id)),
        ("DELETE", f"/tasks/{ID}", lambda s, r: s.delete(r.task_id)),
        ("GET", f"/tasks/{ID}/history", lambda s, r: s.history(r.task_id)),
        ("POST", f"/tasks/{ID}/complete", lambda s, r: s.complete(r.task_id, r.body(models.CompleteTask))),
        ("POST", f"/tasks/{ID}/progress", lambda s, r: s.progress(r.task_id, r.body(models.ReportProgress))),
        ("POST", f"/tasks/{ID}/heartbeat", lambda s, r: s.heartbeat(r.task_id, r.body(models.Heartbeat))),
        (
            "POST",
            f"/tasks/{ID}/cancel",
            lambda s, r: s.cancel(r.task_id, r.body(models.CancelTask, optional=True)),
        ),
        ("POST", f"/tasks/{ID}/retry", lambda s, r: s.retry(r.task_id)),
    ]
]


def _envelope(status: int, body: dict[str, Any]) -> Response:
    content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(status, {"content-type": "application/json"}, content)


def _success(reply: Reply) -> Response:
    return _envelope(
        200, {"success": True, "message": reply.message, "data": reply.data, "timestamp": int(time.time())}
    )


def _failure(exc: TaskManagerError) -> Response:
    body: dict[str, Any] = {
        "success": False,
        "error": exc.error,
        "message": exc.message,
        "code": exc.code,
        "timestamp": int(time.time()),
    }
    if exc.details:
        body["details"] = exc.details
    if exc.data:
        body["data"] = exc.data
    return _envelope(exc.status, body)


class EmbeddedTransport:
    """Runs the engine in the caller's event loop, on the database at ``database_url``.

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
        self._clock = clock
        self._defaults = defaults
        self._migrate = migrate
        self._pool_size = pool_size
        self._store: SqlStore | None = None
        self._service: TaskService | None = None
        self._lock: asyncio.Lock | None = None

    async def _engine(self) -> TaskService:
        if self._service is not None:
            return self._service
        self._lock = self._lock or asyncio.Lock()
        async with self._lock:
            if self._service is None:
                from taskmanager import __version__

                store = open_store(self.database_url, pool_size=self._pool_size)
                if self._migrate:
                    await upgrade(store.db)
                self._store = store
                self._service = TaskService(
                    store, clock=self._clock, defaults=self._defaults, version=__version__
                )
        return self._service

    async def send(self, request: Request) -> Response:
        started = time.perf_counter()
        try:
            service = await self._engine()
            reply = await self._route(service, request)
            response = _success(reply)
        except TaskManagerError as exc:
            response = _failure(exc)
        except Exception:
            log.exception("unhandled error in embedded %s %s", request.method, request.path)
            response = _failure(InternalError())
        return Response(
            response.status_code, response.headers, response.content, time.perf_counter() - started
        )

    @staticmethod
    async def _route(service: TaskService, request: Request) -> Reply:
        path = request.path.rstrip("/") or "/"
        for method, pattern, handler in ROUTES:
            match = pattern.match(path)
            if match is not None and method == request.method:
                return await handler(service, Routed(request, match))
        raise NotFound("Endpoint not found")

    async def aclose(self) -> None:
        if self._store is not None:
            await self._store.close()
            self._store = None
            self._service = None


class SyncEmbeddedTransport:
    """The embedded engine for the blocking client: it runs in an event loop of its own, on a
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
