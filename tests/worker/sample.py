"""The worker the worker tests run as ``taskmanager worker tests.worker.sample:worker``.

Every handler appends the attempt number to ``$SAMPLE_RUN_DIR/<task id>`` when it starts, so a
test can see how often each task really ran; a handler that is stopped writes
``<task id>.stopped``.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from taskmanager import TaskCancelled, TaskContext, Worker

RUN_DIR = Path(os.environ.get("SAMPLE_RUN_DIR", "."))
#: Leases of the types a test cancels or abandons: short, so heartbeats (a third of it) are
#: frequent and an abandoned task comes back soon.
SHORT_LEASE = 3

worker = Worker(concurrency=2)


def record(ctx: TaskContext) -> None:
    with (RUN_DIR / str(ctx.task_id)).open("a") as runs:
        runs.write(f"{ctx.attempt}\n")


def mark_stopped(ctx: TaskContext) -> None:
    (RUN_DIR / f"{ctx.task_id}.stopped").write_text(ctx.stop_reason or "cancelled")


@worker.task(
    "sample.ok",
    schema={"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
)
def ok(ctx: TaskContext) -> dict[str, Any]:
    record(ctx)
    if ctx.params["n"] % 10 == 0:
        ctx.progress(50, "half way")
    return {"double": ctx.params["n"] * 2}


@worker.task("sample.async_ok")
async def async_ok(ctx: TaskContext) -> dict[str, Any]:
    record(ctx)
    await asyncio.sleep(0.005)
    if ctx.params["n"] % 10 == 0:
        await ctx.progress(50, "half way")
    return {"double": ctx.params["n"] * 2}


@worker.task("sample.flaky", max_attempts=3, retry_delay=0)
def flaky(ctx: TaskContext) -> dict[str, Any]:
    record(ctx)
    if ctx.attempt == 1:
        raise ConnectionError("the first attempt always fails")
    return {"attempt": ctx.attempt}


@worker.task("sample.boom", max_attempts=2, retry_delay=0)
def boom(ctx: TaskContext) -> None:
    record(ctx)
    raise RuntimeError(f"boom {ctx.params['n']}")


@worker.task("sample.slow", timeout=0.5, max_attempts=1)
async def slow(ctx: TaskContext) -> None:
    record(ctx)
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        mark_stopped(ctx)
        raise


@worker.task("sample.slow_sync", timeout=0.3, max_attempts=1)
def slow_sync(ctx: TaskContext) -> str:
    record(ctx)
    time.sleep(1.0)  # does not look at ctx: the thread runs on, its result is dropped
    return "too late"


@worker.task("sample.cancel", claim_timeout=SHORT_LEASE, max_attempts=1)
def cancel_me(ctx: TaskContext) -> None:
    record(ctx)
    try:
        ctx.sleep(60)
    except TaskCancelled:
        mark_stopped(ctx)
        raise


@worker.task("sample.async_cancel", claim_timeout=SHORT_LEASE, max_attempts=1)
async def async_cancel_me(ctx: TaskContext) -> None:
    record(ctx)
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        mark_stopped(ctx)
        raise


@worker.task("sample.steady", claim_timeout=SHORT_LEASE)
def steady(ctx: TaskContext) -> str:
    record(ctx)
    time.sleep(float(ctx.params["seconds"]))  # finishes whatever happens: what a signal waits for
    return "done"
