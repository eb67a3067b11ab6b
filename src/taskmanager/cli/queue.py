"""``taskmanager types list``, ``enqueue``, ``stats`` and ``workers``: the queue of a running
server, seen and fed from the command line."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from taskmanager.cli.remote import (
    DEFAULT_URL,
    JsonOption,
    KeyOption,
    UrlOption,
    out,
    print_json,
    remote,
    table,
)

types_app = typer.Typer(help="Task types of a running server.", no_args_is_help=True)
STATUSES = ("pending", "claimed", "completed", "failed", "cancelled")


@types_app.command("list")
def list_types(
    active_only: Annotated[bool, typer.Option("--active-only", help="Leave out paused types.")] = False,
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """List task types, by name."""
    with remote(url, api_key) as server:
        data = server.get("/task-types", active_only="true" if active_only else None)
    if as_json:
        print_json(data)
        return
    rows = [
        [
            t["name"],
            t["version"],
            "yes" if t["is_active"] else "paused",
            t.get("max_attempts"),
            t.get("description"),
        ]
        for t in data["task_types"]
    ]
    out().print(
        table(f"{data['count']} task types", ["name", "version", "active", "max attempts", "about"], rows)
    )


def _params(text: str) -> dict[str, Any]:
    try:
        found = json.loads(text)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(
            f"not JSON: {exc.msg} at character {exc.pos}", param_hint="--params"
        ) from None
    if not isinstance(found, dict):
        raise typer.BadParameter("must be a JSON object, e.g. '{\"n\": 1}'", param_hint="--params")
    return found


def enqueue(
    task_type: Annotated[str, typer.Argument(metavar="TYPE", help="The task type's name.")],
    params: Annotated[str, typer.Option(help="The task's params, a JSON object.")] = "{}",
    priority: Annotated[int | None, typer.Option(help="Higher is claimed first (default 0).")] = None,
    delay: Annotated[float | None, typer.Option(min=0, help="Seconds before it may be claimed.")] = None,
    depends_on: Annotated[
        list[int] | None,
        typer.Option("--depends-on", min=1, help="A task that must complete first (repeat for several)."),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the task ends; print its result.")] = False,
    wait_timeout: Annotated[
        float | None, typer.Option(min=0, help="With --wait: give up after these seconds (default: never).")
    ] = None,
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a task of TYPE (a duplicate of an existing one answers that task). With --wait,
    wait for it to end and print its result; the exit status is 1 unless it completed."""
    body: dict[str, Any] = {"type": task_type, "params": _params(params)}
    if priority is not None:
        body["priority"] = priority
    if delay is not None:
        body["delay_seconds"] = delay
    if depends_on:
        body["depends_on"] = depends_on
    with remote(url, api_key) as server:
        data = server.post("/tasks", body)
        if wait:
            with server.failures():
                data = dict(server.client.wait_for(data["id"], wait_timeout).model_dump(mode="json"))
    if as_json:
        print_json(data)
    else:
        kind = "duplicate of task" if data.get("duplicate") else "task"
        blocked = " (blocked: waits for its dependencies)" if data.get("blocked") else ""
        out().print(f"{kind} {data['id']}: {data['status']}{blocked}")
        if wait:
            _print_outcome(data)
    if wait and data["status"] != "completed":
        raise typer.Exit(1)


def _print_outcome(task: dict[str, Any]) -> None:
    """What a waited task ended with: its result, its error, or that it has not ended yet."""
    if not task["done"]:
        out().print("not finished yet (--wait-timeout ran out)")
    elif task["status"] == "completed":
        out().print(json.dumps(task.get("result"), ensure_ascii=False))
    else:
        out().print(f"error: {task.get('error_message')}")


def stats(url: UrlOption = DEFAULT_URL, api_key: KeyOption = None, as_json: JsonOption = False) -> None:
    """Counts per type and status, oldest pending age and the last hour's throughput."""
    with remote(url, api_key) as server:
        data = server.get("/stats")
    if as_json:
        print_json(data)
        return
    rows = [
        [
            entry["type"],
            *(entry.get(status, 0) for status in STATUSES),
            _age(entry.get("oldest_pending_seconds")),
            entry.get("completed_last_hour"),
            entry.get("failed_last_hour"),
            _seconds(entry.get("avg_run_seconds")),
        ]
        for entry in data["by_type"]
    ]
    totals = ["all", *(data["by_status"].get(status, 0) for status in STATUSES), "", "", "", ""]
    columns = ["type", *STATUSES, "oldest", "done 1h", "failed 1h", "avg run"]
    out().print(table("tasks", columns, [*rows, totals]))
    done = sum(minute["completed"] for minute in data.get("throughput", []))
    failed = sum(minute["failed"] for minute in data.get("throughput", []))
    out().print(f"last hour: {done} completed, {failed} failed; {data['workers_active']} workers active")


def workers(url: UrlOption = DEFAULT_URL, api_key: KeyOption = None, as_json: JsonOption = False) -> None:
    """Workers seen in the last 24 hours: what they hold, finished and failed, when last seen."""
    with remote(url, api_key) as server:
        data = server.get("/workers")
    if as_json:
        print_json(data)
        return
    columns = ["worker", "claimed", "completed", "failed", "last seen", "avg run"]
    rows = [
        [
            w["worker_id"],
            w["claimed"],
            w["completed"],
            w["failed"],
            w["last_seen_at"],
            _seconds(w["avg_processing_seconds"]),
        ]
        for w in data["workers"]
    ]
    out().print(table(f"{len(rows)} workers", columns, rows))


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.2f} s"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return ""
    minutes, rest = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{rest:02d}s"


__all__ = ["enqueue", "stats", "types_app", "workers"]
