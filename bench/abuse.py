"""Abuse: idle and slow connections, a flood of concurrent requests and 200 simultaneous
long-poll claims against ``taskmanager serve`` on PostgreSQL, with ``/health`` timed throughout
by a separate process (issue 18; target: under 1 s).

    python -m bench.abuse            # about two minutes
    python -m bench.abuse --quick    # fewer of everything

Phases, one after the other on one server (default settings: 1,000 connections, 256 requests at
once, a pool of 10 database connections, a 30 s request timeout):

1. ``idle``: ``--idle`` sockets opened and left silent, and ``--slow`` sockets sending a request
   head one byte a second, for ``--hold`` seconds; how many the server closed, and when.
2. ``flood``: ``--flood`` requests at once (creates and listings, each on its own connection);
   their statuses (a 503 ``Server busy`` past the cap is the design) and latencies.
3. ``long_poll``: ``--claims`` claims with ``wait`` 5 s on an empty queue, all at once, then a
   task created while they wait; each claim's duration (none may pass its wait plus the client
   timeout margin), statuses, and the server's PostgreSQL connections seen during the phase.

A ``/health`` probe runs in a child process the whole time (a fresh connection every 100 ms, so
the bench's own event loop does not slow it), and its p50/p95/max per phase are reported. The
result goes to ``bench/results/abuse.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from bench.servers import HEADERS, SERVERS, _admin, database, register, server

RESULTS = Path(__file__).parent / "results"
#: Seconds between two /health probes.
PROBE_EVERY = 0.1
#: Seconds one /health probe may take before it counts as failed.
PROBE_TIMEOUT = 10.0


def probe(base: str, seconds: float) -> None:
    """The child process: time ``GET /health`` on a fresh connection every ``PROBE_EVERY`` s,
    print ``[wall_clock, seconds or None, status]`` lines as JSON."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.perf_counter()
        try:
            status: int | str = described(httpx.get(f"{base}/health", timeout=PROBE_TIMEOUT))
            took: float | None = time.perf_counter() - started
        except httpx.HTTPError as exc:
            status, took = type(exc).__name__, None
        print(json.dumps([time.time(), took, status]), flush=True)
        time.sleep(max(0.0, PROBE_EVERY - (time.perf_counter() - started)))


def percentiles(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"count": 0}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return {
        "count": len(values),
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p95_ms": round(p95 * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


async def idle_and_slow(port: int, idle: int, slow: int, hold: float) -> dict[str, Any]:
    """Open ``idle`` silent and ``slow`` byte-a-second sockets for ``hold`` seconds."""
    head = b"GET /api/tasks HTTP/1.1\r\nHost: x\r\nX-API-Key: bench-key\r\n" + b"X-Pad: " + b"a" * 200
    closed_at: list[float] = []
    refused = 0
    started = time.monotonic()

    async def one(dribble: bool) -> None:
        nonlocal refused
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            refused += 1
            return
        try:
            end = started + hold
            index = 0
            while time.monotonic() < end:
                if dribble and index < len(head):
                    writer.write(head[index : index + 1])
                    index += 1
                    await writer.drain()
                with contextlib.suppress(TimeoutError):
                    data = await asyncio.wait_for(reader.read(1024), 1.0)
                    if not data:  # the server closed it
                        closed_at.append(time.monotonic() - started)
                        return
                    # an answer (408, 503): read to the end, then it is closed
        except OSError:
            closed_at.append(time.monotonic() - started)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    await asyncio.gather(*(one(False) for _ in range(idle)), *(one(True) for _ in range(slow)))
    return {
        "idle": idle,
        "slow": slow,
        "hold_s": hold,
        "refused_at_connect": refused,
        "closed_by_server": len(closed_at),
        "closed_after_s": percentiles_plain(closed_at),
    }


def percentiles_plain(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"count": 0}
    ordered = sorted(values)
    middle = round(statistics.median(ordered), 1)
    low, high = round(ordered[0], 1), round(ordered[-1], 1)
    return {"count": len(ordered), "min": low, "median": middle, "max": high}


def described(answer: httpx.Response) -> str:
    """The status, with the error text of a 503 (which limit refused it)."""
    if answer.status_code != 503:
        return str(answer.status_code)
    with contextlib.suppress(ValueError, AttributeError):
        return f"503 {answer.json().get('error')}"
    return "503"


async def flood(base: str, count: int) -> dict[str, Any]:
    """``count`` requests at once, each on its own connection: creates and listings."""
    statuses: Counter[str] = Counter()
    took: list[float] = []
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base, headers=HEADERS, timeout=120, limits=limits) as client:
        gate = asyncio.Event()

        async def one(n: int) -> None:
            await gate.wait()
            started = time.perf_counter()
            try:
                if n % 2:
                    answer = await client.post("/api/tasks", json={"type": "abuse", "params": {"n": n}})
                else:
                    answer = await client.get("/api/tasks", params={"limit": 20})
                statuses[described(answer)] += 1
            except httpx.HTTPError as exc:
                statuses[type(exc).__name__] += 1
            took.append(time.perf_counter() - started)

        jobs = [asyncio.create_task(one(n)) for n in range(count)]
        await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(*jobs)
    return {"requests": count, "statuses": dict(statuses), "latency": percentiles(took)}


