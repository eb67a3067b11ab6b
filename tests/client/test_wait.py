"""``wait_for`` and ``create_task(..., wait=True)`` (GET /tasks/{id}/wait), over the sync, async
and both embedded clients, on every database."""

from __future__ import annotations

import threading
import time
from typing import Any

from taskmanager.client import WaitedTask
from tests.api.conftest import claim, ok, register
from tests.conftest import Api

#: Seconds an answer may take once its task ended.
WAKE_BOUND = 5.0


def complete_soon(api: Api, result: Any) -> threading.Thread:
    """A worker, in another thread: claims the next task (waiting for it) and completes it."""

    def work() -> None:
        task = claim(api, wait=20)
        body = {"worker_id": "w1", "success": True, "result": result}
        ok(api.post(f"/api/tasks/{task['id']}/complete", json=body))

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def test_wait_for_returns_the_task_once_it_ends(client: Any, api: Api) -> None:
    register(api)
    created = client.create_task("demo.echo", {"n": 1})
    worker = complete_soon(api, {"answer": 42})
    started = time.monotonic()
    waited = client.wait_for(created.id, timeout=30)
    assert time.monotonic() - started < WAKE_BOUND
    worker.join(10)
    assert isinstance(waited, WaitedTask)
    assert (waited.done, waited.status, waited.result) == (True, "completed", {"answer": 42})
    assert waited["done"] is True


def test_wait_for_gives_up_at_its_timeout(client: Any, api: Api) -> None:
    register(api)
    created = client.create_task("demo.echo", {"n": 1})
    started = time.monotonic()
    waited = client.wait_for(created.id, timeout=0.5)
    assert 0.4 <= time.monotonic() - started < WAKE_BOUND
    assert (waited.done, waited.status) == (False, "pending")


def test_create_task_with_wait_returns_the_outcome(client: Any, api: Api) -> None:
    register(api)
    worker = complete_soon(api, "done")
    waited = client.create_task("demo.echo", {"n": 2}, wait=True, wait_timeout=30)
    worker.join(10)
    assert (waited.done, waited.status, waited.result) == (True, "completed", "done")
    unfinished = client.create_task("demo.echo", {"n": 3}, wait=True, wait_timeout=0.2)
    assert (unfinished.done, unfinished.status) == (False, "pending")
    # Without wait, the create's answer as before.
    assert client.create_task("demo.echo", {"n": 4}).duplicate is False
