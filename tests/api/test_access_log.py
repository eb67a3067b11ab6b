"""The access log: one line per request on ``taskmanager.access`` at info, with the method, path,
status, duration, request id and the key's public prefix — never the key."""

from __future__ import annotations

import logging
import re

import pytest

from tests.api.conftest import ok
from tests.conftest import ADMIN_KEY, ServerFactory

LINE = re.compile(r"^(\w+) (\S+) (\d{3}) (\d+\.\d) ms request=(\S+) key=(\S+)$")


def access_lines(caplog: pytest.LogCaptureFixture) -> list[re.Match[str]]:
    found = [r for r in caplog.records if r.name == "taskmanager.access"]
    assert all(r.levelno == logging.INFO for r in found)
    matches = [LINE.match(r.getMessage()) for r in found]
    assert all(matches), [r.getMessage() for r in found]
    return [m for m in matches if m is not None]


def test_each_request_is_one_line_with_its_key_prefix_never_the_key(
    make_api: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    api = make_api()
    key = ok(api.post("/api/api-keys", json={"name": "reader", "scopes": ["tasks:read"]}))["key"]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="taskmanager.access"):
        with api.new_client({"X-API-Key": key}) as reader:
            assert reader.get("/tasks", headers={"X-Request-Id": "req-1"}).status_code == 200
        assert api.get("/api/task-types/none").status_code == 404
        assert api.options("/api/tasks").status_code == 200
    lines = access_lines(caplog)
    assert [(m[1], m[2], m[3], m[5]) for m in lines] == [
        ("GET", "/tasks", "200", "req-1"),
        ("GET", "/api/task-types/none", "404", lines[1][5]),
        ("OPTIONS", "/api/tasks", "200", lines[2][5]),
    ]
    assert [m[6] for m in lines] == [key[:11], "other", "other"]
    assert all(key not in r.getMessage() and ADMIN_KEY not in r.getMessage() for r in caplog.records)


def test_the_access_log_can_be_turned_off(make_api: ServerFactory, caplog: pytest.LogCaptureFixture) -> None:
    api = make_api(access_log=False)
    with caplog.at_level(logging.INFO, logger="taskmanager.access"):
        assert api.get("/api/health").status_code == 200
    assert [r for r in caplog.records if r.name == "taskmanager.access"] == []
