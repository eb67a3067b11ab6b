"""The server's CPU per claim + complete pair: the table-built Starlette app vs the same table as
ordinary FastAPI routes (ADR 0013; issue 15: "plain Starlette, or FastAPI used without bypassing
its internals — measure both").

    python -m bench.route_table [--kind postgresql] [--pairs 2000] [--rounds 3]

Both apps share one engine, store and edge middleware; only what sits between the edge and a
route's handler differs. Each is driven in-process (no uvicorn, no sockets): an ASGI scope, a
body, and a ``send`` that keeps the answer, so the process's CPU (``time.process_time``) is the
app's, plus the database driver's and — on SQLite — the database's. Rounds alternate between
the two apps; each round claims and completes ``--pairs`` tasks one at a time, and the best
round of each app is reported (µs of CPU per pair).

FastAPI is not a dependency of the server any more; this script needs it installed.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from bench.servers import KEY, database
from taskmanager.errors import TaskManagerError
from taskmanager.server.app import create_app, on_http_error
from taskmanager.server.envelope import error, ok
from taskmanager.server.middleware import EdgeMiddleware
from taskmanager.server.routes import ROUTES
from taskmanager.server.table import Route, RouteEndpoint, Services
from taskmanager.settings import Settings

BATCH = 1000
NUMBERS = itertools.count()


def fastapi_twin(app: Starlette) -> ASGIApp:
    """The same table as ordinary FastAPI routes (each a function of the request), with the
    same edge added as FastAPI middleware and the same services, and nothing bypassed."""
    from fastapi import FastAPI

    services = Services(app.state.service, app.state.keys, app.state.auth)

    def endpoint_of(route: Route[Any]) -> Callable[[Request], Any]:
        answer = RouteEndpoint(route, services).answer

        async def endpoint(request: Request) -> Response:
            try:
                return ok(await answer(request))
            except TaskManagerError as exc:
                return error(exc)

        return endpoint

    # Started and stopped with ``app`` (its lifespan), so it has none of its own.
    twin = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    for route in ROUTES:
        twin.add_api_route(route.path, endpoint_of(route), methods=[route.method])
    twin.add_exception_handler(HTTPException, on_http_error)
    settings: Settings = app.state.settings
    twin.add_middleware(EdgeMiddleware, origins=settings.origins(), max_body=settings.max_request_bytes)
    return twin


def router_behind_edge(app: Starlette) -> ASGIApp:
    """The same app's router with the edge in front of it and Starlette's two default layers
    (server errors, exception handlers) left out: what those layers cost."""
    settings: Settings = app.state.settings
    return EdgeMiddleware(app.router, origins=settings.origins(), max_body=settings.max_request_bytes)


async def call(app: ASGIApp, method: str, path: str, body: Any = None) -> Any:
    """One request straight into ``app``; the answer's ``data``."""
    content = b"" if body is None else json.dumps(body).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(content)).encode()),
            (b"x-api-key", KEY.encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    chunks: list[bytes] = []
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.Event().wait()  # no disconnect: the caller stays
        sent = True
        return {"type": "http.request", "body": content, "more_body": False}

    async def send(message: Any) -> None:
        if message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    answer = json.loads(b"".join(chunks))
    assert answer["success"], answer
    return answer["data"]


async def pairs_cpu(app: ASGIApp, pairs: int) -> float:
    """CPU seconds of ``pairs`` single claims and completes, after creating their tasks."""
    for start in range(0, pairs, BATCH):
        # Distinct params: identical ones would be duplicates of one another (A.6).
        tasks = [{"type": "noop", "params": {"n": next(NUMBERS)}} for _ in range(min(BATCH, pairs - start))]
        await call(app, "POST", "/tasks/batch", {"tasks": tasks})
    before = time.process_time()
    for _ in range(pairs):
        task = await call(app, "POST", "/tasks/claim", {"worker_id": "w"})
        done = {"worker_id": "w", "success": True, "lease_token": task["lease_token"]}
        await call(app, "POST", f"/tasks/{task['id']}/complete", done)
    return time.process_time() - before


async def measure(url: str, pairs: int, rounds: int) -> dict[str, list[float]]:
    app = create_app(Settings(database_url=url, api_key=KEY))
    apps: dict[str, ASGIApp] = {
        "starlette": app,
        "fastapi": fastapi_twin(app),
        "router": router_behind_edge(app),
    }
    found: dict[str, list[float]] = {name: [] for name in apps}
    async with app.router.lifespan_context(app):
        register = {"name": "noop", "version": "1", "param_schema": {"type": "object"}}
        await call(app, "POST", "/task-types/register", register)
        await pairs_cpu(app, 200)  # warm: connections opened, caches filled
        for _ in range(rounds):
            for name, each in apps.items():
                found[name].append(await pairs_cpu(each, pairs) / pairs * 1e6)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", default="postgresql", choices=["postgresql", "sqlite"])
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with database(args.kind) as url:
        found = asyncio.run(measure(url, args.pairs, args.rounds))
    for name, rounds in found.items():
        shown = ", ".join(f"{value:,.0f}" for value in rounds)
        print(f"{name:10} best {min(rounds):,.0f} µs CPU per claim + complete pair (rounds: {shown})")


if __name__ == "__main__":
    main()
