"""Retries against the real server on a real socket, made to fail: a wrapper around the app lets
the app carry a request out, then replaces its answer with a 500 or hangs up before answering —
the case where a client cannot know whether the request was done. What is safe to send again is
sent again and done once; a claim is not sent again (it may have claimed)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from taskmanager import AsyncTaskManagerClient, TaskManagerServerError, Worker
from taskmanager.client import TaskManagerConnectionError
from taskmanager.engine.clock import FrozenClock
from taskmanager.server.app import create_app
from tests.client.conftest import HTTP_KINDS, Blocking, LoopThread
from tests.conftest import ADMIN_KEY, START, RunningServer, TestDatabase, _settings

INTERNAL = {"success": False, "error": "Internal error", "message": "Internal error", "code": "internal"}


@dataclass
class Faults:
    """The next ``count`` requests whose path ends with ``suffix`` are carried out by the app, then
    answered ``mode``: ``"500"`` (an ``internal`` envelope) or ``"drop"`` (the connection closes
    before the answer's body). ``seen`` holds every request's path and the status the app gave;
    ``answered`` is set once a request to ``suffix`` got the app's own answer."""

    app: Any
    suffix: str = ""
    count: int = 0
    mode: str = "500"
    seen: list[tuple[str, int]] = field(default_factory=list)
    answered: threading.Event = field(default_factory=threading.Event)

    def arm(self, suffix: str, count: int, mode: str = "500") -> None:
        self.suffix, self.count, self.mode = suffix, count, mode
        self.answered.clear()

    def sent(self, suffix: str) -> list[int]:
        """The app's statuses for the requests to ``suffix`` so far."""
        return [status for path, status in self.seen if path.endswith(suffix)]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self.suffix or not scope["path"].endswith(self.suffix):
            await self.app(scope, receive, send)
            return
        messages: list[dict[str, Any]] = []

        async def keep(message: dict[str, Any]) -> None:
            messages.append(message)

        await self.app(scope, receive, keep)  # the request is carried out, in full
        status = next(m["status"] for m in messages if m["type"] == "http.response.start")
        self.seen.append((scope["path"], status))
        if self.count <= 0:
            for message in messages:
                await send(message)
            self.answered.set()
            return
        self.count -= 1
        if self.mode == "drop":
            # Promise a body, then hang up: uvicorn closes the connection mid-answer.
            headers = [(b"content-length", b"1000"), (b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            raise ConnectionAbortedError("dropped by the test")
        body = json.dumps(INTERNAL).encode()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 500, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@dataclass
class FaultyServer:
    url: str
    faults: Faults
    admin: httpx.Client


@pytest.fixture
def faulty(clean_database: TestDatabase) -> Iterator[FaultyServer]:
    """The real app (frozen clock, admin key) on a socket, behind ``Faults``."""
    app = create_app(_settings(clean_database, ADMIN_KEY, {}), clock=FrozenClock(START))
    faults = Faults(app)
    with (
        RunningServer(faults) as running,
        httpx.Client(base_url=running.url, headers={"X-API-Key": ADMIN_KEY}, timeout=30) as admin,
    ):
        yield FaultyServer(running.url, faults, admin)


@pytest.fixture(params=HTTP_KINDS)
def client_of(request: pytest.FixtureRequest, faulty: FaultyServer) -> Iterator[Any]:
    """``client_of(**options)``: a sync or async client of the faulty server, quick to retry."""
    made: list[Any] = []

    def make(**options: Any) -> Any:
        options = {"worker_id": "w1", "retry_backoff": 0.01, **options}
        if request.param == "sync":
            from taskmanager import TaskManagerClient

            client: Any = TaskManagerClient(faulty.url, ADMIN_KEY, **options)
        else:
            client = Blocking(AsyncTaskManagerClient(faulty.url, ADMIN_KEY, **options), LoopThread())
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def events(faulty: FaultyServer, task_id: int) -> list[str]:
    answer = faulty.admin.get(f"/api/tasks/{task_id}/history").json()
    return [event["event"] for event in answer["data"]["events"]]


def claimed_task(client: Any) -> Any:
    client.register_task_type("demo", "1", {"type": "object"})
    client.create_task("demo", {"n": 1})
    task = client.claim_task("demo")
    assert task is not None
    return task


@pytest.mark.parametrize("mode", ["500", "drop"])
def test_a_complete_whose_answer_is_lost_is_sent_again_and_done_once(
    faulty: FaultyServer, client_of: Any, mode: str
) -> None:
    client = client_of()
    task = claimed_task(client)
    faulty.faults.arm("/complete", 2, mode)
    done = client.complete_task(task.id, {"ok": True})
    assert done.status == "completed"
    assert faulty.faults.sent("/complete") == [200, 200, 200], "done the first time, repeated twice"
    assert events(faulty, task.id).count("completed") == 1, "the repeats changed nothing"


@pytest.mark.parametrize("mode", ["500", "drop"])
def test_a_complete_batch_whose_answer_is_lost_is_sent_again(
    faulty: FaultyServer, client_of: Any, mode: str
) -> None:
    client = client_of()
    task = claimed_task(client)
    faulty.faults.arm("/complete-batch", 1, mode)
    [answer] = client.complete_tasks([{"id": task.id, "result": 1}])
    assert answer.status == "completed"
    assert faulty.faults.sent("/complete-batch") == [200, 200]
    assert events(faulty, task.id).count("completed") == 1


def test_heartbeat_and_progress_are_retried_through_500s(faulty: FaultyServer, client_of: Any) -> None:
    client = client_of()
    task = claimed_task(client)
    faulty.faults.arm("/heartbeat", 1)
    assert client.heartbeat(task.id).cancel_requested is False
    assert faulty.faults.sent("/heartbeat") == [200, 200]
    faulty.faults.arm("/progress", 1, "drop")
    client.report_progress(task.id, 40)
    assert faulty.faults.sent("/progress") == [200, 200]


def test_a_create_whose_answer_is_lost_makes_one_task(faulty: FaultyServer, client_of: Any) -> None:
    client = client_of()
    client.register_task_type("demo", "1", {"type": "object"})
    faulty.faults.arm("/tasks", 1)
    created = client.create_task("demo", {"n": 7})
    assert created.duplicate is True, "the retry found the task the first send made"
    assert faulty.faults.sent("/tasks") == [200, 200]
    assert [t.id for t in client.list_tasks()] == [created.id]


@pytest.mark.parametrize("mode", ["500", "drop"])
def test_a_claim_whose_answer_is_lost_is_not_sent_again(
    faulty: FaultyServer, client_of: Any, mode: str
) -> None:
    client = client_of()
    client.register_task_type("demo", "1", {"type": "object"})
    client.create_tasks([{"type": "demo", "params": {"n": n}} for n in range(2)])
    faulty.faults.arm("/claim", 1, mode)
    with pytest.raises(TaskManagerServerError if mode == "500" else TaskManagerConnectionError):
        client.claim_task("demo")
    assert faulty.faults.sent("/claim") == [200], "sent once"
    statuses = sorted(t.status for t in client.list_tasks())
    assert statuses == ["claimed", "pending"], "the lost claim took one task; a repeat would take both"


def test_retries_zero_gives_up_at_the_first_500(faulty: FaultyServer, client_of: Any) -> None:
    client = client_of(retries=0)
    assert client.config.retry_attempts == 0
    task = claimed_task(client)
    faulty.faults.arm("/complete", 1)
    with pytest.raises(TaskManagerServerError) as caught:
        client.complete_task(task.id, 1)
    assert caught.value.status_code == 500
    assert faulty.faults.sent("/complete") == [200]


def test_retries_bounds_the_sends(faulty: FaultyServer, client_of: Any) -> None:
    client = client_of(retries=2)
    task = claimed_task(client)
    faulty.faults.arm("/heartbeat", 5)
    with pytest.raises(TaskManagerServerError):
        client.heartbeat(task.id)
    assert faulty.faults.sent("/heartbeat") == [200, 200, 200], "one send and two retries"


def test_retries_and_retry_attempts_must_agree() -> None:
    from taskmanager import TaskManagerClient

    with pytest.raises(TypeError):
        TaskManagerClient("http://127.0.0.1:9", retries=1, retry_attempts=2)
    with TaskManagerClient("http://127.0.0.1:9", retries=4, retry_attempts=4) as client:
        assert client.config.retry_attempts == 4


async def test_a_workers_report_lost_to_500s_does_not_run_the_task_again(faulty: FaultyServer) -> None:
    runs: list[int] = []
    worker = Worker(api_url=faulty.url, api_key=ADMIN_KEY, worker_id="w1", claim_wait=1, retries=3)
    worker.task("demo", schema={"type": "object"})(lambda ctx: runs.append(ctx.params["n"]) or "done")
    faulty.faults.arm("/complete-batch", 2)
    running = asyncio.create_task(worker.run_async())
    async with AsyncTaskManagerClient(faulty.url, ADMIN_KEY) as client:
        await client.register_task_type("demo", "1", {"type": "object"})
        created = await client.create_task("demo", {"n": 1})
        assert await asyncio.to_thread(faulty.faults.answered.wait, 30), "the report got through"
        worker.stop()
        assert await running == 0
        task = await client.get_task(created.id)
    assert task.status == "completed"
    assert runs == [1], "run once: the report was sent again, not the task"
    assert faulty.faults.sent("/complete-batch") == [200, 200, 200]
