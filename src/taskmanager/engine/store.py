"""The storage protocol the engine defines and ``taskmanager.store`` implements.

The store knows SQL and nothing of the lifecycle rules (ADR 0012). The engine decides and hands
the store small frozen params; the SQL only applies them. A claim is decided before its rows are
picked (``ClaimParams``); every other change is a compare-and-set (``TaskChange``): the engine
reads the row, decides, and the store writes only where the row still holds what the decision
read (``Expected``), answering None otherwise, so the engine reads and decides again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from taskmanager.engine.records import (
    DedupeScope,
    Delivery,
    Event,
    NewEvent,
    Schedule,
    Task,
    TaskStatus,
    TaskType,
    TypePolicy,
)

if TYPE_CHECKING:
    from taskmanager.engine.keys import KeyStore


@dataclass(frozen=True, slots=True)
class Transition:
    """What a lifecycle rule wants done to one task: column changes and history events."""

    changes: dict[str, Any]
    events: tuple[NewEvent, ...] = ()


@dataclass(frozen=True, slots=True)
class Expected:
    """What a change assumes about its row: the compare of a compare-and-set."""

    #: Task fields (each also a column) and the values they must hold.
    columns: dict[str, Any]
    #: The lease must not have run out at this instant: ``lease_expires_at`` NULL or later.
    lease_alive_at: datetime | None = None
    #: The dedupe scopes the task's type may have (empty: any).
    dedupe_scopes: tuple[DedupeScope, ...] = ()

    def matches(self, task: Task) -> bool:
        if any(getattr(task, name) != value for name, value in self.columns.items()):
            return False
        alive_at, expires = self.lease_alive_at, task.lease_expires_at
        if alive_at is not None and expires is not None and expires <= alive_at:
            return False
        return not self.dedupe_scopes or task.policy.dedupe in self.dedupe_scopes


@dataclass(frozen=True, slots=True)
class TaskChange:
    """A compare-and-set on one task: where its row still matches ``expected``, write
    ``changes`` and record ``events`` (at ``now``); ``wakes`` when the task becomes claimable
    again, so claimers waiting in other processes look again; ``ends`` when it becomes terminal,
    so requests waiting for it (``GET /tasks/{id}/wait``, marked by ``Store.await_end``) in
    other processes look again; ``callback`` when that end is to be POSTed to the task's
    ``callback_url``."""

    task_id: int
    expected: Expected
    changes: dict[str, Any]
    events: tuple[NewEvent, ...]
    now: datetime
    wakes: bool = False
    ends: bool = False
    #: It ends a task that has a ``callback_url``: the store adds a delivery of it to the
    #: outbox (due at ``now``) in the same transaction, if the row matched (B.5).
    callback: bool = False


@dataclass(frozen=True, slots=True)
class ClaimParams:
    """A claim, decided before its rows are picked. Each row picked gets ``changes`` (the same
    for every row), its attempts plus one, a lease of ``lease_seconds`` (None: its type's claim
    timeout) from ``now``, the next of ``tokens`` (one per row the claim may take), and
    ``event`` (None: no history) with the row's new attempt number as its metadata ``attempt``.
    ``applied`` states that rule; a store may apply it in SQL instead (the suite holds both to it).
    """

    changes: dict[str, Any]
    now: datetime
    lease_seconds: int | None
    tokens: tuple[str, ...]
    event: NewEvent | None

    def applied(self, task: Task, index: int) -> Transition:
        """What this claim makes of ``task``, the ``index``-th row it picked."""
        attempt = task.attempts + 1
        seconds = self.lease_seconds or task.policy.claim_timeout
        event = self.event
        return Transition(
            changes={
                **self.changes,
                "lease_expires_at": self.now + timedelta(seconds=seconds),
                "lease_token": self.tokens[index],
                "attempts": attempt,
            },
            events=() if event is None else (replace(event, metadata={"attempt": attempt}),),
        )


@dataclass(frozen=True, slots=True)
class SaveType:
    name: str
    version: str
    param_schema: dict[str, Any]
    settings: dict[str, Any]
    now: datetime


@dataclass(frozen=True, slots=True)
class InsertTask:
    type_id: int
    params: Any
    params_json: str
    priority: int
    max_attempts: int
    dedupe_key: str | None
    #: The value of the row's ``dedupe_lock`` (the key while it blocks a new task; None: never).
    dedupe_lock: str | None
    max_pending: int | None
    run_after: datetime | None
    expires_at: datetime | None
    assigned_to: str | None
    type_name: str
    policy: TypePolicy
    now: datetime
    event: NewEvent | None
    #: Set on the task of a schedule's tick (B.8).
    schedule: str | None = None
    scheduled_for: datetime | None = None
    #: The tasks it depends on (B.5): by id, and by position among the items of the same
    #: ``insert_tasks`` call (earlier ones only). A task with any is inserted blocked, and each
    #: of them gets a dependant mark, in the insert's transaction (``lifecycle`` settles it after).
    depends_on: tuple[int, ...] = ()
    depends_on_index: tuple[int, ...] = ()
    #: Where the task is POSTed once it ends (B.5).
    callback_url: str | None = None
    #: The revision of its type this insert was prepared against (validated, its settings
    #: copied): inserted only while the type is still at it, else ``STALE_TYPE``. None: unchecked.
    type_revision: int | None = None


@dataclass(frozen=True, slots=True)
class SaveSchedule:
    """A schedule to insert or update by name. On update, ``next_run_at`` is written only when
    ``reschedule`` (its cadence or ``enabled`` changed): a due tick is not lost to an edit."""

    name: str
    type: str
    cron: str | None
    interval_seconds: int | None
    params_json: str
    priority: int
    timezone: str
    enabled: bool
    next_run_at: datetime | None
    reschedule: bool
    now: datetime


@dataclass(frozen=True, slots=True)
class FireTick:
    """One tick of a schedule: where its row still holds ``expected_next`` and
    ``expected_updated`` (no other server fired it, nobody edited it), set ``next_run_at`` to
    ``next_run_at`` and ``last_run_at`` to ``tick``, and insert ``task``, in one transaction."""

    schedule_id: int
    expected_next: datetime
    expected_updated: datetime
    tick: datetime
    next_run_at: datetime
    task: InsertTask | None


class InsertOutcome(StrEnum):
    CREATED = "created"
    DUPLICATE = "duplicate"
    QUEUE_FULL = "queue_full"
    #: An item named by ``depends_on_index`` was not created (its queue was full).
    DEPENDENCY_NOT_CREATED = "dependency_not_created"
    #: An item's type is no longer at its ``type_revision``: nothing of the call was written.
    STALE_TYPE = "stale_type"


@dataclass(frozen=True, slots=True)
class InsertResult:
    outcome: InsertOutcome
    task: Task | None


@dataclass(frozen=True, slots=True)
class Retention:
    """Which finished tasks are past their retention at one instant (B.10), as the engine decided
    it (``engine/retention.py``): each entry says that tasks in these ``statuses`` of these
    ``type_ids`` that finished (``completed_at``) at or before ``cutoff`` are due for removal.
    Reads leave them out; the sweep deletes them."""

    due: tuple[tuple[tuple[str, ...], datetime, tuple[int, ...]], ...] = ()


@dataclass(frozen=True, slots=True)
class PurgeQuery:
    """Up to ``limit`` of the tasks ``retention`` says are due, to delete with their history."""

    retention: Retention
    limit: int = 500


@dataclass(frozen=True, slots=True)
class DependantsQuery:
    """A page of the blocked dependants of the tasks ``of`` (or, with ``ids``, those of these
    tasks that are blocked): with an id above ``after_id``, in id order (keyset paging), up to
    ``limit``."""

    of: tuple[int, ...]
    after_id: int = 0
    limit: int = 500
    ids: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True)
class Dependant:
    """A blocked task and the status of each task it depends on (None: that task is gone)."""

    task: Task
    dependencies: tuple[tuple[int, TaskStatus | None], ...]


@dataclass(frozen=True, slots=True)
class TaskQuery:
    statuses: tuple[TaskStatus, ...] = ()
    type_name: str | None = None
    type_like: str | None = None
    worker_id: str | None = None
    limit: int = 50
    offset: int = 0
    #: The caller's key's types as SQL LIKE patterns (any of them); None: every type.
    type_scope: tuple[str, ...] | None = None
    #: Leave out the tasks past their retention (None: show every row).
    retention: Retention | None = None


@dataclass(frozen=True, slots=True)
class ClaimQuery:
    """Which pending tasks a claim may take, and in what order."""

    now: datetime
    worker_id: str
    limit: int
    order: tuple[tuple[str, bool], ...]  # (column, descending)
    type_ids: tuple[int, ...] | None = None
    type_like: str | None = None
    type_names: tuple[str, ...] | None = None
    #: The caller's key's types as SQL LIKE patterns (any of them; ``engine/scope.py``); None: all.
    type_scope: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class DueQuery:
    """Rows whose timestamps say a transition is due: an expired lease or an expired task."""

    now: datetime
    limit: int = 500


@dataclass(frozen=True, slots=True)
class TaskFilter:
    """A page of the ids of the tasks a bulk action takes: those matching every field given,
    with an id above ``after_id``, in id order (keyset paging: each page is a short read)."""

    ids: tuple[int, ...] | None = None
    type_name: str | None = None
    status: TaskStatus | None = None
    created_before: datetime | None = None
    after_id: int = 0
    limit: int = 500
    #: Leave out the tasks past their retention (None: every row).
    retention: Retention | None = None
    #: The caller's key's types as SQL LIKE patterns (any of them); None: every type.
    type_scope: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class DeliveryClaim:
    """Up to ``limit`` deliveries due at ``now`` (``next_try_at`` reached), taken for one try
    each: their ``tries`` counted up and ``next_try_at`` moved to ``lease_until``, so no other
    server takes them while this one sends (rows another claim holds are skipped)."""

    now: datetime
    lease_until: datetime
    limit: int


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    """What a try of a delivery came to, written where the delivery is still at try ``tries``
    (no other server took it since): ``next_try_at`` None deletes it (delivered, or given up),
    else it is due again then, with ``last_error``; ``event`` (None: no history) is recorded on
    ``task_id`` at ``now`` with it."""

    delivery_id: int
    task_id: int
    tries: int
    next_try_at: datetime | None
    last_error: str | None
    event: NewEvent | None
    now: datetime


@dataclass(frozen=True, slots=True)
class ListResult:
    tasks: list[Task] = field(default_factory=list)
    total: int = 0


@dataclass(frozen=True, slots=True)
class TypeStats:
    """One task type's counts by status, oldest pending task, and the tasks that ended recently."""

    type: str
    counts: dict[str, int]
    oldest_pending_at: datetime | None
    completed_recent: int = 0
    failed_recent: int = 0
    #: Mean of ``completed_at - claimed_at`` over the recent completions (None: there were none).
    avg_run_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class QueueStats:
    """What ``GET /stats`` shows, as the store counted it (every count read from an index)."""

    types: list[TypeStats]
    #: Tasks that ended recently per minute: (minute as ``YYYY-MM-DD HH:MM`` UTC, type, status,
    #: count).
    minutes: list[tuple[str, str, str, int]]
    #: Distinct workers holding a task under a live lease.
    workers_active: int
    #: The same per type (a worker holding tasks of two types counts in both).
    workers_by_type: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class WorkerTypeStats:
    """One worker's share of ``WorkerStats`` for one task type (a key limited to types sees only
    the shares of its types)."""

    type: str
    claimed: int
    completed: int
    failed: int
    last_seen_at: datetime | None
    #: Tasks of the type the worker ended in the window, and their run time summed.
    processed: int = 0
    processing_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class WorkerStats:
    worker_id: str
    claimed: int
    completed: int
    failed: int
    last_seen_at: datetime | None
    avg_processing_seconds: float | None
    #: The same per task type (history of deleted tasks counts only in the totals).
    by_type: tuple[WorkerTypeStats, ...] = ()


