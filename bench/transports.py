"""What one request costs the client, by HTTP library (issue 19: the client's own CPU).

    python -m bench.transports [--requests 3000]

Starts ``taskmanager serve`` on a fresh SQLite file and, from the bench environment (where every
library below is installed), sends ``--requests`` POSTs of a claim that finds nothing (a real
route, body and envelope, answered at once) over one kept-alive connection with each library in
turn, one thread: the client's CPU (``time.process_time``) and wall time per request. The lean
socket client of ``bench.throughput`` is the floor. Then, from the project's own environment, the
same through the project's clients (``claim_task`` finding nothing: the core builds the call and
reads the answer) with each of their transports. Results go to
``bench/results/transports.json``; ADR 0023 chose the clients' transports by them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
PATH = "/api/tasks/claim"
BODY = b'{"worker_id": "w", "limit": 1}'
KEY = "bench-key"
HEADERS = {"X-API-Key": KEY, "Content-Type": "application/json"}


def measure(base: str, requests: int) -> dict[str, dict[str, float]]:
    """Run in the bench environment: each library's CPU and wall microseconds per request."""
    import asyncio
    import io

    import aiohttp
    import httpx
    import pycurl
    import requests as requests_lib
    import urllib3

    from bench.lean import Keepalive

    def lean(n: int) -> None:
        connection = Keepalive(base)
        for _ in range(n):
            connection.post(PATH, BODY)
        connection.close()

    def with_httpx(n: int) -> None:
        with httpx.Client(base_url=base, headers=HEADERS) as client:
            for _ in range(n):
                client.post(PATH, content=BODY).content  # noqa: B018 (the body is read)

    def with_requests(n: int) -> None:
        with requests_lib.Session() as session:
            session.headers.update(HEADERS)
            for _ in range(n):
                session.post(base + PATH, data=BODY).content  # noqa: B018

    def with_urllib3(n: int) -> None:
        pool = urllib3.PoolManager()
        for _ in range(n):
            pool.request("POST", base + PATH, body=BODY, headers=HEADERS).data  # noqa: B018

    def with_pycurl(n: int) -> None:
        handle = pycurl.Curl()
        handle.setopt(pycurl.URL, base + PATH)
        handle.setopt(pycurl.HTTPHEADER, [f"{k}: {v}" for k, v in HEADERS.items()])
        for _ in range(n):
            out = io.BytesIO()
            handle.setopt(pycurl.POSTFIELDS, BODY)
            handle.setopt(pycurl.WRITEFUNCTION, out.write)
            handle.perform()
        handle.close()

    def with_aiohttp(n: int) -> None:
        async def go() -> None:
            async with aiohttp.ClientSession(base, headers=HEADERS) as session:
                for _ in range(n):
                    async with session.post(PATH, data=BODY) as answer:
                        await answer.read()

        asyncio.run(go())

    def with_httpx_async(n: int) -> None:
        async def go() -> None:
            async with httpx.AsyncClient(base_url=base, headers=HEADERS) as client:
                for _ in range(n):
                    (await client.post(PATH, content=BODY)).content  # noqa: B018

        asyncio.run(go())

    libraries = {
        "lean socket (floor)": lean,
        "httpx": with_httpx,
        "requests": with_requests,
        "urllib3": with_urllib3,
        "pycurl": with_pycurl,
        "aiohttp (async)": with_aiohttp,
        "httpx (async)": with_httpx_async,
    }
    return timed(libraries, requests)


def through_the_clients(base: str, requests: int) -> dict[str, dict[str, float]]:
    """Run in the project's environment: each client's CPU and wall microseconds per
    ``claim_task`` that finds nothing, with each of its transports."""
    import asyncio

    from taskmanager.client import AsyncTaskManagerClient, TaskManagerClient
    from taskmanager.client.aio import AioHTTPTransport
    from taskmanager.client.async_ import AsyncHTTPTransport
    from taskmanager.client.curl import CurlTransport
    from taskmanager.client.sync import HTTPTransport

    def blocking(transport: type[CurlTransport | HTTPTransport]) -> Callable[[int], None]:
        def send(n: int) -> None:
            made = TaskManagerClient(base, KEY)  # its config and headers
            made.close()
            with TaskManagerClient(
                base, KEY, transport=transport(made.config, made.core.headers())
            ) as client:
                for _ in range(n):
                    assert client.claim_task() is None

        return send

    def awaited(transport: type[AioHTTPTransport | AsyncHTTPTransport]) -> Callable[[int], None]:
        async def go(n: int) -> None:
            made = AsyncTaskManagerClient(base, KEY)  # never sends: its transport opens nothing
            sender = transport(made.config, made.core.headers())
            async with AsyncTaskManagerClient(base, KEY, transport=sender) as client:
                for _ in range(n):
                    assert await client.claim_task() is None

        return lambda n: asyncio.run(go(n))

    return timed(
        {
            "TaskManagerClient, pycurl": blocking(CurlTransport),
            "TaskManagerClient, httpx": blocking(HTTPTransport),
            "AsyncTaskManagerClient, aiohttp": awaited(AioHTTPTransport),
            "AsyncTaskManagerClient, httpx": awaited(AsyncHTTPTransport),
        },
        requests,
    )


def timed(senders: dict[str, Callable[[int], None]], requests: int) -> dict[str, dict[str, float]]:
    """Each sender's CPU and wall microseconds per request, after 50 to warm it."""
    results = {}
    for name, send in senders.items():
        send(50)  # connections open, imports and caches warm
        cpu, wall = time.process_time(), time.perf_counter()
        send(requests)
        results[name] = {
            "cpu_us_per_request": round((time.process_time() - cpu) / requests * 1e6),
            "wall_us_per_request": round((time.perf_counter() - wall) / requests * 1e6),
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.transports", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--base", help=argparse.SUPPRESS)  # set when run inside the bench environment
    args = parser.parse_args()
    if args.base:
        print(json.dumps(measure(args.base, args.requests)))
        return
    from bench.servers import database, register, server
    from bench.venv import BIN, ensure

    ensure()
    with database("sqlite") as url, server(url, workers=1) as base:
        register(base)
        out = subprocess.run(
            [str(BIN / "python"), "-m", "bench.transports", "--base", base, "--requests", str(args.requests)],
            check=True,
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
        )
        results = json.loads(out.stdout.strip().splitlines()[-1])
        results.update(through_the_clients(base, args.requests))
    report = {"date": time.strftime("%Y-%m-%d %H:%M"), "requests": args.requests, "results": results}
    (RESULTS / "transports.json").write_text(json.dumps(report, indent=2) + "\n")
    for name, figures in results.items():
        cpu, wall = figures["cpu_us_per_request"], figures["wall_us_per_request"]
        print(f"{name:34s} {cpu:6d} µs CPU  {wall:6d} µs wall")


if __name__ == "__main__":
    sys.exit(main())
