"""TaskManager's single-request path: threads that claim one task and complete it, one HTTP request
each, as PrismQ workers do, through the project's own blocking client (``TaskManagerClient``: the
loop of ``bench.throughput.single_requests``'s ``client`` generator, kept running and counted like
every other system's handler).

    python -m bench.systems.tm_single BASE_URL THREADS

Each claim long-polls (``wait``: 2 s, as the worker runtime's default), so an idle thread picks a
new task up as soon as it is created.
A task counts once its complete has returned; its latency sample ends when the claim returned.
"""

from __future__ import annotations

import sys
import threading
import time

from bench.servers import KEY
from bench.systems.counting import hit
from taskmanager import TaskManagerClient


def work(base: str, n: int) -> None:
    worker_id = f"single-{n}"
    with TaskManagerClient(base, KEY, worker_id=worker_id) as client:
        while True:
            claimed = client.claim_tasks(limit=1, wait=2)
            if not claimed:
                continue
            started = time.time()
            task = claimed[0]
            client.complete_task(task.id)
            hit(task.params.get("t"), started)


def main() -> None:
    base, threads = sys.argv[1], int(sys.argv[2])
    pool = [threading.Thread(target=work, args=(base, n), daemon=True) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()


if __name__ == "__main__":
    main()
