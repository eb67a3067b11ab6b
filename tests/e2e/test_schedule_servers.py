"""Schedules across processes (API.md B.8): two ``taskmanager serve`` processes on one database,
a schedule ticking every second, and each tick's task created exactly once — none missed while
the servers run, none twice — on each database."""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_KEY, TestDatabase
from tests.e2e.process import ServerProcess

pytestmark = pytest.mark.slow  # several server processes on one database: docs/development.md

HEADERS = {"X-API-Key": ADMIN_KEY}
#: Seconds the schedule ticks while both servers run.
RUN_SECONDS = 6


def _ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def _tick(text: str) -> datetime:
    return datetime.fromisoformat(text.removesuffix("Z"))


def test_two_servers_create_one_task_per_tick_of_a_one_second_schedule(clean_database: TestDatabase) -> None:
    with (
        ServerProcess(clean_database.url, api_key=ADMIN_KEY) as a,
        ServerProcess(clean_database.url, api_key=ADMIN_KEY) as b,
        httpx.Client(base_url=a.url, headers=HEADERS, timeout=30) as client,
    ):
        body = {"name": "job", "version": "1", "param_schema": {"type": "object"}}
        _ok(client.post("/api/task-types/register", json=body))
        every_second = {"name": "each-second", "type": "job", "interval_seconds": 1, "params": {"n": 1}}
        _ok(client.post("/api/schedules", json=every_second))
        time.sleep(RUN_SECONDS)  # real seconds: the servers tick on their own clocks
        _ok(client.post("/api/schedules", json={**every_second, "enabled": False}))
        tasks = _ok(client.get("/api/tasks", params={"limit": 1000}))["tasks"]
        assert b.proc is not None
        assert b.proc.poll() is None, b.output()
    per_tick = Counter(t["scheduled_for"] for t in tasks if t["schedule"] == "each-second")
    assert len(per_tick) >= RUN_SECONDS - 2, per_tick
    twice = {tick: n for tick, n in per_tick.items() if n != 1}
    assert twice == {}, f"ticks with more than one task: {twice}"
    ticks = sorted(_tick(t) for t in per_tick)
    missed = [
        earlier + timedelta(seconds=1)
        for earlier, later in pairwise(ticks)
        if later - earlier != timedelta(seconds=1)
    ]
    assert missed == [], f"ticks with no task while both servers ran: {missed}"
