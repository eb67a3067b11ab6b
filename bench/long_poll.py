"""Long-poll latency: how soon a waiting claimer gets a task after it is created (issue 4).

A claimer waits (`wait: 30`); the task is then created and we time from the create request's
start until the waiting claim's response arrives. SQLite: one server process (the create wakes
the claimer in-process). PostgreSQL: two server processes, the claimer on one and the create on
the other, so the wake-up crosses processes through LISTEN/NOTIFY.

    python -m bench.long_poll [--rounds 50]
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import httpx

from bench.servers import HEADERS, database, register, server


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    for kind in ("sqlite", "postgresql"):
        print(json.dumps(measure(kind, args.rounds)))


if __name__ == "__main__":
    main()
