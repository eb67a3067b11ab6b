"""Calling the routes that parse their own input straight from their path, past FastAPI's router.

Nearly every route of the API takes the raw request (and at most path values) and parses its body
itself (`server.body`), so FastAPI's per-request machinery — route matching through its included
routers, dependency solving, its exception and exit-stack middleware — does nothing for it but
costs: it was about half of the server's CPU per request on the single-request path
(docs/performance.md). `FastLane` sits inside `EdgeMiddleware` and answers those routes itself:
the first route whose path and method match, in declaration order as Starlette's router would
choose it, is called with a Starlette ``Request`` and its path values, and a `TaskManagerError` it
raises becomes the same error envelope FastAPI's handler writes. Anything else — a route that
declares query parameters or dependencies (FastAPI validates those), a path no route matches, a
wrong method — goes on to FastAPI unchanged, as does every non-HTTP message.

The routes stay declared on FastAPI's routers, so the OpenAPI document and the routes' docs are
exactly as before.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from fastapi.routing import APIRoute
from starlette.convertors import Convertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from taskmanager.errors import TaskManagerError
from taskmanager.server.envelope import error
from taskmanager.server.middleware import route_path

Endpoint = Callable[..., Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Lane:
    """One route as the fast lane sees it: its path pattern and, when it may be called directly,
    its endpoint (``None``: FastAPI must handle it)."""

    pattern: re.Pattern[str]
    convertors: dict[str, Convertor[Any]]
    endpoint: Endpoint | None


def direct(route: APIRoute) -> bool:
    """Whether ``route`` needs nothing from FastAPI: it takes the request and path values only."""
    dependant = route.dependant
    return (
        dependant.request_param_name is not None
        and not dependant.query_params
        and not dependant.header_params
        and not dependant.cookie_params
        and not dependant.body_params
        and not dependant.dependencies
        and len(dependant.path_params) == len(route.param_convertors)
    )


def lanes(routes: Iterable[BaseRoute]) -> dict[str, list[Lane]]:
    """Each method's routes in declaration order."""
    table: dict[str, list[Lane]] = {}
    for route in routes:
        if not isinstance(route, APIRoute):
            raise TypeError(f"the fast lane knows FastAPI routes only, not {route!r}")
        endpoint = route.endpoint if direct(route) else None
        lane = Lane(route.path_regex, dict(route.param_convertors), endpoint)
        for method in route.methods or ():
            table.setdefault(method, []).append(lane)
    return table


class FastLane:
    def __init__(self, app: ASGIApp, *, routes: Iterable[BaseRoute]) -> None:
        self.app = app
        self.table = lanes(routes)

    def match(self, method: str, path: str) -> tuple[Lane, dict[str, Any]] | None:
        """The first route serving ``method`` on ``path``, with its converted path values."""
        for lane in self.table.get(method, ()):
            found = lane.pattern.match(path)
            if found is not None:
                values = {
                    name: lane.convertors[name].convert(value) for name, value in found.groupdict().items()
                }
                return lane, values
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        hit = self.match(scope["method"], route_path(scope))
        endpoint = None if hit is None else hit[0].endpoint
        if hit is None or endpoint is None:
            await self.app(scope, receive, send)
            return
        values = hit[1]
        request = Request({**scope, "path_params": values}, receive)
        try:
            response = await endpoint(request, **values)
        except TaskManagerError as exc:
            response = error(exc)
        await response(scope, receive, send)
