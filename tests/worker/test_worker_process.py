"""``taskmanager worker`` as a deployment runs it: a subprocess with concurrency 4 against a real
``taskmanager serve`` subprocess, on every database.

The handlers (``tests/worker/sample.py``) write down each attempt they start, so the tests see
how often every task really ran.
"""

from __future__ import annotations

import random
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from taskmanager import Task, TaskManagerClient
from tests.conftest import ADMIN_KEY, TestDatabase
from tests.e2e.process import ServerProcess
from tests.worker.process import WorkerProcess, runs, wait_for

pytestmark = pytest.mark.slow  # server and worker processes: docs/development.md

TYPES = (
    "sample.ok",
    "sample.async_ok",
    "sample.flaky",
    "sample.boom",
    "sample.slow",
    "sample.slow_sync",
    "sample.cancel",
    "sample.async_cancel",
    "sample.steady",
)
#: How many tasks of each type the mixed run creates (200 in all).
MIX = {
    "sample.ok": 120,
    "sample.async_ok": 40,
    "sample.flaky": 15,
    "sample.boom": 10,
    "sample.slow": 4,
    "sample.slow_sync": 3,
    "sample.cancel": 4,
    "sample.async_cancel": 4,
}
CANCELLED_TYPES = ("sample.cancel", "sample.async_cancel")


def registered(client: TaskManagerClient) -> bool:
    return {t.name for t in client.list_task_types()} >= set(TYPES)


def all_tasks(client: TaskManagerClient) -> list[Task]:
    return list(client.list_tasks(page_size=1000))


def cancel_running(client: TaskManagerClient, run_dir: Path, done: set[int]) -> bool:
    """Cancel each to-be-cancelled task once its handler has started; True when all are."""
    for task in client.list_tasks(["claimed", "cancelled"], task_type="sample.%cancel"):
        if task.id not in done and task.status == "claimed" and runs(run_dir, task.id):
            client.cancel_task(task.id, "cancelled by the test")
            done.add(task.id)
    return len(done) == sum(MIX[t] for t in CANCELLED_TYPES)


def expected(task: Task) -> tuple[str, list[int]]:
    """The status a task must end in under the rules, and the attempts its handler must start."""
    return {
        "sample.ok": ("completed", [1]),
        "sample.async_ok": ("completed", [1]),
        "sample.flaky": ("completed", [1, 2]),  # fails once, succeeds on the retry
        "sample.boom": ("failed", [1, 2]),  # max_attempts=2, both fail
        "sample.slow": ("failed", [1]),  # over its time limit, max_attempts=1
        "sample.slow_sync": ("failed", [1]),
        "sample.cancel": ("cancelled", [1]),
        "sample.async_cancel": ("cancelled", [1]),
    }[task.type]


def check_result(task: Task, run_dir: Path) -> None:
    n = task.params["n"]
    if task.type in ("sample.ok", "sample.async_ok"):
        assert task.result == {"double": n * 2}
    elif task.type == "sample.flaky":
        assert task.result == {"attempt": 2}
    elif task.type == "sample.boom":
        assert task.error_message is not None
        assert task.error_message.startswith("Traceback (most recent call last)")
        assert task.error_message.rstrip().endswith(f"RuntimeError: boom {n}")
    elif task.type in ("sample.slow", "sample.slow_sync"):
        assert "did not finish within its" in (task.error_message or "")
    else:
        assert task.error_message == "cancelled by the test"
        assert (run_dir / f"{task.id}.stopped").read_text() == "cancelled", "stopped mid-run"
    if task.type == "sample.slow":
        assert (run_dir / f"{task.id}.stopped").exists(), "an async handler is cancelled"


