"""Applying lifecycle rules to stored tasks: the machinery every engine operation shares.

``Transitions`` holds the store, the clock and the work signal. It applies the expiries the clock
has made due, and runs a lifecycle decision as a compare-and-set: read the row, decide, write
where the row still holds what the decision read — and on a miss, read and decide again.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from taskmanager.engine import lifecycle, scope
from taskmanager.engine.clock import Clock
from taskmanager.engine.policy import Backoff, Defaults, releases_dedupe_lock
from taskmanager.engine.records import TERMINAL_STATUSES, NewEvent, Task, TaskStatus
from taskmanager.engine.replies import TASK_NOT_FOUND
from taskmanager.engine.retention import removed
from taskmanager.engine.signal import WorkSignal
from taskmanager.engine.store import DueQuery, Expected, Store, TaskChange, Transition
from taskmanager.errors import Conflict, NotFound

#: How often (engine clock and real time) the whole table is checked for due expiries.
SETTLE_INTERVAL = timedelta(seconds=1)
#: Rounds of expiry settling one request may run (each handles up to DueQuery.limit rows).
MAX_SETTLE_ROUNDS = 20
#: Times a change is read and decided again after its row changed under it. Each miss means
#: another request changed the task meanwhile; a handful is far more than contention produces.
MAX_DECIDE_ROUNDS = 10

#: Given the current row, the transition a request makes of it (None: leave it); may raise.
Decide = Callable[[Task], Transition | None]
#: What settles the dependants of tasks that just ended (``engine/dependencies.py``).
Settle = Callable[[Sequence[Task | None]], Awaitable[int]]


@dataclass
class Transitions:
    """Store, clock, signal and the engine's settings, plus settling and compare-and-set writes.
    One per engine, shared by its parts."""

    store: Store
    clock: Clock
    defaults: Defaults
    rng: random.Random
    backoff: Backoff
    signal: WorkSignal = field(default_factory=WorkSignal)
    #: "A task may have ended": wakes the requests waiting for one (``GET /tasks/{id}/wait``).
    ended: WorkSignal = field(default_factory=WorkSignal)
    #: "A callback delivery may be due": a task with a ``callback_url`` ended here (B.5), so this
    #: server's delivery loop (``engine/deliveries.py``) looks at once.
    delivering: WorkSignal = field(default_factory=WorkSignal)
    listening: bool = False
    #: Set by the engine: settles the dependants of ended tasks that have some (B.5).
    settle: Settle | None = None
    _expired_at: tuple[datetime, float] | None = field(default=None, init=False, repr=False)

    async def start(self) -> None:
        """Begin hearing about work created by other processes (PostgreSQL LISTEN, a SQLite file's
        watcher)."""
        self.listening = True
        await self.store.listen(self.signal.notify, self.signal.waiting)
        await self.store.listen_ends(self.ended.notify, self.ended.waiting)

    def event(self, event: NewEvent) -> NewEvent | None:
        return event if self.defaults.enable_history else None

    def finish(self, transition: Transition | None, task: Task) -> Transition | None:
        """Finish a transition: release an ``active``-scoped dedupe key when the task ends, and
        drop history events when history is off."""
        if transition is None:
            return None
        release = releases_dedupe_lock(task.policy.dedupe, transition.changes.get("status"))
        history = self.defaults.enable_history
        if not release and (history or not transition.events):
            return transition  # the common case, as it came (this runs once per task changed)
        changes = {**transition.changes, "dedupe_lock": None} if release else transition.changes
        return Transition(changes, transition.events if history else ())

    def change(
        self,
        task_id: int,
        expected: Expected,
        transition: Transition,
        now: datetime,
        callback_url: str | None = None,
    ) -> TaskChange:
        """The compare-and-set writing ``transition`` (finished) where ``expected`` holds.

        The callbacks' rule (B.5), stated here once: a change that ends a task with a
        ``callback_url`` writes a delivery to the outbox in its own transaction. A change decided
        without the row (``callback_url`` unknown, None) must expect ``callback_url`` NULL
        (``lifecycle.complete_unread`` does), so it never ends a task with a callback silently."""
        status = transition.changes.get("status")
        wakes = status == TaskStatus.PENDING
        ends = status in TERMINAL_STATUSES
        callback = ends and callback_url is not None
        events = transition.events if self.defaults.enable_history else ()
        return TaskChange(task_id, expected, transition.changes, events, now, wakes, ends, callback)

    def on_row(self, task: Task, transition: Transition, now: datetime) -> TaskChange:
        """The compare-and-set writing ``transition``, decided on ``task`` as read."""
        return self.change(task.id, lifecycle.as_read(task), transition, now, task.callback_url)

    async def settle_ended(self, tasks: Sequence[Task | None]) -> None:
        """Settle the dependants of those of ``tasks`` that ended with dependant marks: nothing
        at all (no statement) for tasks without dependants."""
        if self.settle is not None and any(
            task is not None and task.dependant_marks > 0 and task.status in TERMINAL_STATUSES
            for task in tasks
        ):
            await self.settle(tasks)

    async def expire_due(self) -> None:
        """Apply every transition the clock has made due (expired leases, expired tasks).

        Runs at most once per ``SETTLE_INTERVAL`` of both the engine's clock and real time, so a
        busy server does not pay for it on every claim; single tasks are expired as they are read
        or changed (``current``, ``transition``), so they are never stale.
        """
        now, real = self.clock.now(), time.monotonic()
        if self._expired_at is not None:
            clock_at, real_at = self._expired_at
            interval = SETTLE_INTERVAL.total_seconds()
            if now - clock_at < SETTLE_INTERVAL and real - real_at < interval:
                return
        self._expired_at = (now, real)
        query = DueQuery(now)
        for _ in range(MAX_SETTLE_ROUNDS):
            due = await self.store.due_tasks(query)
            changes = [
                self.on_row(task, transition, now)
                for task in due
                if (transition := self.finish(lifecycle.expiry(task, now=now), task)) is not None
            ]
            done = await self.store.update_tasks(changes) if changes else []
            if any(task is not None for task in done):
                self.signal.notify()  # a lease ran out: its task may be claimable again
                self.ended.notify()  # or it failed for good, or a pending task expired
                await self.settle_ended(done)
                self.delivered_ends(done)
            if len(due) < query.limit:
                return

    async def current(self, task_id: int) -> Task:
        """The task as it reads now: a transition its timestamps made due is applied first."""
        task = await self.store.get_task(task_id)
        if task is None or removed(task, self.clock.now()):
            raise NotFound(TASK_NOT_FOUND)
        scope.check_task_type(task.type)
        if lifecycle.expiry(task, now=self.clock.now()) is None:
            return task
        return await self.transition(task_id, lambda _t: None, self.clock.now())

    async def transition(
        self,
        task_id: int,
        decide: Decide,
        now: datetime,
        unread: tuple[Expected, Transition] | None = None,
    ) -> Task:
        """Apply ``decide`` to the task — after any transition its timestamps made due.

        ``unread`` (a request's common case, decided without the row) is tried first, as one
        compare-and-set; its ``Expected`` must hold only for rows on which ``expiry`` has nothing
        due and ``decide`` returns its transition. Where it misses, the row is read and judged."""
        if unread is not None and not scope.scoped():
            # A key limited to some types has each row read, so its type is checked first.
            expected, unread_transition = unread
            done = await self.store.update_task(self.change(task_id, expected, unread_transition, now))
            if done is not None:
                await self.settle_ended([done])
                return self._after(done)
        for _ in range(MAX_DECIDE_ROUNDS):
            task = await self.store.get_task(task_id)
            if task is None or removed(task, now):  # past its retention: gone (B.10)
                raise NotFound(TASK_NOT_FOUND)
            scope.check_task_type(task.type)
            due = lifecycle.expiry(task, now=now)
            # An expiry due is applied first; the request is judged on the row after it.
            transition = self.finish(due if due is not None else decide(task), task)
            if transition is None:
                return task
            done = await self.store.update_task(self.on_row(task, transition, now))
            if done is not None:
                await self.settle_ended([done])
            if done is not None and due is None:
                return self._after(done)
            if done is not None:
                self._after(done)
        raise Conflict("The task kept changing; try again")

    def _after(self, task: Task) -> Task:
        if task.status == TaskStatus.PENDING:
            self.signal.notify()
        elif task.status in TERMINAL_STATUSES:
            self.ended.notify()
            self.delivered_ends([task])
        return task

    def delivered_ends(self, done: Iterable[Task | None]) -> None:
        """Wake the delivery loop if one of ``done`` (tasks as a change left them) ended with a
        ``callback_url``: its delivery is in the outbox now."""
        if any(t is not None and t.callback_url is not None and t.status in TERMINAL_STATUSES for t in done):
            self.delivering.notify()
