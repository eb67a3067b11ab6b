"""API.md B.5: cancel, retry, delete, and the task history with its event names."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.api.conftest import claim, create, fails, get_task, no_tasks, ok, register, when
from tests.conftest import START, Api, ServerFactory

EVENT_FIELDS = {"id", "task_id", "event", "worker_id", "message", "metadata", "created_at"}


def events(api: Api, task_id: int) -> list[dict[str, Any]]:
    data = ok(api.get(f"/api/tasks/{task_id}/history"))
    assert data["count"] == len(data["events"])
    found: list[dict[str, Any]] = data["events"]
    return found


def names(api: Api, task_id: int) -> list[str]:
    return [e["event"] for e in events(api, task_id)]


def finish(api: Api, task_id: int, success: bool, worker_id: str = "w1", **body: Any) -> Any:
    return ok(
        api.post(f"/api/tasks/{task_id}/complete", json={"worker_id": worker_id, "success": success, **body})
    )


def cancel(api: Api, task_id: int, **body: Any) -> Any:
    return api.post(f"/api/tasks/{task_id}/cancel", json=body)


# -- cancel -----------------------------------------------------------------------------------


def test_cancel_a_pending_task(api: Api) -> None:
    register(api)
    created = create(api)
    api.clock.advance(3)
    data = ok(cancel(api, created["id"], reason="not needed"))
    assert (data["id"], data["status"]) == (created["id"], "cancelled")
    stored = get_task(api, created["id"])
    assert stored["status"] == "cancelled"
    assert stored["error_message"] == "not needed"
    assert when(stored["completed_at"]) == START + timedelta(seconds=3)
    no_tasks(api)


def test_cancel_without_a_body(api: Api) -> None:
    register(api)
    created = create(api)
    assert ok(api.post(f"/api/tasks/{created['id']}/cancel"))["status"] == "cancelled"


def test_cancel_a_claimed_task(api: Api) -> None:
    register(api)
    created = create(api)
    claim(api)
    assert ok(cancel(api, created["id"]))["status"] == "cancelled"
    assert get_task(api, created["id"])["status"] == "cancelled"


@pytest.mark.parametrize("ending", ["completed", "failed", "cancelled"])
def test_cancel_a_terminal_task_is_400(api: Api, ending: str) -> None:
    register(api, max_attempts=1)
    created = create(api)
    if ending == "cancelled":
        ok(cancel(api, created["id"]))
    else:
        claim(api)
        finish(api, created["id"], ending == "completed")
    fails(cancel(api, created["id"]), 400, "validation_failed")
    assert get_task(api, created["id"])["status"] == ending


def test_cancel_errors(api: Api) -> None:
    fails(cancel(api, 999), 404, "not_found", "Task not found")
    register(api)
    created = create(api)
    body = fails(cancel(api, created["id"], reason=5), 400, "validation_failed", "Validation failed")
    assert body["details"][0].startswith("reason:")
    response = api.post(
        f"/api/tasks/{created['id']}/cancel", content=b"{bad", headers={"Content-Type": "application/json"}
    )
    fails(response, 400, "invalid_json", "Invalid JSON in request body")
    assert get_task(api, created["id"])["status"] == "pending"


# -- retry ------------------------------------------------------------------------------------


def test_retry_a_failed_task_resets_its_attempts(api: Api) -> None:
    register(api, max_attempts=1)
    created = create(api)
    claim(api)
    finish(api, created["id"], False, error="broken", result={"partial": True})
    data = ok(api.post(f"/api/tasks/{created['id']}/retry"))
    assert (data["status"], data["attempts"], data["error_message"]) == ("pending", 0, None)
    assert (data["result"], data["claimed_by"], data["completed_at"]) == (None, None, None)
    again = claim(api, "w2")
    assert (again["id"], again["attempts"]) == (created["id"], 1)


def test_retry_a_cancelled_task(api: Api) -> None:
    register(api)
    created = create(api)
    ok(cancel(api, created["id"]))
    assert ok(api.post(f"/api/tasks/{created['id']}/retry"))["status"] == "pending"
    assert claim(api)["id"] == created["id"]


def test_retry_a_task_that_failed_by_lease_timeout(api: Api) -> None:
    register(api, max_attempts=1, claim_timeout=10)
    created = create(api)
    claim(api)
    api.clock.advance(11)
    assert get_task(api, created["id"])["status"] == "failed"
    assert ok(api.post(f"/api/tasks/{created['id']}/retry"))["attempts"] == 0
    assert claim(api)["attempts"] == 1


@pytest.mark.parametrize("state", ["pending", "claimed", "completed"])
def test_retry_of_a_task_that_is_not_failed_or_cancelled_is_400(api: Api, state: str) -> None:
    register(api)
    created = create(api)
    if state != "pending":
        claim(api)
    if state == "completed":
        finish(api, created["id"], True)
    fails(api.post(f"/api/tasks/{created['id']}/retry"), 400, "validation_failed")
    assert get_task(api, created["id"])["status"] == state


def test_retry_unknown_task_is_404(api: Api) -> None:
    fails(api.post("/api/tasks/999/retry"), 404, "not_found", "Task not found")


# -- delete -----------------------------------------------------------------------------------


def test_delete_removes_the_task_and_its_history(api: Api) -> None:
    register(api)
    created = create(api, params={"n": 1})
    claim(api)
    data = ok(api.delete(f"/api/tasks/{created['id']}"))
    assert data == {"id": created["id"], "deleted": True}
    fails(api.get(f"/api/tasks/{created['id']}"), 404, "not_found", "Task not found")
    fails(api.get(f"/api/tasks/{created['id']}/history"), 404, "not_found", "Task not found")
    fails(api.delete(f"/api/tasks/{created['id']}"), 404, "not_found", "Task not found")
    assert ok(api.get("/api/tasks"))["total"] == 0
    # Its dedupe key is free again.
    again = create(api, params={"n": 1})
    assert (again["duplicate"], again["status"], again["attempts"]) == (False, "pending", 0)
    assert names(api, again["id"]) == ["created"]


def test_delete_leaves_other_tasks_alone(api: Api) -> None:
    register(api)
    one = create(api, params={"n": 1})
    two = create(api, params={"n": 2})
    ok(api.delete(f"/api/tasks/{one['id']}"))
    assert [t["id"] for t in ok(api.get("/api/tasks"))["tasks"]] == [two["id"]]
    assert names(api, two["id"]) == ["created"]


def test_delete_unknown_task_is_404(api: Api) -> None:
    fails(api.delete("/api/tasks/999"), 404, "not_found", "Task not found")
    fails(api.delete("/api/tasks/x"), 404, "not_found", "Task not found")


# -- history ----------------------------------------------------------------------------------


def test_history_of_a_full_lifecycle(api: Api) -> None:
    register(api, retry_delay=0, claim_timeout=60, max_attempts=5)
    created = create(api)
    claim(api, "w1")
    api.clock.advance(1)
    ok(
        api.post(
            f"/api/tasks/{created['id']}/progress",
            json={"worker_id": "w1", "progress": 50, "message": "half"},
        )
    )
    finish(api, created["id"], False, error="flaky")
    claim(api, "w2")
    api.clock.advance(61)
    claim(api, "w3")
    api.clock.advance(1)
    finish(api, created["id"], True, worker_id="w3")
    found = events(api, created["id"])
    assert [e["event"] for e in found] == [
        "created",
        "claimed",
        "progress",
        "failed",
        "retry_scheduled",
        "claimed",
        "lease_expired",
        "claimed",
        "completed",
    ]
    assert all(set(e) == EVENT_FIELDS for e in found)
    assert all(e["task_id"] == created["id"] for e in found)
    assert [e["id"] for e in found] == sorted(e["id"] for e in found)
    assert [e["worker_id"] for e in found if e["event"] == "claimed"] == ["w1", "w2", "w3"]
    assert found[1]["metadata"] == {"attempt": 1}
    assert (found[2]["message"], found[3]["message"]) == ("half", "flaky")
    assert found[6]["worker_id"] == "w2"
    assert found[-1]["worker_id"] == "w3"
    assert when(found[0]["created_at"]) == START
    assert when(found[-1]["created_at"]) == START + timedelta(seconds=63)


def test_history_of_cancel_and_retry(api: Api) -> None:
    register(api, max_attempts=1)
    created = create(api)
    ok(cancel(api, created["id"], reason="stop"))
    ok(api.post(f"/api/tasks/{created['id']}/retry"))
    claim(api)
    finish(api, created["id"], False, error="bad")
    found = events(api, created["id"])
    assert [e["event"] for e in found] == ["created", "cancelled", "retried", "claimed", "failed"]
    assert found[1]["message"] == "stop"
    assert found[-1]["message"] == "bad"


def test_history_of_a_lease_timeout_failure(api: Api) -> None:
    register(api, max_attempts=1, claim_timeout=5)
    created = create(api)
    claim(api)
    api.clock.advance(6)
    found = events(api, created["id"])
    assert [e["event"] for e in found] == ["created", "claimed", "lease_expired", "failed"]
    assert found[-1]["message"] == "Claim timeout exceeded after 1 attempts"


def test_history_of_an_unknown_task_is_404(api: Api) -> None:
    fails(api.get("/api/tasks/999/history"), 404, "not_found", "Task not found")


def test_history_can_be_switched_off(make_api: ServerFactory) -> None:
    server = make_api(enable_history=False)
    register(server, retry_delay=0)
    created = create(server)
    claim(server)
    ok(server.post(f"/api/tasks/{created['id']}/progress", json={"worker_id": "w1", "progress": 5}))
    finish(server, created["id"], False)
    claim(server)
    finish(server, created["id"], True)
    assert ok(server.get(f"/api/tasks/{created['id']}/history")) == {"events": [], "count": 0}
    assert get_task(server, created["id"])["status"] == "completed"


def test_a_deleted_task_id_is_never_given_to_a_new_task(api: Api) -> None:
    register(api)
    newest = create(api, params={"n": 1})["id"]
    ok(api.delete(f"/api/tasks/{newest}"))
    # A worker still holding the old id must not be able to address someone else's task.
    assert create(api, params={"n": 2})["id"] > newest
