"""Embedded mode as a user starts it (a database URL instead of a server URL, nothing else), and
as the server's own app in-process: every route answered as the server answers it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from taskmanager import (
    AsyncTaskManagerClient,
    LeaseLostError,
    TaskManagerClient,
    TaskManagerNotFoundError,
    TaskManagerValidationError,
)
from taskmanager.client.embedded import SyncEmbeddedTransport
from taskmanager.client.protocol import Request, Response
from taskmanager.engine.service import TaskService
from taskmanager.errors import RateLimited
from taskmanager.server.routes import ROUTES
from taskmanager.server.table import Route
from tests.conftest import Api


def test_a_sqlite_url_runs_the_engine_in_process(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'local.db'}"
    with TaskManagerClient(url, worker_id="local") as client:
        assert client.health_check().database == "connected"
        client.register_task_type("local.job", "1", {"type": "object"})
        created = client.create_task("local.job", {"n": 1})
        task = client.claim_task("local.job")
        assert task is not None
        assert task.id == created.id
        assert client.complete_task(task.id, {"ok": True}).status == "completed"
        with pytest.raises(TaskManagerNotFoundError):
            client.get_task(404)
        with pytest.raises(TaskManagerValidationError, match="Invalid sort_order"):
            client.claim_task(sort_order="sideways")
    assert (tmp_path / "local.db").exists(), "the database was made and migrated on first use"

    with TaskManagerClient(url) as again:
        assert again.get_task(created.id).result == {"ok": True}, "it persists"


def test_the_async_twin_runs_in_the_callers_loop(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'local.db'}"

    async def scenario() -> None:
        async with AsyncTaskManagerClient(url, worker_id="local") as client:
            await client.register_task_type("local.job", "1", {"type": "object"})
            await client.create_tasks([{"type": "local.job", "params": {"n": n}} for n in range(3)])
            claimed = await client.claim_tasks("local.job", limit=3)
            assert len(claimed) == 3
            await client.cancel_task(claimed[0].id)
            with pytest.raises(LeaseLostError):
                await client.complete_task(claimed[0].id)
            ids = [t.id async for t in client.list_tasks(page_size=2)]
            assert ids == [3, 2, 1]

    asyncio.run(scenario())


def test_a_malformed_body_is_refused_as_the_server_would(tmp_path: Path) -> None:
    transport = SyncEmbeddedTransport(f"sqlite:///{tmp_path / 'local.db'}")
    try:
        for body, code in ((b"", "invalid_json"), (b"{nope", "invalid_json"), (b"[]", "validation_failed")):
            answer = transport.send(Request("POST", "/tasks", content=body))
            assert answer.status_code == 400
            assert f'"code":"{code}"' in answer.content.decode()
        missing = transport.send(Request("GET", "/nowhere"))
        assert missing.status_code == 404
        assert b"Endpoint not found" in missing.content
    finally:
        transport.close()


# -- the same app as the server ------------------------------------------------------------


def _comparable(content: bytes) -> Any:
    """An answer's envelope without its timestamps (the two answers are not sent in the same second)."""
    body = json.loads(content)
    body.pop("timestamp", None)
    if isinstance(body.get("data"), dict):
        body["data"].pop("timestamp", None)
    return body


@pytest.fixture
def embedded(api: Api) -> Iterator[SyncEmbeddedTransport]:
    """An embedded transport on the server's database, with the server's clock."""
    transport = SyncEmbeddedTransport(api.database.url, clock=api.clock, migrate=False)
    yield transport
    transport.close()


def _both(api: Api, embedded: SyncEmbeddedTransport, request: Request) -> tuple[httpx.Response, Response]:
    """``request`` sent to the server over HTTP and to the embedded app."""
    over_http = api.request(
        request.method,
        f"/api{request.path}",
        params=request.params,
        content=request.content,
        headers={"Content-Type": "application/json"},
    )
    return over_http, embedded.send(request)


DEEP: Any = {}
for _ in range(100):
    DEEP = {"a": DEEP}
REFUSED_BODIES = {
    "nul": {"type": "demo\x00echo", "params": {}},
    "nul-in-a-key": {"type": "demo.echo", "params": {"a\x00": 1}},
    "100-deep": {"type": "demo.echo", "params": DEEP},
}


@pytest.mark.parametrize("name", sorted(REFUSED_BODIES))
def test_a_body_the_server_refuses_is_refused_alike(
    api: Api, embedded: SyncEmbeddedTransport, name: str
) -> None:
    content = json.dumps(REFUSED_BODIES[name]).encode()
    over_http, answer = _both(api, embedded, Request("POST", "/tasks", content=content))
    assert over_http.status_code == answer.status_code == 400
    assert _comparable(answer.content) == _comparable(over_http.content)
    assert _comparable(answer.content)["code"] == "validation_failed"


def test_an_errors_extra_fields_reach_the_embedded_caller(
    api: Api, embedded: SyncEmbeddedTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    extra = {"retry_after": 7, "limit": 10, "window": 60}

    async def limited(*_args: object, **_kwargs: object) -> None:
        raise RateLimited("Too Many Requests", extra=extra)

    monkeypatch.setattr(TaskService, "get_task", limited)
    over_http, answer = _both(api, embedded, Request("GET", "/tasks/1"))
    assert over_http.status_code == answer.status_code == 429
    body = _comparable(answer.content)
    assert body == _comparable(over_http.content)
    assert extra.items() <= body.items()


def _request_for(route: Route[Any]) -> Request:
    """A request ``route`` answers without changing anything: a body that breaks its rules, or
    ids that name nothing."""
    path = route.path.removeprefix("/api").replace("{id}", "404").replace("{name:path}", "no.such.type")
    return Request(route.method, path, content=b"{}" if route.body is not None else None)


#: Routes answering the envelope: a stream (``/events``) never ends, and the metrics text counts
#: each app's own requests, so neither can be the same whole body from two apps.
ENVELOPE_ROUTES = [route for route in ROUTES if route.produces is None]


@pytest.mark.parametrize("route", ENVELOPE_ROUTES, ids=lambda route: f"{route.method} {route.path}")
def test_every_route_the_server_answers_is_answered_alike(
    api: Api, embedded: SyncEmbeddedTransport, route: Route[Any]
) -> None:
    over_http, answer = _both(api, embedded, _request_for(route))
    assert (answer.status_code, _comparable(answer.content)) == (
        over_http.status_code,
        _comparable(over_http.content),
    )
    assert b"Endpoint not found" not in answer.content
