"""Long-poll latency: how soon a waiting claimer gets a task after it is created (issue 4).

A claimer waits (`wait: 30`); the task is then created and we time from the create request's
start until the waiting claim's response arrives. SQLite: one server process (the create wakes
the claimer in-process). PostgreSQL: two server processes, the claimer on one and the create on
the other, so the wake-up crosses processes through LISTEN/NOTIFY.

With ``--worker-runtime`` the claimer is a real ``taskmanager worker`` process instead
(``bench.systems.tm_worker``, ``--concurrency`` tasks at once) and a producer creates
``--tasks`` tasks at ``--rate`` per second, one request each; each sample runs from the create
request's start until the handler starts (the counting of ``bench.systems.counting``).

    python -m bench.long_poll [--rounds 50]
    python -m bench.long_poll --worker-runtime [--tasks 500] [--rate 100] [--concurrency 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import httpx

from bench.servers import HEADERS, KEY, create_paced, database, register, server, tm_worker
from bench.systems.counting import PREFIX_ENV, Tally
from bench.systems.drivers import Workers


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(kind: str, rounds: int) -> dict[str, object]:
    with ExitStack() as stack:
        url = stack.enter_context(database(kind))
        waiter_base = stack.enter_context(server(url))
        creator_base = waiter_base if kind == "sqlite" else stack.enter_context(server(url))
        register(waiter_base)
        waiter = httpx.Client(base_url=waiter_base, headers=HEADERS, timeout=60)
        creator = httpx.Client(base_url=creator_base, headers=HEADERS, timeout=60)
        samples: list[float] = []
        with ThreadPoolExecutor(1) as pool:
            for n in range(rounds):
                sent = threading.Event()

                def wait_for_task(sent: threading.Event = sent) -> float:
                    sent.set()
                    response = waiter.post("/api/tasks/claim", json={"worker_id": "w", "wait": 30})
                    assert response.status_code == 200, response.text
                    return time.perf_counter()

                pending = pool.submit(wait_for_task)
                sent.wait()
                time.sleep(0.05)  # let the claim reach the server and start waiting
                started = time.perf_counter()
                creator.post("/api/tasks", json={"type": "noop", "params": {"n": n}}).raise_for_status()
                samples.append((pending.result() - started) * 1000)
        waiter.close()
        creator.close()
    return {
        "database": kind,
        "rounds": rounds,
        "p50_ms": round(_percentile(samples, 0.5), 1),
        "p95_ms": round(_percentile(samples, 0.95), 1),
        "max_ms": round(max(samples), 1),
        "mean_ms": round(statistics.fmean(samples), 1),
    }


def measure_worker(kind: str, count: int, rate: float, concurrency: int) -> dict[str, object]:
    """Create-to-handler-start latency through one ``taskmanager worker`` process."""
    with ExitStack() as stack:
        base = stack.enter_context(server(stack.enter_context(database(kind)), workers=_processes(kind)))
        register(base)
        prefix = f"bench:{uuid.uuid4().hex[:8]}"
        tally = Tally(prefix)
        stack.callback(tally.close)
        env = {
            **os.environ,
            "TASKMANAGER_API_URL": base,
            "TASKMANAGER_API_KEY": KEY,
            "BENCH_CONCURRENCY": str(concurrency),
            PREFIX_ENV: prefix,
        }
        workers = Workers([tm_worker("bench.systems.tm_worker:worker")], env)
        stack.callback(workers.stop)
        httpx.post(f"{base}/api/tasks", headers=HEADERS, json={"type": "noop", "params": {}})
        tally.wait(1, 60)  # an unstamped task: once it is done, the worker is up and waiting
        achieved = create_paced(base, count, rate)
        tally.wait(count + 1, 120)
        samples = tally.latencies()
    return {
        "database": kind,
        "path": "worker-runtime",
        "concurrency": concurrency,
        "tasks": count,
        "rate": rate,
        "rate_achieved": round(achieved, 1),
        "p50_ms": round(_percentile(samples, 0.5), 1),
        "p95_ms": round(_percentile(samples, 0.95), 1),
        "p99_ms": round(_percentile(samples, 0.99), 1),
        "max_ms": round(max(samples), 1),
    }


def _processes(kind: str) -> int:
    """Server processes: one on SQLite (across processes it polls, see SHARED_POLL_INTERVAL),
    two on PostgreSQL (as the side-by-side harness runs it)."""
    return 1 if kind == "sqlite" else 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--worker-runtime", action="store_true", help="claim with a taskmanager worker")
    parser.add_argument("--tasks", type=int, default=500, help="tasks created (--worker-runtime)")
    parser.add_argument("--rate", type=float, default=100.0, help="tasks created per second")
    parser.add_argument("--concurrency", type=int, default=1, help="the worker's concurrency")
    parser.add_argument("--databases", default="sqlite,postgresql")
    args = parser.parse_args()
    for kind in args.databases.split(","):
        if args.worker_runtime:
            print(json.dumps(measure_worker(kind, args.tasks, args.rate, args.concurrency)))
        else:
            print(json.dumps(measure(kind, args.rounds)))


if __name__ == "__main__":
    main()
