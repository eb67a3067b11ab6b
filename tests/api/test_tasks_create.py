"""API.md A.6 and B.1: creating tasks, parameter validation, dedupe scopes and queue limits."""

from __future__ import annotations

import hashlib
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.api.conftest import (
    TOPIC_SCHEMA,
    claim,
    create,
    fails,
    get_task,
    ok,
    register,
    when,
)
from tests.conftest import START, Api, ServerFactory

TASK_FIELDS = {
    "id",
    "type",
    "type_id",
    "status",
    "params",
    "result",
    "error_message",
    "priority",
    "progress",
    "attempts",
    "max_attempts",
    "claimed_by",
    "claimed_at",
    "lease_expires_at",
    "completed_at",
    "run_after",
    "created_at",
    "updated_at",
    "dedupe_key",
}
DUPLICATE_FIELDS = {"id", "type", "status", "dedupe_key", "duplicate", "deduplicated", "message"}


def key_of(type_name: str, params: Any) -> str:
    body = json.dumps(params, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(f"{type_name}\0{body}".encode()).hexdigest()


def post(api: Api, **body: Any) -> httpx.Response:
    return api.client.post("/api/tasks", json=body)


def total(api: Api) -> int:
    count: int = ok(api.get("/api/tasks"))["total"]
    return count


# -- a new task -------------------------------------------------------------------------------


def test_new_task_has_every_task_field(api: Api) -> None:
    type_data = register(api, name="PrismQ.Script.Generate", schema=TOPIC_SCHEMA)
    data = create(api, "PrismQ.Script.Generate", {"topic": "AI"}, priority=5)
    assert set(data) >= TASK_FIELDS
    assert data["type"] == "PrismQ.Script.Generate"
    assert data["type_id"] == type_data["id"]
    assert data["status"] == "pending"
    assert data["params"] == {"topic": "AI"}
    assert data["priority"] == 5
    assert (data["attempts"], data["max_attempts"], data["progress"]) == (0, 3, 0)
    assert data["duplicate"] is False
    assert data["deduplicated"] is False
    assert data["message"] == "Task created successfully"
    assert when(data["created_at"]) == START
    assert data["result"] is None
    assert data["claimed_by"] is None
    assert data["run_after"] is None
    assert get_task(api, data["id"])["params"] == {"topic": "AI"}


def test_priority_defaults_to_zero_and_may_be_negative(api: Api) -> None:
    register(api)
    assert create(api, params={"a": 1})["priority"] == 0
    assert create(api, params={"a": 2}, priority=-7)["priority"] == -7


def test_empty_params_are_allowed(api: Api) -> None:
    register(api)
    data = create(api, params={})
    assert data["params"] == {}
    assert data["dedupe_key"] == key_of("demo.echo", {})


def test_per_task_max_attempts_override(api: Api) -> None:
    register(api, max_attempts=3)
    assert create(api, params={"a": 1}, max_attempts=1)["max_attempts"] == 1
    assert create(api, params={"a": 2})["max_attempts"] == 3
    body = fails(post(api, type="demo.echo", params={}, max_attempts=0), 400, "validation_failed")
    assert body["details"][0].startswith("max_attempts:")


# -- invalid bodies ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"params": {}}, "type"),
        ({"type": "demo.echo"}, "params"),
        ({"type": "demo.echo", "params": None}, "params"),
        ({"type": "demo.echo", "params": [1]}, "params"),
        ({"type": "demo.echo", "params": "{}"}, "params"),
        ({"type": 5, "params": {}}, "type"),
        ({"type": "", "params": {}}, "type"),
        ({"type": "demo.echo", "params": {}, "priority": "high"}, "priority"),
        ({"type": "demo.echo", "params": {}, "priority": True}, "priority"),
        ({"type": "demo.echo", "params": {}, "priority": 1.5}, "priority"),
    ],
)
def test_missing_or_mistyped_fields_are_validation_failed(api: Api, body: dict[str, Any], field: str) -> None:
    register(api)
    response = fails(api.post("/api/tasks", json=body), 400, "validation_failed", "Validation failed")
    assert any(entry.startswith(f"{field}:") for entry in response["details"]), response["details"]
    assert total(api) == 0


def test_unknown_type_is_404(api: Api) -> None:
    fails(post(api, type="no.such.type", params={}), 404, "not_found", "Task type not found")


def test_inactive_type_is_400(api: Api) -> None:
    register(api)
    ok(api.delete("/api/task-types/demo.echo"))
    fails(post(api, type="demo.echo", params={}), 400, "validation_failed", "Task type is not active")


def test_params_failing_the_schema_list_every_violation_with_its_path(api: Api) -> None:
    register(api, schema=TOPIC_SCHEMA)
    response = post(api, type="demo.echo", params={"length": 0})
    body = fails(response, 400, "validation_failed")
    details = body["details"]
    assert len(details) == 2
    assert details[0].startswith("$: ")
    assert "'topic' is a required property" in details[0]
    assert details[1].startswith("$.length: ")
    assert "minimum of 1" in details[1]
    assert body["message"] == "Parameter validation failed: " + "; ".join(details)
    assert total(api) == 0


