"""TaskManager under a WSGI host: the deployment guide's ``passenger_wsgi.py``, run as written.

The guide's one ``python`` block is executed as Passenger would import it, and the WSGI
``application`` it defines is driven through httpx's WSGI transport (no ASGI server involved):
a task's whole life, served at the root of its (sub)domain.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_KEY, TestDatabase

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guides" / "deployment.md"
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
SET_DEFAULT = re.compile(r'os\.environ\.setdefault\("(\w+)", "([^"]*)"\)')
SCHEMA = {"type": "object", "properties": {"topic": {"type": "string"}}, "required": ["topic"]}


def passenger_wsgi() -> str:
    blocks = PYTHON_BLOCK.findall(GUIDE.read_text())
    assert len(blocks) == 1, "the deployment guide shows one passenger_wsgi.py"
    return str(blocks[0])


@pytest.fixture
def application(clean_database: TestDatabase, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The guide's ``application``, on the test database (migrated, as the guide's deploy step does)."""
    source = passenger_wsgi()
    monkeypatch.setenv("TASKMANAGER_DATABASE_URL", clean_database.url)
    monkeypatch.setenv("TASKMANAGER_API_KEY", ADMIN_KEY)
    for name, default in SET_DEFAULT.findall(source):
        if name != "TASKMANAGER_DATABASE_URL":
            monkeypatch.setenv(name, default)  # what its setdefault would set, undone after the test
    namespace: dict[str, Any] = {"__name__": "passenger_wsgi"}
    exec(compile(source, "passenger_wsgi.py", "exec"), namespace)
    wsgi = namespace["application"]
    yield wsgi
    # A WSGI host never runs the ASGI shutdown hook; close the store on the adapter's loop here.
    loop = wsgi.loop
    asyncio.run_coroutine_threadsafe(wsgi.app.state.service.store.close(), loop).result(timeout=10)
    loop.call_soon_threadsafe(loop.stop)
    for _ in range(500):
        if not loop.is_running():
            break
        time.sleep(0.01)  # the loop's thread is the adapter's own: nothing to join
    loop.close()


def client(wsgi: Any, script_name: str = "") -> httpx.Client:
    transport = httpx.WSGITransport(app=wsgi, script_name=script_name)
    headers = {"X-API-Key": ADMIN_KEY}
    return httpx.Client(transport=transport, base_url="https://tasks.example.com", headers=headers)


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True, body
    return body["data"]


def test_a_task_goes_through_its_whole_life_under_wsgi(application: Any) -> None:
    with client(application) as api:
        assert ok(api.get("/api/health"))["database"] == "connected"
        assert api.get("/api/task-types", headers={"X-API-Key": ""}).status_code == 401

        registered = ok(
            api.post(
                "/api/task-types/register", json={"name": "Demo", "version": "1", "param_schema": SCHEMA}
            )
        )
        assert registered["created"] is True
        created = ok(api.post("/api/tasks", json={"type": "Demo", "params": {"topic": "wsgi"}}))
        assert created["duplicate"] is False
        again = ok(api.post("/tasks", json={"type": "Demo", "params": {"topic": "wsgi"}}))
        assert (again["id"], again["duplicate"]) == (created["id"], True)

        claimed = ok(api.post("/api/tasks/claim", json={"worker_id": "w1"}))
        assert claimed["id"] == created["id"]
        token = claimed["lease_token"]
        progress = {"worker_id": "w1", "progress": 50, "lease_token": token}
        assert ok(api.post(f"/api/tasks/{created['id']}/progress", json=progress))["progress"] == 50
        assert api.post("/api/tasks/claim", json={"worker_id": "w2"}).status_code == 404

        body = {"worker_id": "w1", "success": True, "result": {"words": 3}, "lease_token": token}
        assert ok(api.post(f"/api/tasks/{created['id']}/complete", json=body))["status"] == "completed"
        task = ok(api.get(f"/api/tasks/{created['id']}"))
        assert (task["status"], task["result"]) == ("completed", {"words": 3})
        events = [e["event"] for e in ok(api.get(f"/api/tasks/{created['id']}/history"))["events"]]
        assert events == ["created", "claimed", "progress", "completed"]


def test_the_api_answers_under_a_passenger_base_uri(application: Any) -> None:
    with client(application, script_name="/queue") as api:
        assert ok(api.get("/api/health"))["status"] == "healthy"
        assert ok(api.get("/task-types"))["count"] == 0
