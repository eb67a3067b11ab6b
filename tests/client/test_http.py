"""What only the HTTP clients do: keys, URLs and configuration, and retries — against the real
server, and against a scripted server that answers 503 or 429 before it answers 200."""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

from taskmanager import (
    TaskManagerAuthError,
    TaskManagerClient,
    TaskManagerConfig,
    TaskManagerConnectionError,
    TaskManagerRateLimitError,
    TaskManagerServerError,
    TaskManagerUnavailableError,
)
from tests.client.conftest import HTTP_KINDS, Blocking, LoopThread, make_client
from tests.conftest import ADMIN_KEY, Api, RunningServer, ServerFactory, free_port

HEALTHY = {"status": "healthy", "database": "connected", "version": "9.9.9", "timestamp": 1}
Answer = tuple[int, dict[str, Any] | str, dict[str, str]]


def envelope(data: Any) -> dict[str, Any]:
    return {"success": True, "message": "ok", "data": data, "timestamp": 1}


def failure(code: str, message: str) -> dict[str, Any]:
    return {"success": False, "error": message, "message": message, "code": code, "timestamp": 1}


class ScriptedServer:
    """An ASGI app that gives its scripted answers in order (then the last one again), and keeps
    every request it saw."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.seen: list[tuple[str, str, float]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        self.seen.append((scope["method"], scope["path"], time.monotonic()))
        status, body, headers = self.answers[min(len(self.seen), len(self.answers)) - 1]
        content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": content})


@pytest.fixture(params=HTTP_KINDS)
def http_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def scripted(http_kind: str) -> Iterator[Any]:
    """``start(*answers, **client_options)``: a scripted server and a client of each HTTP kind."""
    opened: list[tuple[RunningServer, Any]] = []

    def start(*answers: Answer, **options: Any) -> tuple[ScriptedServer, Any]:
        app = ScriptedServer(*answers)
        running = RunningServer(app).__enter__()
        client = client_for(http_kind, running.url, **{"retry_backoff": 0.01, **options})
        opened.append((running, client))
        return app, client

    yield start
    for running, client in opened:
        client.close()
        running.__exit__()


def client_for(kind: str, url: str, **options: Any) -> Any:
    if kind == "sync":
        return TaskManagerClient(url, "key", **options)
    from taskmanager import AsyncTaskManagerClient

    return Blocking(AsyncTaskManagerClient(url, "key", **options), LoopThread())


# -- keys, URLs and configuration ---------------------------------------------------------------


@pytest.mark.parametrize("kind", HTTP_KINDS)
def test_a_wrong_key_is_an_auth_error(kind: str, api: Api) -> None:
    client = make_client(kind, api, api_key="wrong")
    try:
        assert client.health_check().status == "healthy", "health needs no key"
        with pytest.raises(TaskManagerAuthError) as caught:
            client.list_task_types()
        assert caught.value.status_code == 401
        assert caught.value.error == "Unauthorized"
        assert caught.value.message.startswith("Invalid or missing API key")
    finally:
        client.close()


@pytest.mark.parametrize("suffix", ["", "/", "/api", "/api/"])
def test_the_url_may_end_with_or_without_api(suffix: str, api: Api) -> None:
    with TaskManagerClient(api.url + suffix, ADMIN_KEY) as client:
        assert client.list_task_types() == []
        assert client.config.base_url == api.url + "/api"


def test_configuration_from_the_environment(monkeypatch: pytest.MonkeyPatch, api: Api) -> None:
    monkeypatch.setenv("TASKMANAGER_API_URL", api.url + "/api")
    monkeypatch.setenv("TASKMANAGER_API_KEY", ADMIN_KEY)
    with TaskManagerClient() as client:
        assert client.config.api_url == api.url
        assert client.list_task_types() == []
        assert client.worker_id, "a worker id is made up when none is given"


def test_a_config_object_is_accepted(make_live_api: ServerFactory) -> None:
    api = make_live_api()
    config = TaskManagerConfig(api.url, ADMIN_KEY, timeout=5, retry_attempts=1)
    for client in (TaskManagerClient(config), TaskManagerClient(config=config)):
        with client:
            assert client.config.timeout == 5
            assert client.config.retry_attempts == 1
            assert client.list_task_types() == []
    with TaskManagerClient(config, timeout=7) as client:
        assert client.config.timeout == 7, "arguments override the config"


# -- retries ------------------------------------------------------------------------------------


def test_a_read_is_retried_through_503s(scripted: Any) -> None:
    busy = (503, failure("unavailable", "Database unavailable"), {})
    app, client = scripted(busy, busy, (200, envelope(HEALTHY), {}))
    assert client.health_check().version == "9.9.9"
    assert len(app.seen) == 3


def test_backoff_doubles_between_retries(scripted: Any) -> None:
    gateway = (502, "<html>Bad Gateway</html>", {"Content-Type": "text/html"})
    app, client = scripted(gateway, gateway, gateway, (200, envelope(HEALTHY), {}), retry_backoff=0.1)
    client.health_check()
    times = [seen[2] for seen in app.seen]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert len(gaps) == 3
    for gap, expected in zip(gaps, (0.1, 0.2, 0.4), strict=True):
        assert expected * 0.85 < gap < expected + 0.25, gaps


def test_retries_give_up_after_retry_attempts(scripted: Any) -> None:
    app, client = scripted((504, "", {}), retry_attempts=2)
    with pytest.raises(TaskManagerServerError) as caught:
        client.get_task(1)
    assert caught.value.status_code == 504
    assert len(app.seen) == 3, "one send and two retries"


def test_a_claim_is_not_retried_after_a_503(scripted: Any) -> None:
    app, client = scripted((503, failure("unavailable", "Database unavailable"), {}))
    with pytest.raises(TaskManagerUnavailableError):
        client.claim_task("demo")
    assert len(app.seen) == 1, "a repeated claim could take a second task"


def test_a_complete_is_retried_only_with_a_lease_token(scripted: Any) -> None:
    busy = (503, failure("unavailable", "Database unavailable"), {})
    done = {"id": 7, "status": "completed", "message": "ok", "attempts": 1, "run_after": None}
    app, client = scripted(busy, busy, (200, envelope(done), {}))
    with pytest.raises(TaskManagerUnavailableError):
        client.complete_task(7, {"r": 1})
    assert len(app.seen) == 1
    assert client.complete_task(7, {"r": 1}, lease_token="tok").status == "completed"
    assert len(app.seen) == 3


def test_429_is_retried_after_retry_after_for_any_request(scripted: Any) -> None:
    limited = (429, {**failure("rate_limited", "Too Many Requests"), "retry_after": 1}, {"Retry-After": "0"})
    claimed = {"tasks": [], "count": 0}
    app, client = scripted(limited, (200, envelope(claimed), {}))
    assert client.claim_tasks("demo", limit=2) == []
    assert len(app.seen) == 2, "refused before it was processed: even a claim may be sent again"


def test_a_500_is_retried_after_its_retry_after(scripted: Any) -> None:
    broken = (500, failure("internal", "Internal error"), {"Retry-After": "0.3"})
    app, client = scripted(broken, (200, envelope(HEALTHY), {}), retry_backoff=0.01)
    assert client.health_check().version == "9.9.9"
    gap = app.seen[1][2] - app.seen[0][2]
    assert 0.3 <= gap < 0.8, "waited as asked, not the 0.01 s backoff"


def test_a_retry_after_longer_than_the_cap_is_not_waited_for(scripted: Any) -> None:
    limited = (429, failure("rate_limited", "Too Many Requests"), {"Retry-After": "120"})
    app, client = scripted(limited, retry_max_delay=5)
    with pytest.raises(TaskManagerRateLimitError) as caught:
        client.health_check()
    assert caught.value.retry_after == 120
    assert len(app.seen) == 1


def test_an_answer_that_is_not_an_envelope_is_an_api_error(scripted: Any) -> None:
    from taskmanager import TaskManagerAPIError

    app, client = scripted((200, {"hello": "world"}, {}), retry_attempts=0)
    with pytest.raises(TaskManagerAPIError, match="HTTP 200"):
        client.health_check()
    app.answers = [(200, envelope({"unexpected": True}), {})]
    with pytest.raises(TaskManagerAPIError, match="Unexpected answer"):
        client.health_check()


@pytest.mark.parametrize("kind", HTTP_KINDS)
def test_no_server_is_a_connection_error_after_the_retries(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = client_for(kind, f"http://127.0.0.1:{free_port()}", retry_backoff=0.01, retry_attempts=2)
    try:
        with (
            caplog.at_level(logging.DEBUG, "taskmanager.client"),
            pytest.raises(TaskManagerConnectionError) as caught,
        ):
            client.claim_task("demo")
        assert caught.value.request_sent is False
        retries = [r for r in caplog.records if r.getMessage().startswith("retrying POST /tasks/claim")]
        assert len(retries) == 2, "refused: the claim never left, so it may be sent again"
        sends = [r for r in caplog.records if "POST /tasks/claim failed" in r.getMessage()]
        assert len(sends) == 3, "each send is logged at DEBUG"
    finally:
        client.close()
