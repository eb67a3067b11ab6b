"""Starting real ``taskmanager serve`` processes and throwaway databases for benchmarks."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from taskmanager import TaskManagerClient
from taskmanager.store.database import driver_url

PG_ADMIN_URL = os.environ.get("TASKMANAGER_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_ADMIN_URL = os.environ.get("TASKMANAGER_BENCH_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
TASKMANAGER = str(Path(sys.executable).parent / "taskmanager")
KEY = "bench-key"
HEADERS = {"X-API-Key": KEY}


def tm_worker(target: str) -> list[str]:
    """The command running a TaskManager worker as every benchmark does: warnings and errors
    logged, not one line per task — as the side-by-side run starts Celery (``--loglevel
    WARNING``), RQ (``--quiet``) and the server (``--log-level warning``): the line per task is a
    visible share of a worker's CPU (ADR 0015)."""
    return [TASKMANAGER, "worker", target, "--log-level", "warning"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _admin(statement: str, params: dict[str, Any] | None = None, url: str = PG_ADMIN_URL) -> list[Any]:
    """Run one statement on the admin database (autocommit); its rows, if it returns any."""
    engine = create_async_engine(driver_url(url), isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        result = await conn.execute(text(statement), params or {})
        rows = list(result.all()) if result.returns_rows else []
    await engine.dispose()
    return rows


@contextlib.contextmanager
def database(kind: str) -> Iterator[str]:
    """A fresh database URL of ``kind`` (sqlite, postgresql or mysql — MariaDB here), removed
    afterwards."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{tmp}/bench.db"
        return
    name = f"tm_bench_{uuid.uuid4().hex[:8]}"
    if kind == "mysql":
        asyncio.run(_admin(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4", url=MYSQL_ADMIN_URL))
        try:
            yield f"{MYSQL_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
        finally:
            asyncio.run(_admin(f"DROP DATABASE IF EXISTS `{name}`", url=MYSQL_ADMIN_URL))
        return
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


#: The process id and database URL of each running server, by base URL (for CPU accounting).
SERVERS: dict[str, tuple[int, str]] = {}


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                with open(f"/proc/{entry}/stat") as stat:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def database_processes(url: str) -> list[int]:
    """The PostgreSQL backends serving the database of ``url`` now (none for SQLite)."""
    if not url.startswith("postgresql"):
        return []
    query = "SELECT pid FROM pg_stat_activity WHERE datname = :name"
    return [int(row.pid) for row in asyncio.run(_admin(query, {"name": url.rsplit("/", 1)[1]}))]


def cpu_by_process(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds each running process has used so far (Linux /proc)."""
    found: dict[int, float] = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            found[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return found


def cpu_used(before: dict[int, float], pids: list[int]) -> float:
    """CPU seconds ``pids`` (those still running) used since ``before`` was taken; one missing
    from ``before`` — started since, like a database backend a pool opened meanwhile — counts
    from zero."""
    after = cpu_by_process(pids)
    return sum(spent - before.get(pid, 0.0) for pid, spent in after.items())


class CpuMeter:
    """The CPU each process group of a measurement spends from now on: the server's process tree
    (the server at ``base``), the ``others`` named, and the PostgreSQL backends of the server's
    database — listed again at the end, so those a pool opened meanwhile count too."""

    def __init__(self, base: str, others: dict[str, list[int]]) -> None:
        server_pid, self.url = SERVERS[base]
        self.groups = {"server": process_tree(server_pid), **others, "postgres": database_processes(self.url)}
        self.start = {name: cpu_by_process(pids) for name, pids in self.groups.items()}

    def per_task(self, tasks: int) -> dict[str, int]:
        """Microseconds of CPU per task each group has spent since the start."""
        groups = {**self.groups, "postgres": database_processes(self.url)}
        return {name: round(cpu_used(self.start[name], pids) / tasks * 1e6) for name, pids in groups.items()}


@contextlib.contextmanager
def server(url: str, *, workers: int = 1) -> Iterator[str]:
    """``taskmanager serve`` on a free port; yields its base URL."""
    port = free_port()
    env = {
        **os.environ,
        "TASKMANAGER_DATABASE_URL": url,
        "TASKMANAGER_API_KEY": KEY,
        "TASKMANAGER_ENABLE_HISTORY": "true",
    }
    proc = subprocess.Popen(
        [TASKMANAGER, "serve", "--port", str(port), "--workers", str(workers), "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            time.sleep(0.05)
        else:
            raise RuntimeError("server did not start")
        SERVERS[base] = (proc.pid, url)
        yield base
    finally:
        SERVERS.pop(base, None)
        proc.terminate()
        proc.wait(timeout=30)


def register(base: str, name: str = "noop") -> None:
    response = httpx.post(
        f"{base}/api/task-types/register",
        headers=HEADERS,
        json={"name": name, "version": "1", "param_schema": {"type": "object"}},
    )
    response.raise_for_status()


def create_paced(base: str, count: int, rate: float) -> float:
    """Create ``count`` no-op tasks at ``rate``/s, one request each, each stamped with
    ``time.time()`` in its params (``t``); returns the rate achieved."""
    # Through the project's own client over keep-alive, as a producer runs it (issue 19).
    with TaskManagerClient(base, KEY, timeout=60) as client:
        started = time.perf_counter()
        for n in range(count):
            delay = started + n / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            client.create_task("noop", {"n": n, "t": time.time()})
        return count / (time.perf_counter() - started)
