"""Schedules (API.md B.8): saved by name, validated when saved, and fired once per tick however
many servers share the database — in-process servers on a frozen clock, ticks fired by hand."""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from taskmanager.engine.clock import FrozenClock
from taskmanager.engine.schedules import MAX_SLEEP
from tests.api.conftest import TOPIC_SCHEMA, fails, ok, register
from tests.conftest import START, Api, ServerFactory

SCHEDULE_FIELDS = {
    "id",
    "name",
    "type",
    "cron",
    "interval_seconds",
    "params",
    "priority",
    "timezone",
    "enabled",
    "next_run_at",
    "last_run_at",
    "created_at",
    "updated_at",
}
EVERY_MINUTE = {"name": "tick", "type": "demo.echo", "interval_seconds": 60, "params": {"topic": "t"}}


def save(api: Api, **body: Any) -> Any:
    return ok(api.post("/api/schedules", json=body))


def fire(api: Api) -> int:
    """Fire the ticks due on ``api``'s server now (as its ticker would), on the server's loop;
    the tasks this call created (the server's own ticker, woken by a save, may fire first)."""
    created: int = api.server.run(api.server.app.state.service.schedules.fire_due())
    return created


def scheduled_tasks(api: Api) -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = ok(api.get("/api/tasks", params={"limit": 1000}))["tasks"]
    return sorted((t for t in tasks if t["schedule"] is not None), key=lambda t: t["id"])


def test_a_schedule_is_created_then_updated_by_name(api: Api) -> None:
    register(api, schema=TOPIC_SCHEMA)
    first = save(api, **EVERY_MINUTE)
    assert set(first) == SCHEDULE_FIELDS | {"created"}
    assert first["created"] is True
    assert first["timezone"] == "UTC"
    assert first["enabled"] is True
    assert first["cron"] is None
    assert first["next_run_at"] == "2026-01-01T12:01:00.000000Z"  # the next whole minute
    assert first["last_run_at"] is None
    second = save(api, **{**EVERY_MINUTE, "priority": 5})
    assert second["created"] is False
    assert second["id"] == first["id"]
    assert second["priority"] == 5
    assert ok(api.get("/api/schedules/tick")) == {k: v for k, v in second.items() if k != "created"}
    listed = ok(api.get("/api/schedules"))
    assert listed["count"] == 1
    assert [s["name"] for s in listed["schedules"]] == ["tick"]


def test_a_cron_schedule_ticks_in_its_time_zone(api: Api) -> None:
    register(api, "report.daily")
    saved = save(api, name="daily", type="report.daily", cron="0 6 * * *", timezone="Europe/Prague")
    # 06:00 in Prague in winter is 05:00 UTC; the clock reads 2026-01-01 12:00 UTC.
    assert saved["next_run_at"] == "2026-01-02T05:00:00.000000Z"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"cron": "* * * * *", "interval_seconds": 60}, "cron"),
        ({}, "cron"),
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "* * * *"}, "cron"),
        ({"cron": "0 * * * * *"}, "cron"),
        ({"cron": "0 0 30 2 *"}, "cron"),
        ({"interval_seconds": 0}, "interval_seconds"),
        ({"interval_seconds": 60, "timezone": "Mars/Olympus"}, "timezone"),
        ({"interval_seconds": 60, "type": "no.such.type"}, "type"),
        ({"interval_seconds": 60, "params": {"length": 3}}, "topic"),
    ],
)
def test_a_schedule_that_cannot_tick_is_400_naming_its_field(
    api: Api, body: dict[str, Any], field: str
) -> None:
    register(api, schema=TOPIC_SCHEMA)
    response = api.post("/api/schedules", json={"name": "bad", "type": "demo.echo", **body})
    assert response.status_code == 400, response.text
    assert any(field in detail for detail in response.json()["details"]), response.json()
    fails(api.get("/api/schedules/bad"), 404, "not_found", "Schedule not found")


