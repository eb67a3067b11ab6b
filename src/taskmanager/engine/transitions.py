"""Applying lifecycle rules to stored tasks: the machinery every engine operation shares.

``Transitions`` holds the store, the clock and the work signal; it settles expiries that the
clock has made due and runs a lifecycle decision inside the transaction that locked the row.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

from taskmanager.engine import lifecycle
from taskmanager.engine.clock import Clock, SystemClock
from taskmanager.engine.policy import Defaults
from taskmanager.engine.records import TERMINAL_STATUSES, DedupeScope, NewEvent, Task, TaskStatus
from taskmanager.engine.replies import TASK_NOT_FOUND
from taskmanager.engine.schema import ParamValidator
from taskmanager.engine.signal import WorkSignal
from taskmanager.engine.store import Ahead, SettleQuery, Store, Transition
from taskmanager.errors import NotFound

#: How often (engine clock and real time) the whole table is checked for due expiries.
SETTLE_INTERVAL = timedelta(seconds=1)
#: Rounds of expiry settling one request may run (each handles up to SettleQuery.limit rows).
MAX_SETTLE_ROUNDS = 20


class Transitions:
    """Store, clock and signal, plus settling and locked transitions. Shared by the services."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock | None = None,
        defaults: Defaults | None = None,
        rng: random.Random | None = None,
        version: str = "0",
    ) -> None:
        self.store = store
        self.clock = clock or SystemClock()
        self.defaults = defaults or Defaults()
        self.rng = rng or random.Random()
        self.version = version
        self._validator = ParamValidator()
        self.signal = WorkSignal()
        self._settled_at: tuple[datetime, float] | None = None
        self._listening = False

    async def start(self) -> None:
        """Begin hearing about work created by other processes (PostgreSQL LISTEN, a SQLite file's
        watcher)."""
        self._listening = True
        await self.store.listen(self.signal.notify, self.signal.waiting)

    def _event(self, event: NewEvent) -> NewEvent | None:
        return event if self.defaults.enable_history else None

    def _events(self, transition: Transition | None, task: Task) -> Transition | None:
        """Finish a transition: release an ``active``-scoped dedupe key when the task ends, and
        drop history events when history is off."""
        if transition is None:
            return None
        release = (
            transition.changes.get("status") in TERMINAL_STATUSES and task.policy.dedupe == DedupeScope.ACTIVE
        )
        history = self.defaults.enable_history
        if not release and (history or not transition.events):
            return transition  # the common case, as it came (this runs once per task changed)
        changes = {**transition.changes, "dedupe_lock": None} if release else transition.changes
        return Transition(changes, transition.events if history else ())

    async def _settle(self) -> None:
        """Apply every transition the clock has made due (expired leases, expired tasks).

        Runs at most once per ``SETTLE_INTERVAL`` of both the engine's clock and real time, so a
        busy server does not pay for it on every claim; single tasks are settled as they are read
        or changed (``_task``, ``_transition``), so they are never stale.
        """
        now, real = self.clock.now(), time.monotonic()
        if self._settled_at is not None:
            clock_at, real_at = self._settled_at
            interval = SETTLE_INTERVAL.total_seconds()
            if now - clock_at < SETTLE_INTERVAL and real - real_at < interval:
                return
        self._settled_at = (now, real)
        query = SettleQuery(now)
        for _ in range(MAX_SETTLE_ROUNDS):
            settled = await self.store.settle_tasks(
                query, lambda t: self._events(lifecycle.settle(t, now=now), t)
            )
            if settled:
                self.signal.notify()  # a lease ran out: its task may be claimable again
            if settled < query.limit:
                return

    def _ahead(self, ahead: Ahead | None) -> Ahead | None:
        """Finish a decision taken ahead of its row as ``_events`` finishes one taken on it. Not
        knowing the task's type, it cannot release an ``active``-scoped dedupe key: a transition
        ending the task expects a type whose key stays (or that has none)."""
        if ahead is None:
            return None
        transition, expected = ahead.transition, ahead.expected
        if transition.changes.get("status") in TERMINAL_STATUSES:
            expected = replace(expected, dedupe_scopes=(DedupeScope.ALL, DedupeScope.NONE))
        if not self.defaults.enable_history:
            transition = Transition(transition.changes, ())
        return Ahead(expected, transition)

    async def _transition(
        self,
        task_id: int,
        decide: Callable[[Task], Transition | None],
        now: datetime,
        ahead: Ahead | None = None,
    ) -> Task:
        """Lock the task and apply ``decide`` — after any transition its timestamps made due.

        ``ahead`` (when the request's common case can be decided without the row) lets the store
        apply it in one statement; ``ahead.expected`` must hold only for rows on which
        ``settle`` has nothing due and ``decide`` returns ``ahead.transition``."""
        settled = False

        def settle_then_decide(task: Task) -> Transition | None:
            nonlocal settled
            due = lifecycle.settle(task, now=now)
            if due is not None:
                settled = True  # apply the expiry now; judge the request on the result below
                return self._events(due, task)
            return self._events(decide(task), task)

        task = await self.store.transition_task(task_id, settle_then_decide, now, self._ahead(ahead))
        if task is None:
            raise NotFound(TASK_NOT_FOUND)
        if settled:
            return await self._transition(task_id, decide, now)
        if task.status == TaskStatus.PENDING:
            self.signal.notify()
        return task
