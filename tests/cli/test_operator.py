"""The operator's commands (API.md D) against a real server: tasks, types, enqueue; tables by
default, the API's ``data`` with ``--json``; mistakes as one line on stderr."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import OPEN_SCHEMA, ok, register
from tests.cli.conftest import Command
from tests.conftest import Api


def create(api: Api, n: int, type_name: str = "demo.echo", first: int = 0) -> list[int]:
    """``n`` new tasks (params ``{"n": first}``, ``{"n": first + 1}``...: none a duplicate)."""
    bodies = [{"type": type_name, "params": {"n": i}} for i in range(first, first + n)]
    return [ok(api.post("/api/tasks", json=body))["id"] for body in bodies]


def fail(api: Api, task_id: int) -> None:
    claimed = ok(api.post("/api/tasks/claim", json={"worker_id": "w1", "task_type_id": None}))
    assert claimed["id"] == task_id
    ok(
        api.post(
            f"/api/tasks/{task_id}/complete", json={"worker_id": "w1", "success": False, "error": "boom"}
        )
    )


def status_of(api: Api, task_id: int) -> str:
    found: str = ok(api.get(f"/api/tasks/{task_id}"))["status"]
    return found


def test_tasks_list_prints_the_api_data_with_json_and_a_table_without(
    live_api: Api, taskmanager: Command
) -> None:
    register(live_api, schema=OPEN_SCHEMA)
    ids = create(live_api, 3)

    listed = taskmanager("tasks", "list", "--status", "pending", "--limit", "2", "--json")
    assert listed.code == 0, listed.err
    assert listed.json() == ok(live_api.get("/api/tasks", params={"status": "pending", "limit": 2}))

    shown = taskmanager("tasks", "list", "--type", "demo.echo")
    assert shown.code == 0, shown.err
    assert "3 of 3 tasks" in shown.out
    assert all(str(task_id) in shown.out for task_id in ids)


def test_tasks_show_includes_the_history(live_api: Api, taskmanager: Command) -> None:
    register(live_api, schema=OPEN_SCHEMA)
    (task_id,) = create(live_api, 1)

    shown = taskmanager("tasks", "show", str(task_id), "--json")
    assert shown.code == 0, shown.err
    data = shown.json()
    assert data["id"] == task_id
    assert [event["event"] for event in data["history"]] == ["created"]

    table = taskmanager("tasks", "show", str(task_id))
    assert "history" in table.out
    assert "created" in table.out


def test_retry_cancel_and_delete_by_id(live_api: Api, taskmanager: Command) -> None:
    register(live_api, schema=OPEN_SCHEMA, max_attempts=1)
    first, second = create(live_api, 2)
    fail(live_api, first)

    assert taskmanager("tasks", "retry", str(first)).out.strip() == f"task {first}: pending"
    assert status_of(live_api, first) == "pending"
    cancelled = taskmanager("tasks", "cancel", str(first), str(second), "--reason", "not needed", "--json")
    assert [task["status"] for task in cancelled.json()] == ["cancelled", "cancelled"]
    assert taskmanager("tasks", "delete", str(first)).code == 0
    assert live_api.get(f"/api/tasks/{first}").status_code == 404


def test_an_unknown_id_is_one_line_and_exit_1(live_api: Api, taskmanager: Command) -> None:
    register(live_api, schema=OPEN_SCHEMA)
    (task_id,) = create(live_api, 1)

    shown = taskmanager("tasks", "show", "999999")
    assert shown.code == 1
    assert shown.one_error_line() == "taskmanager: Task not found (404)"

    cancelled = taskmanager("tasks", "cancel", "999999", str(task_id))
    assert cancelled.code == 1
    assert cancelled.one_error_line() == "taskmanager: task 999999: Task not found (404)"
    assert status_of(live_api, task_id) == "cancelled", "the other ids are still acted on"


def test_bulk_retry_acts_on_every_matching_task_and_counts(live_api: Api, taskmanager: Command) -> None:
    register(live_api, schema=OPEN_SCHEMA, max_attempts=1)
    register(live_api, "other.type", schema=OPEN_SCHEMA, max_attempts=1)
    failed = create(live_api, 3)
    for task_id in failed:
        fail(live_api, task_id)
    (pending,) = create(live_api, 1, first=3)
    (other,) = create(live_api, 1, "other.type")

    retried = taskmanager("tasks", "retry", "--status", "failed", "--type", "demo.echo")
    assert retried.code == 0, retried.err
    assert retried.out.strip().endswith("retry: 3 of 3 matching tasks")
    assert [status_of(live_api, task_id) for task_id in failed] == ["pending"] * 3
    assert status_of(live_api, pending) == "pending"
    assert status_of(live_api, other) == "pending"

    cancelled = taskmanager("tasks", "cancel", "--type", "demo.echo", "--json")
    assert cancelled.json() == {"matched": 4, "changed": 4, "refused": []}
    again = taskmanager("tasks", "cancel", "--type", "demo.echo", "--json").json()
    assert (again["matched"], again["changed"], len(again["refused"])) == (4, 0, 4)

    deleted = taskmanager("tasks", "delete", "--type", "demo.echo", "--yes")
    assert deleted.out.strip().endswith("delete: 4 of 4 matching tasks")
    assert ok(live_api.get("/api/tasks"))["total"] == 1


def test_an_action_needs_ids_or_filters(taskmanager: Command) -> None:
    neither = taskmanager("tasks", "retry")
    assert neither.code == 2
    assert "name the tasks to retry" in neither.one_error_line()
    both = taskmanager("tasks", "retry", "1", "--status", "failed")
    assert both.code == 2
    assert "not both" in both.one_error_line()


def test_types_list(live_api: Api, taskmanager: Command) -> None:
    register(live_api, schema=OPEN_SCHEMA, description="echoes")
    listed = taskmanager("types", "list", "--json")
    assert listed.json() == ok(live_api.get("/api/task-types"))
    table = taskmanager("types", "list")
    assert "demo.echo" in table.out
    assert "1 task types" in table.out


def test_enqueue_creates_a_task_with_params_priority_and_delay(live_api: Api, taskmanager: Command) -> None:
    register(live_api, schema=OPEN_SCHEMA)
    created = taskmanager(
        "enqueue", "demo.echo", "--params", '{"n": 7}', "--priority", "5", "--delay", "60", "--json"
    )
    assert created.code == 0, created.err
    data: dict[str, Any] = created.json()
    task = ok(live_api.get(f"/api/tasks/{data['id']}"))
    assert (task["params"], task["priority"], task["status"]) == ({"n": 7}, 5, "pending")
    assert task["run_after"] is not None

    again = taskmanager("enqueue", "demo.echo", "--params", '{"n": 7}')
    assert again.out.strip() == f"duplicate of task {data['id']}: pending"


def test_enqueue_depends_on_earlier_tasks(live_api: Api, taskmanager: Command) -> None:
    register(live_api)
    first = taskmanager("enqueue", "demo.echo", "--params", '{"n": 1}', "--json").json()
    second = taskmanager("enqueue", "demo.echo", "--params", '{"n": 2}', "--json").json()
    waiting = taskmanager(
        "enqueue",
        "demo.echo",
        "--params",
        '{"n": 3}',
        "--depends-on",
        str(first["id"]),
        "--depends-on",
        str(second["id"]),
    )
    assert waiting.code == 0, waiting.err
    assert waiting.out.strip().endswith(": pending (blocked: waits for its dependencies)")
    unknown = taskmanager("enqueue", "demo.echo", "--depends-on", "999999")
    assert unknown.code == 1
    assert "depends_on: task 999999 does not exist" in unknown.err


def test_enqueue_refuses_params_that_are_not_a_json_object(taskmanager: Command) -> None:
    for params in ("{not json", "[1, 2]"):
        refused = taskmanager("enqueue", "demo.echo", "--params", params)
        assert refused.code == 2
        assert "--params" in refused.one_error_line()


def test_enqueue_of_an_unknown_type_is_one_line(taskmanager: Command) -> None:
    refused = taskmanager("enqueue", "no.such.type")
    assert refused.code == 1
    assert refused.one_error_line() == "taskmanager: Task type not found (404)"
