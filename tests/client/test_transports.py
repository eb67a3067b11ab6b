"""The blocking client's two HTTP transports answer alike: libcurl's (the default) and httpx's
(where no pycurl wheel installs). Each sends what a call asks — its method, query, body and
headers — and reports a failure as the core needs it: whether the request may have reached
the server."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

import pytest

from taskmanager import TaskManagerConnectionError
from taskmanager.client.config import TaskManagerConfig
from taskmanager.client.curl import CurlTransport
from taskmanager.client.protocol import Request, Response
from taskmanager.client.sync import HTTPTransport
from tests.conftest import RunningServer, free_port

TRANSPORTS = {"curl": CurlTransport, "httpx": HTTPTransport}
HEADERS = {"X-API-Key": "k", "Accept": "application/json"}
#: A query as a call makes it: its order kept, a name repeated, characters a URL must escape.
PARAMS = (("status", "failed"), ("type", "a b"), ("status", "ended"), ("q", "x+y&z=1/é"))


class Echo:
    """An ASGI app that answers every request with what it received (as JSON), and holds a
    request to ``/hold`` until ``release`` is set."""

    def __init__(self) -> None:
        self.release = threading.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"].endswith("/hold"):
            await asyncio.to_thread(self.release.wait, 10)
        seen = {
            "method": scope["method"],
            "path": scope["path"],
            "query": scope["query_string"].decode(),
            "headers": {k.decode(): v.decode() for k, v in scope["headers"]},
            "body_length": len(body),
            "body_start": body[:20].decode(errors="replace"),
        }
        headers = [(b"content-type", b"application/json"), (b"Retry-After", b"7")]
        await send({"type": "http.response.start", "status": 418, "headers": headers})
        await send({"type": "http.response.body", "body": json.dumps(seen).encode()})


@pytest.fixture
def echo() -> Iterator[tuple[Echo, str]]:
    app = Echo()
    with RunningServer(app) as running:
        yield app, running.url
        app.release.set()


@pytest.fixture(params=sorted(TRANSPORTS))
def transport_of(request: pytest.FixtureRequest) -> Iterator[Any]:
    made: list[Any] = []

    def make(url: str, timeout: float = 30) -> Any:
        config = TaskManagerConfig(api_url=url, api_key="k", timeout=timeout).resolved()
        made.append(TRANSPORTS[request.param](config, HEADERS))
        return made[-1]

    yield make
    for transport in made:
        transport.close()


def a_request(method: str) -> Request:
    """A call's request: a query, and for a POST or PUT a body over 1 MB."""
    content = json.dumps({"x": "a" * 1_100_000}).encode() if method in ("POST", "PUT") else None
    return Request(method, "/tasks/5", params=PARAMS, content=content)


def check_arrival(request: Request, answer: Response) -> None:
    """The answer Echo gave to ``request``: the request arrived as the call made it."""
    seen = json.loads(answer.content)
    assert answer.status_code == 418
    assert answer.headers["retry-after"] == "7"  # names lower-case, as the core reads them
    assert (seen["method"], seen["path"]) == (request.method, "/api/tasks/5")
    assert tuple(parse_qsl(seen["query"])) == PARAMS
    assert seen["headers"]["x-api-key"] == "k"
    assert seen["headers"]["accept"] == "application/json"
    if request.content is None:
        assert seen["body_length"] == 0
    else:  # a body over 1 MB goes in one round trip, as it was given
        assert seen["body_length"] == len(request.content) > 1_000_000
        assert seen["body_start"] == '{"x": "' + "a" * 13
        assert seen["headers"]["content-type"] == "application/json"
        assert "expect" not in seen["headers"]


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE"])
def test_a_request_arrives_as_the_call_made_it(
    echo: tuple[Echo, str], transport_of: Any, method: str
) -> None:
    _, url = echo
    request = a_request(method)
    check_arrival(request, transport_of(url).send(request))


def test_a_refused_connection_never_sent_the_request(transport_of: Any) -> None:
    transport = transport_of(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(TaskManagerConnectionError) as caught:
        transport.send(Request("POST", "/tasks/claim", content=b"{}"))
    assert caught.value.request_sent is False


def test_an_answer_that_outlasts_the_timeout_may_have_been_acted_on(
    echo: tuple[Echo, str], transport_of: Any
) -> None:
    _, url = echo
    transport = transport_of(url, timeout=30)
    with pytest.raises(TaskManagerConnectionError) as caught:
        transport.send(Request("POST", "/hold", content=b"{}", timeout=0.3))
    assert caught.value.request_sent is True


def test_a_request_without_its_own_timeout_has_the_clients(echo: tuple[Echo, str], transport_of: Any) -> None:
    _, url = echo
    transport = transport_of(url, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(TaskManagerConnectionError) as caught:
        transport.send(Request("GET", "/hold"))
    assert time.monotonic() - started < 5
    assert caught.value.request_sent is True


def test_the_connection_is_kept_and_shared_by_nothing_between_threads(
    echo: tuple[Echo, str], transport_of: Any
) -> None:
    _, url = echo
    transport = transport_of(url)
    answers: list[int] = []

    def send_some() -> None:
        for _ in range(20):
            answers.append(transport.send(Request("GET", "/health")).status_code)

    threads = [threading.Thread(target=send_some) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [418] * 80
