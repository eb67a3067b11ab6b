"""Many concurrent claimers in several processes against a real server: exactly-once claims."""

from __future__ import annotations

import asyncio
import multiprocessing
from collections import Counter

import httpx
import pytest

from tests.conftest import ADMIN_KEY, TestDatabase
from tests.e2e.process import ServerProcess

pytestmark = pytest.mark.slow  # a server process and many client processes: docs/development.md

TASKS = 2000  # exactly-once is at stake in the contention of 50 claimers, not in the count
PROCESSES = 5
CLAIMERS_PER_PROCESS = 10  # 50 concurrent claimers in all


async def _claimer(
    client: httpx.AsyncClient, worker: str, seen: list[tuple[int, int]], statuses: Counter[int]
) -> None:
    while True:
        claim = await client.post("/api/tasks/claim", json={"worker_id": worker})
        statuses[claim.status_code] += 1
        if claim.status_code == 404:
            return
        task = claim.json()["data"]
        seen.append((task["id"], task["attempts"]))
        done = await client.post(
            f"/api/tasks/{task['id']}/complete",
            json={"worker_id": worker, "success": True, "lease_token": task["lease_token"]},
        )
        statuses[done.status_code] += 1


async def _claim_all(url: str, index: int) -> tuple[list[tuple[int, int]], dict[int, int]]:
    seen: list[tuple[int, int]] = []
    statuses: Counter[int] = Counter()
    limits = httpx.Limits(max_connections=CLAIMERS_PER_PROCESS)
    async with httpx.AsyncClient(
        base_url=url, headers={"X-API-Key": ADMIN_KEY}, limits=limits, timeout=60
    ) as client:
        await asyncio.gather(
            *(_claimer(client, f"worker-{index}-{n}", seen, statuses) for n in range(CLAIMERS_PER_PROCESS))
        )
    return seen, dict(statuses)


def _process_main(url: str, index: int) -> tuple[list[tuple[int, int]], dict[int, int]]:
    return asyncio.run(_claim_all(url, index))


def test_fifty_claimers_take_each_task_exactly_once(clean_database: TestDatabase) -> None:
    workers = 2  # several server processes on one database, SQLite included
    with ServerProcess(clean_database.url, api_key=ADMIN_KEY, workers=workers) as server:
        client = httpx.Client(base_url=server.url, headers={"X-API-Key": ADMIN_KEY}, timeout=60)
        client.post(
            "/api/task-types/register",
            json={"name": "noop", "version": "1", "param_schema": {"type": "object"}},
        )
        for start in range(0, TASKS, 1000):
            batch = [{"type": "noop", "params": {"n": n}} for n in range(start, start + 1000)]
            created = client.post("/api/tasks/batch", json={"tasks": batch}).json()["data"]
            assert created["created"] == 1000

        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(PROCESSES) as pool:
            results = pool.starmap(_process_main, [(server.url, i) for i in range(PROCESSES)])

        claimed = [pair for seen, _ in results for pair in seen]
        statuses: Counter[int] = Counter()
        for _, counts in results:
            statuses.update(counts)
        ids = Counter(task_id for task_id, _ in claimed)
        assert len(ids) == TASKS, "every task was claimed"
        assert max(ids.values()) == 1, "no task was handed out twice"
        assert all(attempt == 1 for _, attempt in claimed)
        assert not [code for code in statuses if code >= 500], statuses
        assert set(statuses) <= {200, 404}, statuses

        done = client.get("/api/tasks", params={"status": "completed", "limit": 1}).json()["data"]
        assert done["total"] == TASKS
        client.close()