def test_each_tick_creates_one_task_and_missed_ticks_are_not_replayed(api: Api) -> None:
    register(api, schema=TOPIC_SCHEMA)
    save(api, **EVERY_MINUTE)
    fire(api)
    assert scheduled_tasks(api) == []  # nothing due yet
    api.clock.advance(60)
    fire(api)
    fire(api)  # the same tick again: nothing more
    (task,) = scheduled_tasks(api)
    assert task["schedule"] == "tick"
    assert task["scheduled_for"] == "2026-01-01T12:01:00.000000Z"
    assert task["params"] == {"topic": "t"}
    api.clock.advance(minutes=10, seconds=30)  # ten ticks pass with no server firing them
    fire(api)  # only the latest
    tasks = scheduled_tasks(api)
    assert [t["scheduled_for"] for t in tasks] == [
        "2026-01-01T12:01:00.000000Z",
        "2026-01-01T12:11:00.000000Z",
    ]
    # Same params each tick, yet never deduplicated against another tick's task.
    assert len({t["id"] for t in tasks}) == 2
    schedule = ok(api.get("/api/schedules/tick"))
    assert schedule["last_run_at"] == "2026-01-01T12:11:00.000000Z"
    assert schedule["next_run_at"] == "2026-01-01T12:12:00.000000Z"


def test_a_task_created_by_hand_is_not_a_duplicate_of_a_scheduled_one(api: Api) -> None:
    register(api, schema=TOPIC_SCHEMA)
    save(api, **EVERY_MINUTE)
    api.clock.advance(60)
    fire(api)
    by_hand = ok(api.post("/api/tasks", json={"type": "demo.echo", "params": {"topic": "t"}}))
    assert by_hand["duplicate"] is False
    assert by_hand["schedule"] is None


def test_a_disabled_or_deleted_schedule_does_not_tick(api: Api) -> None:
    register(api, schema=TOPIC_SCHEMA)
    disabled = save(api, **{**EVERY_MINUTE, "enabled": False})
    assert disabled["next_run_at"] is None
    api.clock.advance(120)
    fire(api)
    assert scheduled_tasks(api) == []
    save(api, **EVERY_MINUTE)  # enabled again: from the next tick on, nothing replayed
    save(api, **{**EVERY_MINUTE, "name": "other"})
    assert ok(api.delete("/api/schedules/other")) == {"id": "other", "deleted": True}
    fails(api.delete("/api/schedules/other"), 404, "not_found", "Schedule not found")
    api.clock.advance(60)
    fire(api)
    assert [t["schedule"] for t in scheduled_tasks(api)] == ["tick"]


def test_the_servers_ticker_fires_due_ticks_by_itself(api: Api) -> None:
    register(api, schema=TOPIC_SCHEMA)
    save(api, **EVERY_MINUTE)
    api.clock.advance(60)
    api.server.loop.call_soon_threadsafe(api.server.app.state.ticker.wake)
    deadline = time.monotonic() + 10
    while not scheduled_tasks(api):
        assert time.monotonic() < deadline, "the ticker did not fire a due tick"
        time.sleep(0.02)
    assert len(scheduled_tasks(api)) == 1


SERVERS = 4
TICKS = 5


def test_several_servers_on_one_database_create_exactly_one_task_per_tick(
    make_api: ServerFactory,
) -> None:
    clock = FrozenClock(START)
    servers = [make_api(clock=clock) for _ in range(SERVERS)]
    first = servers[0]
    register(first, schema=TOPIC_SCHEMA)
    save(first, **EVERY_MINUTE)
    with ThreadPoolExecutor(SERVERS * 2) as pool:
        for _ in range(TICKS):
            clock.advance(60)
            for server in servers:  # their own tickers race too
                server.server.loop.call_soon_threadsafe(server.server.app.state.ticker.wake)
            created = sum(pool.map(fire, servers * 2))
            assert created <= 1
    per_tick = Counter(t["scheduled_for"] for t in scheduled_tasks(first))
    assert len(per_tick) == TICKS
    assert set(per_tick.values()) == {1}, per_tick


