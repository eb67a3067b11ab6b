"""The README's walk-through over real HTTP: register, create, claim, complete, read back."""

from __future__ import annotations

from tests.conftest import Api


def test_register_create_claim_complete_read(api: Api) -> None:
    schema = {"type": "object", "properties": {"topic": {"type": "string"}}, "required": ["topic"]}
    registered = api.post(
        "/api/task-types/register",
        json={"name": "PrismQ.Script.Generate", "version": "1.0.0", "param_schema": schema},
    )
    assert registered.status_code == 200
    assert registered.json()["data"]["created"] is True

    created = api.post(
        "/api/tasks", json={"type": "PrismQ.Script.Generate", "params": {"topic": "AI"}}
    ).json()["data"]
    assert created["status"] == "pending"
    assert created["duplicate"] is False

    claimed = api.post("/api/tasks/claim", json={"worker_id": "w1"}).json()["data"]
    assert claimed["id"] == created["id"]
    assert claimed["attempts"] == 1

    done = api.post(
        f"/api/tasks/{created['id']}/complete",
        json={"worker_id": "w1", "success": True, "result": {"words": 3}},
    )
    assert done.json()["data"]["status"] == "completed"

    task = api.get(f"/tasks/{created['id']}").json()["data"]
    assert task["status"] == "completed"
    assert task["result"] == {"words": 3}
