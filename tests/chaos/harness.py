"""The moving parts of the chaos suite: servers that can be killed and started again on their
port, worker processes writing the ledger, producers counting every answer they get, and the
ledger read back."""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.conftest import ADMIN_KEY
from tests.e2e.process import TASKMANAGER, ServerProcess
from tests.worker.process import ROOT

HEADERS = {"X-API-Key": ADMIN_KEY}
#: A client request that takes longer than this is a hang, and fails the run.
CLIENT_TIMEOUT = 10.0
TYPE = "chaos.work"


class ChaosServer(ServerProcess):
    """``taskmanager serve`` that the test kills with SIGKILL and starts again on the same port."""

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def restart(self) -> None:
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        self._wait_until_up()


class ChaosWorker:
    """``taskmanager worker tests.chaos.ledger_worker:worker`` against one server."""

    def __init__(self, server_url: str, ledger_dir: Path, worker_id: str) -> None:
        self.worker_id = worker_id
        self.args = [
            TASKMANAGER,
            "worker",
            "tests.chaos.ledger_worker:worker",
            "--worker-id",
            worker_id,
            "--log-level",
            "warning",
        ]
        self.env = {
            **os.environ,
            "TASKMANAGER_API_URL": server_url,
            "TASKMANAGER_API_KEY": ADMIN_KEY,
            "CHAOS_LEDGER_DIR": str(ledger_dir),
        }
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in __exit__
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ChaosWorker:
        self.proc = subprocess.Popen(
            self.args, cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT
        )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def __exit__(self, *exc: object) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@dataclass
class Producers:
    """Threads creating tasks ``n`` = 0..total-1 through the servers in turn. A create that did
    not get a 200 (503, a refused connection while a server is down) is sent again, with the
    same params and so the same dedupe key: a create whose answer was lost finds its task."""

    urls: list[str]
    total: int
    threads: int = 2
    acked: dict[int, int] = field(default_factory=dict)  # n -> task id
    outcomes: Counter[str] = field(default_factory=Counter)
    slowest: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)
    _running: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for k in range(self.threads):
            thread = threading.Thread(
                target=self._produce, args=(range(k, self.total, self.threads), k), daemon=True
            )
            thread.start()
            self._running.append(thread)

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._running:
            thread.join(max(0.0, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in self._running), "the producers did not finish in time"

    def count(self) -> int:
        with self.lock:
            return len(self.acked)

    def _produce(self, numbers: range, first: int) -> None:
        turn = first
        with httpx.Client(headers=HEADERS, timeout=CLIENT_TIMEOUT) as client:
            for n in numbers:
                for tries in range(1000):
                    url = self.urls[turn % len(self.urls)]
                    turn += 1
                    outcome, task_id = self._create(client, url, n)
                    if task_id is not None:
                        with self.lock:
                            previous = self.acked.setdefault(n, task_id)
                        assert previous == task_id, f"n={n} acknowledged as {previous} and {task_id}"
                        break
                    time.sleep(min(0.5, 0.02 * (tries + 1)))  # back off before sending it again
                    del outcome

    def _create(self, client: httpx.Client, url: str, n: int) -> tuple[str, int | None]:
        started = time.monotonic()
        try:
            answer = client.post(f"{url}/api/tasks", json={"type": TYPE, "params": {"n": n}})
            outcome = str(answer.status_code)
        except httpx.TimeoutException:
            outcome, answer = "timeout", None
        except httpx.TransportError as exc:
            outcome, answer = type(exc).__name__, None
        with self.lock:
            self.outcomes[outcome] += 1
            self.slowest = max(self.slowest, time.monotonic() - started)
        if answer is not None and answer.status_code == 200:
            return outcome, int(answer.json()["data"]["id"])
        return outcome, None


@dataclass(frozen=True)
class Execution:
    task_id: int
    attempt: int
    pid: int
    at: float


def read_ledger(ledger_dir: Path) -> list[Execution]:
    found = []
    for path in ledger_dir.glob("*.ledger"):
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 4:  # a line cut short by SIGKILL is at most the last one
                found.append(Execution(int(parts[0]), int(parts[1]), int(parts[2]), float(parts[3])))
    return found


def unfinished(client: httpx.Client, url: str) -> int | None:
    """How many tasks are still pending or claimed (None while the server cannot say)."""
    try:
        answer = client.get(f"{url}/api/tasks", params={"status": "pending,claimed", "limit": 1})
    except httpx.TransportError:
        return None
    if answer.status_code != 200:
        return None
    return int(answer.json()["data"]["total"])


def all_tasks(client: httpx.Client, url: str) -> list[dict[str, object]]:
    tasks: list[dict[str, object]] = []
    while True:
        page = client.get(f"{url}/api/tasks", params={"limit": 1000, "offset": len(tasks)}).json()["data"]
        tasks.extend(page["tasks"])
        if len(tasks) >= page["total"] or not page["tasks"]:
            return tasks


def history(client: httpx.Client, url: str, task_id: int) -> list[tuple[str, str | None]]:
    """The task's events, each with the worker it names."""
    answer = client.get(f"{url}/api/tasks/{task_id}/history")
    answer.raise_for_status()
    return [(e["event"], e["worker_id"]) for e in answer.json()["data"]["events"]]
