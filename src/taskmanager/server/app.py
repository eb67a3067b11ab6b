"""The application factory: a Starlette app made from the route table, behind the edge."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any, cast

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.routing import Route as StarletteRoute

from taskmanager import __version__
from taskmanager.engine.access import KeyService
from taskmanager.engine.callbacks import Webhooks
from taskmanager.engine.clock import Clock, SystemClock
from taskmanager.engine.deliveries import Deliverer
from taskmanager.engine.observe import FeedTiming
from taskmanager.engine.retention import Sweeper
from taskmanager.engine.schedules import Ticker
from taskmanager.engine.service import TaskService
from taskmanager.engine.store import Store
from taskmanager.errors import NotFound, TaskManagerError
from taskmanager.server.auth import Authenticator
from taskmanager.server.busy import ConcurrencyGuard
from taskmanager.server.dashboard import dashboard_routes
from taskmanager.server.envelope import error
from taskmanager.server.events import Shutdown
from taskmanager.server.metrics import CountingStore, Metrics
from taskmanager.server.middleware import EdgeMiddleware
from taskmanager.server.network import AddressPolicy, parse_networks
from taskmanager.server.openapi import document_routes
from taskmanager.server.outage import OutageLog
from taskmanager.server.ratelimit import open_limiter
from taskmanager.server.routes import METRICS_PATH, ROUTES
from taskmanager.server.table import Route, RouteEndpoint, Services
from taskmanager.server.webhooks import AddressPolicy as WebhookPolicy
from taskmanager.server.webhooks import HttpTransport
from taskmanager.server.webhooks import parse_networks as webhook_networks
from taskmanager.settings import Settings
from taskmanager.store import open_store
from taskmanager.store.migrate import upgrade

log = logging.getLogger("taskmanager.server")
NOT_FOUND = "Endpoint not found"


def on_http_error(_request: Request, exc: Exception) -> Response:
    """Starlette's router raises 404 for a path no route matches and 405 for a wrong method; the
    API answers both as an unknown endpoint (PrismQ does)."""
    assert isinstance(exc, HTTPException)
    return error(NotFound(NOT_FOUND) if exc.status_code in (404, 405) else TaskManagerError())


#: A worker's loop: the routes that answer most requests. Starlette tries its routes in order,
#: each at a cost, so these go first. The order changes no answer: no request fully matches two
#: routes, and a wrong method is 404 whichever route it partly matches.
HOT_FIRST = (
    ("POST", "/api/tasks/claim"),
    ("POST", "/api/tasks/{id}/complete"),
    ("POST", "/api/tasks/complete-batch"),
    ("POST", "/api/tasks/{id}/heartbeat"),
    ("POST", "/api/tasks/{id}/progress"),
    ("POST", "/api/tasks"),
)


def starlette_routes(routes: Iterable[Route[Any]], services: Services) -> list[BaseRoute]:
    """One Starlette route per table route, answering its method only (a GET route does not
    answer HEAD: that would be a route the table does not declare); the ``HOT_FIRST`` ones
    first, the rest in the table's order."""
    made: list[BaseRoute] = []
    rank = {key: n for n, key in enumerate(HOT_FIRST)}
    for route in sorted(routes, key=lambda r: rank.get((r.method, r.path), len(rank))):
        endpoint = StarletteRoute(route.path, RouteEndpoint(route, services), methods=[route.method])
        endpoint.methods = {route.method}
        made.append(endpoint)
    return made


def public_metrics(route: Route[Any]) -> Route[Any]:
    """``route``, needing no key if it is ``GET /metrics`` (``TASKMANAGER_METRICS_PUBLIC``)."""
    return replace(route, scope=None) if route.path == METRICS_PATH else route


