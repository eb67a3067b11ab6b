"""What an idle queue costs PostgreSQL, as the table of finished tasks grows (issue 19).

For each table size: a fresh database filled with that many completed tasks (finished within the
last hour, so none is due for retention), ``taskmanager serve --workers 2`` on it and one idle
``taskmanager worker`` long-polling for work that never comes. After a warm-up, the database's
own counters are read twice, ``--seconds`` apart: transactions committed (every statement the
server sends outside a transaction is one), tuples read, the ``tasks`` table's sequential and
index scans. An idle queue should cost the same at 10 k and at 1 M finished tasks.

    python -m bench.idle --rows 10000 --rows 1000000 [--seconds 30]

Results go to ``bench/results/idle.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import text

from bench.servers import KEY, database, register, server, tm_worker
from taskmanager.store import open_store
from taskmanager.store.migrate import upgrade

RESULTS = Path(__file__).parent / "results"
FILL = """
INSERT INTO tasks (type_id, status, params, priority, progress, attempts, max_attempts,
                   created_at, updated_at, completed_at, dedupe_key)
SELECT 1, 'completed', '{"n":' || g || '}', 0, 100, 1, 3,
       now() at time zone 'utc' - make_interval(secs => 3600.0 * g / CAST(:rows AS float)),
       now() at time zone 'utc', now() at time zone 'utc', md5(g::text)
FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) AS g
"""
FILL_CHUNK = 100_000
#: Seconds the server and the worker run before the counters are first read.
WARM_UP = 5.0

COUNTERS = """
SELECT d.xact_commit + d.xact_rollback AS transactions, d.tup_returned + d.tup_fetched AS tuples,
       t.seq_scan, t.seq_tup_read, t.idx_scan, t.idx_tup_fetch
FROM pg_stat_database d, pg_stat_user_tables t
WHERE d.datname = $1 AND t.relname = 'tasks'
"""


async def _fill(url: str, rows: int) -> None:
    store = open_store(url, pool_size=2)
    try:
        await upgrade(store.db)
        for first in range(1, rows + 1, FILL_CHUNK):
            values = {"rows": rows, "first": first, "last": min(rows, first + FILL_CHUNK - 1)}
            await store.db.run(lambda conn, values=values: conn.execute(text(FILL), values), write=True)
        await store.db.run(lambda conn: conn.execute(text("ANALYZE tasks")), write=True)
    finally:
        await store.close()


async def _read_counters(url: str) -> dict[str, int]:
    # Read from the measured database itself (a table's statistics are seen only from there).
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(COUNTERS, url.rsplit("/", 1)[1])
    finally:
        await conn.close()
    return {key: int(value or 0) for key, value in dict(row).items()}


def _counters(url: str) -> dict[str, int]:
    return asyncio.run(_read_counters(url))


def measure(rows: int, seconds: float) -> dict[str, Any]:
    with database("postgresql") as url:
        began = time.perf_counter()
        with server(url, workers=2) as base:
            register(base)
            fill_started = time.perf_counter()
            asyncio.run(_fill(url, rows))
            fill_seconds = time.perf_counter() - fill_started
            env = {**os.environ, "TASKMANAGER_API_URL": base, "TASKMANAGER_API_KEY": KEY}
            worker = subprocess.Popen(
                tm_worker("bench.systems.tm_worker:worker"),
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                time.sleep(WARM_UP)  # start-up's own statements are not the idle cost
                before = _counters(url)
                time.sleep(seconds)
                after = _counters(url)
            finally:
                worker.terminate()
                worker.wait(timeout=30)
        per_second = {key: round((after[key] - before[key]) / seconds, 1) for key in before}
        return {
            "rows": rows,
            "seconds": seconds,
            "fill_seconds": round(fill_seconds, 1),
            "total_seconds": round(time.perf_counter() - began, 1),
            "per_second": per_second,
        }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.idle", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, action="append", help="finished tasks in the table (repeat)")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long the idle queue is watched")
    parser.add_argument("--output", default=str(RESULTS / "idle.json"))
    args = parser.parse_args()
    results = []
    for rows in args.rows or [10_000, 1_000_000]:
        result = measure(rows, args.seconds)
        print(json.dumps(result), flush=True)
        results.append(result)
    report = {"date": time.strftime("%Y-%m-%d %H:%M"), "runs": results}
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
