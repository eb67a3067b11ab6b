"""API.md B.9: a type's ``max_running`` over HTTP — claims stop at it, take other types' tasks,
and resume as tasks finish or their leases run out."""

from __future__ import annotations

from tests.api.conftest import claim, create, fails, no_tasks, ok, register
from tests.conftest import Api


def test_claims_stop_at_max_running_and_resume_when_a_task_finishes(api: Api) -> None:
    assert register(api, name="ai", max_running=2)["max_running"] == 2
    for n in range(4):
        create(api, "ai", {"n": n})
    first, second = claim(api, "w1"), claim(api, "w2")
    no_tasks(api, "w3")
    ok(api.post(f"/api/tasks/{first['id']}/complete", json={"worker_id": "w1", "success": True}))
    third = claim(api, "w3")
    assert third["id"] not in (first["id"], second["id"])
    no_tasks(api, "w4")


def test_a_claim_of_many_takes_only_the_free_slots(api: Api) -> None:
    register(api, name="ai", max_running=3)
    for n in range(5):
        create(api, "ai", {"n": n})
    assert ok(api.post("/api/tasks/claim", json={"worker_id": "w1", "limit": 10}))["count"] == 3
    assert ok(api.post("/api/tasks/claim", json={"worker_id": "w1", "limit": 10}))["count"] == 0


def test_a_full_type_gives_way_to_another_types_task(api: Api) -> None:
    register(api, name="ai", max_running=1)
    register(api, name="mail")
    create(api, "ai", {"n": 1}, priority=5)
    create(api, "ai", {"n": 2}, priority=5)
    mail = create(api, "mail", {})
    assert claim(api)["type"] == "ai"
    assert claim(api)["id"] == mail["id"]


def test_an_expired_lease_frees_its_slot(api: Api) -> None:
    register(api, name="ai", max_running=1, claim_timeout=30)
    first = create(api, "ai", {"n": 1})
    create(api, "ai", {"n": 2})
    claim(api, "w1")
    no_tasks(api, "w2")
    api.clock.advance(30)
    # The lease ran out: its slot is free, and the task itself is back in the queue, first in line.
    again = claim(api, "w2")
    assert (again["id"], again["attempts"]) == (first["id"], 2)
    no_tasks(api, "w3")


def test_max_running_null_lifts_the_limit_and_bounds_are_checked(api: Api) -> None:
    register(api, name="ai", max_running=1)
    assert register(api, name="ai", max_running=None)["max_running"] is None
    for bad in (0, 10001, "3"):
        body = {"name": "ai", "version": "1", "param_schema": {"type": "object"}, "max_running": bad}
        response = fails(api.post("/api/task-types/register", json=body), 400, "validation_failed")
        assert any(d.startswith("max_running:") for d in response["details"])
