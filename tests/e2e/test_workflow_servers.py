"""API.md B.9 across processes: two ``taskmanager serve`` processes on one database, many
claimers racing through both, and a type's ``max_running`` is never overshot (every database)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import ADMIN_KEY, TestDatabase
from tests.e2e.process import ServerProcess

pytestmark = pytest.mark.slow  # several server processes on one database: docs/development.md

HEADERS = {"X-API-Key": ADMIN_KEY}
LIMIT = 3


def _claim_until_empty(url: str, worker: str, limit: int) -> list[str]:
    """Claim (never complete) until a claim gets nothing; the types claimed."""
    types: list[str] = []
    with httpx.Client(base_url=url, headers=HEADERS, timeout=60) as client:
        while True:
            answer = client.post("/api/tasks/claim", json={"worker_id": worker, "limit": limit})
            assert answer.status_code == 200, answer.text
            claimed = answer.json()["data"]["tasks"]
            if not claimed:
                return types
            types += [task["type"] for task in claimed]


def test_claimers_on_two_servers_never_overshoot_max_running(clean_database: TestDatabase) -> None:
    with (
        ServerProcess(clean_database.url, api_key=ADMIN_KEY) as a,
        ServerProcess(clean_database.url, api_key=ADMIN_KEY) as b,
        httpx.Client(base_url=a.url, headers=HEADERS, timeout=60) as admin,
    ):
        schema = {"type": "object"}
        for name, limit in (("limited", LIMIT), ("free", None)):
            body = {"name": name, "version": "1", "param_schema": schema, "max_running": limit}
            assert admin.post("/api/task-types/register", json=body).status_code == 200
        tasks = [{"type": "limited", "params": {"n": n}, "priority": 5} for n in range(40)]
        tasks += [{"type": "free", "params": {"n": n}} for n in range(40)]
        created = admin.post("/api/tasks/batch", json={"tasks": tasks})
        assert created.json()["data"]["created"] == 80
        servers = [a.url, b.url]
        with ThreadPoolExecutor(12) as pool:
            claimed = list(
                pool.map(lambda i: _claim_until_empty(servers[i % 2], f"w{i}", 1 + i % 3), range(12))
            )
        types = [name for taken in claimed for name in taken]
        assert (types.count("limited"), types.count("free")) == (LIMIT, 40)
        held = admin.get("/api/tasks", params={"status": "claimed", "type": "limited"}).json()["data"]
        assert held["total"] == LIMIT
