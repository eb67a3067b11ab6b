"""``taskmanager stats`` and ``taskmanager workers`` read ``GET /stats`` and ``GET /workers``
(API.md B.7). Those routes are built on another branch (issue 16); until they are merged these
tests serve the contract's shapes from a stub app on a real socket. Replace the stub with
``live_api`` once the routes exist."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from taskmanager.cli import app
from taskmanager.cli.failures import run
from tests.conftest import RunningServer

STATS: dict[str, Any] = {
    "by_status": {"pending": 3, "claimed": 1, "completed": 40, "failed": 2, "cancelled": 0},
    "by_type": [
        {
            "type": "demo.echo",
            "pending": 3,
            "claimed": 1,
            "completed": 40,
            "failed": 2,
            "cancelled": 0,
            "oldest_pending_seconds": 4000.0,
            "completed_last_hour": 40,
            "failed_last_hour": 2,
            "avg_run_seconds": 0.25,
        }
    ],
    "workers_active": 1,
    "throughput": [{"minute": "2026-01-01T12:00:00Z", "completed": 40, "failed": 2}],
}
WORKERS: dict[str, Any] = {
    "workers": [
        {
            "worker_id": "host-1",
            "claimed": 1,
            "completed": 40,
            "failed": 2,
            "last_seen_at": "2026-01-01T12:00:00Z",
            "avg_processing_seconds": None,
        }
    ]
}


def answer(data: dict[str, Any]) -> Any:
    async def endpoint(_request: Request) -> JSONResponse:
        return JSONResponse({"success": True, "message": "ok", "data": data, "timestamp": 0})

    return endpoint


@pytest.fixture
def stub_url() -> Iterator[str]:
    stub = Starlette(routes=[Route("/api/stats", answer(STATS)), Route("/api/workers", answer(WORKERS))])
    with RunningServer(stub) as server:
        yield server.url


def command(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = run(app, list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_stats_prints_a_row_per_type_and_the_totals(
    stub_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = command(capsys, "stats", "--url", stub_url)
    assert code == 0, err
    assert "demo.echo" in out
    assert "1h06m" in out, "the oldest pending age"
    assert "last hour: 40 completed, 2 failed; 1 workers active" in out
    code, out, _ = command(capsys, "stats", "--url", stub_url, "--json")
    assert json.loads(out) == STATS


def test_workers_prints_a_row_per_worker(stub_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = command(capsys, "workers", "--url", stub_url)
    assert code == 0, err
    assert "host-1" in out
    assert "1 workers" in out
