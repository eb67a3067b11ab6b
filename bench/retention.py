"""Retention (API.md B.10): does the sweep keep up with 1,000 finished tasks/s, and what does it
cost the claim?

On a fresh PostgreSQL database, a producer writes finished tasks at ``--rate`` per second (each
with three history rows, as a claimed and completed task has; ``completed_at`` = now) of a type
kept one second, so every one of them falls due a second later. Meanwhile ``--claimers``
concurrent claimers take pending tasks of another type through the engine and the store (no
HTTP), one at a time, and each claim's latency is recorded. Phases without and with the
server's own ``Sweeper`` (in the claimers' process and event loop, as in a server) alternate,
``--rounds`` of each, ``--seconds`` long, so that the load of the shared machine falls on both.

Reported: claim latency p50/p95 with and without the sweep and their ratios (the target: the
sweep raises it by no more than 10 %), the tasks the sweep deleted per second, and the backlog
(tasks due but not yet deleted) at the end of each sweeping phase: the sweep runs every second,
so about a second's worth of due tasks is the steady state of a sweep that keeps up.

    python -m bench.retention --seconds 6 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from taskmanager import models
from taskmanager.engine import TaskService
from taskmanager.engine.retention import Sweeper
from taskmanager.store import open_store
from taskmanager.store.migrate import upgrade

ADMIN_URL = os.environ.get("TASKMANAGER_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
RESULTS = Path(__file__).parent / "results"
#: The producer's ticks per second (each writes rate / TICKS finished tasks in one statement).
TICKS = 10

FINISHED = """
WITH made AS (
  INSERT INTO tasks (type_id, status, params, priority, progress, attempts, max_attempts,
                     claimed_by, claimed_at, completed_at, created_at, updated_at, result)
  SELECT $1, 'completed', '{"n":' || g || '}', 0, 100, 1, 3, 'w', $2, $2, $2, $2, '{"ok":true}'
  FROM generate_series(1, $3) AS g
  RETURNING id
)
INSERT INTO task_history (task_id, event, worker_id, message, metadata, created_at)
SELECT made.id, e.event, 'w', NULL, NULL, $2
FROM made CROSS JOIN (VALUES ('created'), ('claimed'), ('completed')) AS e(event)
"""
PENDING = """
INSERT INTO tasks (type_id, status, params, priority, progress, attempts, max_attempts,
                   created_at, updated_at)
SELECT $1, 'pending', '{"n":' || g || '}', 0, 0, 0, 3, $2, $2 FROM generate_series(1, $3) AS g
"""
DUE = "SELECT count(*) FROM tasks WHERE type_id = $1 AND status = 'completed' AND completed_at <= $2"


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def naive_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


async def produce(url: str, type_id: int, rate: int, stop: asyncio.Event) -> int:
    """Write ``rate`` finished tasks per second until ``stop``; how many were written."""
    conn = await asyncpg.connect(url)
    written = 0
    per_tick = max(1, rate // TICKS)
    began = time.perf_counter()
    try:
        while not stop.is_set():
            await conn.execute(FINISHED, type_id, naive_now(), per_tick)
            written += per_tick
            # Keep to the rate: the next tick is due when the written count says so.
            ahead = written / rate - (time.perf_counter() - began)
            if ahead > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), ahead)
    finally:
        await conn.close()
    return written


async def phase(
    service: TaskService, url: str, kept_type: int, args: argparse.Namespace, sweeping: bool
) -> dict[str, Any]:
    stop = asyncio.Event()
    producer = asyncio.create_task(produce(url, kept_type, args.rate, stop))
    sweeper = Sweeper(service.retention)
    if sweeping:
        sweeper.start()
    samples: list[float] = []
    deadline = time.perf_counter() + args.seconds

    async def claimer(n: int) -> None:
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            await service.claim(models.ClaimTasks(worker_id=f"w{n}", types=["work"]))
            samples.append((time.perf_counter() - began) * 1000)

    before = await count_tasks(url, kept_type)
    await asyncio.gather(*(claimer(n) for n in range(args.claimers)))
    stop.set()
    written = await producer
    await sweeper.stop()
    after = await count_tasks(url, kept_type)
    conn = await asyncpg.connect(url)
    try:
        backlog = await conn.fetchval(DUE, kept_type, naive_now() - timedelta(seconds=1))
    finally:
        await conn.close()
    return {
        "sweeping": sweeping,
        "claims": len(samples),
        "p50_ms": round(percentile(samples, 0.50), 3),
        "p95_ms": round(percentile(samples, 0.95), 3),
        "mean_ms": round(statistics.fmean(samples), 3),
        "finished_per_s": round(written / args.seconds),
        "deleted": before + written - after,
        "backlog_due": int(backlog),
    }


async def count_tasks(url: str, type_id: int) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM tasks WHERE type_id = $1", type_id))
    finally:
        await conn.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    name = f"tm_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = f"{ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    store = open_store(url, pool_size=args.claimers + 4)
    try:
        await upgrade(store.db)
        service = TaskService(store)
        register = models.RegisterTaskType
        kept = await service.register_type(
            register(name="kept", version="1", param_schema={"type": "object"}, keep_completed_seconds=1)
        )
        schema: dict[str, Any] = {"type": "object"}
        work = await service.register_type(register(name="work", version="1", param_schema=schema))
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(PENDING, work.data["id"], naive_now() - timedelta(hours=1), args.pending)
            await conn.execute("ANALYZE tasks")
        finally:
            await conn.close()
        phases = []
        for _ in range(args.rounds):
            for sweeping in (False, True):
                phases.append(await phase(service, url, kept.data["id"], args, sweeping))
                print(json.dumps(phases[-1]), flush=True)
                if not sweeping:  # start the next pair from an empty backlog
                    await service.retention.purge_due()
    finally:
        await store.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    without = [p for p in phases if not p["sweeping"]]
    with_ = [p for p in phases if p["sweeping"]]

    def median(rows: list[dict[str, Any]], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    deleted = sum(p["deleted"] for p in with_)
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "settings": vars(args),
        "phases": phases,
        # Medians over the rounds: the shared machine's load comes and goes within a run.
        "p50_ratio": round(median(with_, "p50_ms") / median(without, "p50_ms"), 3),
        "p95_ratio": round(median(with_, "p95_ms") / median(without, "p95_ms"), 3),
        "finished_per_s": round(median(with_, "finished_per_s")),
        # Of the tasks that fell due while the sweep ran, the share it deleted by the phase's end
        # (the rest is the backlog: at most about one sweep interval's worth).
        "deleted_of_due": round(deleted / (deleted + sum(p["backlog_due"] for p in with_)), 3),
        "max_backlog_due": max(p["backlog_due"] for p in with_),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=1000, help="finished tasks written per second")
    parser.add_argument("--claimers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each phase")
    parser.add_argument("--rounds", type=int, default=2, help="pairs of phases (without, with)")
    parser.add_argument("--pending", type=int, default=200_000, help="pending tasks to claim from")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    summary = {k: v for k, v in result.items() if k != "phases"}
    print(json.dumps(summary, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "retention.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
