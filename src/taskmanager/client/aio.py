"""The async client's HTTP transport on aiohttp: the same requests as the httpx transport for
under a third of the client's CPU per request (ADR 0023 has the measurements).

One ``aiohttp.ClientSession``, opened on the first request (a session belongs to the event loop
it is made in, and a client is often made before its loop runs), keeping its connections alive
between requests; ``aclose()`` closes it.

A failure is reported the way the client core needs it: ``request_sent=False`` only when the
request certainly never reached the server — no connection was handed to it (refused,
unresolved, a failed TLS handshake, a connect that timed out) — so that the core may send any
request again; otherwise only what is safe to repeat is repeated. aiohttp itself sends a request
once more on a fresh connection when the kept-alive one it went out on dies before the answer —
only for the methods HTTP calls idempotent (GET, PUT, DELETE), never a POST (libcurl does so for
any method: ADR 0023).

Proxies come from the environment (``http_proxy``, ``https_proxy``, ``no_proxy``) as with httpx,
read once when the transport is made.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from io import BytesIO
from typing import Any
from urllib.parse import urlsplit
from urllib.request import getproxies, proxy_bypass

import aiohttp
from aiohttp.connector import Connection
from aiohttp.payload import TOO_LARGE_BYTES_BODY

from taskmanager.client.config import TaskManagerConfig
from taskmanager.client.errors import TaskManagerConnectionError
from taskmanager.client.protocol import Request, Response

#: Seconds a connection may take to open; the request's own timeout bounds the rest.
CONNECT_TIMEOUT = 10.0
#: Seconds an idle connection is kept for the next request: under the server's keep-alive
#: timeout (5 s by default), so a request does not go out on a connection the server is closing.
KEEPALIVE_TIMEOUT = 4.0
JSON_BODY = {"Content-Type": "application/json"}


#: Whether the request this task is sending has been handed its connection (set by _Connector).
_connected: ContextVar[bool] = ContextVar("taskmanager_aiohttp_connected", default=False)


class _Connector(aiohttp.TCPConnector):
    """aiohttp's connector, noting in the sending task that its request got a connection (a new
    one or one from the pool): before that, nothing of the request has left this machine. aiohttp
    asks for the connection in the task that sends, so the note is read there after a failure."""

    async def connect(self, *args: Any, **kwargs: Any) -> Connection:
        connection = await super().connect(*args, **kwargs)
        _connected.set(True)
        return connection


def _proxy_for(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``http_proxy``, ``https_proxy``, unless
    ``no_proxy`` covers its host), read once: every request goes to the same server. aiohttp's
    own ``trust_env`` reads it, and ``~/.netrc``, in a thread for every request."""
    parts = urlsplit(url)
    if parts.hostname and proxy_bypass(parts.hostname):
        return None
    return getproxies().get(parts.scheme)


class AioHTTPTransport:
    """Sends requests over one ``aiohttp.ClientSession`` (a pool of kept-alive connections)."""

    def __init__(self, config: TaskManagerConfig, headers: dict[str, str]) -> None:
        self._base = config.base_url
        self._headers = headers
        self._timeout = self._limits(config.timeout)
        self._proxy = _proxy_for(self._base)
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    @staticmethod
    def _limits(seconds: float) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=seconds, sock_connect=min(CONNECT_TIMEOUT, seconds))

    def _open(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("the transport is closed")
        return aiohttp.ClientSession(
            headers=self._headers,
            connector=_Connector(keepalive_timeout=KEEPALIVE_TIMEOUT),
            timeout=self._timeout,
            # The API sets no cookies: none are kept or sent, as with libcurl's transport.
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def send(self, request: Request) -> Response:
        session = self._session
        if session is None:
            session = self._session = self._open()
        timeout = self._timeout if request.timeout is None else self._limits(request.timeout)
        _connected.set(False)
        started = time.perf_counter()
        try:
            async with session.request(
                request.method,
                self._base + request.path,
                params=request.params,
                data=_body(request.content),
                headers=JSON_BODY if request.content is not None else None,
                timeout=timeout,
                allow_redirects=False,
                proxy=self._proxy,
            ) as answer:
                content = await answer.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _connection_error(exc, timeout, sent=_connected.get()) from exc
        # Names lower-case, as the core reads them; of a repeated header, the last.
        headers = {name.lower(): value for name, value in answer.headers.items()}
        return Response(answer.status, headers, content, time.perf_counter() - started)

    async def aclose(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()


def _body(content: bytes | None) -> bytes | BytesIO | None:
    """A body as aiohttp sends it best: bytes in one write, or over 1 MB in chunks with the loop
    let run between them (aiohttp warns of such a body given as bytes)."""
    if content is None or len(content) <= TOO_LARGE_BYTES_BODY:
        return content
    return BytesIO(content)


def _connection_error(
    exc: BaseException, timeout: aiohttp.ClientTimeout, *, sent: bool
) -> TaskManagerConnectionError:
    """An aiohttp failure as the client's connection error. A request's whole time running out is
    a bare ``TimeoutError``; it says so."""
    name = type(exc).__name__
    if str(exc):
        message = f"{name}: {exc}"
    elif isinstance(exc, TimeoutError):
        message = f"{name}: no answer within {timeout.total:g} s"
    else:
        message = name
    return TaskManagerConnectionError(message, request_sent=sent)


__all__ = ["AioHTTPTransport"]