def create_app(
    settings: Settings | None = None,
    *,
    store: Store | None = None,
    clock: Clock | None = None,
    open_access: bool = False,
    feed: FeedTiming | None = None,
) -> Starlette:
    """Build the application. ``store`` and ``clock`` may be injected (tests, embedding);
    ``open_access`` serves every caller as open mode does, keys or not (embedded mode, whose
    caller holds the database itself); ``feed`` paces ``GET /events`` (tests)."""
    settings = settings or Settings()
    owned = store is None
    defaults = settings.engine_defaults()
    active_store = store or open_store(
        settings.database_url, pool_size=settings.db_pool_size, defaults=defaults
    )
    metrics = Metrics()
    counted = cast(Store, CountingStore(active_store, metrics))
    transport = HttpTransport(WebhookPolicy(webhook_networks(settings.webhook_allow_networks)))
    webhooks = Webhooks(settings.webhook_secret, transport, settings.webhook_retry_delay)
    engine = TaskService(
        counted,
        clock=clock,
        defaults=defaults,
        version=__version__,
        stats_max_age=settings.stats_max_age,
        webhooks=webhooks,
    )
    clock = clock or SystemClock()
    # The SQL store implements both protocols; an injected store must too.
    keys = KeyService(active_store.keys, clock=clock, cache_seconds=settings.key_cache_seconds)
    limiter = open_limiter(
        settings.redis_url, prefix=settings.redis_prefix, now=lambda: clock.now().timestamp()
    )
    auth = Authenticator(
        settings.api_key,
        keys,
        limiter,
        allow_open=settings.allow_open,
        rate_limit=settings.rate_limit,
        auth_failure_limit=settings.auth_failure_limit,
        open_access=open_access,
    )

    ticker = Ticker(engine.schedules)  # fires due schedules (API.md B.8) while the app runs
    # Sends the callbacks' outbox (B.5); a server without a secret signs nothing, so sends none.
    deliverer = Deliverer(engine.core, webhooks) if settings.webhook_secret else None

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        if owned and settings.migrate_on_start:
            await upgrade(active_store.db)  # type: ignore[attr-defined]
        await engine.start()
        # Deletes finished tasks past their retention (B.10); resumes dependency cascades (B.5).
        sweeper = Sweeper(engine.retention, engine.dependencies.sweep)
        sweeper.start()
        ticker.start()
        if deliverer is not None:
            deliverer.start()
        shutdown.on_signals()
        yield
        shutdown.set()
        await engine.stop()
        await ticker.stop()
        await sweeper.stop()
        if deliverer is not None:
            await deliverer.stop()
        await transport.close()
        await keys.close()
        await limiter.close()
        if owned:
            await active_store.close()

    addresses = AddressPolicy(
        parse_networks(settings.trusted_proxies, "trusted_proxies"),
        parse_networks(settings.allow_ips, "allow_ips"),
        parse_networks(settings.deny_ips, "deny_ips"),
    )
    edge = Middleware(
        EdgeMiddleware,
        origins=settings.origins(),
        max_body=settings.max_request_bytes,
        addresses=addresses,
        access_log=settings.access_log,
    )
    outages = OutageLog()
    busy = Middleware(ConcurrencyGuard, limit=settings.max_concurrent_requests, outages=outages)
    shutdown = Shutdown()
    services = Services(engine, keys, auth, outages, metrics, feed or FeedTiming(), shutdown)
    routes = [public_metrics(r) if settings.metrics_public else r for r in ROUTES]
    app = Starlette(
        routes=[*starlette_routes(routes, services), *document_routes(routes), *dashboard_routes()],
        middleware=[edge, busy],
        exception_handlers={HTTPException: on_http_error},
        lifespan=lifespan,
    )
    app.state.service = engine
    app.state.keys = keys
    app.state.ticker = ticker
    app.state.deliverer = deliverer
    app.state.auth = auth
    app.state.settings = settings
    return app


def create_app_from_env() -> Starlette:
    """Factory for ``uvicorn --factory`` and process managers: settings from the environment."""
    return create_app(Settings())
