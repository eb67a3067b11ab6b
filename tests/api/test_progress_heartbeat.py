"""API.md A.10 and B.3: progress reports and heartbeats — both extend the holder's lease."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.api.conftest import claim, create, fails, get_task, no_tasks, ok, register, when
from tests.conftest import START, Api


def claimed_task(api: Api, **settings: Any) -> dict[str, Any]:
    register(api, **settings)
    create(api, params={"n": 1})
    data: dict[str, Any] = claim(api, "w1")
    return data


def progress(api: Api, task_id: int, value: Any, **body: Any) -> Any:
    return api.post(f"/api/tasks/{task_id}/progress", json={"worker_id": "w1", "progress": value, **body})


def heartbeat(api: Api, task_id: int, **body: Any) -> Any:
    return api.post(f"/api/tasks/{task_id}/heartbeat", json={"worker_id": "w1", **body})


# -- progress ---------------------------------------------------------------------------------


def test_progress_is_stored_and_answered(api: Api) -> None:
    task = claimed_task(api)
    data = ok(progress(api, task["id"], 40, message="halfway-ish"))
    assert set(data) == {"id", "progress", "lease_expires_at", "message"}
    assert (data["id"], data["progress"]) == (task["id"], 40)
    assert data["message"] == "Task progress updated successfully"
    assert get_task(api, task["id"])["progress"] == 40


@pytest.mark.parametrize("value", [0, 100])
def test_progress_bounds_are_inclusive(api: Api, value: int) -> None:
    task = claimed_task(api)
    assert ok(progress(api, task["id"], value))["progress"] == value


@pytest.mark.parametrize("value", [101, -1, 50.5, "50", True, None, [50]])
def test_progress_out_of_range_or_not_an_integer_is_400(api: Api, value: Any) -> None:
    task = claimed_task(api)
    ok(progress(api, task["id"], 10))
    body = fails(progress(api, task["id"], value), 400, "validation_failed", "Validation failed")
    assert body["details"][0].startswith("progress:")
    assert get_task(api, task["id"])["progress"] == 10


def test_progress_missing_is_400(api: Api) -> None:
    task = claimed_task(api)
    response = api.post(f"/api/tasks/{task['id']}/progress", json={"worker_id": "w1"})
    assert fails(response, 400, "validation_failed")["details"][0].startswith("progress:")


def test_progress_extends_the_lease(api: Api) -> None:
    task = claimed_task(api, claim_timeout=60)
    api.clock.advance(50)
    data = ok(progress(api, task["id"], 20))
    assert when(data["lease_expires_at"]) == START + timedelta(seconds=110)
    api.clock.advance(30)
    no_tasks(api, "w2")
    assert get_task(api, task["id"])["status"] == "claimed"
    api.clock.advance(31)
    assert claim(api, "w2")["attempts"] == 2


def test_progress_message_is_recorded_in_the_history(api: Api) -> None:
    task = claimed_task(api)
    ok(progress(api, task["id"], 30, message="rendering"))
    events = ok(api.get(f"/api/tasks/{task['id']}/history"))["events"]
    recorded = [e for e in events if e["event"] == "progress"]
    assert len(recorded) == 1
    assert (recorded[0]["message"], recorded[0]["worker_id"]) == ("rendering", "w1")
    assert recorded[0]["metadata"] == {"progress": 30}


def test_progress_errors_are_those_of_complete(api: Api) -> None:
    task = claimed_task(api)
    fails(progress(api, 999, 5), 404, "not_found", "Task not found")
    other = api.post(f"/api/tasks/{task['id']}/progress", json={"worker_id": "w2", "progress": 5})
    fails(other, 403, "forbidden", "Task is claimed by another worker")
    fails(progress(api, task["id"], 5, lease_token="stale"), 409, "lease_lost", "Lease lost")
    ok(api.post(f"/api/tasks/{task['id']}/complete", json={"worker_id": "w1", "success": True}))
    fails(progress(api, task["id"], 5), 400, "validation_failed", "Task is not in claimed state")


def test_progress_on_a_pending_task_is_400(api: Api) -> None:
    register(api)
    created = create(api)
    fails(progress(api, created["id"], 5), 400, "validation_failed", "Task is not in claimed state")


def test_progress_with_the_right_token_is_accepted(api: Api) -> None:
    task = claimed_task(api)
    assert ok(progress(api, task["id"], 70, lease_token=task["lease_token"]))["progress"] == 70


# -- heartbeat --------------------------------------------------------------------------------


def test_heartbeat_extends_the_lease_by_the_claim_timeout(api: Api) -> None:
    task = claimed_task(api, claim_timeout=60)
    api.clock.advance(45)
    data = ok(heartbeat(api, task["id"], lease_token=task["lease_token"]))
    assert data == {
        "id": task["id"],
        "lease_expires_at": data["lease_expires_at"],
        "cancel_requested": False,
    }
    assert when(data["lease_expires_at"]) == START + timedelta(seconds=105)
    api.clock.advance(45)
    no_tasks(api, "w2")
    assert get_task(api, task["id"])["lease_expires_at"] == data["lease_expires_at"]


def test_heartbeat_lease_seconds_sets_the_new_lease(api: Api) -> None:
    task = claimed_task(api, claim_timeout=60)
    data = ok(heartbeat(api, task["id"], lease_seconds=3600))
    assert when(data["lease_expires_at"]) == START + timedelta(seconds=3600)
    api.clock.advance(3599)
    no_tasks(api, "w2")
    api.clock.advance(2)
    assert claim(api, "w2")["id"] == task["id"]


@pytest.mark.parametrize("seconds", [0, 86401, "60", 1.5])
def test_heartbeat_lease_seconds_out_of_range_is_400(api: Api, seconds: Any) -> None:
    task = claimed_task(api)
    body = fails(heartbeat(api, task["id"], lease_seconds=seconds), 400, "validation_failed")
    assert body["details"][0].startswith("lease_seconds:")


def test_heartbeat_errors(api: Api) -> None:
    task = claimed_task(api)
    fails(heartbeat(api, 999), 404, "not_found", "Task not found")
    other = api.post(f"/api/tasks/{task['id']}/heartbeat", json={"worker_id": "w2"})
    fails(other, 403, "forbidden", "Task is claimed by another worker")
    fails(heartbeat(api, task["id"], lease_token="stale"), 409, "lease_lost", "Lease lost")
    fails(api.post(f"/api/tasks/{task['id']}/heartbeat", json={}), 400, "validation_failed")


def test_heartbeat_after_the_lease_was_lost_is_409(api: Api) -> None:
    task = claimed_task(api, claim_timeout=30)
    api.clock.advance(31)
    claim(api, "w2")
    fails(heartbeat(api, task["id"], lease_token=task["lease_token"]), 409, "lease_lost", "Lease lost")


def test_heartbeat_reports_a_cancel_and_complete_then_gets_409(api: Api) -> None:
    task = claimed_task(api)
    ok(api.post(f"/api/tasks/{task['id']}/cancel", json={"reason": "operator"}))
    data = ok(heartbeat(api, task["id"], lease_token=task["lease_token"]))
    assert data["cancel_requested"] is True
    assert ok(heartbeat(api, task["id"]))["cancel_requested"] is True
    response = api.post(
        f"/api/tasks/{task['id']}/complete",
        json={"worker_id": "w1", "success": True, "lease_token": task["lease_token"]},
    )
    fails(response, 409, "lease_lost")
    fails(progress(api, task["id"], 50), 409, "lease_lost")
    assert get_task(api, task["id"])["status"] == "cancelled"


def test_heartbeats_are_not_stored_in_the_history_by_default(api: Api) -> None:
    task = claimed_task(api)
    for _ in range(3):
        ok(heartbeat(api, task["id"]))
    events = ok(api.get(f"/api/tasks/{task['id']}/history"))["events"]
    assert [e["event"] for e in events] == ["created", "claimed"]


def test_progress_and_heartbeat_never_shorten_a_longer_lease(api: Api) -> None:
    register(api, claim_timeout=60)
    create(api)
    task = claim(api, lease_seconds=3600)
    api.clock.advance(10)
    assert when(ok(progress(api, task["id"], 5))["lease_expires_at"]) == START + timedelta(seconds=3600)
    assert when(ok(heartbeat(api, task["id"]))["lease_expires_at"]) == START + timedelta(seconds=3600)
    api.clock.advance(600)
    no_tasks(api, "w2")
    # Near the end of the long lease, an extension reaches past it.
    api.clock.set(START + timedelta(seconds=3590))
    assert when(ok(progress(api, task["id"], 6))["lease_expires_at"]) == START + timedelta(seconds=3650)
