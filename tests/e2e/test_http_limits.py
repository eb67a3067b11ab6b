"""`taskmanager serve`'s HTTP limits, end to end over real sockets (issue 18): a request must
arrive within the request timeout (else 408 and the connection closed), its head within
``--max-header-bytes`` (else 431), and past ``--max-connections`` a new connection gets 503."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import ADMIN_KEY
from tests.e2e.process import ServerProcess

pytestmark = pytest.mark.slow

#: The limits the server runs with: small, so the test sees them act in seconds.
REQUEST_TIMEOUT = 2
MAX_HEADER_BYTES = 4096
MAX_CONNECTIONS = 8
#: Longest a closed connection may take to be seen closed; well above REQUEST_TIMEOUT.
BOUND = 15


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    url = f"sqlite:///{tmp_path_factory.mktemp('limits') / 'limits.db'}"
    flags = [
        *("--request-timeout", str(REQUEST_TIMEOUT)),
        *("--max-header-bytes", str(MAX_HEADER_BYTES)),
        *("--max-connections", str(MAX_CONNECTIONS)),
    ]
    with ServerProcess(url, api_key=ADMIN_KEY, extra=flags) as running:
        yield running


def connect(server: ServerProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=BOUND)


def until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (bounded by the socket's timeout)."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def timed_until_closed(sock: socket.socket) -> tuple[bytes, float]:
    started = time.monotonic()
    answer = until_closed(sock)
    return answer, time.monotonic() - started


def test_a_connection_that_sends_nothing_is_closed_with_408(server: ServerProcess) -> None:
    with connect(server) as sock:
        answer, took = timed_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert REQUEST_TIMEOUT - 0.5 < took < BOUND


def test_a_head_sent_too_slowly_is_closed_with_408(server: ServerProcess) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: test\r\n")  # and never the blank line
        answer, took = timed_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert took < BOUND


def test_a_body_sent_too_slowly_is_cut_off(server: ServerProcess) -> None:
    head = (
        "POST /api/tasks HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"X-API-Key: {ADMIN_KEY}\r\nContent-Length: 1000\r\n\r\n"
    )
    with connect(server) as sock:
        sock.sendall(head.encode() + b'{"type": "demo')
        answer, took = timed_until_closed(sock)
    assert b" 200 " not in answer
    assert took < BOUND
    assert "Traceback" not in server.output()


def test_a_head_over_the_limit_gets_431_and_is_not_kept(server: ServerProcess) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: test\r\nX-Big: " + b"a" * (MAX_HEADER_BYTES * 4))
        answer = until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 431 "), answer
    # A head within the limit is served as before.
    assert httpx.get(f"{server.url}/health", headers={"X-Fine": "a" * 1000}, timeout=BOUND).status_code == 200


def test_past_max_connections_a_new_connection_gets_503(server: ServerProcess) -> None:
    idle = [connect(server) for _ in range(MAX_CONNECTIONS)]
    try:
        with connect(server) as extra:
            answer = until_closed(extra)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503 "), answer
        assert json.loads(body)["code"] == "unavailable"
        assert json.loads(body)["message"] == "Server busy"
    finally:
        for sock in idle:
            sock.close()
    deadline = time.monotonic() + BOUND
    while True:  # the closed connections are let go as the server sees them close
        try:
            if httpx.get(f"{server.url}/health", timeout=BOUND).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline
    assert "503 unavailable: - (connection): Server busy" in server.output()


def test_past_max_connections_a_request_already_on_its_way_still_reads_the_503(
    server: ServerProcess,
) -> None:
    # A POST sent on a connection the server refuses: its body arrives after the 503 was
    # written. Closed at once, the socket would be reset and the client lose the answer.
    idle = [connect(server) for _ in range(MAX_CONNECTIONS)]
    try:
        with connect(server) as extra:
            assert extra.recv(1, socket.MSG_PEEK), "the 503 is on its way"
            body = b"x" * 200_000
            head = b"POST /api/tasks HTTP/1.1\r\nHost: x\r\ncontent-length: %d\r\n\r\n" % len(body)
            request = head + body
            # In pieces: a socket closed at once resets the connection at the first piece, and
            # the next one fails (and the 503 already received is lost).
            for start in range(0, len(request), 4096):
                extra.sendall(request[start : start + 4096])
            answer = until_closed(extra)
        assert answer.startswith(b"HTTP/1.1 503 "), answer[:200]
        assert json.loads(answer.partition(b"\r\n\r\n")[2])["message"] == "Server busy"
    finally:
        for sock in idle:
            sock.close()
