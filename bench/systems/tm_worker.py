"""TaskManager's worker runtime for the side-by-side benchmark:
``taskmanager worker bench.systems.tm_worker:worker``.

The same worker as ``bench.noop_worker`` (its concurrency, ``BENCH_CONCURRENCY``, default 32),
with a no-op handler that only counts itself (``bench.systems.counting``) like every other
system's handler does.
"""

from __future__ import annotations

from bench import noop_worker
from bench.systems.counting import hit
from taskmanager import TaskContext, Worker

worker = Worker(concurrency=noop_worker.worker.concurrency)


@worker.task("noop", version="1", schema={"type": "object"})
async def noop(ctx: TaskContext) -> None:
    hit(ctx.params.get("t"))
