"""``GET /stats`` (and ``/workers``, ``/metrics``) latency on a PostgreSQL table of N tasks (issue 16).

Fill a fresh database with N tasks of 5 types over the last day (bulk ``INSERT … SELECT
generate_series``): 90% completed, 3% failed, 5% pending, 1% claimed, 1% cancelled, with a
``completed`` history event for each finished one; ``VACUUM ANALYZE`` as autovacuum would; then
ask a real ``taskmanager serve`` for ``/stats`` through the Python client, one request at a time,
and report p50/p95 of each route: as served (answers reused for ``TASKMANAGER_STATS_MAX_AGE``,
2 s) and with every request reading the database (``0``), which is what one refresh costs.

    python -m bench.stats                   # 1,000,000 rows
    python -m bench.stats --rows 100000 --requests 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bench.claim_latency import percentile
from bench.servers import HEADERS, KEY, database, server
from taskmanager.client import TaskManagerClient
from taskmanager.store.database import driver_url

RESULTS = Path(__file__).parent / "results"
TYPES = 5
#: Rows per fill statement (a statement per 100 k rows keeps each one short).
FILL_CHUNK = 100_000

FILL_TASKS = """
INSERT INTO tasks (type_id, status, params, priority, progress, attempts, max_attempts, claimed_by,
                   claimed_at, lease_expires_at, completed_at, created_at, updated_at, dedupe_key)
SELECT 1 + g % :types, s.status, '{"n":' || g || '}', 0, 0, 1, 3,
       CASE WHEN s.status = 'pending' THEN NULL ELSE 'worker-' || (g % 20) END,
       CASE WHEN s.status = 'pending' THEN NULL ELSE s.at END,
       CASE WHEN s.status = 'claimed' THEN now() at time zone 'utc' + interval '1 hour' END,
       CASE WHEN s.status IN ('completed', 'failed', 'cancelled') THEN s.at + interval '2 seconds' END,
       s.at, s.at, md5(g::text)
FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) AS g,
LATERAL (SELECT CASE WHEN g % 100 < 90 THEN 'completed' WHEN g % 100 < 93 THEN 'failed'
                     WHEN g % 100 < 98 THEN 'pending' WHEN g % 100 < 99 THEN 'claimed'
                     ELSE 'cancelled' END AS status,
                now() at time zone 'utc' - make_interval(secs => (:rows - g) * 86400.0 / :rows) AS at) AS s
"""
FILL_HISTORY = """
INSERT INTO task_history (task_id, event, worker_id, created_at)
SELECT id, status, claimed_by, completed_at FROM tasks
WHERE status IN ('completed', 'failed') AND id BETWEEN :first AND :last
"""


async def fill(url: str, rows: int) -> float:
    engine = create_async_engine(driver_url(url))
    started = time.perf_counter()
    try:
        for first in range(1, rows + 1, FILL_CHUNK):
            bounds = {"first": first, "last": min(rows, first + FILL_CHUNK - 1)}
            async with engine.begin() as conn:
                await conn.execute(text(FILL_TASKS), {**bounds, "rows": rows, "types": TYPES})
                await conn.execute(text(FILL_HISTORY), bounds)
    finally:
        await engine.dispose()
    vacuum = create_async_engine(driver_url(url), isolation_level="AUTOCOMMIT")
    try:
        async with vacuum.connect() as conn:
            await conn.execute(text("VACUUM ANALYZE tasks"))
            await conn.execute(text("VACUUM ANALYZE task_history"))
    finally:
        await vacuum.dispose()
    return time.perf_counter() - started


#: Seconds between two requests: a dashboard's pace, so the served answers age and are refreshed
#: during the run.
INTERVAL = 0.05


def timed(call: Callable[[], Any], requests: int) -> dict[str, float]:
    call()  # warm: connections, plans
    samples = []
    for _ in range(requests):
        began = time.perf_counter()
        call()
        samples.append((time.perf_counter() - began) * 1000)
        time.sleep(INTERVAL)
    return {
        "p50_ms": round(percentile(samples, 0.50), 1),
        "p95_ms": round(percentile(samples, 0.95), 1),
        "max_ms": round(max(samples), 1),
    }


def through_server(url: str, requests: int, max_age: float) -> dict[str, Any]:
    """p50/p95 of each route from a server reusing answers for ``max_age`` seconds."""
    os.environ["TASKMANAGER_STATS_MAX_AGE"] = str(max_age)
    with (
        server(url) as base,
        TaskManagerClient(base, api_key=KEY) as client,
        httpx.Client(base_url=base, headers=HEADERS) as http,  # /metrics is text: no client call
    ):
        return {
            "stats_max_age": max_age,
            "requests": requests,
            "stats": timed(client.stats, requests),
            "workers": timed(client.workers, requests),
            "metrics": timed(lambda: http.get("/api/metrics").raise_for_status(), requests),
        }


def measure(rows: int, requests: int, uncached_requests: int) -> dict[str, Any]:
    with database("postgresql") as url:
        with server(url) as base, TaskManagerClient(base, api_key=KEY) as client:
            for n in range(TYPES):
                client.register_task_type(f"bench.type{n}", "1", {"type": "object"})
            fill_seconds = asyncio.run(fill(url, rows))
            stats = client.stats()
            assert sum(stats.by_status.values()) == rows, stats.by_status
        return {
            "rows": rows,
            "fill_seconds": round(fill_seconds, 1),
            # As served (the default TASKMANAGER_STATS_MAX_AGE), then every request reading the
            # database itself: what one refresh of the answer costs.
            "served": through_server(url, requests, 2.0),
            "uncached": through_server(url, uncached_requests, 0.0),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--uncached-requests", type=int, default=20)
    args = parser.parse_args()
    result = measure(args.rows, args.requests, args.uncached_requests)
    print(json.dumps(result))
    RESULTS.mkdir(exist_ok=True)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    (RESULTS / "stats.json").write_text(json.dumps({"machine": machine, "result": result}, indent=2) + "\n")


if __name__ == "__main__":
    main()
