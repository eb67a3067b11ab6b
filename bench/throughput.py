"""End-to-end throughput: create 10,000 no-op tasks, process them all, time it (issue 4).

Two paths, each on SQLite and PostgreSQL, against real ``taskmanager serve`` processes:

* **worker runtime** — ``taskmanager worker`` processes (batch claims with long-poll, batched
  completes): the path a user of the Python SDK gets;
* **single requests** — threads that claim one task and complete it, one HTTP request each, as
  PrismQ workers do.

    python -m bench.throughput [--tasks 10000] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import httpx

from bench.servers import (
    HEADERS,
    KEY,
    SERVERS,
    cpu_by_process,
    cpu_used,
    database,
    database_processes,
    process_tree,
    register,
    server,
    tm_worker,
)


def _create(base: str, tasks: int) -> float:
    started = time.perf_counter()
    with httpx.Client(base_url=base, headers=HEADERS, timeout=120) as client:
        for start in range(0, tasks, 1000):
            batch = [{"type": "noop", "params": {"n": n}} for n in range(start, min(tasks, start + 1000))]
            client.post("/api/tasks/batch", json={"tasks": batch}).raise_for_status()
    return tasks / (time.perf_counter() - started)


def _completed(client: httpx.Client) -> int:
    data = client.get("/api/tasks", params={"status": "completed", "limit": 1}).json()["data"]
    return int(data["total"])


def worker_runtime(
    base: str, tasks: int, processes: int, concurrency: int = 100, cpu: dict[str, float] | None = None
) -> float:
    """Tasks per second processed by ``processes`` worker processes; ``cpu`` (when given) gets the
    CPU microseconds per task spent by the server, the workers and PostgreSQL meanwhile."""
    env = {
        **os.environ,
        "TASKMANAGER_API_URL": base,
        "TASKMANAGER_API_KEY": KEY,
        "BENCH_CONCURRENCY": str(concurrency),
    }
    server_pid, url = SERVERS[base]
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
        # Timed from the first completion, so the workers' start (imports, registering the
        # type) is left out: the rate is the steady processing rate.
        with httpx.Client(base_url=base, headers=HEADERS, timeout=60) as client:
            while (first := _completed(client)) == 0:
                time.sleep(0.01)
            started = time.perf_counter()
            groups = {
                "server": process_tree(server_pid),
                "workers": [p.pid for p in procs],
                "postgres": database_processes(url),
            }
            at_start = {name: cpu_by_process(pids) for name, pids in groups.items()}
            while _completed(client) < tasks:
                time.sleep(0.05)
        elapsed = time.perf_counter() - started
        timed = tasks - first
        if cpu is not None:
            for name, pids in groups.items():
                cpu[f"{name}_us_per_task"] = round(cpu_used(at_start[name], pids) / timed * 1e6)
        return timed / elapsed
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=60)


def single_requests(base: str, tasks: int, threads: int, cpu: dict[str, float] | None = None) -> float:
    """Tasks per second claimed and completed by ``threads`` threads of this process, one request
    each; ``cpu`` (when given) gets the CPU microseconds per task spent meanwhile by the server,
    this process (the load generator: its httpx clients) and PostgreSQL."""

    def work(n: int) -> None:
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

    server_pid, url = SERVERS[base]
    groups = {
        "server": process_tree(server_pid),
        "client": [os.getpid()],  # the load generator: these threads' httpx clients
        "postgres": database_processes(url),
    }
    at_start = {name: cpu_by_process(pids) for name, pids in groups.items()}
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(work, range(threads)))
    elapsed = time.perf_counter() - started
    if cpu is not None:
        for name, pids in groups.items():
            cpu[f"single_{name}_us_per_task"] = round(cpu_used(at_start[name], pids) / tasks * 1e6)
    return tasks / elapsed


def measure(kind: str, tasks: int, processes: int, threads: int, concurrency: int = 100) -> dict[str, object]:
    result: dict[str, object] = {"database": kind, "tasks": tasks}
    for path in ("worker_runtime", "single_requests"):
        with ExitStack() as stack:
            base = stack.enter_context(server(stack.enter_context(database(kind)), workers=2))
            register(base)
            result[f"{path}_create_per_s"] = round(_create(base, tasks))
            if path == "worker_runtime":
                cpu: dict[str, float] = {}
                result["worker_runtime_per_s"] = round(
                    worker_runtime(base, tasks, processes, concurrency, cpu)
                )
                result.update(cpu)
            else:
                cpu = {}
                result["single_requests_per_s"] = round(single_requests(base, tasks, threads, cpu))
                result.update(cpu)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--threads", type=int, default=8, help="single-request threads")
    parser.add_argument("--concurrency", type=int, default=100, help="tasks each worker process runs at once")
    args = parser.parse_args()
    for kind in ("sqlite", "postgresql"):
        result = measure(kind, args.tasks, args.workers, args.threads, args.concurrency)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
