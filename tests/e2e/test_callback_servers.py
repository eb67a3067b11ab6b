"""Callbacks across processes (API.md B.5): real ``taskmanager serve`` processes on one database
and a real receiver on 127.0.0.1 (allowed by ``TASKMANAGER_WEBHOOK_ALLOW_NETWORKS``).

- No loss across a restart: a server ends a task while its receiver is down (the first try
  fails and is in the history), is killed (SIGKILL: no shutdown of any kind), and another server
  started on the same database delivers it, signed, with the same delivery id.
- No duplicate sends: two servers ending tasks at once each deliver from the one outbox, and no
  try of a delivery is sent twice, nor two at once.

On each database."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_KEY, TestDatabase, free_port
from tests.e2e.process import ServerProcess

pytestmark = pytest.mark.slow  # several server processes on one database: docs/development.md

HEADERS = {"X-API-Key": ADMIN_KEY}
SECRET = "e2e-webhook-secret"
#: A failed try is retried 2 s later (TASKMANAGER_WEBHOOK_RETRY_DELAY; 15 s by default).
ENV = {
    "TASKMANAGER_WEBHOOK_SECRET": SECRET,
    "TASKMANAGER_WEBHOOK_ALLOW_NETWORKS": "127.0.0.1/32",
    "TASKMANAGER_WEBHOOK_RETRY_DELAY": "2",
}
#: Seconds to wait for what a server does by itself.
PATIENCE = 60.0


class Receiver(ThreadingHTTPServer):
    """A receiver on 127.0.0.1: records each POST (headers, exact body), answers 200 after
    ``delay`` seconds, counts the sends of each delivery id under way at once, and sets
    ``arrived`` once ``expected`` POSTs came."""

    daemon_threads = True

    def __init__(self, port: int = 0, delay: float = 0.0, expected: int = 1) -> None:
        self.delay = delay
        self.expected = expected
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.in_flight: Counter[str] = Counter()
        self.most_at_once: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.arrived = threading.Event()
        super().__init__(("127.0.0.1", port), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        delivery = self.headers["X-TaskManager-Delivery"]
        receiver = self.server
        with receiver.lock:
            receiver.in_flight[delivery] += 1
            receiver.most_at_once[delivery] = max(
                receiver.most_at_once[delivery], receiver.in_flight[delivery]
            )
        if receiver.delay:
            time.sleep(receiver.delay)  # a slow receiver: the time two sends could overlap in
        with receiver.lock:
            receiver.in_flight[delivery] -= 1
            receiver.received.append((dict(self.headers.items()), body))
            if len(receiver.received) >= receiver.expected:
                receiver.arrived.set()
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def running(receiver: Receiver) -> Iterator[Receiver]:
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.shutdown()
        receiver.server_close()
        thread.join(5)


def signed(secret: str, body: bytes, header: str) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header)


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()["data"]


def history_until(client: httpx.Client, task_id: int, event: str, count: int = 1) -> list[dict[str, Any]]:
    """The task's callback events once ``count`` of ``event`` are recorded (the server records
    a try after its answer: there is no signal to wait on from here, so the history is read)."""
    deadline = time.monotonic() + PATIENCE
    while True:
        events = ok(client.get(f"/api/tasks/{task_id}/history"))["events"]
        tries = [e for e in events if e["event"].startswith("callback_")]
        if sum(e["event"] == event for e in tries) >= count:
            return tries
        assert time.monotonic() < deadline, f"no {event} after {PATIENCE} s: {tries}"
        time.sleep(0.1)


def test_a_callback_whose_server_was_killed_is_delivered_by_the_next_one(
    clean_database: TestDatabase,
) -> None:
    port = free_port()  # nothing listens there yet: the receiver is down
    hook = f"http://127.0.0.1:{port}/hooks/done"
    with ServerProcess(clean_database.url, api_key=ADMIN_KEY, env=ENV) as first:
        with httpx.Client(base_url=first.url, headers=HEADERS, timeout=30) as client:
            ok(
                client.post(
                    "/api/task-types/register",
                    json={"name": "job", "version": "1", "param_schema": {"type": "object"}},
                )
            )
            task = ok(
                client.post("/api/tasks", json={"type": "job", "params": {"n": 1}, "callback_url": hook})
            )
            assert task["callback_url"] == hook
            claimed = ok(client.post("/api/tasks/claim", json={"worker_id": "w"}))
            assert claimed["id"] == task["id"]
            ok(client.post(f"/api/tasks/{task['id']}/complete", json={"worker_id": "w", "success": True}))
            (failed,) = history_until(client, task["id"], "callback_failed")
        assert failed["metadata"]["try"] == 1
        assert "next_try_at" in failed["metadata"]
        assert first.proc is not None
        first.proc.kill()  # no lifespan shutdown, no goodbye: the outbox row is all that is left
        first.proc.wait()
    for receiver in running(Receiver(port)):
        with (
            ServerProcess(clean_database.url, api_key=ADMIN_KEY, env=ENV) as second,
            httpx.Client(base_url=second.url, headers=HEADERS, timeout=30) as client,
        ):
            assert receiver.arrived.wait(PATIENCE), second.output()
            [(headers, body)] = receiver.received
            assert signed(SECRET, body, headers["X-TaskManager-Signature"])
            sent = json.loads(body)
            assert (sent["id"], sent["status"], sent["callback_url"]) == (task["id"], "completed", hook)
            tries = history_until(client, task["id"], "callback_delivered")
            # Try 1 failed on the first server (which may have failed a second before it was
            # killed, the receiver still down); the second server's first try delivered it.
            *failures, delivered = [(e["event"], e["metadata"]["try"]) for e in tries]
            assert failures == [("callback_failed", n) for n in range(1, len(failures) + 1)]
            assert 1 <= len(failures) <= 2
            assert delivered == ("callback_delivered", len(failures) + 1)
            assert headers["X-TaskManager-Delivery"] == str(tries[0]["metadata"]["delivery"])


def test_two_servers_never_send_one_try_twice(clean_database: TestDatabase) -> None:
    count = 16
    for receiver in running(Receiver(delay=0.3, expected=count)):
        hook = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
        with (
            ServerProcess(clean_database.url, api_key=ADMIN_KEY, env=ENV) as a,
            ServerProcess(clean_database.url, api_key=ADMIN_KEY, env=ENV) as b,
            httpx.Client(base_url=a.url, headers=HEADERS, timeout=30) as on_a,
            httpx.Client(base_url=b.url, headers=HEADERS, timeout=30) as on_b,
        ):
            ok(
                on_a.post(
                    "/api/task-types/register",
                    json={"name": "job", "version": "1", "param_schema": {"type": "object"}},
                )
            )
            tasks = [{"type": "job", "params": {"n": n}, "callback_url": hook} for n in range(count)]
            assert ok(on_a.post("/api/tasks/batch", json={"tasks": tasks}))["created"] == count
            for client, worker in ((on_a, "wa"), (on_b, "wb")):  # each server ends half of them
                claimed = ok(client.post("/api/tasks/claim", json={"worker_id": worker, "limit": count // 2}))
                results = [{"id": t["id"], "success": True} for t in claimed["tasks"]]
                done = ok(
                    client.post("/api/tasks/complete-batch", json={"worker_id": worker, "results": results})
                )
                assert [r["status"] for r in done["results"]] == ["completed"] * (count // 2)
            assert receiver.arrived.wait(PATIENCE), a.output() + b.output()
            ids = sorted(ok(on_a.get("/api/tasks", params={"limit": 100}))["tasks"], key=lambda t: t["id"])
            for task in ids:
                (delivered,) = history_until(on_b, task["id"], "callback_delivered")
                assert delivered["metadata"]["try"] == 1
        deliveries = Counter(headers["X-TaskManager-Delivery"] for headers, _ in receiver.received)
        assert len(deliveries) == count
        assert set(deliveries.values()) == {1}, f"deliveries sent more than once: {deliveries}"
        assert set(receiver.most_at_once.values()) == {1}
        assert all(
            signed(SECRET, body, headers["X-TaskManager-Signature"]) for headers, body in receiver.received
        )
