"""Counting completions the same way for every system, cheaply.

Every benchmark handler — TaskManager's, Celery's, RQ's, Dramatiq's, procrastinate's — calls
``hit(created)`` once. ``hit`` only takes a lock and updates four numbers in memory; a daemon
thread in each worker process flushes them to Redis every ``FLUSH_SECONDS`` (one pipelined
round trip: ``INCRBY`` the count, keep the process's first and last handler time, push the
latency samples). So counting costs each task a lock and four additions in the worker, and one
Redis round trip per process per ``FLUSH_SECONDS``, whatever the task rate.

The harness then computes a processing rate as ``count / (last handler time - first handler
time)`` over all processes: worker start-up (which differs from one system to another by
seconds) is left out, and the answer does not depend on how often anyone polls. Latency samples
are ``handler start - create time``, both read from ``time.time()`` on the same machine.

This module talks RESP over a plain socket so it needs nothing installed: TaskManager's worker
runs in the project's environment, the competitors in the bench environment.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

REDIS_HOST = os.environ.get("BENCH_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("BENCH_REDIS_PORT", "6379"))
#: Redis databases the harness owns (and flushes): counters, Celery, RQ, Dramatiq.
DB_BASE = int(os.environ.get("BENCH_REDIS_DB_BASE", "10"))
COUNTER_DB = DB_BASE
FLUSH_SECONDS = 0.01
PREFIX_ENV = "BENCH_COUNTER_PREFIX"
#: Where a Redis peer keeps its queue when it is not this Redis: the durable variant's own
#: server (``appendfsync always``), set by the harness for that peer's processes.
BROKER_PORT_ENV = "BENCH_BROKER_PORT"


def redis_url(offset: int) -> str:
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/{DB_BASE + offset}"


def broker_url(offset: int) -> str:
    """The URL a Redis peer's queue lives at: the counters' Redis, or the durable one."""
    port = int(os.environ.get(BROKER_PORT_ENV, REDIS_PORT))
    return f"redis://{REDIS_HOST}:{port}/{DB_BASE + offset}"


class Redis:
    """The few Redis commands the harness needs, over one blocking socket."""

    def __init__(self, db: int = COUNTER_DB, port: int = REDIS_PORT) -> None:
        self.sock = socket.create_connection((REDIS_HOST, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.file = self.sock.makefile("rb")
        self.execute(("SELECT", db))

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def execute(self, *commands: tuple[Any, ...]) -> list[Any]:
        """Send the commands in one write (a pipeline); their replies in order."""
        out = bytearray()
        for command in commands:
            out += b"*%d\r\n" % len(command)
            for arg in command:
                data = arg if isinstance(arg, bytes) else str(arg).encode()
                out += b"$%d\r\n%s\r\n" % (len(data), data)
        self.sock.sendall(out)
        return [self._reply() for _ in commands]

    def _reply(self) -> Any:
        line = self.file.readline()
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            data = self.file.read(size + 2)[:-2]
            return data.decode()
        if kind == b"*":
            size = int(rest)
            return None if size < 0 else [self._reply() for _ in range(size)]
        raise RuntimeError(f"unexpected reply {line!r}")


class Recorder:
    """Per-process counts of handler calls, flushed to Redis by a background thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pid = 0
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        self.samples: list[float] = []
        self.prefix = ""

    def hit(self, created: float | None = None, started: float | None = None) -> None:
        """One task handled; ``created`` (the enqueuer's clock) gives a latency sample up to
        ``started`` (default: now, the handler's start)."""
        now = time.time()
        with self.lock:
            if self.pid != os.getpid():  # first call in this process (or in a forked child)
                self._start()
            self.count += 1
            if not self.first:
                self.first = now
            self.last = now
            if created is not None:
                self.samples.append(((started or now) - created) * 1000)

    def _start(self) -> None:
        self.pid = os.getpid()
        self.count, self.first, self.last, self.samples = 0, 0.0, 0.0, []
        self.prefix = os.environ[PREFIX_ENV]
        threading.Thread(target=self._flush_forever, name="bench-counter", daemon=True).start()

    def _flush_forever(self) -> None:
        redis = Redis()
        flushed = 0
        while True:
            time.sleep(FLUSH_SECONDS)
            with self.lock:
                count, first, last, samples = self.count, self.first, self.last, self.samples
                self.samples = []
            if count == flushed and not samples:
                continue
            commands: list[tuple[Any, ...]] = [
                ("HSET", f"{self.prefix}:first", self.pid, repr(first)),
                ("HSET", f"{self.prefix}:last", self.pid, repr(last)),
                ("INCRBY", f"{self.prefix}:done", count - flushed),
            ]
            if samples:
                commands.append(("RPUSH", f"{self.prefix}:latency", *(f"{s:.3f}" for s in samples)))
            redis.execute(*commands)
            flushed = count


recorder = Recorder()
hit = recorder.hit


class Tally:
    """The harness's side: read (and finally delete) what the workers recorded under a prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.redis = Redis()

    def done(self) -> int:
        value = self.redis.execute(("GET", f"{self.prefix}:done"))[0]
        return int(value or 0)

    def wait(self, expected: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while (done := self.done()) < expected:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{done} of {expected} tasks done after {timeout:.0f} s")
            time.sleep(0.02)

    def span(self) -> float:
        """Seconds from the first handler call to the last, over all processes."""
        firsts, lasts = self.redis.execute(
            ("HVALS", f"{self.prefix}:first"), ("HVALS", f"{self.prefix}:last")
        )
        return max(float(v) for v in lasts) - min(float(v) for v in firsts if float(v))

    def latencies(self) -> list[float]:
        values = self.redis.execute(("LRANGE", f"{self.prefix}:latency", 0, -1))[0]
        return [float(v) for v in values]

    def close(self) -> None:
        self.redis.execute(*(("DEL", f"{self.prefix}:{key}") for key in ("first", "last", "done", "latency")))
        self.redis.close()
