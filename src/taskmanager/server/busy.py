"""A cap on the requests one server process runs at once: beyond it, a quick 503 envelope.

Two thousand concurrent creates all succeeded before this, but ``/health`` took five seconds
meanwhile (issue 18): every request was admitted and each waited its turn for the database pool
and the event loop. Past ``max_concurrent_requests`` a request is answered at once with 503
``unavailable`` (``Server busy``, ``Retry-After: 1``) without touching the database, so the
process keeps its time for the requests it took. ``/health`` is never refused here: a load
balancer asks it whether the process is alive, and it costs one ``SELECT 1``. Nor is an
``/events`` stream counted: it is open for hours by design (a dashboard), so it would hold a
slot for as long; it costs one indexed query per look, and open connections are capped anyway
(``max_connections``). Nor is a ``GET /tasks/{id}/wait``: it sleeps on an event until its
task ends, costing one read per wake-up, and two hundred callers awaiting their results must not
take every slot from the work that ends those tasks.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from taskmanager.errors import Unavailable
from taskmanager.server.envelope import dumps, error_body
from taskmanager.server.outage import OutageLog

BUSY = "Server busy"
#: The paths (after the edge's /api alias) that are always admitted and not counted.
HEALTH_PATH = "/api/health"
EVENTS_PATH = "/api/events"
TASKS_PREFIX, WAIT_SUFFIX = "/api/tasks/", "/wait"


class ConcurrencyGuard:
    """Runs at most ``limit`` requests at once (0: no limit); the rest get 503 at once."""

    def __init__(self, app: ASGIApp, *, limit: int, outages: OutageLog) -> None:
        self.app = app
        self.limit = limit
        self.outages = outages
        self.running = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        uncounted = scope["type"] != "http" or _uncounted(scope["path"])
        if uncounted or not self.limit:
            await self.app(scope, receive, send)
            return
        if self.running >= self.limit:
            exc = Unavailable(BUSY, details=[f"more than {self.limit} requests at once in this process"])
            self.outages.unavailable(scope["method"], scope["path"], exc)
            body = dumps(error_body(exc))
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", b"1"),
            ]
            await send({"type": "http.response.start", "status": 503, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        self.running += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.running -= 1


def _uncounted(path: str) -> bool:
    """``/health``, an ``/events`` stream and a ``/tasks/{id}/wait`` (a trailing slash ignored)."""
    path = path.rstrip("/")
    if path.endswith((HEALTH_PATH, EVENTS_PATH)):
        return True
    return path.startswith(TASKS_PREFIX) and path.endswith(WAIT_SUFFIX) and path.count("/") == 4
