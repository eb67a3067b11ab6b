"""Where TaskManager's server spends its CPU on the hot paths (issue 6, item 4), with py-spy.

    python -m bench.profile [--kind postgresql] [--tasks 3000]

On a fresh database and one ``taskmanager serve --workers 1`` process, four loads run one after
the other while py-spy samples the server (100 Hz, only threads on CPU):

* ``create-single`` — one ``POST /tasks`` per task from one client;
* ``create-batch`` — ``POST /tasks/batch``, 1,000 tasks a request;
* ``work-batched`` — two worker-runtime processes (batch claims, batched completes);
* ``work-single`` — two processes of 8 threads, one claim and one complete request per task.

For each load it prints the share of samples by package of the innermost frame (where the CPU
is actually spent) and the functions with the largest inclusive share, and writes both to
``bench/results/profile_<kind>.json``.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from bench import throughput
from bench.servers import HEADERS, KEY, database, register, server, tm_worker
from bench.systems.counting import PREFIX_ENV, Tally
from bench.systems.drivers import ROOT, THREADS, WORKER_CONCURRENCY, Workers
from bench.venv import BIN, ensure

RESULTS = Path(__file__).parent / "results"
SAMPLE_RATE = 100

PACKAGES = [
    ("sqlalchemy", "sqlalchemy"),
    ("asyncpg", "asyncpg"),
    ("sqlite3", "sqlite3"),
    ("pydantic", "pydantic"),
    ("fastapi", "fastapi"),
    ("starlette", "starlette"),
    ("uvicorn", "uvicorn"),
    ("httptools", "httptools"),
    ("h11", "h11"),
    ("jsonschema", "jsonschema"),
    ("json", "json/"),
    ("logging", "logging/"),
    ("asyncio", "asyncio/"),
    ("taskmanager.store", "taskmanager/store"),
    ("taskmanager.engine", "taskmanager/engine"),
    ("taskmanager.server", "taskmanager/server"),
    ("taskmanager (other)", "taskmanager/"),
]


def _children_serving(port: str) -> list[int]:
    """Our own ``taskmanager serve`` process on ``port`` (a child of this process)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == os.getpid() and b"serve" in cmdline and port.encode() in cmdline:
            pids.append(int(entry.name))
    return pids


def _package(frame: str) -> str:
    for name, marker in PACKAGES:
        if marker in frame:
            return name
    return "other"


def analyse(folded: Path, tasks: int, top: int = 15) -> dict[str, Any]:
    by_package: collections.Counter[str] = collections.Counter()
    leaf: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in folded.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        by_package[_package(frames[-1])] += count
        leaf[_name(frames[-1])] += count
        for frame in {_name(f) for f in frames if "taskmanager/" in f and "cli.py" not in f}:
            inclusive[frame] += count
    if not total:
        return {"samples": 0}

    def pct(counter: collections.Counter[str], n: int | None = None) -> dict[str, float]:
        return {k: round(100 * v / total, 1) for k, v in counter.most_common(n)}

    return {
        "samples": total,
        # py-spy samples 100 times a second the threads that are on CPU.
        "server_cpu_ms_per_task": round(total / SAMPLE_RATE / tasks * 1000, 2),
        "by_package_pct": pct(by_package),
        "top_self_pct": pct(leaf, top),
        "top_taskmanager_inclusive_pct": pct(inclusive, top),
    }


def _name(frame: str) -> str:
    return frame.split(" (", 1)[0] + " (" + _short(frame) + ")"


def _short(frame: str) -> str:
    location = frame.split(" (", 1)[1].rstrip(")") if " (" in frame else ""
    for root in ("site-packages/", "src/"):
        if root in location:
            return location.split(root, 1)[1]
    return location


