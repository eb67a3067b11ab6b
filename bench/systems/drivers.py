"""One interface for every system the harness measures.

A ``System`` opens a fresh ``Session`` (empty queue, nothing running) in which the harness can
enqueue N tasks (one call each, or the system's batch call), start K worker processes, and wait
until ``bench.systems.counting`` has seen N handler calls. TaskManager runs in this (the
project's) environment against real ``taskmanager serve`` processes; the four others run their
own CLIs from the bench environment (``bench.venv``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from bench import throughput
from bench.servers import KEY, create_paced, database, free_port, register, server, tm_worker
from bench.systems.counting import BROKER_PORT_ENV, DB_BASE, PREFIX_ENV, REDIS_PORT, Redis, Tally
from bench.venv import BIN
from taskmanager import TaskManagerClient

ROOT = Path(__file__).resolve().parents[2]
#: Threads per process of TaskManager's single-request path and of Dramatiq.
THREADS = 8
#: Tasks each TaskManager worker-runtime process runs at once (as ``bench.throughput``).
WORKER_CONCURRENCY = 100
#: procrastinate's worker concurrency (asynchronous jobs at once per process).
PROCRASTINATE_CONCURRENCY = 8


class Workers:
    """Worker processes, each in its own process group so a whole tree can be stopped."""

    def __init__(self, commands: list[list[str]], env: dict[str, str]) -> None:
        self.procs = [
            subprocess.Popen(
                command,
                env=env,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            for command in commands
        ]

    def check(self) -> None:
        for proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"worker {proc.args} exited with {proc.returncode}")

    def stop(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # also whatever the worker forked
            proc.wait()


@dataclass
class Session:
    """One fresh queue of one system."""

    system: System
    env: dict[str, str]
    base: str = ""
    stack: ExitStack = field(default_factory=ExitStack)

    def enqueue(self, mode: str, count: int) -> float:
        """Tasks per second enqueued by one process, one call per task or the batch call."""
        return count / self.system.enqueue(self, mode, count)

    def process(self, count: int, processes: int, timeout: float) -> float:
        """Start ``processes`` workers on the ``count`` enqueued tasks; tasks per second from the
        first handler call to the last (start-up left out)."""
        prefix = f"bench:{uuid.uuid4().hex[:8]}"
        tally = Tally(prefix)
        workers = Workers(self.system.worker_commands(self, processes), {**self.env, PREFIX_ENV: prefix})
        try:
            self._wait(tally, workers, count, timeout)
            return count / tally.span()
        finally:
            workers.stop()
            tally.close()

    def latency(self, count: int, rate: float, timeout: float) -> list[float]:
        """Milliseconds from create to handler start of ``count`` tasks created at ``rate``/s
        while one worker process waits for them."""
        prefix = f"bench:{uuid.uuid4().hex[:8]}"
        tally = Tally(prefix)
        workers = Workers(self.system.worker_commands(self, 1), {**self.env, PREFIX_ENV: prefix})
        try:
            # One unstamped task first: once it is done, the worker is up and waiting.
            self.system.enqueue(self, "single", 1)
            self._wait(tally, workers, 1, timeout)
            self.system.paced(self, count, rate)
            self._wait(tally, workers, count + 1, timeout)
            return tally.latencies()
        finally:
            workers.stop()
            tally.close()

    @staticmethod
    def _wait(tally: Tally, workers: Workers, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while tally.done() < count:
            workers.check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{tally.done()} of {count} tasks done after {timeout:.0f} s")
            time.sleep(0.02)


class System:
    name = ""
    label = ""
    #: The name of the batch call, or "" when the system has none.
    batch = ""
    #: Which kind of database/broker the ratio rules group it with.
    family = ""
    #: Whether its enqueue rates are measured (TaskManager's two paths share one API: measured once).
    measure_enqueue = True

    def setup(self, stack: ExitStack) -> None:
        """Once per harness run: anything shared by all sessions (e.g. a database schema)."""

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        raise NotImplementedError

    def enqueue(self, session: Session, mode: str, count: int) -> float:
        raise NotImplementedError

    def paced(self, session: Session, count: int, rate: float) -> None:
        raise NotImplementedError

    def worker_commands(self, session: Session, processes: int) -> list[list[str]]:
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------
# TaskManager


class TaskManager(System):
    family = "taskmanager"

    def __init__(self, kind: str, path: str) -> None:
        self.kind, self.path = kind, path
        self.name = f"taskmanager-{'pg' if kind == 'postgresql' else kind}-{path}"
        db = "PostgreSQL" if kind == "postgresql" else "SQLite"
        self.label = f"TaskManager {db}, " + (
            "worker runtime (batched)" if path == "worker" else "single requests"
        )
        self.batch = "POST /tasks/batch"
        self.measure_enqueue = path == "worker"

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        with ExitStack() as stack:
            base = stack.enter_context(server(stack.enter_context(database(self.kind)), workers=2))
            register(base)
            env = {
                **os.environ,
                "TASKMANAGER_API_URL": base,
                "TASKMANAGER_API_KEY": KEY,
                # Tasks each worker-runtime process runs at once (bench.throughput's default).
                "BENCH_CONCURRENCY": os.environ.get("BENCH_CONCURRENCY", str(WORKER_CONCURRENCY)),
            }
            yield Session(self, env, base)

    def enqueue(self, session: Session, mode: str, count: int) -> float:
        if mode == "batch":
            return count / throughput._create(session.base, count)
        # Through the project's own client over keep-alive, as a producer runs it (issue 19).
        started = time.perf_counter()
        with TaskManagerClient(session.base, KEY, timeout=60) as client:
            for n in range(count):
                client.create_task("noop", {"n": n})
        return time.perf_counter() - started

    def paced(self, session: Session, count: int, rate: float) -> None:
        create_paced(session.base, count, rate)

    def worker_commands(self, session: Session, processes: int) -> list[list[str]]:
        if self.path == "worker":
            command = tm_worker("bench.systems.tm_worker:worker")
        else:
            command = [sys.executable, "-m", "bench.systems.tm_single", session.base, str(THREADS)]
        return [command] * processes


# ---------------------------------------------------------------------------------------------
# The competitors


class Competitor(System):
    module = ""

    def enqueue(self, session: Session, mode: str, count: int) -> float:
        return float(self._enqueuer(session, mode, str(count))["seconds"])

    def paced(self, session: Session, count: int, rate: float) -> None:
        self._enqueuer(session, "paced", str(count), str(rate))

    def _enqueuer(self, session: Session, *args: str) -> dict[str, float]:
        out = subprocess.run(
            [str(BIN / "python"), "-m", "bench.systems.enqueue", self.module, *args],
            env=session.env,
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        )
        result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
        return result

    @staticmethod
    def _env(**extra: str) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(ROOT), **extra}


@contextlib.contextmanager
def durable_redis() -> Iterator[int]:
    """A Redis server of the run's own that writes every command to its append-only file and
    fsyncs it before answering (``appendfsync always``): the durability TaskManager and
    procrastinate get from a PostgreSQL commit. Yields its port."""
    server = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as directory:
        proc = subprocess.Popen(
            [server, "--port", str(port), "--bind", "127.0.0.1", "--dir", directory, "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--databases", str(DB_BASE + 16)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    Redis(0, port).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError("the durable Redis did not start") from None
                    time.sleep(0.05)
            yield port
        finally:
            proc.terminate()
            proc.wait(timeout=30)


class RedisCompetitor(Competitor):
    family = "redis"
    db_offset = 0

    def __init__(self, durable: bool = False) -> None:
        #: Whether its queue lives in a Redis that fsyncs every write (see ``durable_redis``).
        self.durable = durable
        self.port = REDIS_PORT
        if durable:
            self.name = f"{self.name}-durable"
            self.label = f"{self.label}, Redis appendfsync always"

    def setup(self, stack: ExitStack) -> None:
        if self.durable:
            self.port = stack.enter_context(durable_redis())

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        redis = Redis(DB_BASE + self.db_offset, self.port)
        try:
            redis.execute(("FLUSHDB",))
            yield Session(self, self._env(**{BROKER_PORT_ENV: str(self.port)}))
        finally:
            redis.execute(("FLUSHDB",))
            redis.close()

    def broker_url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/{DB_BASE + self.db_offset}"


class Celery(RedisCompetitor):
    name, label, module, db_offset = "celery", "Celery on Redis (solo pool)", "celery", 1

    def worker_commands(self, session: Session, processes: int) -> list[list[str]]:
        return [
            [
                str(BIN / "celery"),
                "-A",
                "bench.systems.celery_app",
                "worker",
                "--pool",
                "solo",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel",
                "WARNING",
                "-n",
                f"bench{n}@%h",
            ]
            for n in range(processes)
        ]


class RQ(RedisCompetitor):
    name, label, module, db_offset = "rq", "RQ (SimpleWorker)", "rq", 2
    batch = "Queue.enqueue_many"

    def worker_commands(self, session: Session, processes: int) -> list[list[str]]:
        command = [str(BIN / "rq"), "worker", "-w", "rq.worker.SimpleWorker", "--url", self.broker_url()]
        return [[*command, "--quiet", "bench"]] * processes


class Dramatiq(RedisCompetitor):
    name, label, module, db_offset = "dramatiq", f"Dramatiq on Redis ({THREADS} threads)", "dramatiq", 3

    def worker_commands(self, session: Session, processes: int) -> list[list[str]]:
        return [
            [
                str(BIN / "dramatiq"),
                "bench.systems.dramatiq_app",
                "--processes",
                str(processes),
                "--threads",
                str(THREADS),
            ]
        ]


class Procrastinate(Competitor):
    name, label, module = "procrastinate", "procrastinate on PostgreSQL", "procrastinate"
    family = "postgresql"
    batch = "Task.batch_defer"
    dsn = ""

    def setup(self, stack: ExitStack) -> None:
        self.dsn = stack.enter_context(database("postgresql"))
        subprocess.run(
            [str(BIN / "procrastinate"), "--app", "bench.systems.procrastinate_app.app", "schema", "--apply"],
            env=self._env(BENCH_PROCRASTINATE_DSN=self.dsn),
            cwd=ROOT,
            check=True,
            capture_output=True,
        )

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        asyncio.run(self._truncate())
        try:
            yield Session(self, self._env(BENCH_PROCRASTINATE_DSN=self.dsn))
        finally:
            asyncio.run(self._truncate())

    async def _truncate(self) -> None:
        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.execute("TRUNCATE procrastinate_jobs, procrastinate_events RESTART IDENTITY CASCADE")
        finally:
            await conn.close()

    def worker_commands(self, session: Session, processes: int) -> list[list[str]]:
        command = [
            str(BIN / "procrastinate"),
            "--app",
            "bench.systems.procrastinate_app.app",
            "worker",
            "--queues",
            "bench",
            "--concurrency",
            str(PROCRASTINATE_CONCURRENCY),
        ]
        return [command] * processes


def all_systems() -> list[System]:
    return [
        TaskManager("sqlite", "worker"),
        TaskManager("sqlite", "single"),
        TaskManager("postgresql", "worker"),
        TaskManager("postgresql", "single"),
        Celery(),
        RQ(),
        Dramatiq(),
        # The same three with their queue in a Redis that fsyncs every write: the durability of
        # a PostgreSQL commit, which TaskManager and procrastinate pay for (issue 19).
        Celery(durable=True),
        RQ(durable=True),
        Dramatiq(durable=True),
        Procrastinate(),
    ]
