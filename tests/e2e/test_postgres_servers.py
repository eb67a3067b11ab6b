"""PostgreSQL in production shape: several server processes on one database, and database faults."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import ADMIN_KEY, PG_ADMIN_URL, TestDatabase, _admin
from tests.e2e.process import ServerProcess, WokenServer

pytestmark = pytest.mark.slow  # several server processes on one database: docs/development.md

HEADERS = {"X-API-Key": ADMIN_KEY}


def _register(url: str, name: str = "job") -> None:
    response = httpx.post(
        f"{url}/api/task-types/register",
        headers=HEADERS,
        json={"name": name, "version": "1", "param_schema": {"type": "object"}},
    )
    assert response.status_code == 200


def _drain(url: str, worker: str) -> list[int]:
    """Claim and complete until nothing is left; return the ids claimed."""
    taken: list[int] = []
    with httpx.Client(base_url=url, headers=HEADERS, timeout=60) as client:
        while True:
            claim = client.post("/api/tasks/claim", json={"worker_id": worker})
            if claim.status_code == 404:
                return taken
            assert claim.status_code == 200, claim.text
            task = claim.json()["data"]
            taken.append(task["id"])
            done = client.post(
                f"/api/tasks/{task['id']}/complete",
                json={"worker_id": worker, "success": True, "lease_token": task["lease_token"]},
            )
            assert done.status_code == 200, done.text


def test_two_servers_on_one_database_dedupe_and_claim_exactly_once(pg_database: TestDatabase) -> None:
    with (
        ServerProcess(pg_database.url, api_key=ADMIN_KEY) as a,
        ServerProcess(pg_database.url, api_key=ADMIN_KEY) as b,
    ):
        _register(a.url)
        servers = [a.url, b.url]

        def create(n: int, url: str) -> int:
            response = httpx.post(
                f"{url}/api/tasks", headers=HEADERS, timeout=60, json={"type": "job", "params": {"n": n}}
            )
            assert response.status_code == 200, response.text
            return int(response.json()["data"]["id"])

        # The same 300 tasks created through both servers at once: one id per task.
        with ThreadPoolExecutor(16) as pool:
            through_a = list(pool.map(lambda n: create(n, a.url), range(300)))
            through_b = list(pool.map(lambda n: create(n, b.url), range(300)))
        assert through_a == through_b
        assert len(set(through_a)) == 300

        with ThreadPoolExecutor(20) as pool:
            claimed = list(pool.map(lambda i: _drain(servers[i % 2], f"w{i}"), range(20)))
        ids = Counter(i for taken in claimed for i in taken)
        assert set(ids) == set(through_a)
        assert max(ids.values()) == 1
        assert all(taken for taken in claimed[:2]), "both servers handed out work"


def test_killed_connections_lose_no_acknowledged_create_and_notify_returns(
    pg_database: TestDatabase,
) -> None:
    name = pg_database.url.rsplit("/", 1)[1]
    kill = (
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
    )
    acknowledged: list[tuple[int, int]] = []
    statuses: Counter[int] = Counter()
    stop = threading.Event()
    with WokenServer(pg_database.url, api_key=ADMIN_KEY) as server:
        _register(server.url)

        def traffic(offset: int) -> None:
            with httpx.Client(base_url=server.url, headers=HEADERS, timeout=30) as client:
                n = offset
                while not stop.is_set() and n < offset + 100_000:
                    response = client.post("/api/tasks", json={"type": "job", "params": {"n": n}})
                    statuses[response.status_code] += 1
                    if response.status_code == 200:
                        acknowledged.append((n, response.json()["data"]["id"]))
                    n += 1

        threads = [threading.Thread(target=traffic, args=(i * 1_000_000,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for _ in range(5):
            stop.wait(0.3)  # let traffic flow between kills
            asyncio.run(_admin(PG_ADMIN_URL, [kill]))
        stop.wait(0.5)
        stop.set()
        for thread in threads:
            thread.join(timeout=60)

        assert set(statuses) <= {200, 503}, statuses
        assert statuses[200] > 0
        with httpx.Client(base_url=server.url, headers=HEADERS, timeout=30) as client:
            assert client.get("/health").status_code == 200, "the same process recovered"
            for n, task_id in acknowledged:
                task = client.get(f"/api/tasks/{task_id}")
                assert task.status_code == 200
                assert task.json()["data"]["params"] == {"n": n}
        # Its LISTEN connection was killed too: once back, another server's create wakes its claimer
        # again (the server never re-checks by itself, so nothing else could).
        with ServerProcess(pg_database.url, api_key=ADMIN_KEY) as other:
            _register(other.url, "woken")  # a type of its own: the jobs above are all claimable

            def create() -> int:
                response = httpx.post(
                    f"{other.url}/api/tasks", headers=HEADERS, json={"type": "woken", "params": {}}
                )
                assert response.status_code == 200, response.text
                return int(response.json()["data"]["id"])

            server.claim_woken_by(HEADERS, create, types=["woken"])
