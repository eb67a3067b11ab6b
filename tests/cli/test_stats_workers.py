"""``taskmanager stats`` and ``taskmanager workers`` read ``GET /stats`` and ``GET /workers``
(API.md B.7) of a real server (``live_api``): a table by default, the API's ``data`` with
``--json``."""

from __future__ import annotations

from tests.api.conftest import OPEN_SCHEMA, ok, register
from tests.cli.conftest import Command
from tests.conftest import Api

#: Seconds the oldest pending task waits: shown as 1h06m.
WAITED = 4000


def fill(api: Api) -> None:
    """A ``demo.echo`` task pending for ``WAITED`` s; ``demo.work`` tasks that worker ``host-1``
    completed, failed and holds."""
    register(api, schema=OPEN_SCHEMA)
    ok(api.post("/api/tasks", json={"type": "demo.echo", "params": {}}))
    api.clock.advance(WAITED)
    work = register(api, "demo.work", schema=OPEN_SCHEMA)["id"]
    for n in range(3):
        ok(api.post("/api/tasks", json={"type": "demo.work", "params": {"n": n}, "max_attempts": 1}))
    claim = {"worker_id": "host-1", "task_type_id": work}
    for success in (True, False):
        task = ok(api.post("/api/tasks/claim", json=claim))
        report = {"worker_id": "host-1", "success": success, "result": {}, "error": "boom"}
        ok(api.post(f"/api/tasks/{task['id']}/complete", json=report))
    ok(api.post("/api/tasks/claim", json=claim))


def test_stats_prints_a_row_per_type_and_the_totals(live_api: Api, taskmanager: Command) -> None:
    fill(live_api)
    shown = taskmanager("stats")
    assert shown.code == 0, shown.err
    assert "demo.echo" in shown.out
    assert "demo.work" in shown.out
    assert "1h06m" in shown.out, "the oldest pending age"
    assert "last hour: 1 completed, 1 failed; 1 workers active" in shown.out
    as_json = taskmanager("stats", "--json")
    assert as_json.code == 0, as_json.err
    assert as_json.json() == ok(live_api.get("/api/stats"))


def test_workers_prints_a_row_per_worker(live_api: Api, taskmanager: Command) -> None:
    fill(live_api)
    shown = taskmanager("workers")
    assert shown.code == 0, shown.err
    assert "host-1" in shown.out
    assert "1 workers" in shown.out
    as_json = taskmanager("workers", "--json")
    assert as_json.code == 0, as_json.err
    assert as_json.json() == ok(live_api.get("/api/workers"))
    (worker,) = as_json.json()["workers"]
    assert (worker["claimed"], worker["completed"], worker["failed"]) == (1, 1, 1)
