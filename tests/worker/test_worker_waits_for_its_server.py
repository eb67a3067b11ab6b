"""``taskmanager worker`` started before its server: it keeps trying, one log line per try, and
starts working once the server answers (as Celery workers wait for their broker)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.conftest import ADMIN_KEY, free_port
from tests.e2e.process import ServerProcess
from tests.worker.process import WorkerProcess, wait_for

pytestmark = pytest.mark.slow  # server and worker processes: docs/development.md


def test_a_worker_started_before_its_server_waits_for_it(tmp_path: Path) -> None:
    server = ServerProcess(f"sqlite:///{tmp_path / 'late.db'}", api_key=ADMIN_KEY)
    with WorkerProcess(server.url, tmp_path) as worker:
        tries = wait_for(
            "two tries to reach the server",
            lambda: [r for r in worker.records() if r["message"].startswith("cannot reach the server")][1:],
        )
        assert f"cannot reach the server at {server.url} (try 2: " in tries[0]["message"]
        waiting = [r["message"] for r in worker.records()]
        assert all(m.startswith("cannot reach the server") for m in waiting), "one line per try"
        assert worker.proc is not None
        assert worker.proc.poll() is None, "the worker is still there"
        with server:
            wait_for("the worker to start", lambda: worker.logged("worker "), timeout=90)
            worker.signal(signal.SIGTERM)
            assert worker.wait() == 0
        assert "Traceback" not in worker.output()


def test_a_worker_told_to_stop_while_it_waits_stops(tmp_path: Path) -> None:
    with WorkerProcess(f"http://127.0.0.1:{free_port()}", tmp_path) as worker:
        wait_for("a try to reach the server", lambda: worker.logged("cannot reach the server"))
        worker.signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
        assert "Traceback" not in worker.output()


def test_a_worker_with_a_wrong_key_says_so_in_one_line(tmp_path: Path) -> None:
    with ServerProcess(f"sqlite:///{tmp_path / 'keyed.db'}", api_key=ADMIN_KEY) as server:
        worker = WorkerProcess(server.url, tmp_path)
        worker.env["TASKMANAGER_API_KEY"] = "not-the-key"
        with worker:
            assert worker.wait() == 1
            last = worker.output().strip().splitlines()[-1]
            assert last.startswith("taskmanager: Invalid or missing API key.")
            assert last.endswith("(401)")
            assert "Traceback" not in worker.output()
