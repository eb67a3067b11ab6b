"""Faults injected while work flows, checked against a ledger kept outside the server.

Two ``taskmanager serve`` processes on one database, three ``taskmanager worker`` processes with
3-second leases, producers creating ``TOTAL`` tasks through both servers. While they run: one
worker is killed with SIGKILL (never restarted), one server is killed with SIGKILL and started
again, and the database server itself — a throwaway PostgreSQL or MariaDB of the test's own
(``throwaway.py``; the machine's shared ones are never touched) — is stopped and started again.
On SQLite the other server is also killed mid-write (under the producers' creates) and the file's
integrity checked afterwards.

Then, against the ledger (``ledger_worker.py``: a line per execution, written before the work):
every task acknowledged with a 200 is ``completed`` with its own result, completed once; every
extra execution is explained by an expired lease in the task's history; no client saw a 500 or
waited past its timeout; clients saw 503 while the database was down; the surviving workers and
servers went on by themselves. The counts are printed and written to
``<tmp>/chaos-report-<database>.json`` (and ``$TASKMANAGER_CHAOS_REPORT_DIR`` when set: CI's
artifacts).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.chaos.harness import (
    CLIENT_TIMEOUT,
    HEADERS,
    TYPE,
    ChaosServer,
    ChaosWorker,
    Producers,
    all_tasks,
    history,
    read_ledger,
    unfinished,
)
from tests.chaos.throwaway import ThrowawayMariaDB, ThrowawayPostgres
from tests.conftest import ADMIN_KEY, selected_databases
from tests.worker.process import wait_for

pytestmark = pytest.mark.slow  # server, worker and database processes: docs/development.md

TOTAL = int(os.environ.get("TASKMANAGER_CHAOS_TASKS", "2000"))
#: How long the database stays down: long enough for many requests to meet the outage.
OUTAGE_SECONDS = 4.0
DRAIN_TIMEOUT = 180.0


@contextmanager
def database_server(kind: str, tmp: Path) -> Iterator[ThrowawayPostgres | ThrowawayMariaDB | str]:
    """A throwaway database server (PostgreSQL, MariaDB), or the SQLite file's URL."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'chaos.db'}"
        return
    server = ThrowawayPostgres(tmp) if kind == "postgresql" else ThrowawayMariaDB(tmp)
    try:
        server.start()
        server.create_database()
        yield server
    finally:
        server.close()


def reached(producers: Producers, fraction: float) -> bool:
    return producers.count() >= TOTAL * fraction


@pytest.mark.timeout(600)
@pytest.mark.parametrize("kind", selected_databases())
def test_faults_lose_no_task(kind: str, tmp_path: Path) -> None:
    report: dict[str, Any] = {"database": kind, "tasks": TOTAL, "faults": []}
    ledger_dir = tmp_path / "ledger"
    ledger_dir.mkdir()
    started = time.monotonic()
    with ExitStack() as stack:
        db = stack.enter_context(database_server(kind, tmp_path))
        url = db if isinstance(db, str) else db.url
        servers = [stack.enter_context(ChaosServer(url, api_key=ADMIN_KEY)) for _ in range(2)]
        workers = [
            stack.enter_context(ChaosWorker(servers[i % 2].url, ledger_dir, f"chaos-w{i}")) for i in range(3)
        ]
        client = stack.enter_context(httpx.Client(headers=HEADERS, timeout=CLIENT_TIMEOUT))
        wait_for("the workers to register the type", lambda: registered(client, servers[0].url))
        producers = Producers([s.url for s in servers], TOTAL)
        producers.start()

        wait_for("a fifth of the tasks", lambda: reached(producers, 0.2), timeout=120)
        wait_for("the first executions", lambda: read_ledger(ledger_dir), timeout=60)
        killed = workers[0]
        killed.kill9()
        report["faults"].append(
            f"worker {killed.worker_id} (pid {killed.pid}) killed -9 at {producers.count()}"
        )

        wait_for("two fifths of the tasks", lambda: reached(producers, 0.4), timeout=120)
        servers[1].kill9()
        report["faults"].append(f"server 1 killed -9 at {producers.count()}")
        servers[1].restart()

        outage: tuple[int, int] | None = None
        wait_for("three fifths of the tasks", lambda: reached(producers, 0.6), timeout=120)
        if isinstance(db, str):
            servers[0].kill9()  # the producers are creating through it: killed mid-write
            report["faults"].append(f"server 0 killed -9 mid-write at {producers.count()}")
            servers[0].restart()
        else:
            before = producers.outcomes["503"]
            db.stop()
            report["faults"].append(f"{kind} stopped at {producers.count()}")
            down_at = time.monotonic()
            wait_for("a 503 during the outage", lambda: producers.outcomes["503"] > before, timeout=30)
            time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_at)))  # keep it down a while
            db.start()
            outage = (before, producers.outcomes["503"])
            report["faults"].append(f"{kind} started again after {time.monotonic() - down_at:.1f} s")
        recovered_at = time.time()

        producers.join(timeout=240)
        wait_for(
            "every task to finish",
            lambda: unfinished(client, servers[0].url) == 0,
            timeout=DRAIN_TIMEOUT,
            every=0.2,
        )
        report.update(check(client, servers[0].url, producers, ledger_dir, killed, recovered_at))
        survivors = workers[1:]
        report["workers_alive"] = [w.worker_id for w in survivors if w.alive()]
        report["servers_healthy"] = [healthy(client, s.url) for s in servers]
        report["http_outcomes"] = dict(producers.outcomes)
        report["slowest_create_s"] = round(producers.slowest, 3)
        if outage is not None:
            report["503_during_outage"] = outage[1] - outage[0]
        logs = "".join(s.output() for s in servers)
        report["server_tracebacks"] = logs.count("Traceback")
        if "Traceback" in logs:  # logged, not answered: shown so a reader can judge them
            report["first_server_traceback"] = logs[logs.index("Traceback") :][:3000]
    if isinstance(db, str):
        with sqlite3.connect(tmp_path / "chaos.db") as conn:
            report["integrity_check"] = conn.execute("PRAGMA integrity_check").fetchone()[0]
    report["seconds"] = round(time.monotonic() - started, 1)
    write_report(report, tmp_path)

    assert report["lost"] == [], "acknowledged tasks lost"
    assert report["not_completed"] == [], "acknowledged tasks that did not complete"
    assert report["wrong_results"] == [], "tasks completed with another task's result"
    assert report["completed_twice"] == [], "tasks completed more than once"
    assert report["unexplained_extra_executions"] == [], "executions without an expired lease"
    assert report["never_executed"] == [], "completed tasks that no handler ran"
    assert report["http_outcomes"].get("500", 0) == 0, "a client was answered 500"
    assert report["http_outcomes"].get("timeout", 0) == 0, "a client waited past its timeout"
    assert report["workers_alive"] == [w.worker_id for w in workers[1:]], "a worker died by itself"
    assert all(report["servers_healthy"]), "a server did not recover"
    assert report["survivors_worked_after_faults"], "no worker ran a task after the faults"
    if outage is not None:
        assert report["503_during_outage"] > 0
    if "integrity_check" in report:
        assert report["integrity_check"] == "ok"


