"""API.md B.2: run_at / delay_seconds delay a task, expires_at / ttl_seconds expire it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import claim, create, fails, get_task, no_tasks, ok, register, when
from tests.conftest import START, Api


def test_delay_seconds_holds_the_task_back_until_due(api: Api) -> None:
    register(api)
    task = create(api, params={"n": 1}, delay_seconds=60)
    assert (when(task["run_after"]) - START).total_seconds() == 60
    no_tasks(api)
    api.clock.advance(59)
    no_tasks(api)
    api.clock.advance(1)
    assert claim(api)["id"] == task["id"]


def test_run_at_holds_the_task_back_until_that_time(api: Api) -> None:
    register(api)
    task = create(api, params={"n": 1}, run_at="2026-01-01T13:00:00Z")
    assert when(task["run_after"]) == START.replace(hour=13)
    assert get_task(api, task["id"])["run_after"] == task["run_after"]
    api.clock.advance(3599)
    no_tasks(api)
    api.clock.advance(1)
    assert claim(api)["id"] == task["id"]


def test_run_at_with_an_offset_is_stored_as_utc(api: Api) -> None:
    register(api)
    task = create(api, params={"n": 1}, run_at="2026-01-01T14:30:00+02:00")
    assert when(task["run_after"]) == START.replace(minute=30)
    assert task["run_after"].startswith("2026-01-01T12:30:00")
    api.clock.advance(30 * 60)
    assert claim(api)["id"] == task["id"]


def test_run_at_in_the_past_is_due_at_once(api: Api) -> None:
    register(api)
    task = create(api, params={"n": 1}, run_at="2025-12-31T00:00:00Z")
    assert claim(api)["id"] == task["id"]


def test_a_delayed_task_does_not_block_a_due_one_behind_it(api: Api) -> None:
    register(api)
    later = create(api, params={"n": 1}, delay_seconds=30, priority=10)
    now = create(api, params={"n": 2}, priority=1)
    assert claim(api)["id"] == now["id"]
    api.clock.advance(30)
    assert claim(api)["id"] == later["id"]


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"run_at": "2026-01-01T13:00:00Z", "delay_seconds": 5}, "delay_seconds"),
        ({"expires_at": "2026-01-01T13:00:00Z", "ttl_seconds": 5}, "ttl_seconds"),
        ({"delay_seconds": -1}, "delay_seconds"),
        ({"delay_seconds": "soon"}, "delay_seconds"),
        ({"run_at": "tomorrow"}, "run_at"),
        ({"ttl_seconds": 0}, "ttl_seconds"),
        ({"expires_at": "never"}, "expires_at"),
        ({"run_at": 1767272400}, "run_at"),
        ({"expires_at": 1767272400.5}, "expires_at"),
        # Valid ISO 8601, but past year 9999 (or before year 1) once converted to UTC.
        ({"run_at": "9999-12-31T23:59:59-23:59"}, "run_at"),
        ({"expires_at": "9999-12-31T23:59:59.999999-00:01"}, "expires_at"),
        ({"run_at": "0001-01-01T00:00:00+23:59"}, "run_at"),
        # now + delay must stay representable: both are bounded to ten years.
        ({"delay_seconds": 10 * 365 * 86400 + 1}, "delay_seconds"),
        ({"ttl_seconds": 10 * 365 * 86400 + 1}, "ttl_seconds"),
        ({"delay_seconds": 1e308}, "delay_seconds"),
    ],
)
def test_bad_schedule_fields_are_400(api: Api, extra: dict[str, Any], field: str) -> None:
    register(api)
    response = api.post("/api/tasks", json={"type": "demo.echo", "params": {}, **extra})
    body = fails(response, 400, "validation_failed", "Validation failed")
    assert any(entry.startswith(f"{field}:") for entry in body["details"]), body["details"]
    assert ok(api.get("/api/tasks"))["total"] == 0


def test_ttl_seconds_expires_a_pending_task(api: Api) -> None:
    register(api)
    task = create(api, params={"n": 1}, ttl_seconds=30)
    assert (when(task["expires_at"]) - START).total_seconds() == 30
    api.clock.advance(29)
    assert get_task(api, task["id"])["status"] == "pending"
    api.clock.advance(1)
    expired = get_task(api, task["id"])
    assert expired["status"] == "cancelled"
    assert expired["error_message"] == "expired"
    no_tasks(api)


def test_an_expired_task_is_never_claimed_even_before_it_is_read(api: Api) -> None:
    register(api)
    task = create(api, params={"n": 1}, expires_at="2026-01-01T12:00:10Z")
    api.clock.advance(10)
    no_tasks(api)
    listed = ok(api.get("/api/tasks", params={"status": "cancelled"}))
    assert [t["id"] for t in listed["tasks"]] == [task["id"]]
    assert listed["tasks"][0]["error_message"] == "expired"


def test_expiry_is_seen_in_lists_without_reading_the_task(api: Api) -> None:
    register(api)
    create(api, params={"n": 1}, ttl_seconds=5)
    keep = create(api, params={"n": 2})
    api.clock.advance(6)
    pending = ok(api.get("/api/tasks", params={"status": "pending"}))
    assert [t["id"] for t in pending["tasks"]] == [keep["id"]]


def test_a_claimed_task_does_not_expire(api: Api) -> None:
    register(api)
    task = create(api, params={"n": 1}, ttl_seconds=30)
    claimed = claim(api)
    api.clock.advance(60)
    assert get_task(api, task["id"])["status"] == "claimed"
    done = api.post(
        f"/api/tasks/{task['id']}/complete",
        json={"worker_id": "w1", "success": True, "lease_token": claimed["lease_token"]},
    )
    assert ok(done)["status"] == "completed"


def test_expiry_is_recorded_in_the_history(api: Api) -> None:
    register(api)
    task = create(api, params={"n": 1}, ttl_seconds=1)
    api.clock.advance(2)
    events = ok(api.get(f"/api/tasks/{task['id']}/history"))["events"]
    assert [e["event"] for e in events] == ["created", "expired"]


def test_an_expired_task_can_be_retried(api: Api) -> None:
    register(api)
    task = create(api, params={"n": 1}, ttl_seconds=1)
    api.clock.advance(2)
    retried = ok(api.post(f"/api/tasks/{task['id']}/retry"))
    assert retried["status"] == "pending"
    assert retried["expires_at"] is None
    assert claim(api)["id"] == task["id"]


def test_a_batch_item_past_year_9999_in_utc_fails_alone_naming_run_at(api: Api) -> None:
    register(api)
    late = {"type": "demo.echo", "params": {"n": 2}, "run_at": "9999-12-31T23:59:59-23:59"}
    response = api.post("/api/tasks/batch", json={"tasks": [{"type": "demo.echo", "params": {"n": 1}}, late]})
    results = ok(response)["results"]
    assert results[0]["error"] is None
    assert results[1]["error"].startswith("Validation failed: run_at:"), results[1]
    assert ok(api.get("/api/tasks"))["total"] == 1


def test_the_longest_delay_is_accepted(api: Api) -> None:
    register(api)
    task = create(api, params={"n": 1}, delay_seconds=10 * 365 * 86400, ttl_seconds=10 * 365 * 86400)
    assert (when(task["run_after"]) - START).days == 3650
    no_tasks(api)


def test_the_latest_representable_run_at_is_accepted(api: Api) -> None:
    register(api)
    task = create(api, params={"n": 1}, run_at="9999-12-31T23:59:59Z")
    assert task["run_after"].startswith("9999-12-31T23:59:59")
    no_tasks(api)
