"""TaskManager's single-request path: threads that claim one task and complete it, one HTTP request
each, as PrismQ workers do (the loop of ``bench.throughput.single_requests``, kept running and
counted like every other system's handler).

    python -m bench.systems.tm_single BASE_URL THREADS

Each claim long-polls (``wait``: 2 s, as the worker runtime's default), so an idle thread picks a
new task up as soon as it is created.
A task counts once its complete has returned; its latency sample ends when the claim returned.
"""

from __future__ import annotations

import sys
import threading
import time

import httpx

from bench.servers import HEADERS
from bench.systems.counting import hit


def work(base: str, n: int) -> None:
    worker_id = f"single-{n}"
    with httpx.Client(base_url=base, headers=HEADERS, timeout=60) as client:
        while True:
            claim = client.post("/api/tasks/claim", json={"worker_id": worker_id, "wait": 2})
            if claim.status_code == 404:
                continue
            claim.raise_for_status()
            started = time.time()
            task = claim.json()["data"]
            client.post(
                f"/api/tasks/{task['id']}/complete",
                json={"worker_id": worker_id, "success": True, "lease_token": task["lease_token"]},
            ).raise_for_status()
            hit(task["params"].get("t"), started)


def main() -> None:
    base, threads = sys.argv[1], int(sys.argv[2])
    pool = [threading.Thread(target=work, args=(base, n), daemon=True) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()


if __name__ == "__main__":
    main()
