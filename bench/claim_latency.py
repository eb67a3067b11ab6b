"""Claim latency on PostgreSQL as the tasks table grows (issue 3).

For each table size, fill a fresh database with that many tasks (90% completed history, the rest
pending, all of one type), then let 16 concurrent claimers take tasks through the engine and
the store (no HTTP: this measures the database claim), and report p50/p95/p99 of one claim.

    python -m bench.claim_latency --rows 10000 --rows 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from taskmanager import models
from taskmanager.engine import TaskService
from taskmanager.store import open_store
from taskmanager.store.database import driver_url
from taskmanager.store.migrate import upgrade

ADMIN_URL = os.environ.get("TASKMANAGER_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
RESULTS = Path(__file__).parent / "results"

FILL = """
INSERT INTO tasks (type_id, status, params, priority, progress, attempts, max_attempts,
                   created_at, updated_at, completed_at, dedupe_key)
SELECT :type_id,
       CASE WHEN g <= :completed THEN 'completed' ELSE 'pending' END,
       '{"n":' || g || '}', (g % 3), 0, CASE WHEN g <= :completed THEN 1 ELSE 0 END, 3,
       now() at time zone 'utc' - make_interval(secs => :rows - g),
       now() at time zone 'utc' - make_interval(secs => :rows - g),
       CASE WHEN g <= :completed THEN now() at time zone 'utc' ELSE NULL END,
       md5(g::text)
FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) AS g
"""
#: Rows per fill statement: a 1 M-row fill in one statement outlasts the store's statement timeout.
FILL_CHUNK = 100_000


async def _admin(statement: str) -> None:
    engine = create_async_engine(driver_url(ADMIN_URL), isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        await conn.execute(text(statement))
    await engine.dispose()


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


async def measure(rows: int, claims: int, concurrency: int) -> dict[str, Any]:
    name = f"tm_bench_{uuid.uuid4().hex[:8]}"
    await _admin(f'CREATE DATABASE "{name}"')
    url = f"{ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    store = open_store(url, pool_size=concurrency + 2)
    try:
        await upgrade(store.db)
        service = TaskService(store)
        await service.register_type(
            models.RegisterTaskType(name="bench", version="1", param_schema={"type": "object"})
        )
        pending = max(claims * 2, rows // 10)
        started = time.perf_counter()
        for first in range(1, rows + 1, FILL_CHUNK):
            values = {
                "type_id": 1,
                "rows": rows,
                "completed": rows - pending,
                "first": first,
                "last": min(rows, first + FILL_CHUNK - 1),
            }
            await store.db.run(lambda conn, values=values: conn.execute(text(FILL), values), write=True)
        await store.db.run(lambda conn: conn.execute(text("ANALYZE tasks")), write=True)
        fill_seconds = time.perf_counter() - started

        samples: list[float] = []
        remaining = claims

        async def claimer(worker: str) -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                began = time.perf_counter()
                await service.claim(models.ClaimTasks(worker_id=worker))
                samples.append((time.perf_counter() - began) * 1000)

        await asyncio.gather(*(claimer(f"w{i}") for i in range(concurrency)))
        return {
            "rows": rows,
            "pending": pending,
            "claims": len(samples),
            "concurrency": concurrency,
            "fill_seconds": round(fill_seconds, 1),
            "p50_ms": round(percentile(samples, 0.50), 2),
            "p95_ms": round(percentile(samples, 0.95), 2),
            "p99_ms": round(percentile(samples, 0.99), 2),
            "mean_ms": round(statistics.fmean(samples), 2),
        }
    finally:
        await store.close()
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, action="append", help="table sizes (repeatable)")
    parser.add_argument("--claims", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    results = [
        await measure(rows, args.claims, args.concurrency) for rows in (args.rows or [10_000, 1_000_000])
    ]
    for result in results:
        print(json.dumps(result))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "claim_latency.json").write_text(
        json.dumps(
            {
                "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                f"Python {platform.python_version()}",
                "results": results,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    asyncio.run(main())
