"""``taskmanager schedules list`` (API.md D) against a real server: a table, or ``--json``."""

from __future__ import annotations

from tests.api.conftest import OPEN_SCHEMA, ok, register
from tests.cli.conftest import Command
from tests.conftest import Api


def test_schedules_list_prints_the_api_data_with_json_and_a_table_without(
    live_api: Api, taskmanager: Command
) -> None:
    register(live_api, "report.daily", schema=OPEN_SCHEMA)
    daily = {"name": "daily", "type": "report.daily", "cron": "0 6 * * *", "timezone": "Europe/Prague"}
    ok(live_api.post("/api/schedules", json=daily))
    ok(
        live_api.post(
            "/api/schedules", json={"name": "often", "type": "report.daily", "interval_seconds": 30}
        )
    )

    listed = taskmanager("schedules", "list", "--json")
    assert listed.code == 0, listed.err
    assert listed.json() == ok(live_api.get("/api/schedules"))

    shown = taskmanager("schedules", "list")
    assert shown.code == 0, shown.err
    assert "2 schedules" in shown.out
    assert "cron 0 6 * * * (Europe/Prague)" in shown.out
    assert "every 30 s" in shown.out


def test_schedules_list_with_a_wrong_key_is_one_line(taskmanager: Command) -> None:
    refused = taskmanager("schedules", "list", key="not-a-key")
    assert refused.code == 1
    assert "refused the API key" in refused.one_error_line()