@dataclass(frozen=True, slots=True)
class FeedEvent:
    """A history event as ``GET /events`` sends it: with its task's type and current status
    (None when the task is gone)."""

    id: int
    task_id: int
    event: str
    worker_id: str | None
    created_at: datetime
    type: str | None
    status: str | None


class Store(Protocol):
    """Everything the engine asks of a database."""

    async def ping(self) -> None:
        """Raise if the database cannot be reached."""
        ...

    async def close(self) -> None: ...

    # Task types
    async def get_type(self, name: str) -> TaskType | None: ...

    async def list_types(self, active_only: bool) -> list[TaskType]: ...

    async def save_type(self, params: SaveType) -> tuple[TaskType, bool]:
        """Insert or update (by name, reactivating it); return the type and whether it is new."""
        ...

    async def set_type_active(self, name: str, active: bool, now: datetime) -> TaskType | None: ...

    # Tasks
    async def insert_tasks(self, items: Sequence[InsertTask]) -> list[InsertResult]:
        """Insert in one transaction, each deduplicated atomically against racing inserts. If
        an item's type is not at its ``type_revision``, nothing is written and every result is
        ``STALE_TYPE``."""
        ...

    async def get_task(self, task_id: int) -> Task | None: ...

    # Schedules (B.8)
    async def save_schedule(self, params: SaveSchedule) -> tuple[Schedule, bool]:
        """Insert or update by name; the schedule and whether it is new."""
        ...

    async def get_schedule(self, name: str) -> Schedule | None: ...

    async def list_schedules(self) -> list[Schedule]: ...

    async def delete_schedule(self, name: str) -> bool: ...

    async def due_schedules(self, now: datetime, limit: int) -> list[Schedule]:
        """Enabled schedules whose ``next_run_at`` is at or before ``now``, earliest first."""
        ...

    async def next_schedule_at(self) -> datetime | None:
        """The earliest ``next_run_at`` of an enabled schedule (None: none)."""
        ...

    async def fire_tick(self, params: FireTick) -> tuple[bool, InsertResult | None]:
        """The compare-and-set of ``FireTick`` and its task's insert, in one transaction: whether
        the row still matched (False: another server fired the tick, or it was edited, and
        nothing was written), and the insert's result (None: ``params.task`` was None)."""
        ...

    async def get_tasks(self, task_ids: Sequence[int]) -> list[Task]:
        """The tasks of ``task_ids`` that exist, in id order."""
        ...

    async def list_tasks(self, query: TaskQuery) -> ListResult: ...

    async def claim_tasks(self, query: ClaimQuery, params: ClaimParams) -> list[Task]:
        """Pick up to ``query.limit`` eligible pending tasks (skipping rows another claim holds),
        claim each as ``params.applied`` says, and return them in the claim's order."""
        ...

    async def update_task(self, change: TaskChange) -> Task | None:
        """Apply ``change`` if its row still matches ``change.expected``; the task after, or
        None (nothing written) when it does not match or no longer exists."""
        ...

    async def update_tasks(self, changes: Sequence[TaskChange]) -> list[Task | None]:
        """``update_task`` for each change, in one transaction (ids in ascending order)."""
        ...

    async def due_tasks(self, query: DueQuery) -> list[Task]:
        """Up to ``query.limit`` tasks with an expired lease or an expired pending deadline."""
        ...

    @property
    def wake_interval(self) -> float:
        """Seconds a long-polling claimer may sleep before it must look again by itself."""
        ...

    async def listen(self, on_work: Callable[[], None], waiting: threading.Event) -> None:
        """Start calling ``on_work`` when another process may have made work claimable, if this
        database can tell (PostgreSQL LISTEN/NOTIFY; on a SQLite file, by looking for new tasks
        while ``waiting`` is set, i.e. while a claimer waits); otherwise do nothing."""
        ...

    async def listen_ends(self, on_end: Callable[[], None], waiting: threading.Event) -> None:
        """Start calling ``on_end`` when another process may have ended a task (PostgreSQL
        LISTEN on the ends channel; on a SQLite file, on any commit while ``waiting`` is set);
        otherwise do nothing (then ``end_poll_interval`` is set)."""
        ...

    async def await_end(self, task_id: int) -> None:
        """Before a request waits for the task's end: make sure ``listen_ends`` in other
        processes will hear of that end (PostgreSQL marks the row, so that only an awaited
        task's end costs a NOTIFY). Done, and committed, before the waiter reads the task."""
        ...

    @property
    def end_poll_interval(self) -> float | None:
        """Seconds a request waiting for a task's end may sleep before it must read the task
        again by itself (None: another process's end wakes it)."""
        ...

    @property
    def history_announced(self) -> bool:
        """Whether ``listen_ends``'s callback hears every history write of every process (a
        SQLite file's commit watcher): then the ``/events`` feed reads only when woken."""
        ...

    async def history_mark(self) -> int | None:
        """A value that changes when any process writes history, cheaper to read than the
        history and read without it (PostgreSQL: the id sequence); None: the database has none,
        read the history itself."""
        ...

    @property
    def keys(self) -> KeyStore:
        """The API keys stored beside the tasks."""
        ...

    # Dependencies (B.5)
    async def mark_dependencies(self, task_ids: Sequence[int]) -> None:
        """Add a dependant mark to each of these tasks (a dependant is attached to them)."""
        ...

    async def blocked_dependants(self, query: DependantsQuery) -> list[Dependant]:
        """A page of the blocked (pending) dependants of ``query.of``, each with the status of
        every task it depends on."""
        ...

    async def unsettled_tasks(self, limit: int) -> list[Task]:
        """Up to ``limit`` ended (completed, failed, cancelled) tasks with dependant marks."""
        ...

    async def clear_dependant_marks(self, tasks: Sequence[Task]) -> int:
        """Set each task's dependant marks to 0 where its row still holds the status,
        ``updated_at`` and marks of ``tasks`` (no dependant attached, no change since); how many."""
        ...

    async def delete_task(self, task_id: int) -> bool: ...

    async def find_task_ids(self, query: TaskFilter) -> list[int]:
        """A page of the ids of the tasks ``query`` matches, ascending."""
        ...

    async def delete_tasks(self, task_ids: Sequence[int]) -> int:
        """Delete these tasks and their history in one transaction; how many existed."""
        ...

    async def purge_tasks(self, query: PurgeQuery) -> int:
        """Delete up to ``query.limit`` tasks past their retention, and their history, in one
        short transaction (rows another sweep holds are skipped); how many were deleted."""
        ...

    async def list_events(self, task_id: int) -> list[Event]: ...

    # Callback deliveries (B.5): the outbox that terminal changes with ``callback`` write
    async def next_delivery_at(self) -> datetime | None:
        """The earliest ``next_try_at`` in the outbox (None: empty); one indexed read."""
        ...

    async def claim_deliveries(self, claim: DeliveryClaim) -> list[Delivery]:
        """Take the deliveries ``claim`` says, in one short transaction; them, in id order."""
        ...

    async def finish_delivery(self, outcome: DeliveryOutcome) -> bool:
        """Write ``outcome`` and its event in one transaction; False (nothing written) when the
        delivery is gone or another server took it for a later try."""
        ...

    # Observing
    async def queue_stats(self, now: datetime, since: datetime) -> QueueStats:
        """Counts per type and status; tasks that ended at or after ``since``; live leases at ``now``."""
        ...

    async def worker_stats(self, since: datetime) -> list[WorkerStats]:
        """Every worker with a history event at or after ``since``, or holding a task now."""
        ...

    async def events_after(self, after_id: int, limit: int) -> list[FeedEvent]:
        """Up to ``limit`` history events with ids above ``after_id``, in id order."""
        ...

    async def last_event_id(self) -> int:
        """The newest history event's id (0: none)."""
        ...
