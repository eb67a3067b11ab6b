"""``taskmanager tasks``: list, show, and retry/cancel/delete tasks of a running server.

The actions take task ids, or (the bulk form) ``--status``/``--type`` filters: the matching ids
are listed page by page first, then each is acted on, with a progress bar and a count at the end.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from taskmanager.cli.failures import CommandFailed
from taskmanager.cli.remote import (
    BULK_PAGE,
    DEFAULT_URL,
    PAGE,
    JsonOption,
    KeyOption,
    Remote,
    UrlOption,
    out,
    print_json,
    remote,
    short,
    table,
)

tasks_app = typer.Typer(
    help="Tasks of a running server: list, show, retry, cancel, delete.", no_args_is_help=True
)

StatusOption = Annotated[
    str | None,
    typer.Option("--status", help="pending, claimed, completed, failed or cancelled (or a comma list)."),
]
TypeOption = Annotated[
    str | None, typer.Option("--type", help="A type name (% matches any run of characters).")
]
IdsArgument = Annotated[
    list[int] | None, typer.Argument(help="Task ids (none: the tasks the filters match).")
]
TASK_COLUMNS = ["id", "type", "status", "priority", "attempts", "claimed by", "created", "error"]


def _task_row(task: dict[str, Any]) -> list[Any]:
    return [
        task["id"],
        task["type"],
        task["status"],
        task["priority"],
        f"{task['attempts']}/{task['max_attempts']}",
        task.get("claimed_by"),
        task.get("created_at"),
        short(task.get("error_message"), 40),
    ]


@tasks_app.command("list")
def list_tasks(
    status: StatusOption = None,
    task_type: TypeOption = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Tasks shown at most.")] = PAGE,
    offset: Annotated[int, typer.Option(min=0, help="Tasks skipped first.")] = 0,
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """List tasks, newest first."""
    with remote(url, api_key) as server:
        data = server.get("/tasks", status=status, type=task_type, limit=limit, offset=offset)
    if as_json:
        print_json(data)
        return
    title = f"{data['count']} of {data['total']} tasks"
    out().print(table(title, TASK_COLUMNS, [_task_row(task) for task in data["tasks"]]))


@tasks_app.command("show")
def show_task(
    task_id: Annotated[int, typer.Argument(metavar="ID", help="The task's id.")],
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one task: its fields, params, result, error and history."""
    with remote(url, api_key) as server:
        task = server.get(f"/tasks/{task_id}")
        history = server.get(f"/tasks/{task_id}/history")
    if as_json:
        print_json({**task, "history": history["events"]})
        return
    fields = [[name, short(value, 200)] for name, value in task.items()]
    out().print(table(f"task {task_id}", ["field", "value"], fields))
    events = [
        [e["created_at"], e["event"], e.get("worker_id"), short(e.get("message"), 80)]
        for e in history["events"]
    ]
    out().print(table("history", ["at", "event", "worker", "message"], events))


def matching_ids(server: Remote, status: str | None, task_type: str | None) -> list[int]:
    """The ids of every task the filters match, listed page by page before anything changes."""
    found: list[int] = []
    while True:
        page = server.get("/tasks", status=status, type=task_type, limit=BULK_PAGE, offset=len(found))
        found += [task["id"] for task in page["tasks"]]
        if len(page["tasks"]) < BULK_PAGE or len(found) >= page["total"]:
            return found


def _act(
    verb: str,
    ids: list[int] | None,
    status: str | None,
    task_type: str | None,
    connection: tuple[str, str | None],
    as_json: bool,
    request: Callable[[Remote, int], Any],
) -> None:
    if ids and (status or task_type):
        raise CommandFailed(f"give task ids or --status/--type filters to {verb}, not both", 2)
    if not ids and not (status or task_type):
        raise CommandFailed(f"name the tasks to {verb}: ids, or --status and/or --type", 2)
    with remote(*connection) as server:
        if ids:
            _each(server, ids, verb, as_json, request)
        else:
            _bulk(server, matching_ids(server, status, task_type), verb, as_json, request)


def _each(
    server: Remote, ids: list[int], verb: str, as_json: bool, request: Callable[[Remote, int], Any]
) -> None:
    """Act on each id; a failure is one line on stderr, and any failure makes the exit status 1."""
    answers, failed = [], 0
    for task_id in ids:
        try:
            data = request(server, task_id)
        except CommandFailed as exc:
            failed += 1
            typer.echo(f"taskmanager: task {task_id}: {exc.message}", err=True)
            continue
        answers.append(data)
        if not as_json:
            out().print(f"task {task_id}: {_outcome(verb, data)}")
    if as_json:
        print_json(answers)
    if failed:
        raise typer.Exit(1)


def _outcome(verb: str, data: Any) -> str:
    return "deleted" if verb == "delete" else str(data.get("status", "done"))


def _bulk(
    server: Remote, ids: list[int], verb: str, as_json: bool, request: Callable[[Remote, int], Any]
) -> None:
    changed, refused = 0, []
    columns = (TextColumn(f"{verb} tasks"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=out(), transient=True, disable=as_json or not sys.stdout.isatty()) as bar:
        step = bar.add_task(verb, total=len(ids))
        for task_id in ids:
            try:
                request(server, task_id)
                changed += 1
            except CommandFailed as exc:
                refused.append({"id": task_id, "error": exc.message})
            bar.advance(step)
    if as_json:
        print_json({"matched": len(ids), "changed": changed, "refused": refused})
        return
    out().print(
        f"{verb}: {changed} of {len(ids)} matching tasks" + (f", {len(refused)} refused" if refused else "")
    )


@tasks_app.command("retry")
def retry_tasks(
    ids: IdsArgument = None,
    status: StatusOption = None,
    task_type: TypeOption = None,
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send failed or cancelled tasks back to pending (their attempts reset)."""
    _act(
        "retry", ids, status, task_type, (url, api_key), as_json, lambda s, i: s.post(f"/tasks/{i}/retry", {})
    )


@tasks_app.command("cancel")
def cancel_tasks(
    ids: IdsArgument = None,
    status: StatusOption = None,
    task_type: TypeOption = None,
    reason: Annotated[str | None, typer.Option(help="Why, kept in each task's history.")] = None,
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Cancel pending or claimed tasks (a worker holding one hears it on its next heartbeat)."""
    body = {"reason": reason} if reason else {}
    _act(
        "cancel",
        ids,
        status,
        task_type,
        (url, api_key),
        as_json,
        lambda s, i: s.post(f"/tasks/{i}/cancel", body),
    )


@tasks_app.command("delete")
def delete_tasks(
    ids: IdsArgument = None,
    status: StatusOption = None,
    task_type: TypeOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before a bulk delete.")] = False,
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete tasks and their history (needs an admin key). The bulk form asks first."""
    if not ids and (status or task_type) and not yes:
        typer.confirm(f"Delete every task matching {_filters(status, task_type)}?", abort=True, err=True)
    _act("delete", ids, status, task_type, (url, api_key), as_json, lambda s, i: s.delete(f"/tasks/{i}"))


def _filters(status: str | None, task_type: str | None) -> str:
    return " and ".join(
        f"{name}={value}" for name, value in (("status", status), ("type", task_type)) if value
    )


__all__ = ["tasks_app"]
