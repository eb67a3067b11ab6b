"""Soak: steady mixed traffic through the Python client against ``taskmanager serve`` on
PostgreSQL, sampling the server processes' RSS and open descriptors (issue 18).

    python -m bench.soak                 # 10 minutes
    python -m bench.soak --minutes 1     # a quick run

Producers create tasks (singly and in batches, some with dedupe keys), workers claim them in
batches with long-poll and report them with ``complete_tasks`` (a heartbeat and a progress for
some), and readers list, get, read history and stats — all through ``AsyncTaskManagerClient`` at
a paced rate. Every ``--every`` seconds the RSS (``VmRSS``) and open descriptors of the server's
process tree are read from /proc. The report gives, for each, the first, last and largest sample
and the least-squares slope per minute over the run after the first minute (warm-up: pools
filling, caches, the allocator's arenas); it is written to ``bench/results/soak.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.servers import KEY, database, process_tree, register, server
from taskmanager import AsyncTaskManagerClient, TaskManagerError

RESULTS = Path(__file__).parent / "results"
#: Seconds of warm-up left out of the slope.
WARM_UP = 60.0


def sample(pid: int) -> dict[str, float]:
    """RSS (MiB) and open descriptors of ``pid``'s process tree, now."""
    rss_kib, fds = 0, 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            with open(f"/proc/{member}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        rss_kib += int(line.split()[1])
            fds += len(os.listdir(f"/proc/{member}/fd"))
    return {"rss_mib": rss_kib / 1024, "fds": fds}


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of ``(seconds, value)`` points, per minute (0 for fewer than 2)."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    cov = sum((t - mean_t) * (v - mean_v) for t, v in points)
    return cov / var * 60


def summary(samples: list[dict[str, float]], name: str) -> dict[str, float]:
    values = [s[name] for s in samples]
    late = [(s["t"], s[name]) for s in samples if s["t"] >= WARM_UP] or [(s["t"], s[name]) for s in samples]
    return {
        "first": round(values[0], 1),
        "last": round(values[-1], 1),
        "max": round(max(values), 1),
        "slope_per_min_after_warm_up": round(slope_per_minute(late), 3),
        "slope_per_min_all": round(slope_per_minute([(s["t"], s[name]) for s in samples]), 3),
    }


class Traffic:
    """The paced mix; ``counts`` of operations done and ``errors`` by class name."""

    def __init__(self, base: str, rate: float, stop: asyncio.Event) -> None:
        self.base, self.rate, self.stop = base, rate, stop
        self.counts: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.rng = random.Random(18)

    def client(self, worker: str) -> AsyncTaskManagerClient:
        return AsyncTaskManagerClient(self.base, KEY, worker_id=worker, retry_backoff=0.2)

    async def paced(self, share: float, op: Any) -> None:
        """Run ``op()`` at ``share`` of the rate until stopped."""
        interval = 1.0 / (self.rate * share)
        next_at = time.monotonic()
        while not self.stop.is_set():
            try:
                name = await op()
                self.counts[name] += 1
            except TaskManagerError as exc:
                self.errors[type(exc).__name__] += 1
            next_at += interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), max(0.0, next_at - time.monotonic()))

    async def produce(self) -> None:
        async with self.client("producer") as client:
            n = 0

            async def op() -> str:
                nonlocal n
                n += 1
                if n % 10 == 0:
                    await client.create_tasks(
                        [{"type": "soak", "params": {"n": n, "i": i}} for i in range(10)]
                    )
                    return "create_batch_10"
                key = f"k{n % 500}" if n % 3 == 0 else None  # some repeat a dedupe key
                await client.create_task(
                    "soak", {"n": n, "pad": "x" * self.rng.randrange(10, 2000)}, dedupe_key=key
                )
                return "create"

            await self.paced(0.3, op)

    async def work(self, worker: str) -> None:
        async with self.client(worker) as client:

            async def op() -> str:
                tasks = await client.claim_tasks("soak", limit=10, wait=1)
                for task in tasks[:2]:
                    await client.heartbeat(task.id)
                    await client.report_progress(task.id, 50, "half")
                if tasks:
                    outcomes = [
                        {"id": t.id, "result": {"ok": t.id}}
                        if t.id % 7
                        else {"id": t.id, "status": "failed", "error": "soak failure"}
                        for t in tasks
                    ]
                    await client.complete_tasks(outcomes)
                return f"claim_{'hit' if tasks else 'empty'}"

            await self.paced(0.1, op)

    async def read(self) -> None:
        async with self.client("reader") as client:
            n = 0

            async def op() -> str:
                nonlocal n
                n += 1
                choice = n % 5
                if choice == 0:
                    await client.stats()
                    return "stats"
                if choice == 1:
                    page = await client.list_tasks_page(status="completed", limit=20)
                    if page.tasks:
                        await client.get_task_history(page.tasks[0].id)
                    return "list_and_history"
                if choice == 2:
                    await client.list_tasks_page(task_type="so%", limit=50, offset=self.rng.randrange(0, 500))
                    return "list_pattern"
                if choice == 3:
                    await client.health_check()
                    return "health"
                await client.list_task_types()
                return "task_types"

            await self.paced(0.3, op)


async def run(base: str, pid: int, minutes: float, rate: float, every: float) -> dict[str, Any]:
    stop = asyncio.Event()
    traffic = Traffic(base, rate, stop)
    jobs = [traffic.produce(), traffic.read(), *(traffic.work(f"soak-w{i}") for i in range(3))]
    running = [asyncio.create_task(job) for job in jobs]
    samples: list[dict[str, float]] = []
    started = time.monotonic()
    end = started + minutes * 60
    while time.monotonic() < end:
        at = time.monotonic() - started
        samples.append({"t": round(at, 1), **sample(pid)})
        print(
            f"{at:6.0f} s  rss {samples[-1]['rss_mib']:.1f} MiB  fds {samples[-1]['fds']:.0f}  "
            f"ops {sum(traffic.counts.values())}  errors {sum(traffic.errors.values())}",
            flush=True,
        )
        await asyncio.sleep(min(every, max(0.0, end - time.monotonic())))
    samples.append({"t": round(time.monotonic() - started, 1), **sample(pid)})
    stop.set()
    await asyncio.gather(*running)
    elapsed = time.monotonic() - started
    return {
        "seconds": round(elapsed, 1),
        "operations": dict(traffic.counts),
        "operations_per_second": round(sum(traffic.counts.values()) / elapsed, 1),
        "errors": dict(traffic.errors),
        "rss_mib": summary(samples, "rss_mib"),
        "fds": summary(samples, "fds"),
        "samples": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=100.0, help="operations per second in all (paced)")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--output", type=Path, default=RESULTS / "soak.json")
    args = parser.parse_args()
    with database("postgresql") as url, server(url) as base:
        from bench.servers import SERVERS

        register(base, "soak")
        pid = SERVERS[base][0]
        result = asyncio.run(run(base, pid, args.minutes, args.rate, args.every))
    report = {
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "database": "postgresql",
        "minutes": args.minutes,
        "rate": args.rate,
        **result,
    }
    args.output.write_text(json.dumps(report, indent=1) + "\n")
    brief = {k: v for k, v in report.items() if k != "samples"}
    print(json.dumps(brief, indent=1))


if __name__ == "__main__":
    main()