def test_nested_violations_name_the_nested_path(api: Api) -> None:
    schema = {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "integer"}}}}
        },
    }
    register(api, schema=schema)
    body = fails(
        post(api, type="demo.echo", params={"items": [{"n": 1}, {"n": "x"}]}), 400, "validation_failed"
    )
    assert len(body["details"]) == 1
    assert body["details"][0].startswith("$.items[1].n: ")
    assert body["message"].startswith("Parameter validation failed: $.items[1].n: ")


def test_schema_validation_can_be_switched_off(make_api: ServerFactory) -> None:
    server = make_api(enable_schema_validation=False)
    register(server, schema=TOPIC_SCHEMA)
    assert create(server, params={"length": "not a number"})["status"] == "pending"


# -- the dedupe key ---------------------------------------------------------------------------


def test_the_worked_dedupe_example_of_the_contract(api: Api) -> None:
    register(api, name="PrismQ.Script.Generate", schema=TOPIC_SCHEMA)
    raw = (
        b'{"type":"PrismQ.Script.Generate",'
        b'"params":{"topic":"AI in Healthcare","style":"formal","length":1500}}'
    )
    response = api.post("/api/tasks", content=raw, headers={"Content-Type": "application/json"})
    assert ok(response)["dedupe_key"] == "44ff8188369983e6a8010c424790a4e9326c3db1f84539bfcb356b8927316d71"


def test_the_key_keeps_key_order_and_non_ascii_as_received(api: Api) -> None:
    register(api)
    first = create(api, params={"b": 1, "a": "café ☕"})
    assert first["dedupe_key"] == key_of("demo.echo", {"b": 1, "a": "café ☕"})
    # The same members in another order make another key, so another task (PrismQ's behaviour).
    second = create(api, params={"a": "café ☕", "b": 1})
    assert second["duplicate"] is False
    assert second["id"] != first["id"]
    assert second["dedupe_key"] == key_of("demo.echo", {"a": "café ☕", "b": 1})


def test_an_identical_create_returns_the_existing_task(api: Api) -> None:
    register(api)
    first = create(api, params={"topic": "x"}, priority=3)
    again = create(api, params={"topic": "x"}, priority=9)
    assert set(again) == DUPLICATE_FIELDS
    assert again == {
        "id": first["id"],
        "type": "demo.echo",
        "status": "pending",
        "dedupe_key": first["dedupe_key"],
        "duplicate": True,
        "deduplicated": True,
        "message": "Task already exists (deduplicated)",
    }
    assert total(api) == 1
    assert get_task(api, first["id"])["priority"] == 3


def test_the_same_params_under_another_type_are_not_a_duplicate(api: Api) -> None:
    register(api, name="a")
    register(api, name="b")
    one = create(api, "a", {"x": 1})
    two = create(api, "b", {"x": 1})
    assert two["duplicate"] is False
    assert two["id"] != one["id"]


def test_dedupe_all_reports_the_current_status_even_when_finished(api: Api) -> None:
    register(api)
    first = create(api, params={"n": 1})
    claim(api)
    assert create(api, params={"n": 1})["status"] == "claimed"
    ok(api.post(f"/api/tasks/{first['id']}/complete", json={"worker_id": "w1", "success": True}))
    again = create(api, params={"n": 1})
    assert (again["id"], again["status"], again["duplicate"]) == (first["id"], "completed", True)
    assert total(api) == 1


def test_dedupe_active_allows_a_new_task_once_the_old_one_ended(api: Api) -> None:
    register(api, dedupe="active")
    first = create(api, params={"n": 1})
    assert create(api, params={"n": 1})["id"] == first["id"]
    claim(api)
    during = create(api, params={"n": 1})
    assert (during["id"], during["status"], during["duplicate"]) == (first["id"], "claimed", True)
    ok(api.post(f"/api/tasks/{first['id']}/complete", json={"worker_id": "w1", "success": True}))
    second = create(api, params={"n": 1})
    assert second["duplicate"] is False
    assert second["id"] != first["id"]
    assert second["dedupe_key"] == first["dedupe_key"]
    # The new task is live again, so it deduplicates; a cancel frees the key once more.
    assert create(api, params={"n": 1})["id"] == second["id"]
    ok(api.post(f"/api/tasks/{second['id']}/cancel", json={}))
    third = create(api, params={"n": 1})
    assert third["id"] not in (first["id"], second["id"])
    assert total(api) == 3


def test_dedupe_none_always_creates(api: Api) -> None:
    register(api, dedupe="none")
    ids = {create(api, params={"n": 1})["id"] for _ in range(3)}
    assert len(ids) == 3
    tasks = ok(api.get("/api/tasks"))["tasks"]
    assert {t["dedupe_key"] for t in tasks} == {key_of("demo.echo", {"n": 1})}


