"""The HTTP layer's limits: what ``taskmanager serve`` asks of uvicorn, and what it adds.

uvicorn (0.30+) offers an idle keep-alive timeout (``timeout_keep_alive``) and a listen backlog
(2048), and we use them as they are. It offers no time limit on reading a
request and, with httptools (its fast parser, which ``uvicorn[standard]`` installs), no limit on
the size of the request head: a client that opens a connection and sends nothing, or one header
byte a minute, or a body one byte a minute, holds the connection (and a file descriptor) for
ever, and an 8 MB header is read and kept (issue 18). Its ``limit_concurrency`` answers a plain
text 503 and logs a warning for every refusal. So ``HttpToolsProtocol`` is extended here by
three checks, each cheap and on the connection's own event loop:

* **request timeout** — a connection has ``request_timeout`` seconds to deliver a whole request
  (head and body) from the moment it opened or its request began; late, it is answered 408 (if
  no answer has started) and closed. Between requests, uvicorn's keep-alive timeout applies.
* **head size** — a request line and headers over ``max_header_bytes`` are answered 431 and the
  connection closed, before the head is buffered any further.
* **connections** — past ``max_connections`` open connections in the process, a new one is
  answered 503 ``unavailable`` (the API's envelope) and closed at once, so a flood of idle sockets
  cannot take the process's file descriptors (``serve`` also raises its soft descriptor limit
  to fit).

Alternatives weighed: hypercorn and granian have read timeouts of their own, but would replace
the server every test and deployment runs on; a proxy in front (nginx's
``client_header_timeout``, ``large_client_header_buffers``) remains the first line for an exposed
server (docs/guides/deployment.md), and these limits hold when there is none.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from taskmanager.errors import Unavailable
from taskmanager.server.envelope import dumps, error_body
from taskmanager.server.outage import OutageLog
from taskmanager.settings import Settings

log = logging.getLogger("taskmanager.server")

#: What the connection limit answers: the API's 503 envelope.
TOO_MANY_CONNECTIONS = "Server busy"


@dataclass(frozen=True)
class HttpLimits:
    request_timeout: float
    max_header_bytes: int
    max_connections: int

    @classmethod
    def of(cls, settings: Settings) -> HttpLimits:
        return cls(settings.request_timeout, settings.max_header_bytes, settings.max_connections)


@functools.cache
def _process_limits() -> HttpLimits:
    """The limits of a ``taskmanager serve`` process: its settings, which ``serve`` passes to its
    server processes through the environment (as it does for the app, ``create_app_from_env``)."""
    return HttpLimits.of(Settings())


#: Seconds a refused connection is kept half-closed, reading and dropping what the client still
#: sends, so the client reads the refusal instead of a reset; a client closes at once on reading
#: a ``connection: close`` answer, so this bounds only the ones that do not.
REFUSED_LINGER = 2.0

#: One per process: the 503s of the connection limit, logged once a minute.
_outages = OutageLog()


def _response(status: bytes, body: bytes, content_type: bytes, extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\ncontent-type: "
        + content_type
        + b"\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\nconnection: close\r\n"
        + extra
        + b"\r\n"
        + body
    )


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a request timeout, a head size limit and a connection
    limit (see the module's docstring). ``limits`` None: the process's settings."""

    limits: HttpLimits | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = self.limits or _process_limits()
        self._timer: asyncio.TimerHandle | None = None
        self._in_head = True
        self._head_bytes = 0
        self._refused = False

    @classmethod
    def with_limits(cls, limits: HttpLimits) -> type[LimitedHttpToolsProtocol]:
        """This protocol with ``limits`` fixed (a server built in-process, as the tests do)."""
        return type(cls.__name__, (cls,), {"limits": limits})

    # -- the connection limit -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self._limits.max_connections:
            limit = self._limits.max_connections
            exc = Unavailable(
                TOO_MANY_CONNECTIONS, details=[f"more than {limit} connections to this process"]
            )
            _outages.unavailable("-", "(connection)", exc)
            self._refuse(
                _response(
                    b"503 Service Unavailable",
                    dumps(error_body(exc)),
                    b"application/json",
                    b"retry-after: 1\r\n",
                )
            )
            return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    # -- the head size limit --------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._in_head and self._head_bytes > self._limits.max_header_bytes and not self._refused:
            log.debug("request head over %d bytes refused with 431", self._limits.max_header_bytes)
            self._refuse(
                _response(
                    b"431 Request Header Fields Too Large", b"Request header fields too large", b"text/plain"
                )
            )

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        if self._timer is None:
            self._arm()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()

    # -- the request timeout --------------------------------------------------------------------

    def _arm(self) -> None:
        self._disarm()
        self._timer = self.loop.call_later(self._limits.request_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        log.debug("request not received within %s s: connection closed", self._limits.request_timeout)
        if self.cycle is None or self.cycle.response_complete:
            self._refuse(_response(b"408 Request Timeout", b"Request timeout", b"text/plain"))
        else:
            # The app is reading this request's body: closing tells it the client is gone.
            self._refused = True
            self.transport.close()

    def _refuse(self, response: bytes) -> None:
        """Answer ``response`` and close: half-close first (the answer, then end of stream), and
        go on reading and dropping what the client still sends until it closes too, at most
        ``REFUSED_LINGER`` seconds. Closed at once, a socket with a request still arriving
        (a POST's body refused by the connection limit) is reset by the kernel, and the client
        loses the answer: it saw a reset, not the 503 and its Retry-After (issue 18's abuse
        run: every POST past the connection limit)."""
        self._refused = True
        self._disarm()
        self.transport.write(response)
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()
        self._timer = self.loop.call_later(REFUSED_LINGER, self.transport.close)


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The options ``taskmanager serve`` gives ``uvicorn.run`` for these settings' HTTP limits."""
    return {
        "http": f"{__name__}:LimitedHttpToolsProtocol",
        "timeout_keep_alive": settings.keep_alive_timeout,
        "h11_max_incomplete_event_size": settings.max_header_bytes,
    }


#: Descriptors a process needs besides its client connections: database pools, log files, the
#: listening socket, the SQLite reader threads' files.
SPARE_FILES = 256


def raise_open_files_limit(max_connections: int) -> None:
    """Raise this process's soft open-file limit (inherited by its server processes) to fit
    ``max_connections`` and the spare files, as far as the hard limit allows: with the common
    soft limit of 1024, 1,100 idle sockets locked every client out (issue 18)."""
    try:
        import resource
    except ImportError:  # Windows: no such limit to raise
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + SPARE_FILES
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        if target > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
