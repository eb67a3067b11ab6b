"""API.md A.8, B.3 and B.4: which task a claim gets, in what order, under which lease."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import httpx
import pytest

from tests.api.conftest import claim, create, fails, get_task, no_tasks, ok, register, when
from tests.conftest import START, Api

SORT_BY_ERROR = "Invalid sort_by field. Allowed values: created_at, priority, id, attempts"
SORT_ORDER_ERROR = "Invalid sort_order. Allowed values: ASC, DESC"


def drain(api: Api, **fields: Any) -> list[int]:
    """Claim until nothing is left; the ids in the order they were handed out."""
    found: list[int] = []
    while True:
        response = api.post("/api/tasks/claim", json={"worker_id": "w1", **fields})
        if response.status_code == 404:
            fails(response, 404, "no_tasks", "No available tasks")
            return found
        found.append(ok(response)["id"])


def fail(api: Api, task_id: int, worker_id: str = "w1") -> Any:
    return ok(api.post(f"/api/tasks/{task_id}/complete", json={"worker_id": worker_id, "success": False}))


# -- the claimed task -------------------------------------------------------------------------


def test_claim_returns_the_task_under_a_fresh_lease(api: Api) -> None:
    register(api, name="PrismQ.A")
    created = create(api, "PrismQ.A", {"topic": "x"}, priority=4)
    data = claim(api, "worker-1")
    for field in ("id", "type", "params", "attempts", "priority", "max_attempts", "claimed_at"):
        assert field in data
    assert data["id"] == created["id"]
    assert (data["type"], data["params"], data["priority"]) == ("PrismQ.A", {"topic": "x"}, 4)
    assert (data["status"], data["claimed_by"], data["attempts"], data["max_attempts"]) == (
        "claimed",
        "worker-1",
        1,
        3,
    )
    assert when(data["claimed_at"]) == START
    assert when(data["lease_expires_at"]) == START + timedelta(seconds=300)
    assert isinstance(data["lease_token"], str)
    assert len(data["lease_token"]) >= 16
    assert data["message"] == "Task claimed successfully"
    stored = get_task(api, created["id"])
    assert (stored["status"], stored["claimed_by"], stored["attempts"]) == ("claimed", "worker-1", 1)
    assert stored["lease_expires_at"] == data["lease_expires_at"]


def test_nothing_claimable_is_404_no_tasks(api: Api) -> None:
    no_tasks(api)
    register(api)
    no_tasks(api)
    create(api)
    claim(api)
    no_tasks(api, "w2")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "worker_id"),
        ({"worker_id": ""}, "worker_id"),
        ({"worker_id": "w" * 256}, "worker_id"),
        ({"worker_id": 7}, "worker_id"),
        ({"worker_id": "w", "task_type_id": "one"}, "task_type_id"),
        ({"worker_id": "w", "lease_seconds": 0}, "lease_seconds"),
        ({"worker_id": "w", "lease_seconds": 86401}, "lease_seconds"),
        ({"worker_id": "w", "limit": 0}, "limit"),
        ({"worker_id": "w", "limit": 101}, "limit"),
        ({"worker_id": "w", "types": "a"}, "types"),
    ],
)
def test_bad_claim_bodies_are_400(api: Api, body: dict[str, Any], field: str) -> None:
    register(api)
    created = create(api)
    response = api.post("/api/tasks/claim", json=body)
    details = fails(response, 400, "validation_failed", "Validation failed")["details"]
    assert any(entry.startswith(f"{field}:") for entry in details), details
    assert get_task(api, created["id"])["status"] == "pending"


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"task_type": "demo.echo"}, "task_type"),  # a misspelt filter must not claim any type
        ({"type": "demo.echo"}, "type"),
        ({"type_patern": "demo.%"}, "type_patern"),
        ({"limit": 2, "wiat": 5}, "wiat"),
    ],
)
def test_an_unknown_claim_field_is_400_naming_it_and_claims_nothing(
    api: Api, extra: dict[str, Any], field: str
) -> None:
    """API.md B.11: a field the server does not know never widens a claim to other types' work."""
    register(api)
    created = create(api)
    response = api.post("/api/tasks/claim", json={"worker_id": "w", **extra})
    details = fails(response, 400, "validation_failed", "Validation failed")["details"]
    assert details == [f"{field}: unknown field"]
    assert get_task(api, created["id"])["status"] == "pending"


