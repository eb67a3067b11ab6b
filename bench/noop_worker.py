"""The no-op worker the throughput benchmark runs: ``taskmanager worker bench.noop_worker:worker``."""

from __future__ import annotations

import os
from pathlib import Path

from taskmanager import TaskContext, Worker

worker = Worker(concurrency=int(os.environ.get("BENCH_CONCURRENCY", "32")))

if "BENCH_READY_DIR" in os.environ:
    # This process is past its imports: bench.throughput times the rate from the moment every
    # worker process is.
    Path(os.environ["BENCH_READY_DIR"], str(os.getpid())).touch()


@worker.task("noop", version="1", schema={"type": "object"})
async def noop(ctx: TaskContext) -> None:
    return None
