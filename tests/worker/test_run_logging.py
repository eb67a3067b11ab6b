"""``Worker.run()`` in a program of its own logs as ``taskmanager worker`` does, unless the
program has set up logging itself."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import logging
    import sys

    from taskmanager import Worker

    if sys.argv[1] == "configured":
        logging.basicConfig(format="OWN %(name)s %(message)s", level=logging.INFO)

    async def run_async(self, *, handle_signals=False):
        logging.getLogger("taskmanager.worker").info("hello from the worker")
        return 0

    Worker.run_async = run_async
    raise SystemExit(Worker().run())
    """
)


def run(mode: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stderr.strip()


def test_run_logs_to_stderr_as_the_command_does() -> None:
    line = run("plain")
    assert line.endswith(" INFO taskmanager.worker: hello from the worker"), line


def test_run_leaves_a_programs_own_logging_alone() -> None:
    assert run("configured") == "OWN taskmanager.worker hello from the worker"
