"""Helpers shared by the HTTP API tests: the envelope checks and the few calls every file makes.

The fixtures (``api``, ``make_api``) come from ``tests/conftest.py``; these are plain functions so
a test reads as the HTTP exchange it checks.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime
from typing import Any

import httpx
import pytest

from taskmanager.engine.signal import WorkSignal
from tests.conftest import Api

#: A schema most tests register: one required string, one optional bounded integer.
TOPIC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "topic": {"type": "string"},
        "length": {"type": "integer", "minimum": 1},
    },
    "required": ["topic"],
}
OPEN_SCHEMA: dict[str, Any] = {"type": "object"}
UNAUTHORIZED_HINT = "Invalid or missing API key. Include X-API-Key header with your request."


def ok(response: httpx.Response) -> Any:
    """Assert a success envelope (A.1) and return its ``data``."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    assert isinstance(body["message"], str)
    assert body["message"]
    assert isinstance(body["timestamp"], int)
    assert not isinstance(body["timestamp"], bool)
    assert "data" in body
    return body["data"]


def fails(response: httpx.Response, status: int, code: str, message: str | None = None) -> dict[str, Any]:
    """Assert an error envelope (A.1) with ``status``, ``code`` and (if given) exact ``message``."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["success"] is False
    assert body["code"] == code
    assert isinstance(body["timestamp"], int)
    assert isinstance(body["error"], str)
    assert isinstance(body["message"], str)
    if message is not None:
        assert body["message"] == message
        assert body["error"] == message
    return body


def register(
    api: Api | httpx.Client, name: str = "demo.echo", schema: Any = None, **settings: Any
) -> dict[str, Any]:
    """Register (or re-register) a task type and return its data."""
    body = {"name": name, "version": "1.0.0", "param_schema": OPEN_SCHEMA if schema is None else schema}
    data: dict[str, Any] = ok(api.post("/api/task-types/register", json={**body, **settings}))
    return data


def create(api: Api | httpx.Client, type: str = "demo.echo", params: Any = None, **fields: Any) -> Any:
    """Create a task and return its data (new or duplicate)."""
    body = {"type": type, "params": {} if params is None else params, **fields}
    return ok(api.post("/api/tasks", json=body))


def claim(api: Api | httpx.Client, worker_id: str = "w1", **fields: Any) -> Any:
    """Claim and return the claimed task's data (asserting one was claimed)."""
    return ok(api.post("/api/tasks/claim", json={"worker_id": worker_id, **fields}))


def no_tasks(api: Api | httpx.Client, worker_id: str = "w1", **fields: Any) -> None:
    """Assert nothing is claimable for this claim request."""
    response = api.post("/api/tasks/claim", json={"worker_id": worker_id, **fields})
    fails(response, 404, "no_tasks", "No available tasks")


def get_task(api: Api | httpx.Client, task_id: int) -> Any:
    return ok(api.get(f"/api/tasks/{task_id}"))


def when(value: str | None) -> datetime:
    """Parse an API timestamp, checking it is ISO 8601 UTC ending in ``Z``."""
    assert isinstance(value, str), value
    assert value.endswith("Z"), value
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def seconds_between(later: str | None, earlier: str | None) -> float:
    return (when(later) - when(earlier)).total_seconds()


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> threading.Semaphore:
    """Released each time a request (a long-poll claim or a wait) begins to sleep on a signal;
    the server runs in this process."""
    began = threading.Semaphore(0)
    wait = WorkSignal.wait

    async def announced(self: WorkSignal, ticket: asyncio.Event, seconds: float) -> None:
        if seconds > 0:
            began.release()
        await wait(self, ticket, seconds)

    monkeypatch.setattr(WorkSignal, "wait", announced)
    return began
