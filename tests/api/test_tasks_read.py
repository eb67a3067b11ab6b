"""API.md A.7: GET /tasks (filters, paging, newest first) and GET /tasks/{id}."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.api.conftest import claim, create, fails, get_task, ok, register, when
from tests.conftest import START, Api

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


def ids(api: Api, **params: Any) -> list[int]:
    return [task["id"] for task in ok(api.get("/api/tasks", params=params))["tasks"]]


def complete(api: Api, task_id: int, worker_id: str = "w1", success: bool = True) -> None:
    ok(api.post(f"/api/tasks/{task_id}/complete", json={"worker_id": worker_id, "success": success}))


# -- one task ---------------------------------------------------------------------------------


def test_get_one_task_has_every_field(api: Api) -> None:
    register(api, name="PrismQ.A", max_attempts=4)
    created = create(api, "PrismQ.A", {"x": [1, {"y": "ü"}]}, priority=2)
    data = get_task(api, created["id"])
    assert set(data) >= TASK_FIELDS
    assert data["id"] == created["id"]
    assert data["type"] == "PrismQ.A"
    assert data["params"] == {"x": [1, {"y": "ü"}]}
    assert (data["status"], data["priority"], data["max_attempts"]) == ("pending", 2, 4)
    assert data["dedupe_key"] == created["dedupe_key"]
    assert when(data["created_at"]) == START
    assert when(data["updated_at"]) == START


def test_get_reflects_later_changes(api: Api) -> None:
    register(api)
    created = create(api)
    claim(api, "w9")
    api.clock.advance(5)
    data = get_task(api, created["id"])
    assert (data["status"], data["claimed_by"], data["attempts"]) == ("claimed", "w9", 1)
    assert when(data["claimed_at"]) == START
    assert when(data["updated_at"]) == START


@pytest.mark.parametrize("task_id", ["999", "0", "abc", "-1", "1.5", "99999999999999999999999"])
def test_unknown_task_is_404(api: Api, task_id: str) -> None:
    register(api)
    create(api)
    fails(api.get(f"/api/tasks/{task_id}"), 404, "not_found", "Task not found")


# -- the list ---------------------------------------------------------------------------------


def test_list_shape_and_defaults(api: Api) -> None:
    register(api)
    created = create(api)
    data = ok(api.get("/api/tasks"))
    assert set(data) == {"tasks", "items", "count", "total", "limit", "offset"}
    assert (data["count"], data["total"], data["limit"], data["offset"]) == (1, 1, 50, 0)
    assert data["items"] == data["tasks"]
    assert data["tasks"][0]["id"] == created["id"]
    assert set(data["tasks"][0]) >= TASK_FIELDS


def test_empty_list(api: Api) -> None:
    data = ok(api.get("/api/tasks"))
    assert (data["tasks"], data["items"], data["count"], data["total"]) == ([], [], 0, 0)


def test_newest_first_by_created_at_then_id(api: Api) -> None:
    register(api)
    first = create(api, params={"n": 1})
    api.clock.advance(10)
    second = create(api, params={"n": 2})
    third = create(api, params={"n": 3})
    # A task written later but stamped earlier sorts by its created_at, not its id.
    api.clock.set(START - timedelta(hours=1))
    oldest = create(api, params={"n": 0})
    assert ids(api) == [third["id"], second["id"], first["id"], oldest["id"]]


def test_status_filter_takes_one_value_or_a_comma_list(api: Api) -> None:
    register(api)
    done, working, waiting = (create(api, params={"n": n}) for n in range(3))
    claim(api)
    complete(api, done["id"])
    claim(api)
    assert ids(api, status="pending") == [waiting["id"]]
    assert ids(api, status="claimed") == [working["id"]]
    assert ids(api, status="completed") == [done["id"]]
    assert ids(api, status="failed") == []
    assert sorted(ids(api, status="pending,claimed")) == sorted([waiting["id"], working["id"]])
    both = ok(api.get("/api/tasks", params={"status": "completed,pending"}))
    assert both["total"] == 2


@pytest.mark.parametrize("status", ["done", "pending,bogus", "PENDING"])
def test_unknown_status_is_400(api: Api, status: str) -> None:
    body = fails(
        api.get("/api/tasks", params={"status": status}), 400, "validation_failed", "Validation failed"
    )
    assert body["details"][0].startswith("status:")


def test_type_filter_is_exact_without_percent_and_like_with_it(api: Api) -> None:
    for name in ("PrismQ.Script.Generate", "PrismQ.Script.Review", "PrismQ.Video", "Other_x", "OtherAx"):
        register(api, name=name)
    made = {name: create(api, name)["id"] for name in ("PrismQ.Script.Generate", "PrismQ.Script.Review")}
    made["PrismQ.Video"] = create(api, "PrismQ.Video")["id"]
    made["Other_x"] = create(api, "Other_x")["id"]
    made["OtherAx"] = create(api, "OtherAx")["id"]
    assert ids(api, type="PrismQ.Video") == [made["PrismQ.Video"]]
    assert ids(api, type="PrismQ") == []
    # Without % an underscore is a plain character, not a LIKE wildcard.
    assert ids(api, type="Other_x") == [made["Other_x"]]
    assert sorted(ids(api, type="PrismQ.Script.%")) == sorted(
        [made["PrismQ.Script.Generate"], made["PrismQ.Script.Review"]]
    )
    assert ids(api, type="%.Review") == [made["PrismQ.Script.Review"]]
    assert len(ids(api, type="%")) == 5
    assert ids(api, type="Nothing%") == []


def test_worker_id_filter(api: Api) -> None:
    register(api)
    a = create(api, params={"n": 1})
    b = create(api, params={"n": 2})
    create(api, params={"n": 3})
    claim(api, "alice")
    claim(api, "bob")
    assert ids(api, worker_id="alice") == [a["id"]]
    assert ids(api, worker_id="bob") == [b["id"]]
    assert ids(api, worker_id="carol") == []


def test_filters_combine(api: Api) -> None:
    register(api, name="a")
    register(api, name="b")
    a1 = create(api, "a", {"n": 1})
    create(api, "a", {"n": 2})
    create(api, "b", {"n": 1})
    claim(api, "w1", types=["a"])
    data = ok(api.get("/api/tasks", params={"type": "a", "status": "claimed", "worker_id": "w1"}))
    assert [t["id"] for t in data["tasks"]] == [a1["id"]]
    assert data["total"] == 1


def test_limit_and_offset_page_through_the_matches(api: Api) -> None:
    register(api)
    made = [create(api, params={"n": n})["id"] for n in range(5)]
    newest_first = list(reversed(made))
    page = ok(api.get("/api/tasks", params={"limit": 2}))
    assert [t["id"] for t in page["tasks"]] == newest_first[:2]
    assert (page["count"], page["total"], page["limit"], page["offset"]) == (2, 5, 2, 0)
    page = ok(api.get("/api/tasks", params={"limit": 2, "offset": 2}))
    assert [t["id"] for t in page["tasks"]] == newest_first[2:4]
    page = ok(api.get("/api/tasks", params={"limit": 2, "offset": 4}))
    assert [t["id"] for t in page["tasks"]] == newest_first[4:]
    assert (page["count"], page["total"], page["offset"]) == (1, 5, 4)
    page = ok(api.get("/api/tasks", params={"offset": 50}))
    assert (page["count"], page["total"]) == (0, 5)


def test_total_counts_every_match_not_the_page(api: Api) -> None:
    register(api, dedupe="none")
    for _ in range(60):
        create(api)
    data = ok(api.get("/api/tasks"))
    assert (data["count"], data["total"]) == (50, 60)
    assert ok(api.get("/api/tasks", params={"limit": 1000}))["count"] == 60


@pytest.mark.parametrize(
    ("param", "value"),
    [("limit", "0"), ("limit", "1001"), ("limit", "-5"), ("limit", "ten"), ("offset", "-1"), ("offset", "x")],
)
def test_limit_and_offset_out_of_bounds_are_400(api: Api, param: str, value: str) -> None:
    body = fails(api.get("/api/tasks", params={param: value}), 400, "validation_failed", "Validation failed")
    assert body["details"][0].startswith(f"{param}:")


@pytest.mark.parametrize("limit", ["1", "1000"])
def test_limit_bounds_are_inclusive(api: Api, limit: str) -> None:
    register(api)
    create(api)
    assert ok(api.get("/api/tasks", params={"limit": limit}))["limit"] == int(limit)
