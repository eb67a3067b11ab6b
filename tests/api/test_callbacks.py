"""``callback_url`` over HTTP (API.md B.5): refused without a webhook secret and for addresses the
policy refuses (400 naming the field), shown on the task and its type, and delivered by the app's
own delivery loop (started in its lifespan) to a receiver on a real socket, signed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from taskmanager.engine import callbacks
from tests.api.conftest import claim, create, fails, ok, register
from tests.conftest import ServerFactory

SECRET = "api-test-secret"
ALLOWED = {"webhook_secret": SECRET, "webhook_allow_networks": "127.0.0.1/32"}


class Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.arrived = threading.Event()
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((dict(self.headers.items()), body))
        self.send_response(204)
        self.end_headers()
        self.server.arrived.set()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def detail(response: Any) -> str:
    details: list[str] = response.json()["details"]
    assert len(details) == 1
    return details[0]


def test_without_a_secret_a_callback_url_is_400_naming_the_field(make_api: ServerFactory) -> None:
    api = make_api()
    refused = api.post(
        "/api/task-types/register",
        json={
            "name": "t",
            "version": "1",
            "param_schema": {"type": "object"},
            "callback_url": "https://example.com/x",
        },
    )
    fails(refused, 400, "validation_failed", "Validation failed")
    assert detail(refused).startswith("callback_url: ")
    register(api, "t")
    refused = api.post(
        "/api/tasks", json={"type": "t", "params": {}, "callback_url": "https://example.com/x"}
    )
    fails(refused, 400, "validation_failed", "Validation failed")
    assert "TASKMANAGER_WEBHOOK_SECRET" in detail(refused)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.2/hook", "not a public address"),
        ("http://169.254.169.254/latest/meta-data", "not a public address"),
        ("http://10.1.2.3/hook", "not a public address"),
        ("ftp://127.0.0.1/hook", "must be an http or https URL"),
        ("http://user:pw@127.0.0.1/hook", "must not carry credentials"),
        ("https://example.com/" + "x" * 2048, "at most 2048 characters"),
    ],
)
def test_addresses_the_policy_refuses_are_400_naming_the_field(
    make_api: ServerFactory, url: str, why: str
) -> None:
    api = make_api(**ALLOWED)  # 127.0.0.1/32 only: 127.0.0.2 is still loopback
    register(api, "t")
    refused = api.post("/api/tasks", json={"type": "t", "params": {}, "callback_url": url})
    fails(refused, 400, "validation_failed")
    assert detail(refused).startswith("callback_url: ")
    assert why in detail(refused)


def test_an_ended_task_is_delivered_by_the_apps_own_loop(make_api: ServerFactory, receiver: Receiver) -> None:
    api = make_api(**ALLOWED)
    assert register(api, "t", callback_url=receiver.url)["callback_url"] == receiver.url
    task = create(api, "t", {"n": 1})
    assert task["callback_url"] == receiver.url  # the type's, taken at create
    assert claim(api)["id"] == task["id"]
    ok(api.post(f"/api/tasks/{task['id']}/complete", json={"worker_id": "w1", "success": True}))
    assert receiver.arrived.wait(10)
    [(headers, body)] = receiver.received
    assert headers[callbacks.SIGNATURE_HEADER] == callbacks.signature(SECRET, body)
    assert headers[callbacks.DELIVERY_HEADER].isdigit()
    shown = ok(api.get(f"/api/tasks/{task['id']}"))
    assert body == callbacks.body_of(shown)  # the task object, as the API shows it