def test_a_custom_dedupe_key_replaces_the_computed_one(api: Api) -> None:
    register(api)
    first = create(api, params={"n": 1}, dedupe_key="order-42")
    assert first["dedupe_key"] == "order-42"
    again = create(api, params={"n": 2}, dedupe_key="order-42")
    assert (again["id"], again["duplicate"]) == (first["id"], True)
    other = create(api, params={"n": 1}, dedupe_key="order-43")
    assert other["duplicate"] is False
    # The computed key of {"n": 1} is not taken by the custom-keyed task.
    plain = create(api, params={"n": 1})
    assert plain["duplicate"] is False
    assert total(api) == 3


@pytest.mark.parametrize("key", ["", "k" * 256, 42])
def test_a_custom_dedupe_key_must_be_a_short_string(api: Api, key: Any) -> None:
    register(api)
    body = fails(post(api, type="demo.echo", params={}, dedupe_key=key), 400, "validation_failed")
    assert body["details"][0].startswith("dedupe_key:")


def test_a_custom_dedupe_key_of_255_chars_is_kept(api: Api) -> None:
    register(api)
    assert create(api, params={}, dedupe_key="k" * 255)["dedupe_key"] == "k" * 255


def test_racing_identical_creates_all_get_200_and_the_same_id(api: Api) -> None:
    register(api, schema=TOPIC_SCHEMA)
    racers = 12
    barrier = threading.Barrier(racers)

    def race(_: int) -> httpx.Response:
        with api.new_client(dict(api.headers)) as client:
            barrier.wait()
            return client.post("/api/tasks", json={"type": "demo.echo", "params": {"topic": "same"}})

    with ThreadPoolExecutor(racers) as pool:
        responses = list(pool.map(race, range(racers)))
    datas = [ok(response) for response in responses]
    assert len({data["id"] for data in datas}) == 1
    assert sorted(data["duplicate"] for data in datas) == [False] + [True] * (racers - 1)
    assert total(api) == 1


def test_racing_creates_of_different_tasks_all_succeed(api: Api) -> None:
    register(api)
    racers = 10
    barrier = threading.Barrier(racers)

    def race(n: int) -> httpx.Response:
        with api.new_client(dict(api.headers)) as client:
            barrier.wait()
            return client.post("/api/tasks", json={"type": "demo.echo", "params": {"n": n}})

    with ThreadPoolExecutor(racers) as pool:
        datas = [ok(response) for response in pool.map(race, range(racers))]
    assert len({data["id"] for data in datas}) == racers
    assert total(api) == racers


# -- queue limit ------------------------------------------------------------------------------


def test_max_pending_refuses_creates_beyond_it_with_429(api: Api) -> None:
    register(api, max_pending=2)
    create(api, params={"n": 1})
    create(api, params={"n": 2})
    fails(post(api, type="demo.echo", params={"n": 3}), 429, "queue_full", "Queue is full")
    assert total(api) == 2
    # A duplicate of a queued task is still answered with that task.
    assert create(api, params={"n": 1})["duplicate"] is True
    # Claiming one frees a place: only pending tasks count.
    claim(api)
    assert create(api, params={"n": 3})["status"] == "pending"
    fails(post(api, type="demo.echo", params={"n": 4}), 429, "queue_full", "Queue is full")


def test_max_pending_is_per_type(api: Api) -> None:
    register(api, name="small", max_pending=1)
    register(api, name="big")
    create(api, "small", {"n": 1})
    fails(post(api, type="small", params={"n": 2}), 429, "queue_full")
    assert create(api, "big", {"n": 2})["status"] == "pending"


# -- what "existing" means once timestamps have passed ------------------------------------------


def test_a_duplicate_of_an_expired_task_reports_it_cancelled(api: Api) -> None:
    register(api)
    first = create(api, params={"n": 1}, ttl_seconds=5)
    api.clock.advance(6)
    again = create(api, params={"n": 1})
    assert (again["id"], again["duplicate"], again["status"]) == (first["id"], True, "cancelled")


def test_dedupe_active_ignores_a_task_that_has_expired(api: Api) -> None:
    register(api, dedupe="active")
    first = create(api, params={"n": 1}, ttl_seconds=5)
    api.clock.advance(6)
    again = create(api, params={"n": 1})
    assert again["duplicate"] is False
    assert again["id"] != first["id"]


def test_dedupe_active_ignores_a_task_failed_by_its_lease_timing_out(api: Api) -> None:
    register(api, dedupe="active", claim_timeout=10, max_attempts=1)
    first = create(api, params={"n": 1})
    claim(api)
    api.clock.advance(11)
    again = create(api, params={"n": 1})
    assert again["duplicate"] is False
    assert again["id"] != first["id"]
    assert get_task(api, first["id"])["status"] == "failed"


def test_max_pending_does_not_count_expired_tasks(api: Api) -> None:
    register(api, max_pending=1)
    create(api, params={"n": 1}, ttl_seconds=5)
    fails(post(api, type="demo.echo", params={"n": 2}), 429, "queue_full")
    api.clock.advance(6)
    assert create(api, params={"n": 2})["status"] == "pending"
