"""The edge of every request: path aliases, OPTIONS, size limit, headers, request ids, 500s, and
the access log (one line per request on ``taskmanager.access``).

Pure ASGI (no BaseHTTPMiddleware) so it costs little and also wraps error responses: every
response, errors and OPTIONS included, carries the Cache-Control, security and CORS headers of
docs/reference/api.md (Conventions).
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Iterable

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskmanager.engine.keys import display_prefix
from taskmanager.errors import Forbidden, InternalError, PayloadTooLarge, TaskManagerError
from taskmanager.server.envelope import dumps, error_body
from taskmanager.server.network import AddressPolicy

log = logging.getLogger("taskmanager.server")
access_log = logging.getLogger("taskmanager.access")

API_PREFIX = "/api"
#: Paths served as they are (not under /api).
ROOT_PATHS = ("/dashboard",)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
#: Scope entry where a route leaves headers for the response (the rate-limit headers).
RESPONSE_HEADERS = "taskmanager.response_headers"
ADDRESS_REFUSED = "Access from this address is not allowed"

BASE_HEADERS: list[tuple[bytes, bytes]] = [
    (b"cache-control", b"no-store, no-cache, must-revalidate, max-age=0"),
    (b"pragma", b"no-cache"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"access-control-allow-methods", b"GET, POST, PUT, DELETE, OPTIONS"),
    (b"access-control-allow-headers", b"Content-Type, Authorization, X-API-Key"),
]
_REPLACED = {name for name, _ in BASE_HEADERS} | {b"access-control-allow-origin", b"vary"}


def api_path(path: str) -> str:
    """``/tasks/`` → ``/api/tasks``: routes live under /api and are answered at the root too."""
    if len(path) > 1 and path.endswith("/"):
        path = path.rstrip("/") or "/"
    if path == API_PREFIX or path.startswith(API_PREFIX + "/"):
        return path
    if any(path == p or path.startswith(p + "/") for p in ROOT_PATHS):
        return path
    return API_PREFIX + (path if path != "/" else "")


def route_path(scope: Scope) -> str:
    """The request's path below its root path: under a sub-path mount (``root_path``, e.g.
    Passenger's base URI) only the part after it names a route."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


class EdgeMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        origins: Iterable[str],
        max_body: int,
        addresses: AddressPolicy | None = None,
        access_log: bool = False,
    ) -> None:
        self.app = app
        self.access_log = access_log
        self.addresses = addresses or AddressPolicy()
        self.origins = list(origins)
        self.any_origin = "*" in self.origins
        self.max_body = max_body

    def _headers(self, scope: Scope, request_id: str) -> list[tuple[bytes, bytes]]:
        headers = [*BASE_HEADERS, (b"x-request-id", request_id.encode())]
        origin = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"origin"), None)
        if self.any_origin:
            headers.append((b"access-control-allow-origin", b"*"))
        else:
            # A listed origin is echoed; any other gets the first listed one, which its browser
            # will not accept. The answer depends on Origin, so caches must key on it.
            allowed = origin if origin is not None and origin in self.origins else self.origins[0]
            headers.append((b"access-control-allow-origin", allowed.encode("latin-1")))
            headers.append((b"vary", b"Origin"))
        if scope["scheme"] == "https":
            headers.append((b"strict-transport-security", b"max-age=31536000; includeSubDomains"))
        return headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self.access_log or not access_log.isEnabledFor(logging.INFO):
            await self._edge(scope, receive, send)
            return
        started = time.perf_counter()
        answer: dict[str, object] = {"status": 0, "request_id": "-", "logged": False}

        def log_once() -> None:
            if not answer["logged"]:
                answer["logged"] = True
                _log_access(scope, answer, (time.perf_counter() - started) * 1000)

        async def recording(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
                headers = dict(message.get("headers", []))
                answer["request_id"] = headers.get(b"x-request-id", b"-").decode("latin-1")
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                log_once()  # before the last byte leaves: a client that has its answer finds the line
            await send(message)

        try:
            await self._edge(scope, receive, recording)
        finally:
            log_once()  # a request that ended without a whole answer (an error, a hang-up)

    async def _edge(self, scope: Scope, receive: Receive, send: Send) -> None:
        incoming = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), "")
        request_id = incoming if _REQUEST_ID.match(incoming) else secrets.token_hex(8)
        path = scope.get("root_path", "") + api_path(route_path(scope))
        late: list[tuple[bytes, bytes]] = []
        scope = {
            **scope,
            "path": path,
            "raw_path": path.encode(),
            "request_id": request_id,
            RESPONSE_HEADERS: late,
        }
        if self.addresses.active:
            scope = self._behind_proxies(scope)
        extra = self._headers(scope, request_id)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _REPLACED]
                message = {**message, "headers": kept + extra + late}
            await send(message)

        client = scope.get("client")
        if self.addresses.active and not self.addresses.admits(client[0] if client else None):
            await _send_error(send_with_headers, Forbidden(ADDRESS_REFUSED))
            return
        if scope["method"] == "OPTIONS":
            await _send_plain(send_with_headers, 200, b"", b"text/plain")
            return
        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if length is not None and length.isdigit() and int(length) > self.max_body:
            await _send_error(send_with_headers, PayloadTooLarge())
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send_with_headers(message)

        try:
            await self.app(scope, _limited(receive, self.max_body), tracking_send)
        except ClientDisconnect:
            # The client hung up mid-body: nobody is left to answer, and nothing went wrong here.
            log.debug(
                "client hung up before its request was read: %s %s (request %s)",
                scope["method"],
                path,
                request_id,
            )
        except Exception:
            log.exception("unhandled error in %s %s (request %s)", scope["method"], path, request_id)
            if not started:
                await _send_error(send_with_headers, InternalError())

    def _behind_proxies(self, scope: Scope) -> Scope:
        """The client address and scheme as the trusted proxies report them."""
        client = scope.get("client")
        peer = client[0] if client else None
        if not self.addresses.trusts(peer):
            return scope
        forwarded = [v.decode("latin-1") for k, v in scope["headers"] if k == b"x-forwarded-for"]
        found = self.addresses.client(peer, forwarded)
        proto = [v.decode("latin-1") for k, v in scope["headers"] if k == b"x-forwarded-proto"]
        scheme = proto[-1].split(",")[-1].strip().lower() if proto else ""
        return {
            **scope,
            "client": (found, 0) if found else client,
            "scheme": scheme if scheme in ("http", "https") else scope["scheme"],
        }


def _key_shown(scope: Scope) -> str:
    """The request key's public prefix (``tm_ab12cd34``), ``-`` for none, ``other`` for a key not
    of our format (the admin key from the environment): never the key itself."""
    headers = dict(scope["headers"])
    key = headers.get(b"x-api-key", b"").decode("latin-1").strip()
    if not key:
        scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        key = token.strip() if scheme.lower() == "bearer" else ""
    return "-" if not key else display_prefix(key) or "other"


def _log_access(scope: Scope, answer: dict[str, object], elapsed_ms: float) -> None:
    """``GET /api/tasks 200 3.1 ms request=… key=tm_ab12cd34``, at info."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    access_log.info(
        "%s %s %s %.1f ms request=%s key=%s",
        scope["method"],
        scope["path"],
        answer["status"] or "-",
        elapsed_ms,
        answer["request_id"],
        _key_shown(scope),
    )


def _limited(receive: Receive, limit: int) -> Receive:
    """Refuse a body that grows past ``limit`` while it streams in (no Content-Length needed)."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise PayloadTooLarge()
        return message

    return wrapped


async def _send_plain(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _send_error(send: Send, exc: TaskManagerError) -> None:
    await _send_plain(send, exc.status, dumps(error_body(exc)), b"application/json")
