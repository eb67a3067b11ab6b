"""The server log's side of a 503: one warning line naming the cause, at most once a minute each.

A 503 ``unavailable`` means the server could not do its job (the database stopped, the disk is
full, too many requests at once), and the operator needs to know why from the server's own log.
An outage turns every request into a 503, so the lines are rate-limited per cause: the first
503 of a cause is logged at once, the next ones at most once per ``every`` seconds, each line
saying how many were left unlogged since the last.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from taskmanager.errors import TaskManagerError

log = logging.getLogger("taskmanager.server")

#: Seconds between two warning lines of the same cause.
LOG_EVERY = 60.0


def cause_of(exc: BaseException) -> str:
    """The innermost exception behind ``exc`` as ``Type: text`` (``CannotConnectNowError: the
    database system is starting up``), or the error's own message when nothing caused it."""
    root: BaseException = exc
    while root.__cause__ is not None:
        root = root.__cause__
    if root is exc:
        return exc.message if isinstance(exc, TaskManagerError) else type(exc).__name__
    text = " ".join(str(root).split())[:300]
    return f"{type(root).__name__}: {text}" if text else type(root).__name__


class OutageLog:
    """Logs a 503's cause, at most once per ``every`` seconds per cause (thread-safe)."""

    def __init__(self, every: float = LOG_EVERY, clock: Callable[[], float] = time.monotonic) -> None:
        self.every = every
        self.clock = clock
        self._lock = threading.Lock()
        #: cause → (when it was last logged, 503s not logged since)
        self._seen: dict[str, tuple[float, int]] = {}

    def unavailable(self, method: str, path: str, exc: BaseException) -> None:
        kind = cause_of(exc)
        # Rate-limit on the cause's type, not its text: texts carry addresses and counters.
        key = kind.split(":", 1)[0]
        now = self.clock()
        with self._lock:
            last, quiet = self._seen.get(key, (None, 0))
            if last is not None and now - last < self.every:
                self._seen[key] = (last, quiet + 1)
                return
            self._seen[key] = (now, 0)
        more = f" ({quiet} more since the last line)" if quiet else ""
        log.warning("503 unavailable: %s %s: %s%s", method, path, kind, more)
