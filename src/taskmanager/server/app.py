"""The FastAPI application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from taskmanager import __version__, models
from taskmanager.engine.access import KeyService
from taskmanager.engine.clock import Clock, SystemClock
from taskmanager.engine.service import TaskService
from taskmanager.engine.store import Store
from taskmanager.errors import InternalError, NotFound, TaskManagerError, ValidationFailed
from taskmanager.server.auth import Authenticator
from taskmanager.server.docs import add_body_schemas
from taskmanager.server.envelope import error
from taskmanager.server.fastlane import FastLane
from taskmanager.server.key_routes import router as key_router
from taskmanager.server.middleware import EdgeMiddleware
from taskmanager.server.network import AddressPolicy, parse_networks
from taskmanager.server.ratelimit import open_limiter
from taskmanager.server.routes import router
from taskmanager.settings import Settings
from taskmanager.store import open_store
from taskmanager.store.migrate import upgrade

log = logging.getLogger("taskmanager.server")

DESCRIPTION = """\
A self-hosted work queue for workers that speak HTTP, compatible with the PrismQ TaskManager API.

Every response is an envelope: `{"success": true, "message", "data", "timestamp"}` or
`{"success": false, "error", "message", "code", "timestamp", "details"?}`. Routes live under
`/api` and are answered at the root too.
"""


class TaskManagerAPI(FastAPI):
    """FastAPI behind TaskManager's own front door.

    Every HTTP request meets ``front`` first — the edge middleware, then the fast lane (ADR 0010)
    — and only what the lane does not answer goes on to FastAPI's own stack (its server-error,
    telemetry and body-limit middleware, the exception handlers, the router). Added as ordinary
    middleware, the two would sit inside that stack, whose outer layers cost every request ~6 % of
    its CPU (docs/performance.md) and do nothing here: the edge already turns an unexpected error
    into the 500 envelope, and bodies are limited at the edge. Lifespan and anything else not HTTP
    go to FastAPI as they are.
    """

    front: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.front is None:
            await super().__call__(scope, receive, send)
            return
        if self.root_path:
            scope["root_path"] = self.root_path
        scope["app"] = self  # what Starlette sets for ``request.app``
        await self.front(scope, receive, send)

    async def behind(self, scope: Scope, receive: Receive, send: Send) -> None:
        """FastAPI's own handling of a request the fast lane passed on."""
        await super().__call__(scope, receive, send)


def _on_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, TaskManagerError)
    return error(exc)


def _on_http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 405:
        return error(NotFound("Endpoint not found"))
    return error(NotFound("Endpoint not found") if exc.status_code == 404 else TaskManagerError())


def _on_crash(_request: Request, _exc: Exception) -> Response:
    """The envelope FastAPI's server-error middleware sends for an error no handler took; it then
    raises the error again, and the edge logs it (the response has started, so it sends none)."""
    return error(InternalError())


def _on_validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    details = [f"{'.'.join(str(p) for p in e['loc'][1:]) or e['loc'][0]}: {e['msg']}" for e in exc.errors()]
    return error(ValidationFailed("Validation failed", details=details))


def create_app(
    settings: Settings | None = None, *, store: Store | None = None, clock: Clock | None = None
) -> TaskManagerAPI:
    """Build the application. ``store`` and ``clock`` may be injected (tests, embedding)."""
    settings = settings or Settings()
    owned = store is None
    defaults = settings.engine_defaults()
    active_store = store or open_store(
        settings.database_url, pool_size=settings.db_pool_size, defaults=defaults
    )
    engine = TaskService(active_store, clock=clock, defaults=defaults, version=__version__)
    clock = clock or SystemClock()
    # The SQL store implements both protocols; an injected store must too.
    keys = KeyService(active_store.keys, clock=clock, cache_seconds=settings.key_cache_seconds)
    limiter = open_limiter(
        settings.redis_url, prefix=settings.redis_prefix, now=lambda: clock.now().timestamp()
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if owned and settings.migrate_on_start:
            await upgrade(active_store.db)  # type: ignore[attr-defined]
        await engine.start()
        yield
        await keys.flush()
        await limiter.close()
        if owned:
            await active_store.close()

    app = TaskManagerAPI(
        title="TaskManager API",
        version=__version__,
        description=DESCRIPTION,
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.service = engine
    app.state.keys = keys
    app.state.auth = Authenticator(
        settings.api_key,
        keys,
        limiter,
        allow_open=settings.allow_open,
        rate_limit=settings.rate_limit,
        auth_failure_limit=settings.auth_failure_limit,
    )
    app.state.settings = settings
    app.include_router(router)
    app.include_router(key_router)
    app.add_exception_handler(TaskManagerError, _on_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(Exception, _on_crash)
    addresses = AddressPolicy(
        parse_networks(settings.trusted_proxies, "trusted_proxies"),
        parse_networks(settings.allow_ips, "allow_ips"),
        parse_networks(settings.deny_ips, "deny_ips"),
    )
    # The edge's headers, size limit and 500s cover what the fast lane answers too.
    app.front = EdgeMiddleware(
        FastLane(app.behind, routes=[*router.routes, *key_router.routes]),
        origins=settings.origins(),
        max_body=settings.max_request_bytes,
        addresses=addresses,
    )

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                openapi_version="3.1.0",
            )
            app.openapi_schema = add_body_schemas(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    _ = models
    return app


def create_app_from_env() -> TaskManagerAPI:
    """Factory for ``uvicorn --factory`` and process managers: settings from the environment."""
    return create_app(Settings())
