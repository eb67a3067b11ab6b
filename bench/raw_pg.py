"""The raw PostgreSQL ceiling: what the three statements of a task's life cost without any queue.

On a fresh database with a ``tasks`` table shaped like TaskManager's (same claim index), 4
asyncpg connections each loop, in autocommit:

* **cycle** — one ``INSERT``, one claim (``UPDATE … WHERE id = (SELECT … FOR UPDATE SKIP
  LOCKED LIMIT 1) RETURNING``), one ``UPDATE`` to completed: create + claim + complete per task;
* **batch of 100** — the table pre-filled with N pending rows, each connection claims 100 at a
  time (same statement, ``LIMIT 100``) and completes them with one ``UPDATE … WHERE id = ANY``.

    python -m bench.raw_pg [--tasks 10000] [--connections 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import asyncpg

from bench.servers import database

SCHEMA = """
CREATE TABLE tasks (
    id BIGSERIAL PRIMARY KEY,
    status VARCHAR(16) NOT NULL DEFAULT 'pending',
    params JSONB NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    worker_id VARCHAR(255),
    created_at TIMESTAMP NOT NULL DEFAULT (now() at time zone 'utc'),
    claimed_at TIMESTAMP,
    completed_at TIMESTAMP
);
CREATE INDEX ix_tasks_claim ON tasks (status, priority DESC, created_at, id);
"""
INSERT = "INSERT INTO tasks (params) VALUES ($1::jsonb)"
CLAIM = """
UPDATE tasks SET status = 'claimed', worker_id = $1, claimed_at = now() at time zone 'utc'
WHERE id IN (
    SELECT id FROM tasks WHERE status = 'pending'
    ORDER BY priority DESC, created_at, id
    LIMIT $2 FOR UPDATE SKIP LOCKED
)
RETURNING id, params
"""
COMPLETE = "UPDATE tasks SET status = 'completed', completed_at = now() at time zone 'utc' WHERE id = $1"
COMPLETE_MANY = (
    "UPDATE tasks SET status = 'completed', completed_at = now() at time zone 'utc' "
    "WHERE id = ANY($1::bigint[])"
)
FILL = "INSERT INTO tasks (params) SELECT ('{\"n\":' || g || '}')::jsonb FROM generate_series(1, $1) AS g"


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def _cycles(url: str, tasks: int, connections: int) -> float:
    conns = [await asyncpg.connect(_dsn(url)) for _ in range(connections)]
    try:
        await conns[0].execute(SCHEMA)
        remaining = tasks

        async def loop(conn: asyncpg.Connection, worker: str) -> None:
            nonlocal remaining
            insert, claim, complete = [await conn.prepare(q) for q in (INSERT, CLAIM, COMPLETE)]
            while remaining > 0:
                remaining -= 1
                await insert.fetch('{"n": 0}')
                rows = await claim.fetch(worker, 1)
                for row in rows:
                    await complete.fetch(row["id"])

        started = time.perf_counter()
        await asyncio.gather(*(loop(conn, f"w{i}") for i, conn in enumerate(conns)))
        return tasks / (time.perf_counter() - started)
    finally:
        for conn in conns:
            await conn.close()


async def _batches(url: str, tasks: int, connections: int, size: int) -> float:
    conns = [await asyncpg.connect(_dsn(url)) for _ in range(connections)]
    try:
        await conns[0].execute(SCHEMA)
        await conns[0].execute(FILL, tasks)
        await conns[0].execute("ANALYZE tasks")
        done = 0

        async def loop(conn: asyncpg.Connection, worker: str) -> None:
            nonlocal done
            claim, complete = [await conn.prepare(q) for q in (CLAIM, COMPLETE_MANY)]
            while True:
                rows = await claim.fetch(worker, size)
                if not rows:
                    return
                await complete.fetch([row["id"] for row in rows])
                done += len(rows)

        started = time.perf_counter()
        await asyncio.gather(*(loop(conn, f"w{i}") for i, conn in enumerate(conns)))
        assert done == tasks, (done, tasks)
        return tasks / (time.perf_counter() - started)
    finally:
        for conn in conns:
            await conn.close()


def measure(tasks: int, connections: int = 4, batch: int = 100) -> dict[str, float]:
    """Cycles/s (create + claim + complete, one task each) and rows/s claimed ``batch`` at a time."""
    with database("postgresql") as url:
        cycles = asyncio.run(_cycles(url, tasks, connections))
    with database("postgresql") as url:
        rows = asyncio.run(_batches(url, tasks * 5, connections, batch))
    return {"cycle_per_s": cycles, "batch_rows_per_s": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()
    print(json.dumps({k: round(v) for k, v in measure(args.tasks, args.connections).items()}))


if __name__ == "__main__":
    main()
