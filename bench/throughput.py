"""End-to-end throughput: create 10,000 no-op tasks, process them all, time it (issue 4).

Two paths, each on SQLite and PostgreSQL, against real ``taskmanager serve`` processes:

* **worker runtime** — ``taskmanager worker`` processes (batch claims with long-poll, batched
  completes): the path a user of the Python SDK gets;
* **single requests** — threads that claim one task and complete it, one HTTP request each, as
  PrismQ workers do; measured twice, with a lean load generator (keep-alive HTTP/1.1 over a
  plain socket: what the server sustains, the target's figure) and with ``httpx`` clients (the
  Python SDK's transport, which costs several times the lean one's CPU per request, on the same
  cores as the server; ADR 0015).

    python -m bench.throughput [--tasks 10000] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import httpx

from bench.lean import Keepalive
from bench.servers import (
    HEADERS,
    KEY,
    CpuMeter,
    database,
    register,
    server,
    tm_worker,
)
from taskmanager.client import TaskManagerClient


def _create(base: str, tasks: int, first: int = 0) -> float:
    """Create ``tasks`` no-op tasks in batches of 1,000 (params ``n`` from ``first``: each task's
    own, so none is a duplicate of an earlier one); tasks per second."""
    started = time.perf_counter()
    with httpx.Client(base_url=base, headers=HEADERS, timeout=120) as client:
        for start in range(first, first + tasks, 1000):
            stop = min(first + tasks, start + 1000)
            batch = [{"type": "noop", "params": {"n": n}} for n in range(start, stop)]
            client.post("/api/tasks/batch", json={"tasks": batch}).raise_for_status()
    return tasks / (time.perf_counter() - started)


def _completed(client: httpx.Client) -> int:
    data = client.get("/api/tasks", params={"status": "completed", "limit": 1}).json()["data"]
    return int(data["total"])


def _wait_completed(client: httpx.Client, tasks: int, done: int, since: float) -> None:
    """Until ``tasks`` are completed (``done`` were at ``since``). A count is a query the server
    pays for, so it asks rarely while the end is far and often near it: it sleeps half the time the
    rate so far says the rest needs (5-200 ms), so it ends within 5 ms of the last completion."""
    start_done, start_time = done, since
    while done < tasks:
        rate = (done - start_done) / max(time.time() - start_time, 1e-3)
        time.sleep(min(0.2, max(0.005, (tasks - done) / rate / 2 if rate > 0 else 0.05)))
        done = _completed(client)


def worker_runtime(
    base: str, tasks: int, processes: int, concurrency: int = 100, cpu: dict[str, float] | None = None
) -> float:
    """Tasks per second processed by ``processes`` worker processes; ``cpu`` (when given) gets the
    CPU microseconds per task spent by the server, the workers and PostgreSQL meanwhile."""
    ready = Path(tempfile.mkdtemp(prefix="bench-ready-"))
    env = {
        **os.environ,
        "TASKMANAGER_API_URL": base,
        "TASKMANAGER_API_KEY": KEY,
        "BENCH_CONCURRENCY": str(concurrency),
        "BENCH_READY_DIR": str(ready),
    }
    procs = [
        subprocess.Popen(
            tm_worker("bench.noop_worker:worker"),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(processes)
    ]
    try:
        # Timed from the moment every worker process is past its imports (each leaves a file in
        # BENCH_READY_DIR; the first to start may be working already), so neither process's
        # start-up is in the rate: it is the steady rate of all of them, to the last completion.
        # (A run too small to outlast the start-up is timed from the first process's.)
        with httpx.Client(base_url=base, headers=HEADERS, timeout=60) as client:
            done = 0
            while len(list(ready.iterdir())) < processes and done < tasks:
                if any(proc.poll() is not None for proc in procs):
                    raise RuntimeError("a worker process exited before it was up")
                time.sleep(0.01)
                done = _completed(client)
            first, started = _completed(client), time.time()
            whole = first < tasks
            if not whole:
                first, started = 0, min(stamp.stat().st_mtime for stamp in ready.iterdir())
            meter = CpuMeter(base, {"workers": [p.pid for p in procs]})
            _wait_completed(client, tasks, first, started)
        elapsed = time.time() - started
        timed = tasks - first
        if cpu is not None and whole:
            cpu.update({f"{name}_us_per_task": spent for name, spent in meter.per_task(timed).items()})
        return timed / elapsed
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=60)
        shutil.rmtree(ready, ignore_errors=True)


def _lean_loop(base: str, n: int) -> None:
    """Claim one task and complete it, one request each, until none is left — over one keep-alive
    connection of the lean client above."""
    connection = Keepalive(base)
    worker = f"t{n}"
    claim = json.dumps({"worker_id": worker}).encode()
    try:
        while True:
            status, data = connection.post("/api/tasks/claim", claim)
            if status == 404:
                return
            if status != 200:
                raise RuntimeError(f"claim answered {status}")
            task = json.loads(data)["data"]
            body = {"worker_id": worker, "success": True, "lease_token": task["lease_token"]}
            status, _ = connection.post(f"/api/tasks/{task['id']}/complete", json.dumps(body).encode())
            if status != 200:
                raise RuntimeError(f"complete answered {status}")
    finally:
        connection.close()


def _httpx_loop(base: str, n: int) -> None:
    """The same loop over an ``httpx.Client`` (the Python SDK's transport; PrismQ's workers used
    ``requests``, which costs more still)."""
    with httpx.Client(base_url=base, headers=HEADERS, timeout=60) as client:
        while True:
            claim = client.post("/api/tasks/claim", json={"worker_id": f"t{n}"})
            if claim.status_code == 404:
                return
            task = claim.json()["data"]
            client.post(
                f"/api/tasks/{task['id']}/complete",
                json={
                    "worker_id": f"t{n}",
                    "success": True,
                    "lease_token": task["lease_token"],
                },
            ).raise_for_status()


def _client_loop(base: str, n: int) -> None:
    """The same loop through the project's own blocking client (``TaskManagerClient``): what a
    Python worker written against the SDK without the worker runtime costs."""
    with TaskManagerClient(base, KEY) as client:
        worker = f"t{n}"
        while claimed := client.claim_tasks(worker_id=worker, limit=1):
            client.complete_task(claimed[0].id, worker_id=worker)


def _requests_loop(base: str, n: int) -> None:
    """The same loop as PrismQ's own Python workers write it: ``requests`` with a ``Session``
    (keep-alive), one claim and one complete per task."""
    import requests  # the bench environment's and PrismQ's; not a dependency of the project

    with requests.Session() as session:
        session.headers.update(HEADERS)
        while True:
            claim = session.post(f"{base}/api/tasks/claim", json={"worker_id": f"t{n}"}, timeout=60)
            if claim.status_code == 404:
                return
            task = claim.json()["data"]
            body = {"worker_id": f"t{n}", "success": True, "lease_token": task["lease_token"]}
            session.post(f"{base}/api/tasks/{task['id']}/complete", json=body, timeout=60).raise_for_status()


#: The single-request load generators: the target figure's (``lean``), raw httpx, the project's
#: own client, and PrismQ's workers' ``requests``.
CLIENTS = {"lean": _lean_loop, "httpx": _httpx_loop, "client": _client_loop, "requests": _requests_loop}


def single_requests(
    base: str, tasks: int, threads: int, cpu: dict[str, float] | None = None, client: str = "lean"
) -> float:
    """Tasks per second claimed and completed by ``threads`` threads of this process, one request
    each, with the ``client`` load generator (`CLIENTS`); ``cpu`` (when given) gets the CPU
    microseconds per task spent meanwhile by the server, this process (the load generator) and
    PostgreSQL."""
    loop = CLIENTS[client]
    meter = CpuMeter(base, {"client": [os.getpid()]})  # the load generator: these threads' clients
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda n: loop(base, n), range(threads)))
    elapsed = time.perf_counter() - started
    if cpu is not None:
        prefix = "single" if client == "lean" else f"single_{client}"
        cpu.update({f"{prefix}_{name}_us_per_task": spent for name, spent in meter.per_task(tasks).items()})
    return tasks / elapsed


#: The single-request paths ``measure`` runs, by the name of their result (``single_requests`` +
#: suffix): the lean generator, then the clients a user of Python has.
SUFFIXES = ("", "_httpx", "_client", "_requests")


def measure(kind: str, tasks: int, processes: int, threads: int, concurrency: int = 100) -> dict[str, object]:
    result: dict[str, object] = {"database": kind, "tasks": tasks}
    for path in ("worker_runtime", *(f"single_requests{suffix}" for suffix in SUFFIXES)):
        with ExitStack() as stack:
            base = stack.enter_context(server(stack.enter_context(database(kind)), workers=2))
            register(base)
            result[f"{path}_create_per_s"] = round(_create(base, tasks))
            cpu: dict[str, float] = {}
            if path == "worker_runtime":
                rate = worker_runtime(base, tasks, processes, concurrency, cpu)
            else:
                client = path.removeprefix("single_requests_") if path != "single_requests" else "lean"
                rate = single_requests(base, tasks, threads, cpu, client)
            result[f"{path}_per_s"] = round(rate)
            result.update(cpu)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--databases", default="sqlite,postgresql", help="any of sqlite, postgresql, mysql")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--threads", type=int, default=8, help="single-request threads")
    parser.add_argument("--concurrency", type=int, default=100, help="tasks each worker process runs at once")
    args = parser.parse_args()
    for kind in args.databases.split(","):
        result = measure(kind, args.tasks, args.workers, args.threads, args.concurrency)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
