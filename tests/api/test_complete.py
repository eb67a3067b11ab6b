"""API.md A.9, B.2 and B.3: completing a claimed task — success, retry with backoff, failure, leases."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.api.conftest import claim, create, fails, get_task, no_tasks, ok, register, when
from tests.conftest import START, Api

COMPLETE_FIELDS = {"id", "status", "message", "attempts", "run_after"}


def complete(api: Api, task_id: int, **body: Any) -> Any:
    return api.post(f"/api/tasks/{task_id}/complete", json={"worker_id": "w1", **body})


def claimed_task(api: Api, **settings: Any) -> dict[str, Any]:
    register(api, **settings)
    create(api, params={"n": 1})
    data: dict[str, Any] = claim(api, "w1")
    return data


# -- success ----------------------------------------------------------------------------------


def test_success_completes_and_stores_the_result(api: Api) -> None:
    task = claimed_task(api)
    api.clock.advance(7)
    data = ok(complete(api, task["id"], success=True, result={"words": 3, "text": "ünï"}))
    assert set(data) == COMPLETE_FIELDS
    assert (data["id"], data["status"], data["attempts"]) == (task["id"], "completed", 1)
    assert isinstance(data["message"], str)
    assert data["run_after"] is None
    stored = get_task(api, task["id"])
    assert stored["status"] == "completed"
    assert stored["result"] == {"words": 3, "text": "ünï"}
    assert when(stored["completed_at"]) == START + timedelta(seconds=7)
    assert stored["lease_expires_at"] is None
    no_tasks(api, "w2")


@pytest.mark.parametrize(
    "result", [[1, "two", None], "plain text", 42, 2.5, True, None, {"deep": {"a": [{}]}}]
)
def test_any_json_result_is_stored_as_sent(api: Api, result: Any) -> None:
    task = claimed_task(api)
    ok(complete(api, task["id"], success=True, result=result))
    assert get_task(api, task["id"])["result"] == result


def test_a_large_result_is_stored_whole(api: Api) -> None:
    task = claimed_task(api)
    result = {"text": "ü" * 150_000, "rows": list(range(20_000))}
    ok(complete(api, task["id"], success=True, result=result))
    assert get_task(api, task["id"])["result"] == result


def test_result_is_optional(api: Api) -> None:
    task = claimed_task(api)
    assert ok(complete(api, task["id"], success=True))["status"] == "completed"
    assert get_task(api, task["id"])["result"] is None


# -- failure and retry ------------------------------------------------------------------------


def test_failure_with_attempts_left_goes_back_to_pending_after_the_backoff(api: Api) -> None:
    task = claimed_task(api, retry_delay=10, max_attempts=3)
    api.clock.advance(5)
    now = api.clock.now()
    data = ok(complete(api, task["id"], success=False, error="boom"))
    assert set(data) == COMPLETE_FIELDS
    assert (data["status"], data["attempts"]) == ("pending (retry)", 1)
    delay = (when(data["run_after"]) - now).total_seconds()
    assert 9 <= delay <= 11
    stored = get_task(api, task["id"])
    assert (stored["status"], stored["error_message"], stored["claimed_by"]) == ("pending", "boom", None)
    assert stored["lease_expires_at"] is None
    assert stored["run_after"] == data["run_after"]
    no_tasks(api)
    api.clock.set(when(data["run_after"]))
    again = claim(api, "w2")
    assert (again["id"], again["attempts"]) == (task["id"], 2)


def test_backoff_doubles_per_attempt(api: Api) -> None:
    task = claimed_task(api, retry_delay=10, max_attempts=5)
    expected = [10, 20, 40, 80]
    for attempt, base in enumerate(expected, start=1):
        now = api.clock.now()
        data = ok(complete(api, task["id"], success=False, error=f"try {attempt}"))
        assert data["attempts"] == attempt
        delay = (when(data["run_after"]) - now).total_seconds()
        assert base * 0.9 <= delay <= base * 1.1, (attempt, delay)
        api.clock.set(when(data["run_after"]))
        assert claim(api)["attempts"] == attempt + 1


def test_backoff_is_capped_by_retry_max_delay(api: Api) -> None:
    task = claimed_task(api, retry_delay=100, retry_max_delay=150, max_attempts=5)
    first = ok(complete(api, task["id"], success=False))
    assert 90 <= (when(first["run_after"]) - START).total_seconds() <= 110
    api.clock.set(when(first["run_after"]))
    claim(api)
    now = api.clock.now()
    second = ok(complete(api, task["id"], success=False))
    assert 135 <= (when(second["run_after"]) - now).total_seconds() <= 165


def test_retry_delay_zero_retries_at_once(api: Api) -> None:
    task = claimed_task(api, retry_delay=0)
    data = ok(complete(api, task["id"], success=False, error="again"))
    assert when(data["run_after"]) == START
    assert claim(api, "w2")["attempts"] == 2


def test_failure_on_the_last_attempt_is_terminal(api: Api) -> None:
    task = claimed_task(api, retry_delay=0, max_attempts=2)
    assert ok(complete(api, task["id"], success=False, error="one"))["status"] == "pending (retry)"
    claim(api)
    api.clock.advance(3)
    data = ok(complete(api, task["id"], success=False, error="two"))
    assert (data["status"], data["attempts"]) == ("failed", 2)
    stored = get_task(api, task["id"])
    assert (stored["status"], stored["error_message"]) == ("failed", "two")
    assert when(stored["completed_at"]) == START + timedelta(seconds=3)
    no_tasks(api)


def test_a_task_created_with_one_attempt_fails_at_once(api: Api) -> None:
    register(api)
    created = create(api, max_attempts=1)
    claim(api)
    assert ok(complete(api, created["id"], success=False, error="x"))["status"] == "failed"


# -- refusals ---------------------------------------------------------------------------------


def test_unknown_task_is_404(api: Api) -> None:
    fails(complete(api, 4242, success=True), 404, "not_found", "Task not found")
    fails(api.post("/api/tasks/abc/complete", json={"worker_id": "w1", "success": True}), 404, "not_found")


def test_a_pending_task_is_not_in_claimed_state(api: Api) -> None:
    register(api)
    created = create(api)
    fails(
        complete(api, created["id"], success=True), 400, "validation_failed", "Task is not in claimed state"
    )
    assert get_task(api, created["id"])["status"] == "pending"


def test_a_finished_task_is_not_in_claimed_state(api: Api) -> None:
    task = claimed_task(api)
    ok(complete(api, task["id"], success=True, result=1))
    fails(complete(api, task["id"], success=True), 400, "validation_failed", "Task is not in claimed state")
    fails(complete(api, task["id"], success=False), 400, "validation_failed", "Task is not in claimed state")
    assert get_task(api, task["id"])["result"] == 1


def test_another_workers_task_is_403(api: Api) -> None:
    task = claimed_task(api)
    response = api.post(f"/api/tasks/{task['id']}/complete", json={"worker_id": "w2", "success": True})
    fails(response, 403, "forbidden", "Task is claimed by another worker")
    stored = get_task(api, task["id"])
    assert (stored["status"], stored["claimed_by"]) == ("claimed", "w1")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"success": True}, "worker_id"),
        ({"worker_id": "w1"}, "success"),
        ({"worker_id": "w1", "success": "true"}, "success"),
        ({"worker_id": "w1", "success": 1}, "success"),
        ({"worker_id": "w1", "success": None}, "success"),
        ({"worker_id": "w1", "success": False, "error": 5}, "error"),
        ({"worker_id": "w1", "success": True, "lease_token": ""}, "lease_token"),
    ],
)
def test_bad_bodies_are_400(api: Api, body: dict[str, Any], field: str) -> None:
    task = claimed_task(api)
    response = api.post(f"/api/tasks/{task['id']}/complete", json=body)
    details = fails(response, 400, "validation_failed", "Validation failed")["details"]
    assert any(entry.startswith(f"{field}:") for entry in details), details
    assert get_task(api, task["id"])["status"] == "claimed"


# -- leases (B.3) -----------------------------------------------------------------------------


def test_a_wrong_lease_token_is_409_lease_lost(api: Api) -> None:
    task = claimed_task(api)
    fails(
        complete(api, task["id"], success=True, lease_token="not-the-token"), 409, "lease_lost", "Lease lost"
    )
    assert get_task(api, task["id"])["status"] == "claimed"
    data = ok(complete(api, task["id"], success=True, lease_token=task["lease_token"]))
    assert data["status"] == "completed"


def test_a_worker_whose_lease_expired_and_was_reclaimed_gets_409(api: Api) -> None:
    task = claimed_task(api, claim_timeout=30)
    api.clock.advance(31)
    second = claim(api, "w2")
    assert second["id"] == task["id"]
    fails(
        complete(api, task["id"], success=True, lease_token=task["lease_token"]),
        409,
        "lease_lost",
        "Lease lost",
    )
    # Without a token the stale worker is simply another worker.
    fails(complete(api, task["id"], success=True), 403, "forbidden", "Task is claimed by another worker")
    done = api.post(
        f"/api/tasks/{task['id']}/complete",
        json={"worker_id": "w2", "success": True, "lease_token": second["lease_token"]},
    )
    assert ok(done)["status"] == "completed"


def test_the_same_worker_reclaiming_invalidates_its_old_token(api: Api) -> None:
    task = claimed_task(api, claim_timeout=30)
    api.clock.advance(31)
    again = claim(api, "w1")
    fails(complete(api, task["id"], success=True, lease_token=task["lease_token"]), 409, "lease_lost")
    assert ok(complete(api, task["id"], success=True, lease_token=again["lease_token"]))["attempts"] == 2


@pytest.mark.parametrize(
    ("settings", "outcome"),
    [
        ({}, {"success": True, "result": {"ok": 1}}),
        ({"retry_delay": 30}, {"success": False, "error": "boom"}),
        ({"max_attempts": 1}, {"success": False, "error": "boom"}),
    ],
)
def test_a_repeated_complete_with_the_same_token_is_idempotent(
    api: Api, settings: dict[str, Any], outcome: dict[str, Any]
) -> None:
    task = claimed_task(api, **settings)
    first = complete(api, task["id"], lease_token=task["lease_token"], **outcome)
    data = ok(first)
    before = get_task(api, task["id"])
    api.clock.advance(1)
    repeat = complete(api, task["id"], lease_token=task["lease_token"], **outcome)
    assert ok(repeat) == data
    assert repeat.json()["message"] == first.json()["message"]
    assert get_task(api, task["id"]) == before
    events = ok(api.get(f"/api/tasks/{task['id']}/history"))["events"]
    assert [e["event"] for e in events].count("claimed") == 1
    assert len([e for e in events if e["event"] in ("completed", "failed")]) == 1


def test_a_repeat_without_the_token_is_not_idempotent(api: Api) -> None:
    task = claimed_task(api)
    ok(complete(api, task["id"], success=True, lease_token=task["lease_token"]))
    fails(complete(api, task["id"], success=True), 400, "validation_failed", "Task is not in claimed state")


def test_a_complete_after_the_lease_expired_is_refused_even_if_nobody_reclaimed(api: Api) -> None:
    task = claimed_task(api, claim_timeout=30)
    api.clock.advance(31)
    fails(
        complete(api, task["id"], success=True, lease_token=task["lease_token"]),
        409,
        "lease_lost",
        "Lease lost",
    )
    stored = get_task(api, task["id"])
    assert (stored["status"], stored["result"]) == ("pending", None)