def test_other_routes_keep_ignoring_unknown_fields(api: Api) -> None:
    register(api)
    created = ok(api.post("/api/tasks", json={"type": "demo.echo", "params": {}, "colour": "red"}))
    claimed = claim(api)
    assert claimed["id"] == created["id"]
    body = {"worker_id": "w1", "success": True, "result": {}, "colour": "red"}
    ok(api.post(f"/api/tasks/{created['id']}/complete", json=body))


def test_a_worker_id_of_255_chars_is_accepted(api: Api) -> None:
    register(api)
    create(api)
    assert claim(api, "w" * 255)["claimed_by"] == "w" * 255


# -- order ------------------------------------------------------------------------------------


def test_default_order_is_priority_desc_then_first_in_first_out(api: Api) -> None:
    register(api)
    late_high = create(api, params={"n": 1}, priority=5)
    low = create(api, params={"n": 2}, priority=1)
    api.clock.set(START - timedelta(seconds=30))
    early_high = create(api, params={"n": 3}, priority=5)
    mid = create(api, params={"n": 4}, priority=3)
    api.clock.set(START + timedelta(seconds=60))
    assert drain(api) == [early_high["id"], late_high["id"], mid["id"], low["id"]]


def test_same_priority_and_time_falls_back_to_id(api: Api) -> None:
    register(api)
    made = [create(api, params={"n": n})["id"] for n in range(4)]
    assert drain(api) == made


def make_mixed(api: Api) -> dict[str, int]:
    """Four tasks whose priority, created_at and id orders all differ."""
    register(api)
    made = {"a": create(api, params={"n": "a"}, priority=2)["id"]}  # id 1, t+0
    api.clock.advance(10)
    made["b"] = create(api, params={"n": "b"}, priority=9)["id"]  # id 2, t+10
    api.clock.set(START - timedelta(seconds=10))
    made["c"] = create(api, params={"n": "c"}, priority=2)["id"]  # id 3, t-10
    api.clock.set(START + timedelta(seconds=20))
    made["d"] = create(api, params={"n": "d"}, priority=-1)["id"]  # id 4, t+20
    api.clock.advance(10)
    return made


@pytest.mark.parametrize(
    ("sort_by", "sort_order", "expected"),
    [
        ("priority", None, "dcab"),
        ("priority", "ASC", "dcab"),
        ("priority", "DESC", "bcad"),
        ("priority", "desc", "bcad"),
        ("created_at", None, "cabd"),
        ("created_at", "ASC", "cabd"),
        ("created_at", "DESC", "dbac"),
        ("created_at", "Desc", "dbac"),
        ("id", None, "abcd"),
        ("id", "asc", "abcd"),
        ("id", "DESC", "dcba"),
    ],
)
def test_sort_by_and_sort_order(api: Api, sort_by: str, sort_order: str | None, expected: str) -> None:
    made = make_mixed(api)
    fields: dict[str, Any] = {"sort_by": sort_by}
    if sort_order is not None:
        fields["sort_order"] = sort_order
    assert drain(api, **fields) == [made[letter] for letter in expected]


@pytest.mark.parametrize(("sort_order", "expected"), [(None, "cdba"), ("ASC", "cdba"), ("DESC", "abdc")])
def test_sort_by_attempts_breaks_ties_by_id_in_the_same_direction(
    api: Api, sort_order: str | None, expected: str
) -> None:
    register(api, retry_delay=0, max_attempts=10)
    made = {name: create(api, params={"n": name})["id"] for name in "abcd"}
    # a is claimed and failed twice, b once (each retried at once); c and d never.
    first = claim(api, limit=2, sort_by="id")
    assert [t["id"] for t in first["tasks"]] == [made["a"], made["b"]]
    for task in first["tasks"]:
        fail(api, task["id"])
    assert claim(api, sort_by="id")["id"] == made["a"]
    fail(api, made["a"])
    attempts = {name: get_task(api, made[name])["attempts"] for name in "abcd"}
    assert attempts == {"a": 2, "b": 1, "c": 0, "d": 0}
    fields: dict[str, Any] = {"sort_by": "attempts"}
    if sort_order is not None:
        fields["sort_order"] = sort_order
    assert drain(api, **fields) == [made[letter] for letter in expected]


