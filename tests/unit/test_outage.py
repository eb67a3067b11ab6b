"""server/outage.py: a 503's cause is logged once per minute per cause, with the count between."""

from __future__ import annotations

import logging

import pytest

from taskmanager.errors import Unavailable
from taskmanager.server.outage import OutageLog, cause_of


def unavailable(cause: BaseException) -> Unavailable:
    try:
        raise Unavailable("Database unavailable") from cause
    except Unavailable as exc:
        return exc


def test_the_cause_is_the_innermost_exception_with_its_text() -> None:
    wrapped = RuntimeError("wrapped")
    wrapped.__cause__ = ConnectionRefusedError(111, "Connect call failed")
    assert cause_of(unavailable(wrapped)) == "ConnectionRefusedError: [Errno 111] Connect call failed"
    assert cause_of(Unavailable("Database unavailable")) == "Database unavailable"


def test_one_line_per_cause_per_minute_then_one_counting_the_rest(caplog: pytest.LogCaptureFixture) -> None:
    now = [1000.0]
    outages = OutageLog(every=60, clock=lambda: now[0])
    refused = unavailable(ConnectionRefusedError("refused"))
    full = unavailable(OSError("database or disk is full"))
    with caplog.at_level(logging.WARNING, logger="taskmanager.server"):
        for _ in range(5):
            outages.unavailable("GET", "/api/tasks", refused)
        outages.unavailable("POST", "/api/tasks", full)
        now[0] += 59.9
        outages.unavailable("GET", "/api/tasks", refused)
        now[0] += 0.1
        outages.unavailable("GET", "/api/tasks", refused)
    assert [r.getMessage() for r in caplog.records] == [
        "503 unavailable: GET /api/tasks: ConnectionRefusedError: refused",
        "503 unavailable: POST /api/tasks: OSError: database or disk is full",
        "503 unavailable: GET /api/tasks: ConnectionRefusedError: refused (5 more since the last line)",
    ]
    assert {r.levelno for r in caplog.records} == {logging.WARNING}
