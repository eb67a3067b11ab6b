"""The HTTP layer under abuse, over real sockets: hang-ups, slow and idle clients, big headers,
floods (issue 18)."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tests.conftest import ADMIN_KEY, Api


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
