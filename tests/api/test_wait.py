"""``GET /tasks/{id}/wait`` (API.md B.5): answers when the task ends, or at its timeout.

The waits here are woken by events, never by a sleep running out: each test bounds how long an
answer may take far below the wait's own timeout, so a wake-up that did not happen fails it.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.api.conftest import claim, create, fails, ok, register
from tests.api.test_http_limits import address
from tests.conftest import ADMIN_KEY, Api, ServerFactory

#: Seconds an answer may take once its task ended (the waits themselves are 30 s).
WAKE_BOUND = 5.0


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(8) as executor:
        yield executor


def waiting(
    api: Api, pool: ThreadPoolExecutor, waits: threading.Semaphore, task_id: int, timeout: float = 30
) -> Future[httpx.Response]:
    """A wait sent from another thread; returns once the server sleeps on it."""
    client = api.new_client({"X-API-Key": ADMIN_KEY}, timeout=timeout + 10)

    def send() -> httpx.Response:
        with client:
            return client.get(f"/api/tasks/{task_id}/wait", params={"timeout": timeout})

    answer = pool.submit(send)
    assert waits.acquire(timeout=10), "the wait never began to sleep"
    return answer


def answered(answer: Future[httpx.Response]) -> tuple[Any, float]:
    started = time.monotonic()
    data = ok(answer.result(timeout=WAKE_BOUND + 5))
    return data, time.monotonic() - started


def test_a_finished_task_answers_at_once(api: Api) -> None:
    register(api)
    task = create(api)
    claimed = claim(api)
    ok(
        api.post(
            f"/api/tasks/{task['id']}/complete", json={"worker_id": "w1", "success": True, "result": {"r": 1}}
        )
    )
    started = time.monotonic()
    data = ok(api.get(f"/api/tasks/{task['id']}/wait", params={"timeout": 30}))
    assert time.monotonic() - started < 2
    assert data["done"] is True
    assert data["status"] == "completed"
    assert data["result"] == {"r": 1}
    assert data["id"] == claimed["id"]
    # The task object's fields, plus done.
    assert set(data) - {"done"} == set(ok(api.get(f"/api/tasks/{task['id']}")))


def test_an_unfinished_task_answers_after_its_timeout_with_done_false(api: Api) -> None:
    register(api)
    task = create(api)
    started = time.monotonic()
    data = ok(api.get(f"/api/tasks/{task['id']}/wait", params={"timeout": 0.3}))
    assert 0.25 <= time.monotonic() - started < 5
    assert data["done"] is False
    assert data["status"] == "pending"
    assert ok(api.get(f"/api/tasks/{task['id']}/wait", params={"timeout": 0}))["done"] is False


@pytest.mark.parametrize(
    "end",
    [
        lambda api, i: api.post(f"/api/tasks/{i}/complete", json={"worker_id": "w1", "success": True}),
        lambda api, i: api.post(
            "/api/tasks/complete-batch",
            json={"worker_id": "w1", "results": [{"id": i, "success": True}]},
        ),
        lambda api, i: api.post(f"/api/tasks/{i}/cancel", json={"reason": "enough"}),
        lambda api, i: api.post(f"/api/tasks/{i}/complete", json={"worker_id": "w1", "success": False}),
        lambda api, i: api.post("/api/tasks/bulk", json={"action": "cancel", "filter": {"ids": [i]}}),
    ],
    ids=["complete", "complete-batch", "cancel", "last-failure", "bulk-cancel"],
)
def test_a_wait_answers_as_soon_as_its_task_ends(
    api: Api,
    pool: ThreadPoolExecutor,
    waits: threading.Semaphore,
    end: Callable[[Api, int], httpx.Response],
) -> None:
    register(api, max_attempts=1)
    task = create(api)
    claim(api)
    answer = waiting(api, pool, waits, task["id"])
    assert not answer.done()
    ok(end(api, task["id"]))
    data, took = answered(answer)
    assert took < WAKE_BOUND
    assert data["done"] is True
    assert data["status"] in ("completed", "cancelled", "failed")


def test_a_retry_does_not_end_the_wait(
    api: Api, pool: ThreadPoolExecutor, waits: threading.Semaphore
) -> None:
    register(api, max_attempts=3, retry_delay=0)
    task = create(api)
    claim(api)
    answer = waiting(api, pool, waits, task["id"], timeout=1.5)
    ok(api.post(f"/api/tasks/{task['id']}/complete", json={"worker_id": "w1", "success": False}))
    data = ok(answer.result(timeout=10))
    assert data["done"] is False
    assert data["status"] == "pending"


def test_a_lease_running_out_on_the_last_attempt_ends_the_wait(
    api: Api, pool: ThreadPoolExecutor, waits: threading.Semaphore
) -> None:
    register(api, max_attempts=1, claim_timeout=60)
    task = create(api)
    claim(api)
    answer = waiting(api, pool, waits, task["id"])
    api.clock.advance(61)
    assert ok(api.get(f"/api/tasks/{task['id']}"))["status"] == "failed"  # the read applies it
    data, took = answered(answer)
    assert took < WAKE_BOUND
    assert (data["done"], data["status"]) == (True, "failed")


def test_deleting_the_task_ends_the_wait_with_404(
    api: Api, pool: ThreadPoolExecutor, waits: threading.Semaphore
) -> None:
    register(api)
    task = create(api)
    answer = waiting(api, pool, waits, task["id"])
    ok(api.delete(f"/api/tasks/{task['id']}"))
    fails(answer.result(timeout=WAKE_BOUND + 5), 404, "not_found")


def test_a_bulk_delete_ends_the_wait_with_404(
    api: Api, pool: ThreadPoolExecutor, waits: threading.Semaphore
) -> None:
    register(api)
    task = create(api)
    answer = waiting(api, pool, waits, task["id"])
    ok(api.post("/api/tasks/bulk", json={"action": "delete", "filter": {"ids": [task["id"]]}}))
    fails(answer.result(timeout=WAKE_BOUND + 5), 404, "not_found")


@pytest.mark.parametrize("timeout", ["-1", "61", "soon"])
def test_a_timeout_out_of_range_is_refused(api: Api, timeout: str) -> None:
    register(api)
    task = create(api)
    body = fails(
        api.get(f"/api/tasks/{task['id']}/wait", params={"timeout": timeout}), 400, "validation_failed"
    )
    assert any(detail.startswith("timeout:") for detail in body["details"])


def test_an_unknown_task_is_404(api: Api) -> None:
    fails(api.get("/api/tasks/999999/wait", params={"timeout": 1}), 404, "not_found")
    fails(api.get("/api/tasks/nope/wait"), 404, "not_found")


def test_waits_do_not_count_against_the_request_cap(
    make_live_api: ServerFactory, pool: ThreadPoolExecutor, waits: threading.Semaphore
) -> None:
    server = make_live_api(max_concurrent_requests=2)
    register(server)
    task = create(server)
    answers = [waiting(server, pool, waits, task["id"]) for _ in range(4)]
    # Four waits hold their requests; the two slots are still free for the work that ends them.
    claim(server)
    ok(server.post(f"/api/tasks/{task['id']}/complete", json={"worker_id": "w1", "success": True}))
    for answer in answers:
        data, took = answered(answer)
        assert data["done"] is True
        assert took < WAKE_BOUND


def test_a_wait_whose_caller_hung_up_stops(live_api: Api, waits: threading.Semaphore) -> None:
    register(live_api)
    task = create(live_api)
    head = (
        f"GET /api/tasks/{task['id']}/wait?timeout=60 HTTP/1.1\r\n"
        f"Host: test\r\nX-API-Key: {ADMIN_KEY}\r\n\r\n"
    )
    with socket.create_connection(address(live_api), timeout=10) as sock:
        sock.sendall(head.encode())
        assert waits.acquire(timeout=10), "the wait never began to sleep"
    # Once it notices the hang-up the wait stops sleeping: no more sleeps begin after that.
    deadline = time.monotonic() + 10
    while waits.acquire(timeout=3):
        assert time.monotonic() < deadline, "the wait kept sleeping after its caller left"


def test_a_task_ended_through_another_server_wakes_the_wait(
    make_api: ServerFactory, pool: ThreadPoolExecutor, waits: threading.Semaphore
) -> None:
    """Two apps on one database: the end is heard across processes (PostgreSQL NOTIFY on the
    ends channel, the SQLite file's watcher; MySQL re-reads every second)."""
    here, there = make_api(), make_api()
    register(there, max_attempts=1)
    task = create(there)
    claim(there)
    answer = waiting(here, pool, waits, task["id"])
    ok(there.post(f"/api/tasks/{task['id']}/complete", json={"worker_id": "w1", "success": True}))
    data, took = answered(answer)
    assert (data["done"], data["status"]) == (True, "completed")
    assert took < WAKE_BOUND


def test_a_batch_ended_through_another_server_wakes_every_wait(
    make_api: ServerFactory, pool: ThreadPoolExecutor, waits: threading.Semaphore
) -> None:
    here, there = make_api(), make_api()
    register(there)
    tasks = [create(there, params={"n": n}) for n in range(3)]
    ok(there.post("/api/tasks/claim", json={"worker_id": "w1", "limit": 3}))
    answers = [waiting(here, pool, waits, task["id"]) for task in tasks]
    results = [{"id": task["id"], "success": True} for task in tasks]
    ok(there.post("/api/tasks/complete-batch", json={"worker_id": "w1", "results": results}))
    for answer in answers:
        data, took = answered(answer)
        assert data["done"] is True
        assert took < WAKE_BOUND
