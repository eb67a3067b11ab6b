"""``taskmanager`` (the command) for the cross-process wake-up tests: its long-polling claimers
never re-check by themselves, and it writes a byte to a pipe each time one begins to wait.

Run as ``python tests/e2e/woken_server.py serve ...`` with ``TASKMANAGER_TEST_WAITING_FD`` naming
the pipe's write end. Turning the re-checks off leaves a claimer only the cross-process wake-up
(PostgreSQL NOTIFY, the SQLite watcher) can wake: if that breaks, the claim waits its whole
``wait`` and the test fails, instead of passing a fallback poll later. The byte tells the test that
the claimer waits, so the create it then makes cannot be claimed by the claim's first try.
"""

from __future__ import annotations

import asyncio
import os

from taskmanager.cli import main
from taskmanager.engine.signal import WorkSignal
from taskmanager.store import base, listen, watch

#: A re-check interval no test waits for.
NEVER = 3600.0


def instrument(waiting_fd: int) -> None:
    base.SHARED_POLL_INTERVAL = NEVER
    watch.SHARED_POLL_INTERVAL = NEVER
    listen.LISTENING_INTERVAL = NEVER
    listen.FALLBACK_INTERVAL = NEVER
    wait = WorkSignal.wait

    async def announced_wait(self: WorkSignal, ticket: asyncio.Event, seconds: float) -> None:
        if seconds > 0:
            os.write(waiting_fd, b"w")
        await wait(self, ticket, seconds)

    WorkSignal.wait = announced_wait  # type: ignore[method-assign]


if __name__ == "__main__":
    instrument(int(os.environ["TASKMANAGER_TEST_WAITING_FD"]))
    main()
