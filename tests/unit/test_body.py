"""Reading a JSON body: every encoding ``json.loads`` reads from bytes (RFC 8259 allows UTF-8 and,
from old clients, UTF-16/32, told apart by their first bytes), and nothing that is not JSON."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.requests import Request

from taskmanager.errors import InvalidJSON
from taskmanager.server.body import read_json

BODY = {"worker_id": "wörker-1", "params": {"n": [1, 2.5, None, True]}}
TEXT = '{"worker_id": "wörker-1", "params": {"n": [1, 2.5, null, true]}}'


def request(raw: bytes) -> Request:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": raw, "more_body": False}

    return Request({"type": "http", "method": "POST", "path": "/", "headers": []}, receive)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32-be"])
async def test_a_body_in_any_json_encoding_is_read(encoding: str) -> None:
    assert await read_json(request(TEXT.encode(encoding))) == BODY


@pytest.mark.parametrize(
    "raw",
    [b"", b"  ", b'{"a": NaN}', b'{"a": -Infinity}', b'{"a": 1', b"\xff\xfe\xfd{", b'{"a": "\xc3"}'],
)
async def test_what_is_not_json_is_refused(raw: bytes) -> None:
    with pytest.raises(InvalidJSON):
        await read_json(request(raw))


async def test_an_empty_optional_body_is_an_empty_object() -> None:
    assert await read_json(request(b""), optional=True) == {}
