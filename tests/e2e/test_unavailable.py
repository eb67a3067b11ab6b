"""A database that cannot be reached: /health says 503 and routes answer 503, never a 500."""

from __future__ import annotations

import httpx
import pytest

from taskmanager.server.app import create_app
from taskmanager.settings import Settings
from tests.conftest import RunningServer, free_port


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
