"""API.md B.10: finished tasks disappear once past their retention — at once for reads and lists
(the frozen clock decides), and from the database by the server's own background sweep."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from taskmanager.store.tables import task_history, tasks
from tests.api.conftest import claim, create, fails, get_task, ok, register
from tests.conftest import Api, ServerFactory
from tests.contract.builders import run_raw

DAY = 86400


def finish(api: Api, task_id: int, success: bool = True) -> None:
    assert claim(api, "w1")["id"] == task_id
    body = {"worker_id": "w1", "success": success, "error": None if success else "boom"}
    ok(api.post(f"/api/tasks/{task_id}/complete", json=body))


def listed(api: Api, **params: Any) -> list[int]:
    return [t["id"] for t in ok(api.get("/api/tasks", params={"limit": 1000, **params}))["tasks"]]


def gone(api: Api, task_id: int) -> None:
    fails(api.get(f"/api/tasks/{task_id}"), 404, "not_found", "Task not found")
    fails(api.get(f"/api/tasks/{task_id}/history"), 404, "not_found", "Task not found")


def stored_rows(api: Api, task_id: int) -> tuple[int, int]:
    def count(conn: Connection) -> tuple[int, int]:
        task_rows = conn.scalar(select(func.count()).select_from(tasks).where(tasks.c.id == task_id))
        events = conn.scalar(
            select(func.count()).select_from(task_history).where(task_history.c.task_id == task_id)
        )
        return int(task_rows or 0), int(events or 0)

    return asyncio.run(run_raw(api.database.url, count))


def test_the_server_defaults_keep_completed_a_week_and_failed_thirty_days(api: Api) -> None:
    data = register(api, name="a", max_attempts=1)
    assert (data["keep_completed_seconds"], data["keep_failed_seconds"]) == (7 * DAY, 30 * DAY)
    done = create(api, "a", {"n": 1})["id"]
    finish(api, done)
    broken = create(api, "a", {"n": 2})["id"]
    finish(api, broken, success=False)
    cancelled = create(api, "a", {"n": 3})["id"]
    ok(api.post(f"/api/tasks/{cancelled}/cancel", json={}))
    api.clock.advance(7 * DAY - 1)
    assert sorted(listed(api)) == [done, broken, cancelled]
    api.clock.advance(1)  # the completed task is due this instant
    gone(api, done)
    assert sorted(listed(api)) == [broken, cancelled]
    assert ok(api.get("/api/tasks", params={"status": "completed"}))["total"] == 0
    api.clock.advance(23 * DAY)
    gone(api, broken)
    gone(api, cancelled)
    assert listed(api) == []


def test_a_types_own_retention_wins_and_zero_keeps_forever(api: Api) -> None:
    register(api, name="short", keep_completed_seconds=60)
    register(api, name="forever", keep_completed_seconds=0)
    short = create(api, "short", {})["id"]
    kept = create(api, "forever", {})["id"]
    pending = create(api, "short", {"n": 2})["id"]
    finish(api, short)
    finish(api, kept)
    api.clock.advance(60)
    gone(api, short)
    assert get_task(api, kept)["status"] == "completed"
    api.clock.advance(3650 * DAY)
    assert get_task(api, kept)["status"] == "completed"
    assert get_task(api, pending)["status"] == "pending"  # only finished tasks are ever removed
    assert sorted(listed(api)) == [kept, pending]


def test_a_task_past_its_retention_is_not_retried_or_matched(api: Api) -> None:
    register(api, name="a", max_attempts=1, keep_failed_seconds=60)
    task_id = create(api, "a", {})["id"]
    finish(api, task_id, success=False)
    api.clock.advance(60)
    fails(api.post(f"/api/tasks/{task_id}/retry"), 404, "not_found", "Task not found")
    bulk = {"action": "retry", "filter": {"status": "failed"}}
    assert ok(api.post("/api/tasks/bulk", json=bulk)) == {"matched": 0, "changed": 0}


def test_the_server_defaults_are_settings(make_api: ServerFactory) -> None:
    api = make_api(keep_completed=10, keep_failed=0)
    data = register(api, name="a", max_attempts=1)
    assert (data["keep_completed_seconds"], data["keep_failed_seconds"]) == (10, 0)
    done, failed = create(api, "a", {"n": 1})["id"], create(api, "a", {"n": 2})["id"]
    finish(api, done)
    finish(api, failed, success=False)
    api.clock.advance(10 * DAY)
    gone(api, done)
    assert get_task(api, failed)["status"] == "failed"


def test_the_background_sweep_deletes_the_rows_and_frees_the_dedupe_key(api: Api) -> None:
    register(api, name="a", keep_completed_seconds=60)
    task_id = create(api, "a", {"same": True})["id"]
    finish(api, task_id)
    assert stored_rows(api, task_id) == (1, 3)  # created, claimed, completed
    api.clock.advance(60)
    # The server's own sweep (every second of real time) removes the task and its history.
    deadline = time.monotonic() + 15
    while stored_rows(api, task_id) != (0, 0):
        assert time.monotonic() < deadline, "the sweep did not delete the task within 15 s"
        time.sleep(0.05)
    again = create(api, "a", {"same": True})
    assert again["duplicate"] is False
    assert again["id"] != task_id