def test_an_edit_that_keeps_the_cadence_keeps_the_due_tick(api: Api) -> None:
    register(api, schema=TOPIC_SCHEMA)
    save(api, **EVERY_MINUTE)
    api.clock.advance(30)
    kept = save(api, **{**EVERY_MINUTE, "params": {"topic": "new"}})
    assert kept["next_run_at"] == "2026-01-01T12:01:00.000000Z"
    moved = save(api, **{**EVERY_MINUTE, "interval_seconds": 3600, "params": {"topic": "new"}})
    assert moved["next_run_at"] == "2026-01-01T13:00:00.000000Z"
    api.clock.advance(3600)
    fire(api)
    (task,) = scheduled_tasks(api)
    assert task["params"] == {"topic": "new"}


def test_a_tick_of_a_paused_type_creates_no_task_and_moves_on(api: Api) -> None:
    register(api, schema=TOPIC_SCHEMA)
    save(api, **EVERY_MINUTE)
    ok(api.delete("/api/task-types/demo.echo"))
    api.clock.advance(60)
    fire(api)
    assert scheduled_tasks(api) == []
    assert ok(api.get("/api/schedules/tick"))["next_run_at"] == "2026-01-01T12:02:00.000000Z"
    register(api, schema=TOPIC_SCHEMA)  # active again: the next tick has its task
    api.clock.advance(60)
    fire(api)
    assert [t["scheduled_for"] for t in scheduled_tasks(api)] == ["2026-01-01T12:02:00.000000Z"]


def test_a_key_limited_to_types_schedules_only_its_types(api: Api) -> None:
    register(api, "mine.report")
    register(api, "other.report")
    save(api, name="theirs", type="other.report", interval_seconds=60)
    body = {"name": "limited", "scopes": ["types:read", "types:write"], "types": ["mine.*"]}
    key = ok(api.post("/api/api-keys", json=body))["key"]
    with api.new_client({"X-API-Key": key}) as limited:
        refused = limited.post(
            "/api/schedules", json={"name": "x", "type": "other.report", "interval_seconds": 5}
        )
        assert refused.status_code == 400
        assert refused.json()["details"][0].startswith("type: ")
        ok(
            limited.post(
                "/api/schedules", json={"name": "mine", "type": "mine.report", "interval_seconds": 5}
            )
        )
        assert [s["name"] for s in ok(limited.get("/api/schedules"))["schedules"]] == ["mine"]
        fails(limited.get("/api/schedules/theirs"), 404, "not_found", "Schedule not found")
        fails(limited.delete("/api/schedules/theirs"), 404, "not_found", "Schedule not found")
        taken = {"name": "theirs", "type": "mine.report", "interval_seconds": 5}
        fails(limited.post("/api/schedules", json=taken), 409, "conflict", "Schedule name is taken")
    assert ok(api.get("/api/schedules/theirs"))["type"] == "other.report"


def test_the_ticker_sleeps_until_the_next_tick_and_never_longer_than_its_bound(api: Api) -> None:
    ticker = api.server.app.state.ticker

    def sleep_after_a_pass() -> float:
        seconds: float = api.server.run(ticker.pass_once())
        return seconds

    assert sleep_after_a_pass() == MAX_SLEEP  # no schedule: look again at the bound
    register(api, schema=TOPIC_SCHEMA)
    save(api, **EVERY_MINUTE)
    assert sleep_after_a_pass() == MAX_SLEEP  # the tick is 60 s away: the bound first
    api.clock.advance(58.5)
    assert sleep_after_a_pass() == 1.5  # then exactly until the tick
    api.clock.advance(1.5)
    assert sleep_after_a_pass() == MAX_SLEEP  # the tick fired; the next is 60 s away
    assert len(scheduled_tasks(api)) == 1
