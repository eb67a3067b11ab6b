"""The no-op worker the throughput benchmark runs: ``taskmanager worker bench.noop_worker:worker``."""

from __future__ import annotations

import os

from taskmanager import TaskContext, Worker

worker = Worker(concurrency=int(os.environ.get("BENCH_CONCURRENCY", "32")))


@worker.task("noop", version="1", schema={"type": "object"})
async def noop(ctx: TaskContext) -> None:
    return None
