"""The worker runtime in-process: a ``Worker`` on an embedded client (the engine on the test
database, no server), driven by ``run_async``/``stop`` — and its registry and log formats."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest

from taskmanager import AsyncTaskManagerClient, TaskCancelled, TaskContext, TaskManagerError, Worker
from taskmanager.worker import Cron, Every
from taskmanager.worker.logs import JsonFormatter, TextFormatter
from tests.conftest import TestDatabase

FINISHED = ("completed", "failed", "cancelled")


@pytest.fixture
async def client(clean_database: TestDatabase) -> AsyncIterator[AsyncTaskManagerClient]:
    async with AsyncTaskManagerClient(clean_database.url, worker_id="in-process") as made:
        yield made


async def settled(client: AsyncTaskManagerClient, count: int) -> list[Any]:
    """Wait until ``count`` tasks exist and all are finished; them, oldest first."""
    for _ in range(600):
        tasks = [t async for t in client.list_tasks()]
        if len(tasks) == count and all(t.status in FINISHED for t in tasks):
            return sorted(tasks, key=lambda t: t.id)
        await asyncio.sleep(0.05)
    raise AssertionError(f"tasks did not settle: {[(t.id, t.status) for t in tasks]}")


async def registered(client: AsyncTaskManagerClient, count: int) -> None:
    """Wait until the worker has registered its ``count`` types."""
    for _ in range(500):
        if len(await client.list_task_types()) == count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the worker did not register its types")


async def test_handlers_run_report_and_stop(client: AsyncTaskManagerClient) -> None:
    worker = Worker(concurrency=3, client=client, claim_wait=1)
    threads: set[str] = set()

    @worker.task("w.sync", schema={"type": "object"})
    def sync_handler(ctx: TaskContext) -> dict[str, Any]:
        threads.add(threading.current_thread().name)
        ctx.progress(30, "a third")
        if ctx.params.get("fail"):
            raise ValueError("asked to fail")
        return {"seen": ctx.params["n"], "attempt": ctx.attempt, "worker": ctx.worker_id}

    @worker.task("w.async", max_attempts=1)
    async def async_handler(ctx: TaskContext) -> Any:
        await ctx.progress(60)
        if ctx.params.get("object"):
            return object()  # not JSON: reported as a failure
        return ctx.params["n"] * 10

    running = asyncio.create_task(worker.run_async())
    await registered(client, 2)
    await client.create_tasks(
        [
            {"type": "w.sync", "params": {"n": 1}},
            {"type": "w.sync", "params": {"n": 2, "fail": True}, "max_attempts": 1},
            {"type": "w.async", "params": {"n": 3}},
            {"type": "w.async", "params": {"n": 4, "object": True}},
        ]
    )
    ok, failed, async_ok, not_json = await settled(client, 4)
    worker.stop()
    assert await running == 0

    assert (ok.status, ok.result) == ("completed", {"seen": 1, "attempt": 1, "worker": "in-process"})
    assert failed.status == "failed"
    assert "ValueError: asked to fail" in failed.error_message
    assert (async_ok.status, async_ok.result) == ("completed", 30)
    assert not_json.status == "failed"
    assert "not JSON" in not_json.error_message
    assert all(name.startswith("task-") for name in threads), "blocking handlers run in threads"
    history = [e.event for e in await client.get_task_history(ok.id)]
    assert history == ["created", "claimed", "progress", "completed"]


async def test_time_limit_and_cooperative_stop(client: AsyncTaskManagerClient) -> None:
    worker = Worker(concurrency=2, client=client, task_timeout=0.2, claim_wait=0)
    stopped: list[str] = []

    @worker.task("w.sleepy", max_attempts=1)
    def sleepy(ctx: TaskContext) -> None:
        try:
            ctx.sleep(30)
        except TaskCancelled:
            stopped.append(ctx.stop_reason or "")
            raise

    @worker.task("w.quick", max_attempts=1, timeout=5)
    async def quick(ctx: TaskContext) -> str:
        await asyncio.sleep(0.3)  # over the worker's default limit, under its own
        return "made it"

    running = asyncio.create_task(worker.run_async())
    await registered(client, 2)
    await client.create_task("w.sleepy", {})
    await client.create_task("w.quick", {})
    sleepy_task, quick_task = await settled(client, 2)
    worker.stop()
    assert await running == 0
    assert sleepy_task.status == "failed"
    assert "within its 0.2 s time limit" in sleepy_task.error_message
    assert stopped == ["timeout"]
    assert (quick_task.status, quick_task.result) == ("completed", "made it")


async def test_stop_twice_abandons_running_tasks(client: AsyncTaskManagerClient) -> None:
    worker = Worker(concurrency=1, client=client, claim_wait=0)
    started = asyncio.Event()

    @worker.task("w.forever")
    async def forever(ctx: TaskContext) -> None:
        started.set()
        await asyncio.sleep(3600)

    running = asyncio.create_task(worker.run_async())
    await registered(client, 1)
    created = await client.create_task("w.forever", {})
    await asyncio.wait_for(started.wait(), 10)
    worker.stop()
    await asyncio.sleep(0.1)
    assert not running.done(), "the first stop waits for the running task"
    worker.stop()
    assert await asyncio.wait_for(running, 10) == 1
    task = await client.get_task(created.id)
    assert (task.status, task.claimed_by) == ("claimed", "in-process"), "left to its lease"


async def test_next_claim_does_not_wait_for_the_report(clean_database: TestDatabase) -> None:
    """With one slot, the worker claims its next task as soon as a handler returns, while that
    task's outcome is still on its way to the server (it used to wait for the report's answer,
    adding a round trip to every task's wait)."""
    reporting, release, claimed_meanwhile = asyncio.Event(), asyncio.Event(), asyncio.Event()

    class HeldReports(AsyncTaskManagerClient):
        """Holds every report until released; notes a claim made while one is held."""

        async def claim_tasks(self, *args: Any, **kwargs: Any) -> Any:
            if reporting.is_set() and not release.is_set():
                claimed_meanwhile.set()
            return await super().claim_tasks(*args, **kwargs)

        async def complete_tasks(self, *args: Any, **kwargs: Any) -> Any:
            reporting.set()
            await release.wait()
            return await super().complete_tasks(*args, **kwargs)

    async with HeldReports(clean_database.url, worker_id="in-process") as client:
        worker = Worker(concurrency=1, client=client, claim_wait=0.1)

        @worker.task("w.one", max_attempts=1)
        async def one(ctx: TaskContext) -> int:
            return int(ctx.params["n"])

        running = asyncio.create_task(worker.run_async())
        try:
            await registered(client, 1)
            await client.create_tasks([{"type": "w.one", "params": {"n": n}} for n in range(2)])
            await asyncio.wait_for(claimed_meanwhile.wait(), 10)
        finally:
            release.set()
            first, second = await settled(client, 2)
            worker.stop()
            assert await running == 0
    assert [(t.status, t.result) for t in (first, second)] == [("completed", 0), ("completed", 1)]


