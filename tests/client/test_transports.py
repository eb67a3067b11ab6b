"""Each client's two HTTP transports answer alike: the blocking client's libcurl (the default)
and httpx (where no pycurl wheel installs), and the async client's aiohttp (the default) and
httpx (where aiohttp does not install). Each sends what a call asks — its method, query, body
and headers — and reports a failure as the core needs it: whether the request may have reached
the server."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qsl

import pytest

from taskmanager import AsyncTaskManagerClient, TaskManagerClient, TaskManagerConnectionError
from taskmanager.client.aio import AioHTTPTransport
from taskmanager.client.async_ import AsyncHTTPTransport
from taskmanager.client.config import TaskManagerConfig
from taskmanager.client.curl import CurlTransport
from taskmanager.client.protocol import Request, Response
from taskmanager.client.sync import HTTPTransport
from tests.conftest import RunningServer, free_port

TRANSPORTS = {"curl": CurlTransport, "httpx": HTTPTransport}
ASYNC_TRANSPORTS = {"aiohttp": AioHTTPTransport, "httpx": AsyncHTTPTransport}
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
            "client_port": scope["client"][1],
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


def maker(kind: Any, made: list[Any]) -> Any:
    """``make(url, timeout=30)``: a transport of ``kind`` to ``url``, noted in ``made``."""

    def make(url: str, timeout: float = 30) -> Any:
        config = TaskManagerConfig(api_url=url, api_key="k", timeout=timeout).resolved()
        made.append(kind(config, HEADERS))
        return made[-1]

    return make


@pytest.fixture(params=sorted(TRANSPORTS))
def transport_of(request: pytest.FixtureRequest) -> Iterator[Any]:
    made: list[Any] = []
    yield maker(TRANSPORTS[request.param], made)
    for transport in made:
        transport.close()


@pytest.fixture(params=sorted(ASYNC_TRANSPORTS))
async def async_transport_of(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    made: list[Any] = []
    yield maker(ASYNC_TRANSPORTS[request.param], made)
    for transport in made:
        await transport.aclose()


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


@pytest.fixture
def through_a_proxy(echo: tuple[Echo, str], monkeypatch: pytest.MonkeyPatch) -> str:
    """Echo named as the environment's proxy; the URL of a server only it can reach."""
    _, url = echo
    for name in ("http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(name, url)
    for name in ("no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    return "http://tasks.invalid:8000"


def check_proxied(answer: Response) -> None:
    seen = json.loads(answer.content)
    assert answer.status_code == 418
    assert (seen["path"], seen["headers"]["host"]) == ("/api/health", "tasks.invalid:8000")


def test_a_proxy_is_taken_from_the_environment(through_a_proxy: str, transport_of: Any) -> None:
    check_proxied(transport_of(through_a_proxy).send(Request("GET", "/health")))


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


# -- the async client's transports ------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE"])
async def test_an_async_request_arrives_as_the_call_made_it(
    echo: tuple[Echo, str], async_transport_of: Any, method: str
) -> None:
    _, url = echo
    request = a_request(method)
    check_arrival(request, await async_transport_of(url).send(request))


async def test_an_async_refused_connection_never_sent_the_request(async_transport_of: Any) -> None:
    transport = async_transport_of(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(TaskManagerConnectionError) as caught:
        await transport.send(Request("POST", "/tasks/claim", content=b"{}"))
    assert caught.value.request_sent is False


@pytest.fixture
def unanswered_port() -> Iterator[int]:
    """A port whose listener's queue is full: a connection to it is never made (its SYN is
    dropped), so a request to it times out while connecting."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port: int = listener.getsockname()[1]
    queued = [socket.socket() for _ in range(4)]
    for sock in queued:
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
    time.sleep(0.1)
    yield port
    for sock in [*queued, listener]:
        sock.close()


async def test_an_async_request_that_times_out_connecting_was_never_sent(
    unanswered_port: int, async_transport_of: Any
) -> None:
    transport = async_transport_of(f"http://127.0.0.1:{unanswered_port}")
    with pytest.raises(TaskManagerConnectionError) as caught:
        await transport.send(Request("POST", "/tasks/claim", content=b"{}", timeout=0.3))
    assert caught.value.request_sent is False


async def test_an_async_answer_that_outlasts_the_timeout_may_have_been_acted_on(
    echo: tuple[Echo, str], async_transport_of: Any
) -> None:
    _, url = echo
    transport = async_transport_of(url, timeout=30)
    await transport.send(Request("GET", "/health"))  # the held request goes on a kept connection
    started = time.monotonic()
    with pytest.raises(TaskManagerConnectionError) as caught:
        await transport.send(Request("POST", "/hold", content=b"{}", timeout=0.3))
    assert time.monotonic() - started < 5
    assert caught.value.request_sent is True


async def test_an_async_request_without_its_own_timeout_has_the_clients(
    echo: tuple[Echo, str], async_transport_of: Any
) -> None:
    _, url = echo
    transport = async_transport_of(url, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(TaskManagerConnectionError) as caught:
        await transport.send(Request("GET", "/hold"))
    assert time.monotonic() - started < 5
    assert caught.value.request_sent is True


async def test_an_async_transport_takes_its_proxy_from_the_environment(
    through_a_proxy: str, async_transport_of: Any
) -> None:
    check_proxied(await async_transport_of(through_a_proxy).send(Request("GET", "/health")))


async def test_an_async_transport_keeps_its_connection_and_sends_concurrently(
    echo: tuple[Echo, str], async_transport_of: Any
) -> None:
    _, url = echo
    transport = async_transport_of(url)
    one_by_one = [json.loads((await transport.send(Request("GET", "/health"))).content) for _ in range(5)]
    assert len({seen["client_port"] for seen in one_by_one}) == 1
    together = await asyncio.gather(*(transport.send(Request("GET", "/health")) for _ in range(20)))
    assert [answer.status_code for answer in together] == [418] * 20


async def test_an_async_transport_made_outside_its_loop_closes_unused_or_used(
    echo: tuple[Echo, str], async_transport_of: Any
) -> None:
    """Made before a loop runs (as a client often is), it opens its session in the loop that
    sends; closed, used or not, it leaves nothing unclosed (a warning here fails the test)."""
    _, url = echo
    made = await asyncio.to_thread(async_transport_of, url)
    unused = await asyncio.to_thread(async_transport_of, url)
    assert (await made.send(Request("GET", "/health"))).status_code == 418
    await made.aclose()
    await unused.aclose()


def test_each_client_sends_with_its_fast_transport_and_falls_back_to_httpx(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sync_client = TaskManagerClient("http://127.0.0.1:9")
    async_client = AsyncTaskManagerClient("http://127.0.0.1:9")
    assert isinstance(sync_client._transport, CurlTransport)
    assert isinstance(async_client._transport, AioHTTPTransport)
    sync_client.close()
    for library, module in (("pycurl", "curl"), ("aiohttp", "aio")):
        monkeypatch.setitem(sys.modules, library, None)  # its import fails, as where none installs
        monkeypatch.delitem(sys.modules, f"taskmanager.client.{module}")
    sync_client = TaskManagerClient("http://127.0.0.1:9")
    async_client = AsyncTaskManagerClient("http://127.0.0.1:9")
    assert isinstance(sync_client._transport, HTTPTransport)
    assert isinstance(async_client._transport, AsyncHTTPTransport)
    sync_client.close()
    asyncio.run(async_client.aclose())
