"""Every script in ``examples/`` and every runnable block of the workers guide, run as written
against a real ``taskmanager serve`` subprocess on each test database.

A ```python block of ``docs/guides/workers.md`` is run when the line before it is the comment
``<!-- test: run -->``: written to a file and run with the venv's Python, in a fresh directory,
with TASKMANAGER_API_URL/TASKMANAGER_API_KEY pointing at the test server; it must exit 0.
``<!-- test: import -->`` marks a block that defines something (a ``Worker`` module) without
running it: it is written to ``<name>.py`` (the name given after ``import``) and imported.
Blocks may import the modules earlier blocks of the guide wrote.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from taskmanager import Task, TaskManagerClient, TaskManagerValidationError
from tests.conftest import ADMIN_KEY, TestDatabase
from tests.e2e.process import TASKMANAGER, ServerProcess

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
GUIDE = ROOT / "docs" / "guides" / "workers.md"
#: Seconds one example script may run.
SCRIPT_TIMEOUT = 60
#: A marked block: the marker comment, then the fenced python block right after it.
MARKED_BLOCK = re.compile(
    r"^<!-- test: (?P<mode>run|import(?: (?P<module>\w+))?) -->\n```python\n(?P<code>.*?)^```\s*$",
    re.MULTILINE | re.DOTALL,
)


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 30.0, every: float = 0.05) -> T:
    """Poll ``check`` until it returns something truthy (bounded); that value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


class Live:
    """A running server, a client of it, and the environment the examples read."""

    def __init__(self, server: ServerProcess, client: TaskManagerClient) -> None:
        self.server = server
        self.client = client
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TASKMANAGER_")}
        self.env.update(TASKMANAGER_API_URL=server.url, TASKMANAGER_API_KEY=ADMIN_KEY)
        self.env["PYTHONDONTWRITEBYTECODE"] = "1"  # `taskmanager worker` imports from examples/
        self.env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{self.env.get('PATH', '')}"


@pytest.fixture
def live(clean_database: TestDatabase) -> Iterator[Live]:
    with (
        ServerProcess(clean_database.url, api_key=ADMIN_KEY) as server,
        TaskManagerClient(server.url, ADMIN_KEY) as client,
    ):
        yield Live(server, client)


def run(argv: list[str], env: dict[str, str], cwd: Path, expect: int = 0) -> str:
    """Run a command to its end; its stdout, once its exit code is ``expect``."""
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=SCRIPT_TIMEOUT, check=False
    )
    assert done.returncode == expect, f"{argv} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def example(live: Live, cwd: Path, script: str, *args: str, expect: int = 0) -> str:
    return run([sys.executable, str(EXAMPLES / script), *args], live.env, cwd, expect)


def greet_tasks(client: TaskManagerClient, *names: str) -> list[int]:
    client.register_task_type(
        "example.greet", "1.0.0", {"type": "object", "required": ["name"]}, max_attempts=3
    )
    return [client.create_task("example.greet", {"name": name}).id for name in names]


# -- the four operations --------------------------------------------------------------------------


@pytest.mark.slow  # a server process and the example's own
def test_the_four_operation_scripts_run_as_a_sequence(live: Live, tmp_path: Path) -> None:
    assert "registered task type example.greet v1.0.0" in example(live, tmp_path, "register_task_type.py")
    assert "updated task type example.greet" in example(live, tmp_path, "register_task_type.py")

    out = example(live, tmp_path, "create_task.py", "Ada")
    task_id = int(re.search(r"created task (\d+) \(pending\)", out)[1])  # type: ignore[index]
    assert f"task {task_id} already exists" in example(live, tmp_path, "create_task.py", "Ada")

    out = example(live, tmp_path, "claim_task.py", "example-worker-7")
    assert f"claimed task {task_id} as example-worker-7 (attempt 1/3" in out
    claimed = live.client.get_task(task_id)
    assert (claimed.status, claimed.claimed_by) == ("claimed", "example-worker-7")
    assert (tmp_path / "claimed_task.json").exists()

    out = example(live, tmp_path, "complete_task.py")
    assert f"task {task_id} completed: result {{'message': 'Hello, Ada!'}}" in out
    task = live.client.get_task(task_id)
    assert (task.status, task.result, task.attempts) == ("completed", {"message": "Hello, Ada!"}, 1)

    assert "no task to claim" in example(live, tmp_path, "claim_task.py", expect=1)
    # Schema validation: the type's schema rejects params without a name.
    with pytest.raises(TaskManagerValidationError, match="Parameter validation failed"):
        live.client.create_task("example.greet", {"greeting": "Hi"})


# -- the Worker runtime --------------------------------------------------------------------------