async def test_a_task_claimed_again_during_its_first_run_is_reported_per_run(
    clean_database: TestDatabase,
) -> None:
    """A lease that ran out while its handler still ran (here: every heartbeat is lost) lets the
    same worker claim the task again. Each run reports with its own lease token — the stale one
    is refused (``lease_lost``), not sent under the new claim's token — and each run keeps its own
    slot, so stopping the worker waits for the second run and its outcome lands."""
    second_started, first_judged, release_second = asyncio.Event(), asyncio.Event(), asyncio.Event()
    judged: list[tuple[str | None, str | None]] = []

    class LostHeartbeats(AsyncTaskManagerClient):
        async def heartbeat(self, *args: Any, **kwargs: Any) -> Any:
            raise TaskManagerError("heartbeat lost on the way")

        async def complete_tasks(self, outcomes: Any, *args: Any, **kwargs: Any) -> Any:
            answers = await super().complete_tasks(outcomes, *args, **kwargs)
            for outcome, answer in zip(outcomes, answers, strict=True):
                judged.append((outcome.get("lease_token"), answer.code or answer.status))
            first_judged.set()
            return answers

    async with LostHeartbeats(clean_database.url, worker_id="in-process") as client:
        worker = Worker(concurrency=2, client=client, claim_wait=0.2)
        tokens: dict[int, str | None] = {}

        @worker.task("w.twice", claim_timeout=1, retry_delay=0, max_attempts=3)
        async def twice(ctx: TaskContext) -> str:
            tokens[ctx.attempt] = ctx.task.lease_token
            if ctx.attempt == 1:
                await second_started.wait()  # the lease ran out; the task was claimed again
                return "first"
            second_started.set()
            await release_second.wait()
            return "second"

        running = asyncio.create_task(worker.run_async())
        try:
            await registered(client, 1)
            created = await client.create_task("w.twice", {})
            await asyncio.wait_for(first_judged.wait(), 30)
            worker.stop()  # the second run still goes: stopping waits for it
            claimer = next(t for t in asyncio.all_tasks() if t.get_name() == "claim-loop")
            await asyncio.wait_for(claimer, 30)  # the claims have ended...
            done, _ = await asyncio.wait({running}, timeout=0.5)
            assert not done, "...and the worker still waits for the second run"
        finally:
            release_second.set()
        assert await asyncio.wait_for(running, 30) == 0
        task = await client.get_task(created.id)
    assert judged == [(tokens[1], "lease_lost"), (tokens[2], "completed")]
    assert (task.status, task.result, task.attempts) == ("completed", "second", 2)


