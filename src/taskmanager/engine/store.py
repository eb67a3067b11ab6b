"""The storage protocol the engine defines and ``taskmanager.store`` implements.

The store knows SQL and nothing of the lifecycle rules. Where a change depends on a row's current
state (claim, complete, cancel, expiry), the engine hands the store a *decide* function: the store
locks the candidate rows inside one transaction, calls ``decide`` on each, and writes back what it
returns (or rolls back if it raises). So the rules live here in the engine, and the atomicity
lives in the database. For a claim and a successful complete the engine may also pass the
decision taken ahead of the row (``ClaimAhead``, ``Ahead``: ADR 0008), which a store able to
compare and write in one statement applies instead.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from taskmanager.engine.records import (
    DedupeScope,
    Event,
    NewEvent,
    Task,
    TaskStatus,
    TaskType,
    TypePolicy,
)


@dataclass(frozen=True, slots=True)
class Transition:
    """What ``decide`` wants done to one task: column changes and history events."""

    changes: dict[str, Any]
    events: tuple[NewEvent, ...] = ()


#: Given the locked row, return the transition (or None to leave the row as it is).
Decide = Callable[[Task], Transition | None]


@dataclass(frozen=True, slots=True)
class Expected:
    """What a decision taken before its row was read assumes about that row (ADR 0008)."""

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
class Ahead:
    """A transition decided ahead of its row: valid for a row that matches ``expected``, where the
    engine's ``decide`` on that row returns this same transition. A store that can compare and
    write in one statement applies it so; any store may ignore it and call ``decide``."""

    expected: Expected
    transition: Transition


@dataclass(frozen=True, slots=True)
class ClaimAhead:
    """A claim decided before its rows are picked (ADR 0008), for a store that picks and writes
    in one statement. Each row picked gets ``lifecycle.claimed``: ``changes`` (the same for every
    row), its attempts plus one, a lease of ``lease_seconds`` (None: its type's claim timeout) from
    ``now``, the next of ``tokens`` (one per row the claim may take), and ``event`` (None: no
    history) with the row's new attempt number as its metadata ``attempt``."""

    changes: dict[str, Any]
    now: datetime
    lease_seconds: int | None
    tokens: tuple[str, ...]
    event: NewEvent | None


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
    dedupe_scope: DedupeScope
    max_pending: int | None
    run_after: datetime | None
    expires_at: datetime | None
    assigned_to: str | None
    type_name: str
    policy: TypePolicy
    now: datetime
    event: NewEvent | None


class InsertOutcome(StrEnum):
    CREATED = "created"
    DUPLICATE = "duplicate"
    QUEUE_FULL = "queue_full"


@dataclass(frozen=True, slots=True)
class InsertResult:
    outcome: InsertOutcome
    task: Task | None


@dataclass(frozen=True, slots=True)
class TaskQuery:
    statuses: tuple[TaskStatus, ...] = ()
    type_name: str | None = None
    type_like: str | None = None
    worker_id: str | None = None
    limit: int = 50
    offset: int = 0


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


@dataclass(frozen=True, slots=True)
class SettleQuery:
    """Rows whose timestamps say a transition is due: an expired lease or an expired task."""

    now: datetime
    task_id: int | None = None
    limit: int = 500


@dataclass(frozen=True, slots=True)
class ListResult:
    tasks: list[Task] = field(default_factory=list)
    total: int = 0


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
        """Insert in one transaction, each deduplicated atomically against racing inserts."""
        ...

    async def get_task(self, task_id: int) -> Task | None: ...

    async def list_tasks(self, query: TaskQuery) -> ListResult: ...

    async def claim_tasks(
        self, query: ClaimQuery, decide: Decide, ahead: ClaimAhead | None = None
    ) -> list[Task]:
        """Lock up to ``limit`` eligible pending tasks (skipping locked ones) and apply ``decide``,
        or (a store that can, given ``ahead``) pick and claim them in one statement."""
        ...

    async def transition_task(
        self, task_id: int, decide: Decide, now: datetime, ahead: Ahead | None = None
    ) -> Task | None:
        """Lock one task, apply ``decide`` (which may raise); None if the task does not exist.
        With ``ahead``, a store may first apply its transition in one statement to a row that
        matches, and fall back to ``decide`` when the row does not."""
        ...

    async def transition_tasks(self, task_ids: Sequence[int], decide: Decide, now: datetime) -> list[Task]:
        """Lock several tasks in one transaction and apply ``decide`` to each (missing ids are
        left out of the result). ``decide`` must not raise: it returns None to skip a task."""
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

    async def settle_tasks(self, query: SettleQuery, decide: Decide) -> int:
        """Apply ``decide`` to rows with an expired lease or an expired pending deadline."""
        ...

    async def delete_task(self, task_id: int) -> bool: ...

    async def list_events(self, task_id: int) -> list[Event]: ...