def registered(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(f"{url}/api/task-types/{TYPE}").status_code == 200
    except httpx.TransportError:
        return False


def healthy(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(f"{url}/health").status_code == 200
    except httpx.TransportError:
        return False


def check(
    client: httpx.Client,
    url: str,
    producers: Producers,
    ledger_dir: Path,
    killed: ChaosWorker,
    recovered_at: float,
) -> dict[str, Any]:
    """The final state of every task against the producers' acknowledgements and the ledger."""
    killed_worker, killed_pid = killed.worker_id, killed.pid
    tasks = {int(t["id"]): t for t in all_tasks(client, url)}  # type: ignore[call-overload]
    ledger = read_ledger(ledger_dir)
    runs = Counter(e.task_id for e in ledger)
    acked = {task_id: n for n, task_id in producers.acked.items()}
    with ThreadPoolExecutor(4) as pool:
        histories = dict(zip(tasks, pool.map(lambda i: history(client, url, i), tasks), strict=True))
    expired_leases: Counter[str] = Counter()  # whose leases ran out
    unexplained = []
    for task_id, count in runs.items():
        events = [event for event, _ in histories.get(task_id, [])]
        claims, expiries = events.count("claimed"), events.count("lease_expired")
        # Every attempt but the last ended with its lease running out (the handler never fails),
        # and each execution ran under a claim of its own.
        if count > claims or expiries != claims - 1:
            unexplained.append({"id": task_id, "executions": count, "events": events})
    for events in histories.values():
        for event, worker in events:
            if event == "lease_expired":
                expired_leases["killed worker" if worker == killed_worker else "other workers"] += 1
    return {
        "acknowledged": len(acked),
        "tasks_in_store": len(tasks),
        "executions": len(ledger),
        "tasks_executed_more_than_once": sum(1 for c in runs.values() if c > 1),
        "extra_executions": sum(c - 1 for c in runs.values()),
        "expired_leases": dict(expired_leases),
        "lost": sorted(set(acked) - set(tasks)),
        "not_completed": sorted(i for i in acked if i in tasks and tasks[i]["status"] != "completed"),
        "wrong_results": sorted(
            i for i in acked if i in tasks and tasks[i]["result"] != {"double": 2 * acked[i]}
        ),
        "completed_twice": sorted(
            i for i, events in histories.items() if [e for e, _ in events].count("completed") > 1
        ),
        "never_executed": sorted(i for i in acked if runs[i] == 0),
        "unexplained_extra_executions": unexplained[:20],
        "survivors_worked_after_faults": any(e.at > recovered_at and e.pid != killed_pid for e in ledger),
    }


def write_report(report: dict[str, Any], tmp: Path) -> None:
    text = json.dumps(report, indent=2, sort_keys=True)
    print(f"\nchaos report ({report['database']}):\n{text}")
    name = f"chaos-report-{report['database']}.json"
    (tmp / name).write_text(text)
    if os.environ.get("TASKMANAGER_CHAOS_REPORT_DIR"):
        target = Path(os.environ["TASKMANAGER_CHAOS_REPORT_DIR"])
        target.mkdir(parents=True, exist_ok=True)
        (target / name).write_text(text)