def test_registry_rules() -> None:
    worker = Worker()
    with pytest.raises(RuntimeError, match="no handlers"):
        asyncio.run(worker.run_async())

    @worker.task("w.one")
    def one(ctx: TaskContext) -> None:
        return None

    with pytest.raises(ValueError, match="already registered"):
        worker.task("w.one")(one)
    with pytest.raises(ValueError, match="timeout"):
        worker.task("w.two", timeout=0)
    with pytest.raises(ValueError, match="concurrency"):
        Worker(concurrency=0)
    handler = worker.registry.get("w.one")
    assert handler is not None
    assert (handler.version, dict(handler.schema), handler.is_async) == ("1", {"type": "object"}, False)


def test_log_lines_carry_the_task_fields() -> None:
    record = logging.makeLogRecord(
        {"name": "taskmanager.worker", "levelname": "INFO", "msg": "task %d done", "args": (7,)}
    )
    record.task_id, record.outcome = 7, "completed"
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "task 7 done"
    assert (entry["task_id"], entry["outcome"], entry["level"]) == (7, "completed", "info")
    assert entry["time"].endswith("Z")
    assert TextFormatter().format(record).endswith("task 7 done [task_id=7 outcome=completed]")


def test_run_uses_uvloop_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """``run()`` (what ``taskmanager worker`` calls) runs the worker on uvloop, installed with the
    project: most of a worker's CPU per task is event-loop work."""
    seen: list[str] = []

    async def run_async(self: Worker, *, handle_signals: bool = False) -> int:
        seen.append(type(asyncio.get_running_loop()).__module__)
        return 0 if handle_signals else 2

    monkeypatch.setattr(Worker, "run_async", run_async)
    assert Worker().run() == 0
    assert seen == ["uvloop"]


async def test_a_schedule_declared_beside_its_handler_is_saved_when_the_worker_starts(
    client: AsyncTaskManagerClient,
) -> None:
    worker = Worker(concurrency=1, client=client, claim_wait=0)

    @worker.task("report.daily", schedule=Cron("0 6 * * *", timezone="Europe/Prague"))
    def daily(ctx: TaskContext) -> None:
        return None

    @worker.task("cache.refresh", schedule=Every(300, name="warm-cache", params={"warm": True}, priority=3))
    def refresh(ctx: TaskContext) -> None:
        return None

    running = asyncio.create_task(worker.run_async())
    await registered(client, 2)
    for _ in range(500):
        schedules = {s.name: s for s in await client.list_schedules()}
        if len(schedules) == 2:
            break
        await asyncio.sleep(0.02)
    worker.stop()
    assert await running == 0
    daily_schedule, warm = schedules["report.daily"], schedules["warm-cache"]
    assert (daily_schedule.type, daily_schedule.cron, daily_schedule.timezone) == (
        "report.daily",
        "0 6 * * *",
        "Europe/Prague",
    )
    assert (warm.type, warm.interval_seconds, warm.params, warm.priority) == (
        "cache.refresh",
        300,
        {"warm": True},
        3,
    )
