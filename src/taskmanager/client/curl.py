"""The blocking client's HTTP transport on libcurl (``pycurl``): the same requests as the httpx
transport for a fraction of the client's CPU per request (ADR 0023 has the measurements).

One curl handle per thread (the client is shared between threads; a handle is not), each keeping
its connection alive between requests. libcurl releases the GIL while it waits, so threads that
share a client do not queue behind each other's I/O.

A failure is reported the way the client core needs it: ``request_sent=False`` only when the
request certainly never reached the server (no connection was made), so that the core may send
any request again; otherwise only what is safe to repeat is repeated.
"""

from __future__ import annotations

import threading
import time
from io import BytesIO

import pycurl

from taskmanager.client.config import TaskManagerConfig
from taskmanager.client.errors import TaskManagerConnectionError
from taskmanager.client.protocol import Request, Response

#: libcurl's errors after which the request never left this machine.
UNSENT = frozenset(
    {
        pycurl.E_COULDNT_RESOLVE_PROXY,
        pycurl.E_COULDNT_RESOLVE_HOST,
        pycurl.E_COULDNT_CONNECT,
        pycurl.E_SSL_CONNECT_ERROR,
    }
)
#: Seconds a connection may take to open; the request's own timeout bounds the rest.
CONNECT_TIMEOUT = 10.0


class CurlTransport:
    """Sends requests with libcurl, one kept-alive connection per thread."""

    def __init__(self, config: TaskManagerConfig, headers: dict[str, str]) -> None:
        self._base = config.base_url
        self._timeout = config.timeout
        self._headers = [f"{name}: {value}" for name, value in headers.items()]
        # "Expect:" turns off libcurl's 100-continue round trip for large bodies.
        self._with_body = [*self._headers, "Content-Type: application/json", "Expect:"]
        self._local = threading.local()
        self._handles: list[pycurl.Curl] = []
        self._lock = threading.Lock()

    def _handle(self) -> pycurl.Curl:
        handle: pycurl.Curl | None = getattr(self._local, "handle", None)
        if handle is None:
            handle = pycurl.Curl()
            handle.setopt(pycurl.NOSIGNAL, 1)  # timeouts without SIGALRM: safe in threads
            handle.setopt(pycurl.TCP_NODELAY, 1)
            handle.setopt(pycurl.CONNECTTIMEOUT_MS, int(CONNECT_TIMEOUT * 1000))
            handle.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
            handle.setopt(pycurl.ACCEPT_ENCODING, "")  # what libcurl can decode, decoded
            self._local.handle = handle
            with self._lock:
                self._handles.append(handle)
        return handle

    def send(self, request: Request) -> Response:
        handle = self._handle()
        handle.setopt(pycurl.URL, self._base + request.target)
        method = request.method
        if request.content is not None:
            handle.setopt(pycurl.POSTFIELDS, request.content)
            handle.setopt(pycurl.HTTPHEADER, self._with_body)
        else:
            handle.setopt(pycurl.HTTPGET, 1)
            handle.setopt(pycurl.HTTPHEADER, self._headers)
        if method in ("GET", "POST"):
            handle.unsetopt(pycurl.CUSTOMREQUEST)
        else:
            handle.setopt(pycurl.CUSTOMREQUEST, method)
        if method == "POST" and request.content is None:
            handle.setopt(pycurl.POSTFIELDS, b"")
        timeout = request.timeout if request.timeout is not None else self._timeout
        handle.setopt(pycurl.TIMEOUT_MS, max(1, int(timeout * 1000)))
        body = BytesIO()
        lines: list[bytes] = []
        handle.setopt(pycurl.WRITEFUNCTION, body.write)
        handle.setopt(pycurl.HEADERFUNCTION, lines.append)
        started = time.perf_counter()
        try:
            handle.perform()
        except pycurl.error as exc:
            code = exc.args[0]
            # A timeout before the request was ready to go out (connecting) sent nothing either.
            unsent = code in UNSENT or (
                code == pycurl.E_OPERATION_TIMEDOUT and handle.getinfo(pycurl.PRETRANSFER_TIME) == 0
            )
            raise TaskManagerConnectionError(
                f"{_name(code)}: {exc.args[1]}", request_sent=not unsent
            ) from exc
        return Response(
            handle.getinfo(pycurl.RESPONSE_CODE),
            _headers(lines),
            body.getvalue(),
            time.perf_counter() - started,
        )

    def close(self) -> None:
        with self._lock:
            handles, self._handles = self._handles, []
        for handle in handles:
            handle.close()


def _headers(lines: list[bytes]) -> dict[str, str]:
    """The last answer's headers (lower-case names): a 100 Continue's come first, and are left."""
    found: dict[str, str] = {}
    for raw in lines:
        line = raw.decode("latin-1").rstrip("\r\n")
        if line.startswith("HTTP/"):
            found = {}
        elif ":" in line:
            name, value = line.split(":", 1)
            found[name.strip().lower()] = value.strip()
    return found


def _name(code: int) -> str:
    """libcurl's name of an error code (``E_COULDNT_CONNECT`` → ``CouldntConnect``)."""
    for name in dir(pycurl):
        if name.startswith("E_") and getattr(pycurl, name) == code:
            return "".join(part.capitalize() for part in name[2:].split("_"))
    return f"CurlError{code}"


__all__ = ["CurlTransport"]