@pytest.mark.slow  # a server process and the example's own
@pytest.mark.parametrize(
    ("argv", "cwd"),
    [
        ([sys.executable, str(EXAMPLES / "worker.py")], None),
        ([TASKMANAGER, "worker", "worker:worker"], EXAMPLES),
    ],
    ids=["python", "taskmanager-worker"],
)
def test_the_worker_example_runs_both_handlers_retries_and_stops_on_sigterm(
    live: Live, tmp_path: Path, argv: list[str], cwd: Path | None
) -> None:
    log = (tmp_path / "worker.log").open("w+")
    proc = subprocess.Popen(
        argv,
        cwd=cwd or tmp_path,
        env=live.env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(
            "the worker to register its types",
            lambda: {t.name for t in live.client.list_task_types()} >= {"example.greet", "example.count"},
        )
        greet = live.client.create_task("example.greet", {"name": "Grace", "greeting": "Hi"}).id
        count = live.client.create_task("example.count", {"to": 4}).id
        wait_for(
            "both tasks to complete",
            lambda: all(live.client.get_task(i).status == "completed" for i in (greet, count)),
            every=0.1,
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log.seek(0)
    output = log.read()
    log.close()

    greeted: Task = live.client.get_task(greet)
    assert (greeted.result, greeted.attempts, greeted.progress) == ({"message": "Hi, Grace!"}, 1, 100)
    counted = live.client.get_task(count)
    assert (counted.result, counted.attempts) == ({"counted": 4, "attempt": 2}, 2)
    events = [e.event for e in live.client.get_task_history(count)]
    assert "retry_scheduled" in events, events
    assert "progress" in events, events
    assert f"[greet] task {greet}: Hi, Grace!" in output
    assert f"[count] task {count}: attempt 1 fails on purpose" in output
    assert f"[count] task {count}: counted to 4 on attempt 2" in output


# -- embedded mode -------------------------------------------------------------------------------


def test_the_embedded_queue_example_needs_no_server(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKMANAGER_")}
    env["TASKMANAGER_API_URL"] = "http://127.0.0.1:9"  # nothing listens there: it must not be used
    script = str(EXAMPLES / "embedded_queue.py")
    out = run([sys.executable, script], env, tmp_path)
    assert "queued task 4: resize to 640 (duplicate: not queued again)" not in out
    assert "resize to 640 (duplicate: not queued again)" in out
    assert "done: 3 tasks this run; 3 completed and 0 pending in sqlite:///embedded_queue.db" in out
    assert (tmp_path / "embedded_queue.db").exists()
    again = run([sys.executable, script], env, tmp_path)
    assert "done: 0 tasks this run; 3 completed and 0 pending" in again


# -- workers without the SDK ---------------------------------------------------------------------


@pytest.mark.slow  # a server process and the example's own
@pytest.mark.parametrize(
    ("command", "by"),
    [(["node", "node_worker.mjs"], "node"), (["bash", "curl_worker.sh"], "bash")],
    ids=["node", "bash"],
)
def test_a_worker_with_no_sdk_completes_tasks_and_exits_after_max_tasks(
    live: Live, tmp_path: Path, command: list[str], by: str
) -> None:
    if shutil.which(command[0]) is None:
        pytest.fail(f"{command[0]} is not installed")
    ids = greet_tasks(live.client, "Ada", "Linus")
    out = run([*command, "2"], live.env, EXAMPLES)
    for task_id in ids:
        task = live.client.get_task(task_id)
        assert task.status == "completed", out
        assert task.result["by"] == by
        assert f"task {task_id} completed: {task.result['message']}" in out
    assert "done after 2 tasks" in out


# -- the guide -----------------------------------------------------------------------------------


def guide_blocks() -> list[tuple[str, str | None, str]]:
    return [(m["mode"].split()[0], m["module"], m["code"]) for m in MARKED_BLOCK.finditer(GUIDE.read_text())]


def test_the_guide_marks_runnable_blocks() -> None:
    blocks = guide_blocks()
    assert sum(mode == "run" for mode, _, _ in blocks) >= 4
    markers = len(re.findall(r"^<!-- test:", GUIDE.read_text(), re.MULTILINE))
    assert markers == len(blocks), "a marker not followed by a ```python block"


@pytest.mark.slow  # a server process and the example's own
def test_every_runnable_block_of_the_workers_guide_runs(live: Live, tmp_path: Path) -> None:
    for number, (mode, module, code) in enumerate(guide_blocks(), start=1):
        if mode == "import":
            assert module, "an import block names its module: <!-- test: import NAME -->"
            (tmp_path / f"{module}.py").write_text(code)
            run([sys.executable, "-c", f"import {module}"], live.env, tmp_path)
            continue
        script = tmp_path / f"block_{number}.py"
        script.write_text(code)
        run([sys.executable, str(script)], live.env, tmp_path)