def _profile_server(
    stack: ExitStack, kind: str, tasks: int, loads: tuple[str, ...], results: dict[str, Any]
) -> None:
    url = stack.enter_context(database(kind))
    base = stack.enter_context(server(url, workers=1))
    register(base)
    pids = _children_serving(base.rsplit(":", 1)[1])
    assert pids, "could not find the server process"
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))

    def profiled(name: str, load: Any) -> None:
        folded = tmp / f"{name}.folded"
        spy = subprocess.Popen(
            [str(BIN / "py-spy"), "record", "--pid", str(pids[0]), "--subprocesses",
             "--rate", str(SAMPLE_RATE),
             "--format", "raw", "--output", str(folded), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(1)
        started = time.perf_counter()
        load()
        seconds = time.perf_counter() - started
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=60)
        results[name] = {
            "seconds": round(seconds, 2),
            "per_s": round(tasks / seconds),
            **analyse(folded, tasks),
        }
        print(f"== {name}: {tasks / seconds:,.0f} tasks/s", flush=True)
        print(json.dumps(results[name], indent=1), flush=True)

    def create_single() -> None:
        with httpx.Client(base_url=base, headers=HEADERS, timeout=60) as client:
            for n in range(tasks):
                client.post("/api/tasks", json={"type": "noop", "params": {"n": n}}).raise_for_status()

    def work(command: list[str]) -> Any:
        def load() -> None:
            prefix = f"bench:{uuid.uuid4().hex[:8]}"
            tally = Tally(prefix)
            env = {
                **os.environ,
                "TASKMANAGER_API_URL": base,
                "TASKMANAGER_API_KEY": KEY,
                "BENCH_CONCURRENCY": str(WORKER_CONCURRENCY),
                PREFIX_ENV: prefix,
            }
            workers = Workers([command, command], env)
            try:
                tally.wait(tasks, 600)
            finally:
                workers.stop()
                tally.close()

        return load

    available = {
        "create-single": create_single,
        "create-batch": lambda: throughput._create(base, tasks),
        "work-batched": work(tm_worker("bench.systems.tm_worker:worker")),
        "work-single": work([sys.executable, "-m", "bench.systems.tm_single", base, str(THREADS)]),
    }
    for name in loads:
        profiled(name, available[name])


def run(kind: str, tasks: int) -> dict[str, Any]:
    ensure()
    results: dict[str, Any] = {}
    for loads in (("create-single", "work-batched"), ("create-batch", "work-single")):
        # A fresh server for each pair: a long-poll claim whose worker was stopped still takes
        # the next task created (until its lease expires), which would strand a task.
        with ExitStack() as stack:
            _profile_server(stack, kind, tasks, loads, results)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", default="postgresql", choices=["postgresql", "sqlite"])
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--statements-only", action="store_true", help="only count the SQL statements")
    args = parser.parse_args()
    os.chdir(ROOT)
    if args.statements_only:
        print("== SQL statements per task:", json.dumps(statement_counts(args.kind), indent=1), flush=True)
        return
    record(args.kind, args.tasks, RESULTS)


def record(kind: str, tasks: int, directory: Path) -> dict[str, Any]:
    """Count the statements, profile the four loads and write ``profile_<kind>.json`` into
    ``directory`` (``python -m bench run`` calls this too); the results."""
    counts = statement_counts(kind)
    print("== SQL statements per task:", json.dumps(counts, indent=1), flush=True)
    results: dict[str, Any] = {"statements_per_task": counts, **run(kind, tasks)}
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"profile_{kind}.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def statement_counts(kind: str, batch: int = 100) -> dict[str, float]:
    """SQL statements the server sends per task on each route (BEGIN/COMMIT not counted),
    counted with a SQLAlchemy event on an in-process app: the costs py-spy's samples add up."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    from starlette.testclient import TestClient

    from taskmanager.server.app import create_app
    from taskmanager.settings import Settings

    counts: dict[str, float] = {}
    statements: list[str] = []
    event.listen(Engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    _count_asyncpg(statements)  # PostgresStore runs its busiest statements on asyncpg directly
    with database(kind) as url:
        app = create_app(Settings(database_url=url, api_key=KEY))
        with TestClient(app, headers=HEADERS) as client:
            register_body = {"name": "noop", "version": "1", "param_schema": {"type": "object"}}
            client.post("/api/task-types/register", json=register_body).raise_for_status()

            def count(name: str, per: int, call: Any) -> Any:
                statements.clear()
                response = call()
                assert response.status_code < 300, response.text
                counts[name] = round(len(statements) / per, 2)
                return response.json()["data"]

            # One round first: connections are opened (and set up) on first use, not per task.
            warm = client.post("/api/tasks", json={"type": "noop", "params": {"warm": 1}})
            warm_claim = client.post("/api/tasks/claim", json={"worker_id": "w"}).json()["data"]
            done = {"worker_id": "w", "success": True, "lease_token": warm_claim["lease_token"]}
            client.post(f"/api/tasks/{warm.json()['data']['id']}/complete", json=done).raise_for_status()
            body = {"type": "noop", "params": {}}
            count("create (POST /tasks)", 1, lambda: client.post("/api/tasks", json=body))
            task = count(
                "claim (one task)", 1, lambda: client.post("/api/tasks/claim", json={"worker_id": "w"})
            )
            done = {"worker_id": "w", "success": True, "lease_token": task["lease_token"]}
            count(
                "complete (one task)", 1, lambda: client.post(f"/api/tasks/{task['id']}/complete", json=done)
            )
            # Distinct params: identical ones are duplicates of one another (A.6).
            many = {"tasks": [{"type": "noop", "params": {"n": n}} for n in range(batch)]}
            count(
                f"batch create, per task ({batch})", batch, lambda: client.post("/api/tasks/batch", json=many)
            )
            claim = {"worker_id": "w", "limit": batch}
            claimed = count(
                f"claim limit {batch}, per task", batch, lambda: client.post("/api/tasks/claim", json=claim)
            )
            results = [
                {"id": t["id"], "success": True, "lease_token": t["lease_token"]} for t in claimed["tasks"]
            ]
            count(
                f"complete-batch, per task ({batch})",
                batch,
                lambda: client.post("/api/tasks/complete-batch", json={"worker_id": "w", "results": results}),
            )
    return counts


def _count_asyncpg(statements: list[str]) -> None:
    """Note every statement sent through asyncpg's query methods (not a transaction's BEGIN and
    COMMIT, which asyncpg sends itself: the same as the SQLAlchemy count)."""
    import asyncpg

    for name in ("execute", "executemany", "fetch", "fetchrow", "fetchval"):
        method = getattr(asyncpg.Connection, name)

        async def counted(self: Any, query: str, *args: Any, _method: Any = method, **kwargs: Any) -> Any:
            statements.append(query)
            return await _method(self, query, *args, **kwargs)

        setattr(asyncpg.Connection, name, counted)


if __name__ == "__main__":
    main()
