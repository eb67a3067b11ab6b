"""A database that cannot be reached: /health says 503 and routes answer 503, never a 500."""

from __future__ import annotations

import logging

import httpx
import pytest

from taskmanager.server.app import create_app
from taskmanager.settings import Settings
from tests.conftest import RunningServer, free_port
from tests.e2e.pg_refusing import SHUTTING_DOWN, STARTING_UP, RefusingPostgres


@pytest.mark.parametrize("scheme", ["postgresql", "mysql"])
def test_unreachable_database_gives_503_with_no_driver_text(scheme: str) -> None:
    closed = free_port()  # nothing listens there
    settings = Settings(database_url=f"{scheme}://nobody@127.0.0.1:{closed}/none", migrate_on_start=False)
    with RunningServer(create_app(settings)) as server:
        health = httpx.get(f"{server.url}/health", timeout=30)
        assert health.status_code == 503
        body = health.json()
        assert body["code"] == "unavailable"
        assert body["data"] == {"status": "unhealthy", "database": "disconnected"}

        listed = httpx.get(f"{server.url}/api/tasks", timeout=30)
        assert listed.status_code == 503
        assert listed.json()["code"] == "unavailable"
        for text in (health.text, listed.text):
            assert "asyncpg" not in text
            assert "asyncmy" not in text
            assert "Errno" not in text


@pytest.mark.parametrize("message", [STARTING_UP, SHUTTING_DOWN])
def test_postgres_starting_up_or_shutting_down_gives_503(message: str) -> None:
    """asyncpg's CannotConnectNowError (SQLSTATE 57P03) is "database unavailable" on every path:
    the store's own asyncpg pool (health, one task) and SQLAlchemy's (lists, types, history)."""
    with RefusingPostgres(message) as database:
        url = f"postgresql://nobody@127.0.0.1:{database.port}/none"
        settings = Settings(database_url=url, migrate_on_start=False, api_key="k" * 32)
        with RunningServer(create_app(settings)) as server:
            headers = {"X-API-Key": "k" * 32}
            task = 1
            for path in (
                "/health",
                "/api/tasks",
                "/api/task-types",
                "/api/task-types/some.type",
                f"/api/tasks/{task}",
                f"/api/tasks/{task}/history",
            ):
                answer = httpx.get(f"{server.url}{path}", headers=headers, timeout=30)
                assert (path, answer.status_code) == (path, 503), answer.text
                assert answer.json()["code"] == "unavailable"
                assert "asyncpg" not in answer.text
        assert database.refused > 0


def test_a_503_is_logged_once_naming_its_cause(caplog: pytest.LogCaptureFixture) -> None:
    """One warning line per cause, however many requests meet it (issue 18: an outage left
    nothing in the server log)."""
    with RefusingPostgres(STARTING_UP) as database:
        url = f"postgresql://nobody@127.0.0.1:{database.port}/none"
        settings = Settings(database_url=url, migrate_on_start=False, api_key="k" * 32)
        with (
            caplog.at_level(logging.WARNING, logger="taskmanager.server"),
            RunningServer(create_app(settings)) as server,
        ):
            for path in ("/health", "/api/tasks", "/api/task-types", "/api/tasks", "/health"):
                answer = httpx.get(f"{server.url}{path}", headers={"X-API-Key": "k" * 32}, timeout=30)
                assert answer.status_code == 503
    lines = [r.getMessage() for r in caplog.records if r.name == "taskmanager.server"]
    assert len(lines) == 1, lines
    assert lines[0].startswith("503 unavailable: GET /api/health: CannotConnectNowError: "), lines
    assert STARTING_UP in lines[0]