@pytest.mark.parametrize("sort_by", ["name", "", "PRIORITY", "type", "priority DESC"])
def test_invalid_sort_by_is_400(api: Api, sort_by: str) -> None:
    register(api)
    created = create(api)
    response = api.post("/api/tasks/claim", json={"worker_id": "w1", "sort_by": sort_by})
    fails(response, 400, "validation_failed", SORT_BY_ERROR)
    assert get_task(api, created["id"])["status"] == "pending"


@pytest.mark.parametrize(
    "fields",
    [
        {"sort_order": "sideways"},
        {"sort_by": "priority", "sort_order": "up"},
        {"sort_by": "id", "sort_order": ""},
    ],
)
def test_invalid_sort_order_is_400(api: Api, fields: dict[str, Any]) -> None:
    register(api)
    create(api)
    response = api.post("/api/tasks/claim", json={"worker_id": "w1", **fields})
    fails(response, 400, "validation_failed", SORT_ORDER_ERROR)


# -- filters ----------------------------------------------------------------------------------


def three_types(api: Api) -> dict[str, dict[str, Any]]:
    types = {name: register(api, name=name) for name in ("PrismQ.Script", "PrismQ.Video", "Other")}
    for name in types:
        types[name]["task"] = create(api, name)["id"]
    return types


def test_task_type_id_filter(api: Api) -> None:
    types = three_types(api)
    video = types["PrismQ.Video"]
    assert claim(api, task_type_id=video["id"])["id"] == video["task"]
    no_tasks(api, task_type_id=video["id"])
    no_tasks(api, task_type_id=9999)


def test_task_type_ids_filter(api: Api) -> None:
    types = three_types(api)
    wanted = [types["Other"]["id"], types["PrismQ.Script"]["id"]]
    got = {claim(api, task_type_ids=wanted)["id"] for _ in range(2)}
    assert got == {types["Other"]["task"], types["PrismQ.Script"]["task"]}
    no_tasks(api, task_type_ids=wanted)


def test_types_filter_by_name(api: Api) -> None:
    types = three_types(api)
    assert claim(api, types=["PrismQ.Video", "nope"])["id"] == types["PrismQ.Video"]["task"]
    no_tasks(api, types=["PrismQ.Video"])
    no_tasks(api, types=["prismq.video.x"])


def test_type_pattern_is_a_like_filter(api: Api) -> None:
    types = three_types(api)
    got = {claim(api, type_pattern="PrismQ.%")["id"] for _ in range(2)}
    assert got == {types["PrismQ.Script"]["task"], types["PrismQ.Video"]["task"]}
    no_tasks(api, type_pattern="PrismQ.%")
    assert claim(api, type_pattern="%ther")["id"] == types["Other"]["task"]


def test_without_a_filter_every_active_type_is_claimed_from(api: Api) -> None:
    types = three_types(api)
    assert sorted(drain(api)) == sorted(t["task"] for t in types.values())


def test_inactive_types_are_skipped_even_when_named(api: Api) -> None:
    types = three_types(api)
    ok(api.delete("/api/task-types/PrismQ.Video"))
    video = types["PrismQ.Video"]
    no_tasks(api, task_type_id=video["id"])
    no_tasks(api, types=["PrismQ.Video"])
    assert sorted(drain(api, type_pattern="PrismQ.%")) == [types["PrismQ.Script"]["task"]]


def test_assigned_to_reserves_a_task_for_one_worker(api: Api) -> None:
    register(api)
    reserved = create(api, params={"n": 1}, assigned_to="w2", priority=10)
    assert reserved["assigned_to"] == "w2"
    anyone = create(api, params={"n": 2})
    assert claim(api, "w1")["id"] == anyone["id"]
    no_tasks(api, "w1")
    assert claim(api, "w2")["id"] == reserved["id"]


