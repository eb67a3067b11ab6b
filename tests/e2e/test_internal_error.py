"""An unexpected error: 500 `internal`, no internals in the body, headers kept, logged with an id."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from taskmanager.server.app import create_app
from taskmanager.settings import Settings
from tests.conftest import RunningServer

SECRET = "SELECT secret FROM tasks -- /srv/app/store.py line 42"


class ExplodingStore:
    """A store whose every call fails the way a bug would."""

    async def close(self) -> None:
        return None

    async def listen(self, on_work: object, waiting: object) -> None:
        return None  # start-up works; the requests are what fail

    async def listen_ends(self, on_end: object, waiting: object) -> None:
        return None

    history_announced = False

    @property
    def keys(self) -> ExplodingStore:
        return self  # its API keys fail the same way

    def __getattr__(self, name: str) -> Any:
        async def explode(*_args: object, **_kwargs: object) -> None:
            raise RuntimeError(SECRET)

        return explode


def test_unexpected_error_is_a_bare_500_logged_with_the_request_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = create_app(Settings(api_key=None), store=ExplodingStore())  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR, logger="taskmanager.server"), RunningServer(app) as server:
        response = httpx.get(f"{server.url}/api/tasks/1", headers={"X-Request-ID": "req-123"})

    assert response.status_code == 500
    body = response.json()
    assert body["success"] is False
    assert body["code"] == "internal"
    assert body["error"] == body["message"] == "Internal server error"
    assert "secret" not in response.text.lower()
    assert "store.py" not in response.text
    assert response.headers["cache-control"] == "no-store, no-cache, must-revalidate, max-age=0"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-request-id"] == "req-123"
    logged = [r for r in caplog.records if "req-123" in r.getMessage()]
    assert logged, "the failure is logged with the request id"
    assert logged[0].exc_info is not None
    assert SECRET in str(logged[0].exc_info[1])


def test_unexpected_error_in_a_route_with_a_query_is_the_same_500(caplog: pytest.LogCaptureFixture) -> None:
    """A route that parses a query too: the edge answers with the envelope and logs the error
    once, with the request id."""
    app = create_app(Settings(api_key=None), store=ExplodingStore())  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR, logger="taskmanager.server"), RunningServer(app) as server:
        response = httpx.get(
            f"{server.url}/api/tasks", params={"status": "pending"}, headers={"X-Request-ID": "req-456"}
        )

    assert response.status_code == 500
    body = response.json()
    assert body["code"] == "internal"
    assert body["error"] == body["message"] == "Internal server error"
    assert "secret" not in response.text.lower()
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-request-id"] == "req-456"
    logged = [r for r in caplog.records if "req-456" in r.getMessage()]
    assert len(logged) == 1
    assert SECRET in str(logged[0].exc_info[1])  # type: ignore[index]
