"""API.md B.5, ``POST /tasks/bulk``: cancel, retry or delete every task a filter matches, in
bounded batches, with each task judged by its single route's rule."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from tests.api.conftest import claim, create, fails, get_task, ok, register
from tests.conftest import START, Api, ServerFactory


def bulk(api: Api | httpx.Client, action: str, **filter_: Any) -> Any:
    return ok(api.post("/api/tasks/bulk", json={"action": action, "filter": filter_}))


def fail(api: Api, task_id: int, worker_id: str = "w1") -> None:
    body = {"worker_id": worker_id, "success": False, "error": "boom"}
    ok(api.post(f"/api/tasks/{task_id}/complete", json=body))


def statuses(api: Api, ids: list[int]) -> list[str]:
    return [get_task(api, task_id)["status"] for task_id in ids]


def test_cancel_by_type_cancels_the_pending_and_claimed_and_leaves_the_rest(api: Api) -> None:
    register(api, name="a", max_attempts=1)
    register(api, name="b")
    pending, held, done = (create(api, "a", {"n": n})["id"] for n in range(3))
    assert claim(api, "w1", types=["a"])["id"] == pending
    assert claim(api, "w1", types=["a"])["id"] == held
    ok(api.post(f"/api/tasks/{held}/complete", json={"worker_id": "w1", "success": True}))
    other = create(api, "b", {})["id"]
    # pending = claimed now, held = completed, done = still pending
    data = bulk(api, "cancel", type="a")
    assert data == {"matched": 3, "changed": 2}
    assert statuses(api, [pending, held, done, other]) == ["cancelled", "completed", "cancelled", "pending"]
    history = ok(api.get(f"/api/tasks/{pending}/history"))["events"]
    assert history[-1]["event"] == "cancelled"
    # The worker that held it learns it on its next heartbeat, as after a single cancel.
    beat = ok(api.post(f"/api/tasks/{pending}/heartbeat", json={"worker_id": "w1"}))
    assert beat["cancel_requested"] is True


def test_retry_by_status_and_type_sends_failed_tasks_back(api: Api) -> None:
    register(api, name="a", max_attempts=1, retry_delay=0)
    ids = [create(api, "a", {"n": n})["id"] for n in range(3)]
    for task_id in ids[:2]:
        assert claim(api)["id"] == task_id
        fail(api, task_id)
    data = bulk(api, "retry", status="failed", type="a")
    assert data == {"matched": 2, "changed": 2}
    for task_id in ids[:2]:
        task = get_task(api, task_id)
        assert (task["status"], task["attempts"], task["error_message"]) == ("pending", 0, None)
    assert get_task(api, ids[2])["status"] == "pending"
    assert bulk(api, "retry", status="failed") == {"matched": 0, "changed": 0}


def test_a_filter_by_ids_and_created_before(api: Api) -> None:
    register(api, name="a")
    old = [create(api, "a", {"n": n})["id"] for n in range(3)]
    api.clock.advance(60)
    new = create(api, "a", {"n": 9})["id"]
    before = (START + timedelta(seconds=30)).isoformat().replace("+00:00", "Z")
    assert bulk(api, "cancel", created_before=before) == {"matched": 3, "changed": 3}
    assert get_task(api, new)["status"] == "pending"
    assert bulk(api, "retry", ids=[old[0], new, 999999]) == {"matched": 2, "changed": 1}
    assert statuses(api, old) == ["pending", "cancelled", "cancelled"]


def test_delete_removes_tasks_and_history_and_frees_their_dedupe_keys(api: Api) -> None:
    register(api, name="a")
    first = create(api, "a", {"same": 1})["id"]
    create(api, "a", {"n": 2})
    assert bulk(api, "delete", type="a") == {"matched": 2, "changed": 2}
    fails(api.get(f"/api/tasks/{first}"), 404, "not_found", "Task not found")
    fails(api.get(f"/api/tasks/{first}/history"), 404, "not_found")
    again = create(api, "a", {"same": 1})
    assert (again["duplicate"], again["id"] != first) == (False, True)


def test_a_match_larger_than_a_batch_is_worked_through_batch_by_batch(api: Api) -> None:
    register(api, name="a")
    for start in (0, 550):
        items = [{"type": "a", "params": {"n": n}} for n in range(start, start + 550)]
        assert ok(api.post("/api/tasks/batch", json={"tasks": items}))["created"] == 550
    assert bulk(api, "cancel", status="pending") == {"matched": 1100, "changed": 1100}
    listed = ok(api.get("/api/tasks", params={"status": "cancelled", "limit": 1}))
    assert listed["total"] == 1100
    assert bulk(api, "retry", type="a", status="cancelled") == {"matched": 1100, "changed": 1100}


def test_an_expired_task_is_settled_first_and_counts_for_what_the_action_did(api: Api) -> None:
    register(api, name="a")
    expiring = create(api, "a", {"n": 1}, ttl_seconds=10)["id"]
    api.clock.advance(10)
    # Expired (so cancelled) before the cancel could apply: nothing left for the action to do.
    assert bulk(api, "cancel", ids=[expiring]) == {"matched": 1, "changed": 0}
    assert get_task(api, expiring)["error_message"] == "expired"


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"action": "cancel", "filter": {}}, "filter: must name at least one of"),
        ({"action": "cancel", "filter": {"type": None}}, "filter: must name at least one of"),
        ({"action": "cancel"}, "filter: field required"),
        ({"action": "archive", "filter": {"type": "a"}}, "action:"),
        ({"action": "cancel", "filter": {"status": "done"}}, "filter.status:"),
        ({"action": "cancel", "filter": {"ids": []}}, "filter.ids:"),
        ({"action": "cancel", "filter": {"created_before": 5}}, "filter.created_before:"),
    ],
)
def test_a_bad_body_is_400_naming_the_field(api: Api, body: dict[str, Any], detail: str) -> None:
    response = fails(api.post("/api/tasks/bulk", json=body), 400, "validation_failed", "Validation failed")
    assert any(d.startswith(detail) for d in response["details"]), response["details"]


def test_delete_needs_admin_and_the_other_actions_tasks_write(make_api: ServerFactory) -> None:
    admin = make_api()
    register(admin, name="a")
    task_id = create(admin, "a", {})["id"]
    key = ok(admin.post("/api/api-keys", json={"name": "ops", "scopes": ["tasks:write"]}))["key"]
    with admin.new_client({"X-API-Key": key}) as writer:
        denied = writer.post("/api/tasks/bulk", json={"action": "delete", "filter": {"ids": [task_id]}})
        fails(denied, 403, "forbidden", "Insufficient permissions")
        assert bulk(writer, "cancel", ids=[task_id]) == {"matched": 1, "changed": 1}
    assert get_task(admin, task_id)["status"] == "cancelled"
    assert bulk(admin, "delete", ids=[task_id]) == {"matched": 1, "changed": 1}


def test_a_key_limited_to_types_acts_on_its_types_only(make_api: ServerFactory) -> None:
    admin = make_api()
    register(admin, name="mine.a")
    register(admin, name="other")
    mine = create(admin, "mine.a", {})["id"]
    other = create(admin, "other", {})["id"]
    body = {"name": "scoped", "scopes": ["tasks:write", "tasks:read"], "types": ["mine.*"]}
    key = ok(admin.post("/api/api-keys", json=body))["key"]
    with admin.new_client({"X-API-Key": key}) as scoped:
        assert bulk(scoped, "cancel", status="pending") == {"matched": 1, "changed": 1}
        assert bulk(scoped, "cancel", ids=[other]) == {"matched": 0, "changed": 0}
    assert (get_task(admin, mine)["status"], get_task(admin, other)["status"]) == ("cancelled", "pending")
