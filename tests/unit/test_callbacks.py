"""Callback deliveries' building blocks: the signature a receiver verifies (with the guide's own
snippet), the retry schedule, the address policy (SSRF refusals), and a delivery to a real HTTP
receiver on a socket, connected to the address that was checked."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from taskmanager.engine import callbacks
from taskmanager.server.webhooks import (
    AddressPolicy,
    CallbackRefused,
    HttpTransport,
    delivery_client,
    parse_networks,
    post,
)

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guides" / "callbacks.md"
SECRET = "s3cret-for-tests"


def guide_verify() -> Callable[[str, bytes, str], bool]:
    """The guide's ``verify``, run as written."""
    block = re.search(r"<!-- test: verify -->\n```python\n(.*?)^```", GUIDE.read_text(), re.S | re.M)
    assert block is not None, "the guide's verification snippet is gone"
    namespace: dict[str, Any] = {}
    exec(compile(block.group(1), str(GUIDE), "exec"), namespace)
    verify: Callable[[str, bytes, str], bool] = namespace["verify"]
    return verify


def test_the_guides_snippet_verifies_a_signed_body_and_refuses_a_changed_one() -> None:
    verify = guide_verify()
    body = callbacks.body_of({"id": 7, "status": "completed", "result": {"é": 1}})
    header = callbacks.headers(SECRET, body, 12)[callbacks.SIGNATURE_HEADER]
    assert header.startswith("sha256=")
    assert len(header) == len("sha256=") + 64
    assert verify(SECRET, body, header)
    assert not verify(SECRET, body + b" ", header)
    assert not verify("another secret", body, header)


def test_ten_tries_over_about_an_hour() -> None:
    delays = [callbacks.retry_delay(tries) for tries in range(1, callbacks.MAX_TRIES + 1)]
    assert delays[-1] is None  # the tenth failure gives up
    waits = [d for d in delays if d is not None]
    assert len(waits) == callbacks.MAX_TRIES - 1
    assert waits == sorted(waits)
    assert 50 * 60 <= sum(waits) <= 70 * 60
    assert waits == [15, 30, 60, 120, 240, 480, 900, 900, 900]


def test_the_first_retry_delay_is_the_servers_and_each_next_doubles() -> None:
    assert [callbacks.retry_delay(tries, 2) for tries in range(1, 11)] == [
        *(2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0),
        None,
    ]
    # A first wait past the usual cap is kept for every retry, not cut down to it.
    assert {callbacks.retry_delay(tries, 3600) for tries in range(1, 10)} == {3600.0}


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://localhost:8080/hook",
        "http://[::1]/hook",
        "http://10.1.2.3/hook",
        "http://172.16.0.1/hook",
        "http://192.168.1.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/hook",
        "http://[fd00::1]/hook",
        "http://100.64.0.1/hook",
        "http://0.0.0.0/hook",
        "http://224.0.0.1/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "ftp://example.com/hook",
        "http:///hook",
        "http://user:pw@93.184.216.34/hook",
        "http://93.184.216.34/" + "x" * 2048,
        "http://no-such-host.invalid/hook",
    ],
)
def test_non_public_and_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(CallbackRefused):
        asyncio.run(AddressPolicy().check(url))


def test_a_public_address_passes_and_an_allowed_network_opens_a_private_one() -> None:
    target = asyncio.run(AddressPolicy().check("https://93.184.216.34:8443/hook?x=1"))
    assert (target.address, target.port, target.host_header()) == (
        ipaddress.ip_address("93.184.216.34"),
        8443,
        "93.184.216.34:8443",
    )
    allowed = AddressPolicy(parse_networks("10.0.0.0/8, 127.0.0.1"))
    assert asyncio.run(allowed.check("http://10.9.8.7/hook")).address == ipaddress.ip_address("10.9.8.7")
    with pytest.raises(CallbackRefused):
        asyncio.run(allowed.check("http://127.0.0.2/hook"))


class Receiver(ThreadingHTTPServer):
    """A real HTTP receiver on 127.0.0.1: records each POST's headers and exact body."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.received: list[tuple[dict[str, str], bytes]] = []
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((dict(self.headers.items()), body))
        self.send_response(self.server.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

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


def test_a_delivery_reaches_an_allowed_receiver_signed_and_pinned(receiver: Receiver) -> None:
    port = receiver.server_address[1]
    policy = AddressPolicy(parse_networks("127.0.0.0/8,::1/128"))
    body = callbacks.body_of({"id": 3, "status": "completed", "result": [1, 2]})

    async def deliver() -> int:
        target = await policy.check(f"http://localhost:{port}/hooks/done?k=v")
        async with delivery_client() as client:
            return await post(client, target, body, callbacks.headers(SECRET, body, 41), 10)

    assert asyncio.run(deliver()) == 200
    [(headers, received)] = receiver.received
    assert received == body
    assert headers["Host"] == f"localhost:{port}"  # the name the URL gave, on the checked address
    assert headers[callbacks.DELIVERY_HEADER] == "41"
    assert guide_verify()(SECRET, received, headers[callbacks.SIGNATURE_HEADER])
    # Without the allowance, the same receiver is refused before anything is sent.
    with pytest.raises(CallbackRefused, match="not a public address"):
        asyncio.run(AddressPolicy().check(f"http://localhost:{port}/hooks/done"))
    assert len(receiver.received) == 1


def test_the_transport_checks_the_address_again_at_each_send(receiver: Receiver) -> None:
    """``HttpTransport.send`` (the engine's way out) refuses an address its policy refuses
    before anything is sent, and sends to an allowed one: the check at create is not trusted
    at delivery time (DNS may have changed since)."""
    port = receiver.server_address[1]
    body = callbacks.body_of({"id": 5, "status": "failed"})
    headers = callbacks.headers(SECRET, body, 9)

    async def send(transport: HttpTransport) -> int:
        try:
            return await transport.send(f"http://127.0.0.1:{port}/hook", body, headers, 10)
        finally:
            await transport.close()

    with pytest.raises(CallbackRefused, match="not a public address"):
        asyncio.run(send(HttpTransport(AddressPolicy())))
    assert receiver.received == []
    assert asyncio.run(send(HttpTransport(AddressPolicy(parse_networks("127.0.0.1/32"))))) == 200
    [(received_headers, received)] = receiver.received
    assert received == body
    assert received_headers[callbacks.DELIVERY_HEADER] == "9"
