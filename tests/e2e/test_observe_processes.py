"""GET /events and /metrics across server processes, and an open stream at shutdown (API.md B.7)."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time

import httpx
import pytest

from tests.conftest import ADMIN_KEY, TestDatabase
from tests.e2e.process import ServerProcess

pytestmark = pytest.mark.slow  # server processes: docs/development.md

HEADERS = {"X-API-Key": ADMIN_KEY}
#: How soon an event written through another server must reach a stream (it polls every 0.5 s).
EVENT_BOUND = 5.0


def _post(url: str, path: str, body: dict[str, object]) -> dict[str, object]:
    response = httpx.post(f"{url}{path}", headers=HEADERS, json=body, timeout=30)
    assert response.status_code == 200, response.text
    data: dict[str, object] = response.json()["data"]
    return data


def _register(url: str) -> None:
    _post(
        url, "/api/task-types/register", {"name": "job", "version": "1", "param_schema": {"type": "object"}}
    )


def test_a_stream_carries_events_written_through_another_server(pg_database: TestDatabase) -> None:
    with (
        ServerProcess(pg_database.url, api_key=ADMIN_KEY) as reader,
        ServerProcess(pg_database.url, api_key=ADMIN_KEY) as writer,
        httpx.Client(base_url=reader.url, headers=HEADERS, timeout=30) as client,
        client.stream("GET", "/api/events") as stream,
    ):
        _register(writer.url)
        lines = stream.iter_lines()
        assert next(lines) == ": connected"
        started = time.monotonic()
        created = _post(writer.url, "/api/tasks", {"type": "job", "params": {}})
        data = next(json.loads(line.removeprefix("data: ")) for line in lines if line.startswith("data: "))
        assert time.monotonic() - started < EVENT_BOUND
        assert (data["task_id"], data["type"], data["status"]) == (created["id"], "job", "pending")


def _claims(text: str) -> float:
    found = re.search(r'^taskmanager_task_claims_total\{type="job"\} (\S+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_metrics_of_two_worker_processes_count_every_claim(pg_database: TestDatabase) -> None:
    """Behind one port, whichever process answers the scrape reports the claims of both."""
    with ServerProcess(pg_database.url, api_key=ADMIN_KEY, workers=2) as server:
        _register(server.url)
        claims = 12
        for n in range(claims):
            _post(server.url, "/api/tasks", {"type": "job", "params": {"n": n}})
        for n in range(claims):  # a connection each, so both processes take claims
            _post(server.url, "/api/tasks/claim", {"worker_id": f"w{n}"})
        for _ in range(6):
            response = httpx.get(f"{server.url}/api/metrics", headers=HEADERS, timeout=30)
            assert response.status_code == 200, response.text
            assert _claims(response.text) == claims
            assert 'taskmanager_tasks{status="claimed",type="job"} 12.0' in response.text


def test_an_open_stream_does_not_hold_the_server_at_shutdown(pg_database: TestDatabase) -> None:
    server = ServerProcess(pg_database.url, api_key=ADMIN_KEY)
    with server, httpx.Client(base_url=server.url, headers=HEADERS, timeout=30) as client:
        opened, ended = threading.Event(), threading.Event()

        def read() -> None:
            with client.stream("GET", "/api/events") as stream:
                for _ in stream.iter_lines():
                    opened.set()
            ended.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        assert opened.wait(10), "the stream did not open"
        assert server.proc is not None
        server.proc.terminate()
        try:
            server.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the server did not exit with a stream open:\n{server.output()}")
        assert ended.wait(10), "the stream did not end with the server"
