"""``taskmanager schedules list``: the periodic schedules of a running server (API.md B.8)."""

from __future__ import annotations

from typing import Any

import typer

from taskmanager.cli.remote import (
    DEFAULT_URL,
    JsonOption,
    KeyOption,
    UrlOption,
    out,
    print_json,
    remote,
    short,
    table,
)

schedules_app = typer.Typer(help="Periodic schedules of a running server.", no_args_is_help=True)


def _cadence(schedule: dict[str, Any]) -> str:
    if schedule.get("cron") is not None:
        return f"cron {schedule['cron']} ({schedule['timezone']})"
    return f"every {schedule['interval_seconds']} s"


@schedules_app.command("list")
def list_schedules(
    url: UrlOption = DEFAULT_URL, api_key: KeyOption = None, as_json: JsonOption = False
) -> None:
    """List schedules, by name: their type, cadence, next and last tick."""
    with remote(url, api_key) as server:
        data = server.get("/schedules")
    if as_json:
        print_json(data)
        return
    rows = [
        [
            s["name"],
            s["type"],
            _cadence(s),
            "yes" if s["enabled"] else "no",
            s["next_run_at"],
            s["last_run_at"],
            short(s["params"], 40),
        ]
        for s in data["schedules"]
    ]
    columns = ["name", "type", "when", "enabled", "next run", "last run", "params"]
    out().print(table(f"{data['count']} schedules", columns, rows))


__all__ = ["schedules_app"]
