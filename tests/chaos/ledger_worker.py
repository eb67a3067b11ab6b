"""The worker the chaos suite runs as ``taskmanager worker tests.chaos.ledger_worker:worker``.

Its one handler appends a line to ``$CHAOS_LEDGER_DIR/<pid>.ledger`` as each execution starts —
``<task id> <attempt> <pid> <unix time>`` — so the test counts every execution outside the server,
even those of a worker killed with SIGKILL (a line written before the kill is in the file).
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from taskmanager import TaskContext, Worker

LEDGER = Path(os.environ.get("CHAOS_LEDGER_DIR", ".")) / f"{os.getpid()}.ledger"
#: The lease of a claim (s): short, so a killed worker's tasks come back within seconds.
LEASE = 3
#: Enough attempts to outlast every lease the faults can make run out.
MAX_ATTEMPTS = 25

worker = Worker(concurrency=4)


@worker.task(
    "chaos.work",
    schema={"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
    claim_timeout=LEASE,
    max_attempts=MAX_ATTEMPTS,
    retry_delay=0,
)
async def work(ctx: TaskContext) -> dict[str, Any]:
    with LEDGER.open("a") as ledger:
        ledger.write(f"{ctx.task_id} {ctx.attempt} {os.getpid()} {time.time():.3f}\n")
    await asyncio.sleep(0.01)
    return {"double": ctx.params["n"] * 2}
