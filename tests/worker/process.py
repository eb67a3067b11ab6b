"""``taskmanager worker`` in a subprocess, and ways to watch it and the queue without sleeping
blindly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tests.conftest import ADMIN_KEY
from tests.e2e.process import TASKMANAGER

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 60.0, every: float = 0.05) -> T:
    """Poll ``check`` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


class WorkerProcess:
    """``taskmanager worker tests.worker.sample:worker`` against ``server_url``, logging JSON."""

    def __init__(self, server_url: str, run_dir: Path, *args: str) -> None:
        self.args = [
            TASKMANAGER,
            "worker",
            "tests.worker.sample:worker",
            "--log-format",
            "json",
            *args,
        ]
        self.env = {
            **os.environ,
            "TASKMANAGER_API_URL": server_url,
            "TASKMANAGER_API_KEY": ADMIN_KEY,
            "SAMPLE_RUN_DIR": str(run_dir),
        }
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in __exit__
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> WorkerProcess:
        self.proc = subprocess.Popen(
            self.args, cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT
        )
        return self

    def signal(self, signum: int = signal.SIGTERM) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 60) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def records(self) -> list[dict[str, Any]]:
        """The worker's log lines that are JSON objects."""
        found = []
        for line in self.output().splitlines():
            if line.startswith("{"):
                try:
                    found.append(json.loads(line))
                except ValueError:
                    continue
        return found

    def logged(self, message_start: str) -> bool:
        return any(r["message"].startswith(message_start) for r in self.records())

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def runs(run_dir: Path, task_id: int) -> list[int]:
    """The attempts the handler of ``task_id`` started, in order."""
    path = run_dir / str(task_id)
    return [int(line) for line in path.read_text().split()] if path.exists() else []
