"""The route table's vocabulary: a `Route` declares one operation of the API once.

A route says everything about its operation — method, path, the scope a caller needs, the query
parameters and request body it reads, the data its envelope carries and its error statuses, its
OpenAPI tags, operation id and (from its handler's name and docstring) summary and description —
and names its handler. `server/routes.py` lists them all (`ROUTES`); the HTTP app
(`server/app.py`) and the OpenAPI document (`server/openapi.py`) are both made from that list, so
they cannot disagree.

A handler gets a `Call` (the request, its parsed query and body, the services) and returns the
engine's `Reply`. `RouteEndpoint` does the rest, in the same order for every route: the query,
the caller's access, the body, the handler, the envelope.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from taskmanager.engine import scope as type_scope
from taskmanager.engine.access import KeyService
from taskmanager.engine.observe import FeedTiming
from taskmanager.engine.service import Reply, TaskService
from taskmanager.errors import TaskManagerError, ValidationFailed
from taskmanager.server.auth import Authenticator
from taskmanager.server.body import body
from taskmanager.server.envelope import error, ok
from taskmanager.server.events import Shutdown
from taskmanager.server.metrics import Metrics
from taskmanager.server.outage import OutageLog

B = TypeVar("B")


@dataclass(frozen=True)
class QueryParam:
    """One query parameter: its type (any pydantic type, constraints included) and default.

    The same type validates the value and describes it in the OpenAPI document; a value it
    refuses is 400 ``validation_failed`` with ``"<name>: <pydantic's message>"`` in ``details``.
    """

    name: str
    annotation: Any
    default: Any = None
    description: str | None = None
    adapter: TypeAdapter[Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "adapter", TypeAdapter(self.annotation))

    def read(self, request: Request) -> Any:
        raw = request.query_params.get(self.name)
        if raw is None:
            return self.default
        try:
            return self.adapter.validate_python(raw)
        except ValidationError as exc:
            details = [f"{self.name}: {e['msg']}" for e in exc.errors()]
            raise ValidationFailed("Validation failed", details=details) from None


@dataclass(frozen=True, slots=True)
class Services:
    """What handlers call: the engine, the key service, and who may call which scope; the
    metrics a request is counted in, how event streams pace themselves and when they must end."""

    engine: TaskService
    keys: KeyService
    auth: Authenticator
    #: One per app: a 503's cause is logged at most once a minute, whichever route met it.
    outages: OutageLog = field(default_factory=OutageLog)
    metrics: Metrics = field(default_factory=Metrics)
    feed: FeedTiming = field(default_factory=FeedTiming)
    shutdown: Shutdown = field(default_factory=Shutdown)


@dataclass(frozen=True, slots=True)
class Call(Generic[B]):
    """One request, as a handler sees it: parsed query values and body (None: the route has none)."""

    request: Request
    services: Services
    query: Mapping[str, Any]
    body: B

    @property
    def engine(self) -> TaskService:
        return self.services.engine

    @property
    def keys(self) -> KeyService:
        return self.services.keys

    def path(self, name: str) -> str:
        """A path value, as the path matched it."""
        value: str = self.request.path_params[name]
        return value


#: A handler answers the engine's `Reply` (sent in the envelope), or, for a route that
#: ``produces`` another media type (a stream, the metrics text), its own `Response`.
Handler = Callable[[Call[B]], Awaitable[Reply | Response]]


@dataclass(frozen=True)
class Route(Generic[B]):
    """One operation of the API. ``path`` is in Starlette's syntax, under ``/api``
    (``/api/task-types/{name:path}``); ``scope`` None makes the route public."""

    method: str
    path: str
    handler: Handler[B]
    operation_id: str
    tags: tuple[str, ...]
    scope: str | None
    #: The model of the success envelope's ``data`` (a class, or a union of classes).
    data: Any
    #: The error statuses the route answers with (500 is added to every route).
    errors: tuple[int, ...] = ()
    body: type[B] | None = None
    #: False: an empty body reads as ``{}``.
    body_required: bool = True
    #: The message for a missing required body field, when not the default (PrismQ's wording).
    missing_message: str | None = None
    query: tuple[QueryParam, ...] = ()
    #: The media type of a route that answers without the envelope (None: the envelope's JSON).
    produces: str | None = None

    @property
    def summary(self) -> str:
        return self.handler.__name__.replace("_", " ").title()

    @property
    def description(self) -> str:
        return inspect.getdoc(self.handler) or ""


class RouteEndpoint:
    """The ASGI app answering one route: query, access, body, handler, envelope.

    A `TaskManagerError` becomes its error envelope here; anything else reaches `EdgeMiddleware`,
    which logs it and answers the 500 envelope.
    """

    def __init__(self, route: Route[Any], services: Services) -> None:
        self.route = route
        self.services = services
        #: The route's path as its metrics label: ``/api/task-types/{name}``, not the request's.
        self.template = route.path.replace(":path}", "}")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        started = time.perf_counter()
        response: Response | None = None
        try:
            answer = await self.answer(request)
            response = answer if isinstance(answer, Response) else ok(answer)
        except TaskManagerError as exc:
            if exc.status == 503:
                self.services.outages.unavailable(request.method, request.url.path, exc)
            response = error(exc)
        finally:  # the time to the answer (a stream's: to its start), a crash counted as 500
            status = 500 if response is None else response.status_code
            elapsed = time.perf_counter() - started
            self.services.metrics.request(self.template, self.route.method, status, elapsed)
        await response(scope, receive, send)

    async def answer(self, request: Request) -> Reply | Response:
        route = self.route
        query = {param.name: param.read(request) for param in route.query}
        principal = None
        if route.scope is not None:
            principal = await self.services.auth.check(request, route.scope)
        # The key's task types, for the engine to enforce (engine/scope.py); reset on the way out
        # so that a caller running the app in its own context (embedded mode) keeps none.
        token = type_scope.current.set(None if principal is None else principal.types)
        try:
            return await self._answer(request, route, query)
        finally:
            type_scope.current.reset(token)

    async def _answer(self, request: Request, route: Route[Any], query: dict[str, Any]) -> Reply | Response:
        parsed = None
        if route.body is not None:
            parsed = await body(
                request,
                route.body,
                missing_message=route.missing_message,
                optional=not route.body_required,
            )
        return await route.handler(Call(request, self.services, query, parsed))