async def long_poll(base: str, url: str, claims: int, wait: float) -> dict[str, Any]:
    """``claims`` claims with ``wait`` seconds on an empty queue at once; a task created while
    they wait must be claimed by exactly one."""
    statuses: Counter[str] = Counter()
    durations: list[float] = []
    claimed = 0
    limits = httpx.Limits(max_connections=claims + 10, max_keepalive_connections=0)
    connections: list[int] = []
    async with httpx.AsyncClient(base_url=base, headers=HEADERS, timeout=wait + 30, limits=limits) as client:

        async def one(n: int) -> None:
            nonlocal claimed
            started = time.perf_counter()
            try:
                body = {"worker_id": f"lp-{n}", "types": ["abuse-lp"], "limit": 1, "wait": wait}
                answer = await client.post("/api/tasks/claim", json=body)
                statuses[str(answer.status_code)] += 1
                if answer.status_code == 200:
                    claimed += len(answer.json()["data"]["tasks"])
            except httpx.HTTPError as exc:
                statuses[type(exc).__name__] += 1
            durations.append(time.perf_counter() - started)

        async def watch_pool() -> None:
            name = url.rsplit("/", 1)[1]
            query = "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = :name"
            for _ in range(int(wait * 2) + 4):
                rows = await _admin(query, {"name": name})
                connections.append(int(rows[0].n))
                await asyncio.sleep(0.5)

        jobs = [asyncio.create_task(one(n)) for n in range(claims)]
        watcher = asyncio.create_task(watch_pool())
        await asyncio.sleep(wait / 2)
        created = await client.post("/api/tasks", json={"type": "abuse-lp", "params": {}})
        await asyncio.gather(*jobs)
        await watcher
    return {
        "claims": claims,
        "wait_s": wait,
        "statuses": dict(statuses),
        "task_created_midway": created.status_code,
        "tasks_claimed": claimed,
        "duration": percentiles(durations),
        "longest_s": round(max(durations), 2),
        "beyond_wait_plus_5s": sum(1 for d in durations if d > wait + 5),
        "postgres_connections_max": max(connections),
    }


def health_in(lines: list[list[Any]], start: float, end: float) -> dict[str, Any]:
    inside = [line for line in lines if start <= line[0] <= end]
    took = [line[1] for line in inside if line[1] is not None]
    failed = Counter(str(line[2]) for line in inside if line[1] is None or line[2] != "200")
    return {**percentiles(took), "failed": dict(failed), "over_1s": sum(1 for t in took if t > 1.0)}


async def scenario(base: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    port = int(base.rsplit(":", 1)[1])
    marks: dict[str, tuple[float, float]] = {}
    results: dict[str, Any] = {}

    async def phase(name: str, coro: Any) -> None:
        start = time.time()
        print(f"phase {name} ...", flush=True)
        results[name] = await coro
        marks[name] = (start, time.time())
        print(f"phase {name}: {json.dumps(results[name])}", flush=True)

    start = time.time()
    await asyncio.sleep(3)
    marks["baseline"] = (start, time.time())
    await phase("idle", idle_and_slow(port, args.idle, args.slow, args.hold))
    await phase("flood", flood(base, args.flood))
    await phase("long_poll", long_poll(base, url, args.claims, args.wait))
    # Afterwards: the server still serves a claim at once (no connection was left held).
    async with httpx.AsyncClient(base_url=base, headers=HEADERS, timeout=10) as client:
        made = await client.post("/api/tasks", json={"type": "abuse-lp", "params": {"after": True}})
        made.raise_for_status()
        started = time.perf_counter()
        after = await client.post("/api/tasks/claim", json={"worker_id": "after", "types": ["abuse-lp"]})
        took = round((time.perf_counter() - started) * 1000, 1)
        results["claim_after"] = {"status": after.status_code, "ms": took}
    return {"results": results, "marks": marks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probe", nargs=2, metavar=("BASE", "SECONDS"), help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--idle", type=int, default=300)
    parser.add_argument("--slow", type=int, default=200)
    parser.add_argument("--hold", type=float, default=40.0, help="seconds the idle and slow sockets are held")
    parser.add_argument("--flood", type=int, default=3000)
    parser.add_argument("--claims", type=int, default=200)
    parser.add_argument("--wait", type=float, default=5.0)
    parser.add_argument("--output", type=Path, default=RESULTS / "abuse.json")
    args = parser.parse_args()
    if args.probe:
        probe(args.probe[0], float(args.probe[1]))
        return
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # this process opens thousands
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.quick:
        args.idle, args.slow, args.hold, args.flood, args.claims = 50, 50, 10.0, 500, 50
    with database("postgresql") as url, server(url) as base:
        register(base, "abuse")
        register(base, "abuse-lp")
        pid = SERVERS[base][0]
        budget = 3 + args.hold + 60 + args.wait + 40
        prober = subprocess.Popen(
            [sys.executable, "-m", "bench.abuse", "--probe", base, str(budget)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            outcome = asyncio.run(scenario(base, url, args))
        finally:
            prober.terminate()
            output, _ = prober.communicate(timeout=30)
        with open(f"/proc/{pid}/status") as status:
            rss = next(line.split()[1] for line in status if line.startswith("VmRSS:"))
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    health = {name: health_in(lines, *span) for name, span in outcome["marks"].items()}
    report = {
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "database": "postgresql",
        "settings": vars(args) | {"output": str(args.output), "probe": None},
        **outcome["results"],
        "health": health,
        "server_rss_mib_after": round(int(rss) / 1024, 1),
    }
    args.output.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