# -- leases -----------------------------------------------------------------------------------


def test_lease_seconds_overrides_the_claim_timeout(api: Api) -> None:
    register(api, claim_timeout=60)
    create(api)
    data = claim(api, lease_seconds=900)
    assert when(data["lease_expires_at"]) == START + timedelta(seconds=900)
    api.clock.advance(600)
    no_tasks(api, "w2")


def test_an_expired_lease_makes_the_task_claimable_again(api: Api) -> None:
    register(api, claim_timeout=60)
    created = create(api)
    first = claim(api, "w1")
    api.clock.advance(59)
    no_tasks(api, "w2")
    assert get_task(api, created["id"])["status"] == "claimed"
    api.clock.advance(2)
    second = claim(api, "w2")
    assert second["id"] == created["id"]
    assert second["attempts"] == 2
    assert second["claimed_by"] == "w2"
    assert second["lease_token"] != first["lease_token"]
    assert when(second["claimed_at"]) == START + timedelta(seconds=61)


def test_an_expired_lease_reads_as_pending(api: Api) -> None:
    register(api, claim_timeout=60)
    created = create(api)
    claim(api, "w1")
    api.clock.advance(61)
    task = get_task(api, created["id"])
    assert (task["status"], task["claimed_by"], task["attempts"]) == ("pending", None, 1)
    assert task["lease_expires_at"] is None


def test_expiry_after_the_last_attempt_fails_the_task(api: Api) -> None:
    register(api, claim_timeout=10, max_attempts=2)
    created = create(api)
    claim(api, "w1")
    api.clock.advance(11)
    assert claim(api, "w2")["attempts"] == 2
    api.clock.advance(11)
    no_tasks(api, "w3")
    task = get_task(api, created["id"])
    assert task["status"] == "failed"
    assert task["error_message"] == "Claim timeout exceeded after 2 attempts"
    assert task["attempts"] == 2


def test_expiry_with_a_single_attempt_fails_on_read(api: Api) -> None:
    register(api, claim_timeout=10)
    created = create(api, max_attempts=1)
    claim(api)
    api.clock.advance(10.5)
    task = get_task(api, created["id"])
    assert task["status"] == "failed"
    assert task["error_message"] == "Claim timeout exceeded after 1 attempts"


# -- many at once ---------------------------------------------------------------------------


def test_limit_claims_a_batch(api: Api) -> None:
    register(api)
    made = [create(api, params={"n": n}, priority=n)["id"] for n in range(3)]
    data = claim(api, limit=2)
    assert set(data) == {"tasks", "count"}
    assert data["count"] == 2
    assert [t["id"] for t in data["tasks"]] == [made[2], made[1]]
    for task in data["tasks"]:
        assert task["status"] == "claimed"
        assert task["message"] == "Task claimed successfully"
    assert len({t["lease_token"] for t in data["tasks"]}) == 2
    rest = claim(api, limit=100)
    assert ([t["id"] for t in rest["tasks"]], rest["count"]) == ([made[0]], 1)


def test_limit_with_nothing_claimable_is_200_and_empty(api: Api) -> None:
    register(api)
    assert claim(api, limit=5) == {"tasks": [], "count": 0}


def test_racing_claimers_never_get_the_same_task(api: Api) -> None:
    register(api, dedupe="none")
    for _ in range(6):
        create(api)
    racers = 12
    barrier = threading.Barrier(racers)

    def race(n: int) -> httpx.Response:
        with api.new_client(dict(api.headers)) as client:
            barrier.wait()
            return client.post("/api/tasks/claim", json={"worker_id": f"w{n}"})

    with ThreadPoolExecutor(racers) as pool:
        responses = list(pool.map(race, range(racers)))
    won = [ok(r) for r in responses if r.status_code == 200]
    for lost in (r for r in responses if r.status_code != 200):
        fails(lost, 404, "no_tasks")
    assert len(won) == 6
    assert len({data["id"] for data in won}) == 6
    claimed = ok(api.get("/api/tasks", params={"status": "claimed"}))["tasks"]
    assert {t["id"]: t["claimed_by"] for t in claimed} == {d["id"]: d["claimed_by"] for d in won}
