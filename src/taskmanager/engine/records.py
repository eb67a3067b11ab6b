"""The records the engine works on: task types, tasks and history events as the store holds them."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from typing import Any


class TaskStatus(StrEnum):
    PENDING = "pending"
    CLAIMED = "claimed"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


#: States a task never leaves by itself (only ``retry`` brings failed/cancelled back).
TERMINAL_STATUSES = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})
#: States in which a task counts as live for ``dedupe: "active"``.
ACTIVE_STATUSES = frozenset({TaskStatus.PENDING, TaskStatus.CLAIMED})


class DedupeScope(StrEnum):
    ALL = "all"
    ACTIVE = "active"
    NONE = "none"


class HistoryEvent(StrEnum):
    CREATED = "created"
    CLAIMED = "claimed"
    PROGRESS = "progress"
    HEARTBEAT = "heartbeat"
    COMPLETED = "completed"
    FAILED = "failed"
    RETRY_SCHEDULED = "retry_scheduled"
    LEASE_EXPIRED = "lease_expired"
    CANCELLED = "cancelled"
    RETRIED = "retried"
    EXPIRED = "expired"
    #: A callback delivery (B.5): one per try, in the history of the task it was about.
    CALLBACK_DELIVERED = "callback_delivered"
    CALLBACK_FAILED = "callback_failed"


@dataclass(frozen=True, slots=True)
class TaskType:
    id: int
    name: str
    version: str
    param_schema: dict[str, Any]
    is_active: bool
    max_attempts: int
    claim_timeout: int
    retry_delay: float
    retry_max_delay: float
    dedupe: DedupeScope
    max_pending: int | None
    description: str | None
    max_running: int | None
    keep_completed_seconds: int
    keep_failed_seconds: int
    #: Where its tasks are POSTed when they end, unless a create names its own (B.5); None: nowhere.
    callback_url: str | None
    created_at: datetime
    updated_at: datetime
    #: One more at every change of the type (its settings, schema or activation): what a create
    #: checks its cached copy against (``InsertTask.type_revision``). Not on the wire.
    revision: int


@dataclass(frozen=True, slots=True)
class TypePolicy:
    """The settings of a task's type that its lifecycle needs, read with the task."""

    claim_timeout: int
    retry_delay: float
    retry_max_delay: float
    dedupe: DedupeScope
    #: Seconds a finished task is kept (B.10; 0 = forever): completed, and failed or cancelled.
    keep_completed_seconds: int = 0
    keep_failed_seconds: int = 0

    @classmethod
    def of(cls, task_type: TaskType) -> TypePolicy:
        """The policy of ``task_type``'s tasks: its settings of the same names."""
        return cls(*(getattr(task_type, name) for name in _POLICY_FIELDS))


@dataclass(frozen=True, slots=True)
class Task:
    id: int
    type_id: int
    type: str
    status: TaskStatus
    params: Any
    result: Any
    error_message: str | None
    priority: int
    progress: int
    attempts: int
    max_attempts: int
    claimed_by: str | None
    claimed_at: datetime | None
    lease_expires_at: datetime | None
    lease_token: str | None
    completed_at: datetime | None
    run_after: datetime | None
    expires_at: datetime | None
    assigned_to: str | None
    created_at: datetime
    updated_at: datetime
    dedupe_key: str | None
    #: The schedule (its name) that created the task, and the tick it was created for (B.8).
    schedule: str | None
    scheduled_for: datetime | None
    #: The tasks it waits for (B.5; empty: none), and whether it still waits for one of them
    #: (a blocked task is pending but never claimed).
    depends_on: tuple[int, ...]
    blocked: bool
    #: Dependants attached since its dependants were last settled: when it ends with this above
    #: 0, its dependants are settled (unblocked or cancelled); 0 costs the end nothing.
    dependant_marks: int
    #: Whether a request has waited for this task's end (``Store.await_end``).
    awaited: bool
    #: Where the task is POSTed once it ends (B.5): the create's URL, else its type's, at create.
    callback_url: str | None
    policy: TypePolicy


@dataclass(frozen=True, slots=True)
class Schedule:
    """A periodic task (API.md B.8): ``cron`` or ``interval_seconds``, never both."""

    id: int
    name: str
    type: str
    cron: str | None
    interval_seconds: int | None
    params: dict[str, Any]
    priority: int
    timezone: str
    enabled: bool
    #: The next tick not yet fired (None: disabled).
    next_run_at: datetime | None
    last_run_at: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Delivery:
    """A callback delivery (B.5) a server has taken from the outbox to send: its ``tries``-th try
    (counting this one) of POSTing task ``task_id`` to ``url``."""

    id: int
    task_id: int
    url: str
    tries: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    task_id: int
    event: str
    worker_id: str | None
    message: str | None
    metadata: dict[str, Any] | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class NewEvent:
    """A history event to record, written in the same transaction as the change it describes."""

    event: HistoryEvent
    worker_id: str | None = None
    message: str | None = None
    metadata: dict[str, Any] | None = field(default=None)


#: ``TypePolicy``'s fields, each also a setting of ``TaskType``.
_POLICY_FIELDS = tuple(f.name for f in fields(TypePolicy))
