"""API.md B.5: POST /tasks/batch — many creates in one request, each judged on its own."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import TOPIC_SCHEMA, create, fails, ok, register
from tests.conftest import Api

RESULT_FIELDS = {"index", "id", "status", "duplicate", "error"}


def batch(api: Api, tasks: list[Any]) -> Any:
    return ok(api.post("/api/tasks/batch", json={"tasks": tasks}))


def listed(api: Api) -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = ok(api.get("/api/tasks", params={"limit": 1000}))["tasks"]
    return tasks


def test_a_batch_of_valid_tasks_creates_them_all(api: Api) -> None:
    register(api)
    data = batch(api, [{"type": "demo.echo", "params": {"n": n}, "priority": n} for n in range(5)])
    assert set(data) == {"results", "created", "duplicates", "failed"}
    assert (data["created"], data["duplicates"], data["failed"]) == (5, 0, 0)
    assert [r["index"] for r in data["results"]] == [0, 1, 2, 3, 4]
    assert all(set(r) == RESULT_FIELDS for r in data["results"])
    assert all(r["status"] == "pending" and r["error"] is None for r in data["results"])
    by_id = {t["id"]: t for t in listed(api)}
    for n, result in enumerate(data["results"]):
        assert by_id[result["id"]]["params"] == {"n": n}
        assert by_id[result["id"]]["priority"] == n


def test_mixed_items_each_succeed_or_fail_alone(api: Api) -> None:
    register(api, schema=TOPIC_SCHEMA)
    register(api, name="paused")
    ok(api.delete("/api/task-types/paused"))
    existing = create(api, params={"topic": "old"})
    items = [
        {"type": "demo.echo", "params": {"topic": "a"}},
        {"type": "no.such.type", "params": {}},
        {"type": "demo.echo", "params": {"length": 3}},
        {"type": "demo.echo"},
        {"type": "demo.echo", "params": {"topic": "old"}},
        {"type": "paused", "params": {}},
        "not an object",
        {"type": "demo.echo", "params": {"topic": "a"}},
        {"type": "demo.echo", "params": {"topic": "b"}},
    ]
    data = batch(api, items)
    results = data["results"]
    assert [r["index"] for r in results] == list(range(len(items)))
    assert (data["created"], data["duplicates"], data["failed"]) == (2, 2, 5)

    for good in (results[0], results[8]):
        assert good["status"] == "pending"
        assert (good["duplicate"], good["error"]) == (False, None)
    for bad in (results[1], results[2], results[3], results[5], results[6]):
        assert (bad["id"], bad["status"], bad["duplicate"]) == (None, None, False)
        assert isinstance(bad["error"], str)
        assert bad["error"]
    assert results[1]["error"] == "Task type not found"
    assert results[2]["error"] == "Parameter validation failed: $: 'topic' is a required property"
    assert results[3]["error"] == "Validation failed: params: field required"
    assert results[6]["error"] == "Validation failed: body: must be a JSON object"
    assert results[5]["error"] == "Task type is not active"
    # A duplicate of an earlier task, and of an earlier item of the same batch.
    assert (results[4]["id"], results[4]["duplicate"]) == (existing["id"], True)
    assert (results[7]["id"], results[7]["duplicate"]) == (results[0]["id"], True)

    tasks = listed(api)
    assert len(tasks) == 3
    assert sorted(t["params"]["topic"] for t in tasks) == ["a", "b", "old"]


def test_an_all_invalid_batch_writes_nothing(api: Api) -> None:
    register(api, schema=TOPIC_SCHEMA)
    data = batch(api, [{"type": "demo.echo", "params": {}}, {"type": "nope", "params": {}}])
    assert (data["created"], data["duplicates"], data["failed"]) == (0, 0, 2)
    assert listed(api) == []
    history_free = ok(api.get("/api/tasks"))
    assert history_free["total"] == 0


def test_the_queue_limit_counts_items_of_the_same_batch(api: Api) -> None:
    register(api, max_pending=2)
    data = batch(api, [{"type": "demo.echo", "params": {"n": n}} for n in range(4)])
    assert (data["created"], data["duplicates"], data["failed"]) == (2, 0, 2)
    assert [r["error"] for r in data["results"]] == [None, None, "Queue is full", "Queue is full"]
    assert len(listed(api)) == 2


def test_batch_items_get_their_own_settings(api: Api) -> None:
    register(api)
    data = batch(
        api,
        [
            {"type": "demo.echo", "params": {"n": 1}, "delay_seconds": 60},
            {"type": "demo.echo", "params": {"n": 2}, "dedupe_key": "mine", "max_attempts": 1},
        ],
    )
    first, second = (ok(api.get(f"/api/tasks/{r['id']}")) for r in data["results"])
    assert first["run_after"].startswith("2026-01-01T12:01:00")
    assert (second["dedupe_key"], second["max_attempts"]) == ("mine", 1)


def test_each_created_item_has_a_created_event(api: Api) -> None:
    register(api)
    data = batch(api, [{"type": "demo.echo", "params": {"n": n}} for n in range(3)])
    for result in data["results"]:
        events = ok(api.get(f"/api/tasks/{result['id']}/history"))["events"]
        assert [e["event"] for e in events] == ["created"]


@pytest.mark.parametrize(
    "body",
    [{"tasks": []}, {}, {"tasks": {"type": "demo.echo"}}, {"tasks": None}],
)
def test_the_tasks_list_is_required_and_not_empty(api: Api, body: dict[str, Any]) -> None:
    register(api)
    response = api.post("/api/tasks/batch", json=body)
    details = fails(response, 400, "validation_failed", "Validation failed")["details"]
    assert details[0].startswith("tasks:")


def test_at_most_1000_items(api: Api) -> None:
    register(api, dedupe="none")
    item = {"type": "demo.echo", "params": {}}
    fails(api.post("/api/tasks/batch", json={"tasks": [item] * 1001}), 400, "validation_failed")
    assert listed(api) == []
    data = batch(api, [item] * 1000)
    assert data["created"] == 1000
    assert ok(api.get("/api/tasks"))["total"] == 1000
