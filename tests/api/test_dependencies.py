"""API.md B.5: dependencies over HTTP — ``depends_on`` on create, ``depends_on_index`` in a batch,
``depends_on`` and ``blocked`` on the task object, claims that skip blocked tasks, cascades."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import claim, create, fails, ok, register
from tests.conftest import Api


def task(api: Api, task_id: int) -> Any:
    return ok(api.get(f"/api/tasks/{task_id}"))


def complete(api: Api, task_id: int, success: bool = True) -> Any:
    return ok(api.post(f"/api/tasks/{task_id}/complete", json={"worker_id": "w1", "success": success}))


def test_a_dependant_is_blocked_until_its_dependency_completes(api: Api) -> None:
    register(api)
    first = create(api, params={"n": 1})
    second = create(api, params={"n": 2}, depends_on=[first["id"]], priority=5)
    assert (second["depends_on"], second["blocked"], second["status"]) == ([first["id"]], True, "pending")
    assert (first["depends_on"], first["blocked"]) == ([], False)
    listed = ok(api.get("/api/tasks", params={"status": "pending"}))["tasks"]
    assert {t["id"]: t["blocked"] for t in listed} == {first["id"]: False, second["id"]: True}

    assert claim(api)["id"] == first["id"]  # the higher priority one waits
    fails(api.post("/api/tasks/claim", json={"worker_id": "w1"}), 404, "no_tasks")
    complete(api, first["id"])
    assert task(api, second["id"])["blocked"] is False
    assert claim(api)["id"] == second["id"]


def test_a_final_failure_cancels_the_dependants(api: Api) -> None:
    register(api, max_attempts=1)
    first = create(api, params={"n": 1})
    second = create(api, params={"n": 2}, depends_on=[first["id"]])
    third = create(api, params={"n": 3}, depends_on=[second["id"]])
    claim(api)
    complete(api, first["id"], success=False)
    assert task(api, second["id"])["error_message"] == f"dependency {first['id']} failed"
    found = task(api, third["id"])
    assert (found["status"], found["error_message"]) == ("cancelled", f"dependency {second['id']} cancelled")
    events = [e["event"] for e in ok(api.get(f"/api/tasks/{third['id']}/history"))["events"]]
    assert events == ["created", "cancelled"]


def test_an_unknown_dependency_is_400_naming_the_field(api: Api) -> None:
    register(api)
    body = fails(
        api.post("/api/tasks", json={"type": "demo.echo", "params": {}, "depends_on": [424242]}),
        400,
        "validation_failed",
    )
    assert body["details"] == ["depends_on: task 424242 does not exist"]
    too_many = {"type": "demo.echo", "params": {}, "depends_on": list(range(1, 102))}
    assert fails(api.post("/api/tasks", json=too_many), 400, "validation_failed")["details"][0].startswith(
        "depends_on"
    )
    alone = {"type": "demo.echo", "params": {}, "depends_on_index": [0]}
    assert fails(api.post("/api/tasks", json=alone), 400, "validation_failed")["details"] == [
        "depends_on_index: only in a batch (POST /tasks/batch)"
    ]


def test_a_batch_names_earlier_items_by_index(api: Api) -> None:
    register(api)
    items = [
        {"type": "demo.echo", "params": {"step": "fetch"}},
        {"type": "demo.echo", "params": {"step": "parse"}, "depends_on_index": [0]},
        {"type": "demo.echo", "params": {"step": "late"}, "depends_on_index": [3]},
        {"type": "demo.echo", "params": {"step": "store"}, "depends_on_index": [0, 1]},
    ]
    data = ok(api.post("/api/tasks/batch", json={"tasks": items}))
    results = data["results"]
    assert (data["created"], data["failed"]) == (3, 1)
    assert results[2]["error"] == "Validation failed: depends_on_index: 3 is not an earlier item of the batch"
    fetch, parse, store = results[0]["id"], results[1]["id"], results[3]["id"]
    assert task(api, store)["depends_on"] == [fetch, parse]
    assert claim(api)["id"] == fetch
    complete(api, fetch)
    assert claim(api)["id"] == parse


def test_retrying_a_cancelled_dependant_after_its_dependency_completed(api: Api) -> None:
    register(api)
    first = create(api, params={"n": 1})
    second = create(api, params={"n": 2}, depends_on=[first["id"]])
    ok(api.post(f"/api/tasks/{first['id']}/cancel", json={}))
    assert task(api, second["id"])["status"] == "cancelled"
    ok(api.post(f"/api/tasks/{first['id']}/retry"))
    assert task(api, second["id"])["status"] == "cancelled"  # not revived
    waiting = ok(api.post(f"/api/tasks/{second['id']}/retry"))
    assert (waiting["status"], waiting["blocked"]) == ("pending", True)
    claim(api)
    complete(api, first["id"])
    assert claim(api)["id"] == second["id"]