def test_a_mixed_run_ends_every_task_as_the_rules_say(clean_database: TestDatabase, tmp_path: Path) -> None:
    with (
        ServerProcess(clean_database.url, api_key=ADMIN_KEY) as server,
        TaskManagerClient(server.url, ADMIN_KEY) as client,
        WorkerProcess(server.url, tmp_path, "--concurrency", "4") as worker,
    ):
        wait_for("the worker to register its types", lambda: registered(client))
        batch = [{"type": kind, "params": {"n": n}} for kind, count in MIX.items() for n in range(count)]
        random.Random(4).shuffle(batch)
        assert client.create_tasks(batch).created == len(batch) == 200

        cancelled: set[int] = set()
        wait_for(
            "the cancel tasks to start and be cancelled", lambda: cancel_running(client, tmp_path, cancelled)
        )
        wait_for(
            "every task to finish",
            lambda: client.list_tasks_page(["pending", "claimed"], limit=1).total == 0,
            timeout=120,
            every=0.1,
        )
        worker.signal(signal.SIGTERM)
        assert worker.wait() == 0, worker.output()

        tasks = all_tasks(client)
        assert len(tasks) == 200
        for task in tasks:
            status, attempts = expected(task)
            assert task.status == status, (task.type, task.id, task.error_message)
            assert runs(tmp_path, task.id) == attempts, f"{task.type} {task.id} ran {runs(tmp_path, task.id)}"
            assert task.attempts == len(attempts)
            check_result(task, tmp_path)

        progressed = [t for t in tasks if t.type.endswith("ok") and t.params["n"] % 10 == 0]
        for task in progressed:
            events = [e.event for e in client.get_task_history(task.id)]
            assert "progress" in events

        logged = [r for r in worker.records() if r.get("task_id") is not None and r.get("outcome")]
        outcomes = Counter((r["task_type"], r["outcome"]) for r in logged)
        assert {r["task_id"] for r in logged} == {t.id for t in tasks}, "a log line for every task"
        assert outcomes["sample.flaky", "failed"] == outcomes["sample.flaky", "completed"] == 15
        assert outcomes["sample.slow", "timeout"] == 4
        assert outcomes["sample.cancel", "cancelled"] == 4
        assert all(isinstance(r["duration"], float) and r["attempt"] >= 1 for r in logged)


def create_steady(client: TaskManagerClient, count: int, seconds: float) -> list[int]:
    created = client.create_tasks(
        [{"type": "sample.steady", "params": {"n": n, "seconds": seconds}} for n in range(count)]
    )
    return [item.id for item in created.results if item.id is not None]


def running(client: TaskManagerClient, run_dir: Path, count: int) -> list[int] | None:
    """The ids of the claimed tasks once ``count`` of them have started their handler."""
    claimed = [t.id for t in client.list_tasks("claimed") if runs(run_dir, t.id)]
    return claimed if len(claimed) == count else None


def test_sigterm_finishes_running_tasks_and_claims_no_more(
    clean_database: TestDatabase, tmp_path: Path
) -> None:
    with (
        ServerProcess(clean_database.url, api_key=ADMIN_KEY) as server,
        TaskManagerClient(server.url, ADMIN_KEY) as client,
        WorkerProcess(server.url, tmp_path, "--concurrency", "4") as worker,
    ):
        wait_for("the worker to register its types", lambda: registered(client))
        ids = create_steady(client, 12, seconds=1.5)
        started = wait_for("four tasks to run", lambda: running(client, tmp_path, 4))
        worker.signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0, worker.output()

        final: dict[int, Any] = {t.id: t for t in all_tasks(client)}
        assert set(final) == set(ids)
        for task_id in started:
            assert final[task_id].status == "completed", "a running task is finished, not dropped"
        for task_id, task in final.items():
            if task.status == "completed":
                assert runs(tmp_path, task_id) == [1]
            else:
                assert (task.status, task.attempts) == ("pending", 0), "nothing else was claimed"
                assert runs(tmp_path, task_id) == []
        assert sum(t.status == "pending" for t in final.values()) >= 6, "claiming stopped"
        assert worker.logged("stopping: no more claims")


def test_a_second_signal_abandons_running_tasks_to_their_leases(
    clean_database: TestDatabase, tmp_path: Path
) -> None:
    with (
        ServerProcess(clean_database.url, api_key=ADMIN_KEY) as server,
        TaskManagerClient(server.url, ADMIN_KEY) as client,
        WorkerProcess(server.url, tmp_path, "--concurrency", "2") as worker,
    ):
        wait_for("the worker to register its types", lambda: registered(client))
        create_steady(client, 2, seconds=60)
        started = wait_for("both tasks to run", lambda: running(client, tmp_path, 2))
        worker.signal(signal.SIGTERM)
        wait_for("the worker to start stopping", lambda: worker.logged("stopping"))
        worker.signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 1, worker.output()
        assert worker.logged("told to stop again")

        def back() -> bool:
            return all(client.get_task(i).status == "pending" for i in started)

        wait_for("the expired leases to bring the tasks back", back, timeout=30, every=0.2)
        assert all(client.get_task(i).attempts == 1 for i in started)
