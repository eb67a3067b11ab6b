"""B.4: long-poll claims that a create wakes, and completing many tasks in one request."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from taskmanager.engine.signal import WorkSignal
from tests.conftest import ADMIN_KEY, Api, TestDatabase
from tests.e2e.process import CLAIM_WAIT, WAKE_BOUND, ServerProcess, WokenServer

HEADERS = {"X-API-Key": ADMIN_KEY}
SCHEMA = {"type": "object"}
NEVER = 3600.0
#: Where the store keeps the intervals of the re-checks claimers fall back on.
FALLBACK_INTERVALS = (
    "taskmanager.store.base.SHARED_POLL_INTERVAL",
    "taskmanager.store.watch.SHARED_POLL_INTERVAL",
    "taskmanager.store.listen.LISTENING_INTERVAL",
    "taskmanager.store.listen.FALLBACK_INTERVAL",
)


def _register(api: Api, name: str = "job") -> None:
    response = api.post(
        "/api/task-types/register", json={"name": name, "version": "1", "param_schema": SCHEMA}
    )
    assert response.status_code == 200


def _no_fallback_re_checks(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Turn off this process's fallback re-checks of long-polling claimers (a claim returns only if
    something wakes it); return an event set when a claimer begins to wait."""
    for constant in FALLBACK_INTERVALS:
        monkeypatch.setattr(constant, NEVER)
    waiting = threading.Event()
    wait = WorkSignal.wait

    async def announced_wait(self: WorkSignal, ticket: asyncio.Event, seconds: float) -> None:
        if seconds > 0:
            waiting.set()
        await wait(self, ticket, seconds)

    monkeypatch.setattr(WorkSignal, "wait", announced_wait)
    return waiting


def test_waiting_claim_is_woken_by_a_create(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    waiting = _no_fallback_re_checks(monkeypatch)
    _register(api)
    with ThreadPoolExecutor(1) as pool:
        claim = pool.submit(api.post, "/api/tasks/claim", json={"worker_id": "w", "wait": CLAIM_WAIT})
        assert waiting.wait(30), "the claim never began to wait"
        started = time.monotonic()
        created = api.post("/api/tasks", json={"type": "job", "params": {"n": 1}}).json()["data"]
        claimed = claim.result(timeout=60)
        woken_after = time.monotonic() - started
    assert claimed.status_code == 200, claimed.text
    assert claimed.json()["data"]["id"] == created["id"]
    assert woken_after < WAKE_BOUND, f"the create woke the claim only after {woken_after:.1f} s"


def test_a_waiting_claim_whose_caller_hung_up_claims_nothing(live_api: Api) -> None:
    """A long-poll client that gives up (a timeout, a killed worker) must not take the next task:
    nobody would receive it, and it would sit claimed until its lease ran out."""
    _register(live_api)
    with (
        httpx.Client(base_url=live_api.url, headers=HEADERS, timeout=0.5) as impatient,
        pytest.raises(httpx.ReadTimeout),
    ):
        impatient.post("/api/tasks/claim", json={"worker_id": "gone", "wait": 30})
    created = live_api.post("/api/tasks", json={"type": "job", "params": {"n": 1}}).json()["data"]
    claimed = live_api.post("/api/tasks/claim", json={"worker_id": "here"})
    assert claimed.status_code == 200, claimed.text
    assert claimed.json()["data"]["id"] == created["id"]
    assert claimed.json()["data"]["claimed_by"] == "here"


def test_wait_with_nothing_to_claim_ends_in_no_tasks(api: Api) -> None:
    _register(api)
    single = api.post("/api/tasks/claim", json={"worker_id": "w", "wait": 0.3})
    assert single.status_code == 404
    assert single.json()["code"] == "no_tasks"
    batch = api.post("/api/tasks/claim", json={"worker_id": "w", "wait": 0.3, "limit": 5})
    assert batch.status_code == 200
    assert batch.json()["data"] == {"tasks": [], "count": 0}


@pytest.mark.parametrize("wait", [-1, 61, "5", True])
def test_wait_out_of_range_is_refused(api: Api, wait: object) -> None:
    response = api.post("/api/tasks/claim", json={"worker_id": "w", "wait": wait})
    assert response.status_code == 400
    assert any(d.startswith("wait:") for d in response.json()["details"])


def test_complete_batch_judges_each_item_alone(api: Api) -> None:
    _register(api)
    for n in range(4):
        api.post("/api/tasks", json={"type": "job", "params": {"n": n}})
    claimed = api.post("/api/tasks/claim", json={"worker_id": "w", "limit": 3}).json()["data"]["tasks"]
    a, b, c = claimed
    pending = api.get("/api/tasks", params={"status": "pending"}).json()["data"]["tasks"][0]
    response = api.post(
        "/api/tasks/complete-batch",
        json={
            "worker_id": "w",
            "results": [
                {"id": a["id"], "success": True, "result": {"ok": 1}, "lease_token": a["lease_token"]},
                {"id": b["id"], "success": False, "error": "boom"},
                {"id": c["id"], "success": True, "lease_token": "not-the-token"},
                {"id": pending["id"], "success": True},
                {"id": 999999, "success": True},
            ],
        },
    )
    assert response.status_code == 200
    results = {r["id"]: r for r in response.json()["data"]["results"]}
    assert response.json()["data"]["count"] == 5
    assert results[a["id"]]["status"] == "completed"
    assert results[b["id"]]["status"] == "pending (retry)"
    assert results[c["id"]]["code"] == "lease_lost"
    assert results[pending["id"]]["error"] == "Task is not in claimed state"
    assert results[999999]["error"] == "Task not found"
    assert api.get(f"/api/tasks/{a['id']}").json()["data"]["result"] == {"ok": 1}
    assert api.get(f"/api/tasks/{c['id']}").json()["data"]["status"] == "claimed"


def test_complete_batch_refuses_a_bad_body(api: Api) -> None:
    empty = api.post("/api/tasks/complete-batch", json={"worker_id": "w", "results": []})
    assert empty.status_code == 400
    missing = api.post("/api/tasks/complete-batch", json={"results": [{"id": 1, "success": True}]})
    assert missing.status_code == 400
    assert "worker_id: field required" in missing.json()["details"]


@pytest.mark.slow  # two server processes
def test_create_on_one_server_wakes_a_claimer_waiting_on_another(pg_database: TestDatabase) -> None:
    _woken_across_servers(pg_database.url)


@pytest.mark.slow  # two server processes
def test_a_sqlite_file_shared_by_two_servers_wakes_their_claimers(tmp_path: Path) -> None:
    _woken_across_servers(f"sqlite:///{tmp_path / 'shared.db'}")


def _woken_across_servers(url: str) -> None:
    """A claim waiting on server ``a`` returns the task created through server ``b`` at once,
    though ``a`` never re-checks by itself: only the cross-process wake-up (NOTIFY, the SQLite
    watcher) can end its wait early."""
    with WokenServer(url, api_key=ADMIN_KEY) as a, ServerProcess(url, api_key=ADMIN_KEY) as b:
        httpx.post(
            f"{a.url}/api/task-types/register",
            headers=HEADERS,
            json={"name": "job", "version": "1", "param_schema": SCHEMA},
        )

        def create() -> int:
            response = httpx.post(f"{b.url}/api/tasks", headers=HEADERS, json={"type": "job", "params": {}})
            return int(response.json()["data"]["id"])

        a.claim_woken_by(HEADERS, create)
