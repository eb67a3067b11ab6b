"""The HTTP layer under abuse, over real sockets: hang-ups, slow and idle clients, big headers,
floods (issue 18)."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tests.api.conftest import create, fails, ok, register
from tests.conftest import ADMIN_KEY, Api, ServerFactory


class Waiter(logging.Handler):
    """A log handler that sets an event when a record whose message starts with ``prefix`` arrives."""

    def __init__(self, prefix: str) -> None:
        super().__init__(logging.DEBUG)
        self.prefix = prefix
        self.seen = threading.Event()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        if record.getMessage().startswith(self.prefix):
            self.seen.set()


@pytest.fixture
def server_log() -> Iterator[Waiter]:
    logger = logging.getLogger("taskmanager.server")
    waiter = Waiter("client hung up before its request was read")
    previous = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(waiter)
    yield waiter
    logger.removeHandler(waiter)
    logger.setLevel(previous)


def address(api: Api) -> tuple[str, int]:
    parts = urlsplit(api.url)
    assert parts.hostname is not None
    assert parts.port is not None
    return parts.hostname, parts.port


def test_a_client_hanging_up_mid_body_is_a_debug_line_not_a_traceback(
    live_api: Api, server_log: Waiter
) -> None:
    head = (
        "POST /api/tasks HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"X-API-Key: {ADMIN_KEY}\r\nContent-Length: 1000\r\n\r\n"
    )
    with socket.create_connection(address(live_api), timeout=10) as sock:
        sock.sendall(head.encode() + b'{"type": "demo')
    assert server_log.seen.wait(10), [r.getMessage() for r in server_log.records]
    hung_up = [r for r in server_log.records if r.getMessage().startswith("client hung up")]
    assert [r.levelno for r in hung_up] == [logging.DEBUG]
    assert "POST /api/tasks" in hung_up[0].getMessage()
    assert not [r for r in server_log.records if r.levelno >= logging.WARNING], server_log.records


def raw_claim(api: Api, wait: int) -> socket.socket:
    """A long-poll claim sent on a raw socket, left waiting until the socket is closed."""
    body = json.dumps({"worker_id": "waiting", "wait": wait}).encode()
    head = (
        "POST /api/tasks/claim HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"X-API-Key: {ADMIN_KEY}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    sock = socket.create_connection(address(api), timeout=10)
    sock.sendall(head.encode() + body)
    return sock


def test_past_max_concurrent_requests_a_request_gets_503_at_once_but_health_answers(
    make_live_api: ServerFactory, waits: threading.Semaphore
) -> None:
    server = make_live_api(max_concurrent_requests=2)
    register(server)
    waiting = []
    for _ in range(2):
        waiting.append(raw_claim(server, wait=50))
        assert waits.acquire(timeout=10), "the claim never began to wait"
    try:
        answer = server.get("/api/tasks")
        body = fails(answer, 503, "unavailable", "Server busy")
        assert answer.headers["retry-after"] == "1"
        assert body["details"] == ["more than 2 requests at once in this process"]
        started = time.monotonic()
        assert ok(server.get("/api/health"))["status"] == "healthy"
        assert time.monotonic() - started < 1
    finally:
        for sock in waiting:
            sock.close()
    # Once the claims' clients left, their slots are free again.
    deadline = time.monotonic() + 10
    while server.get("/api/tasks").status_code == 503:
        assert time.monotonic() < deadline, "the slots were never freed"
    create(server)
