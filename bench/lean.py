"""A lean keep-alive HTTP/1.1 client: the load generator whose CPU per request is the floor the
others are compared with (ADR 0015). Standard library only, so that both the project's
environment and the bench environment can import it."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

HEADERS = {"X-API-Key": "bench-key"}


class Keepalive:
    """One keep-alive HTTP/1.1 connection speaking just enough HTTP for this loop: a POST with a
    JSON body out, the status and a ``Content-Length`` body back (the server sends nothing else:
    a chunked or unframed reply is refused). It costs a fraction of the CPU per request of
    ``http.client`` (which parses every header through ``email``) or httpx, so on a machine of a
    few cores the figure is the server's rather than the load generator's (ADR 0015)."""

    def __init__(self, base: str) -> None:
        url = urlsplit(base)
        self.sock = socket.create_connection((url.hostname or "127.0.0.1", url.port or 80), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        fixed = "".join(f"{name}: {value}\r\n" for name, value in HEADERS.items())
        self.head = f"Host: {url.netloc}\r\n{fixed}Content-Type: application/json\r\n"
        self.pending = b""

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        request = f"POST {path} HTTP/1.1\r\n{self.head}Content-Length: {len(body)}\r\n\r\n"
        self.sock.sendall(request.encode() + body)
        data = self.pending
        while (end := data.find(b"\r\n\r\n")) < 0:
            data += self._more()
        lines = data[:end].decode("latin-1").split("\r\n")
        fields = dict(line.lower().split(":", 1) for line in lines[1:])
        if "content-length" not in fields:
            raise RuntimeError(f"a reply without Content-Length: {lines}")
        stop = end + 4 + int(fields["content-length"])
        while len(data) < stop:
            data += self._more()
        self.pending = data[stop:]
        return int(lines[0].split(" ", 2)[1]), data[end + 4 : stop]

    def _more(self) -> bytes:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        return chunk

    def close(self) -> None:
        self.sock.close()
