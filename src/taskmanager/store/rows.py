"""How tasks, task types and history events move between rows and engine records."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from functools import lru_cache
from operator import attrgetter
from typing import Any

from sqlalchemy import Select, func, select

from taskmanager.engine.policy import Defaults
from taskmanager.engine.records import DedupeScope, NewEvent, Task, TaskStatus, TaskType
from taskmanager.engine.records import TypePolicy as Policy
from taskmanager.engine.store import Decide
from taskmanager.store.tables import task_history, task_types, tasks

T, TT, H = tasks.c, task_types.c, task_history.c


@dataclass(frozen=True)
class Selects:
    """The task and task-type SELECTs of one store: a type setting left unset (NULL) reads as
    the server's default, so changing a default changes every type that never set its own."""

    task: Select[Any]
    task_type: Select[Any]

    @classmethod
    def with_defaults(cls, defaults: Defaults) -> Selects:
        def setting(column: Any, default: float) -> Any:
            return func.coalesce(column, default).label(column.name)

        claim_timeout = setting(TT.claim_timeout, defaults.claim_timeout)
        retry_delay = setting(TT.retry_delay, defaults.retry_delay)
        retry_max_delay = setting(TT.retry_max_delay, defaults.retry_max_delay)
        task = select(
            T.id,
            T.type_id,
            T.status,
            T.params,
            T.result,
            T.error_message,
            T.priority,
            T.progress,
            T.attempts,
            T.max_attempts,
            T.claimed_by,
            T.claimed_at,
            T.lease_expires_at,
            T.lease_token,
            T.completed_at,
            T.run_after,
            T.expires_at,
            T.assigned_to,
            T.created_at,
            T.updated_at,
            T.dedupe_key,
            TT.name.label("type_name"),
            claim_timeout,
            retry_delay,
            retry_max_delay,
            TT.dedupe.label("type_dedupe"),
        ).select_from(tasks.join(task_types, T.type_id == TT.id))
        task_type = select(
            TT.id,
            TT.name,
            TT.version,
            TT.param_schema,
            TT.is_active,
            TT.description,
            setting(TT.max_attempts, defaults.max_attempts),
            claim_timeout,
            retry_delay,
            retry_max_delay,
            TT.dedupe,
            TT.max_pending,
            TT.created_at,
            TT.updated_at,
        )
        return cls(task, task_type)


#: Columns a transition may change (anything else in ``changes`` is a programming error).
WRITABLE = frozenset(c.name for c in tasks.columns) - {"id", "type_id", "created_at"}


def json_or_none(value: str | None) -> Any:
    return None if value is None else json.loads(value)


#: One encoder for every value stored as JSON text (``json.dumps`` with options builds one per call).
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def dump(value: Any) -> str | None:
    return None if value is None else _ENCODER.encode(value)


def task_from_row(row: Sequence[Any]) -> Task:
    """A task from a row of ``Selects.task`` (or PostgreSQL's hot path, which reads the same
    columns in the same order): positional, so SQLAlchemy rows and asyncpg records both serve."""
    (
        id_,
        type_id,
        status,
        params,
        result,
        error_message,
        priority,
        progress,
        attempts,
        max_attempts,
        claimed_by,
        claimed_at,
        lease_expires_at,
        lease_token,
        completed_at,
        run_after,
        expires_at,
        assigned_to,
        created_at,
        updated_at,
        dedupe_key,
        type_name,
        claim_timeout,
        retry_delay,
        retry_max_delay,
        type_dedupe,
    ) = row
    return Task(
        id=id_,
        type_id=type_id,
        type=type_name,
        status=_STATUSES[status],
        params=json.loads(params),
        result=None if result is None else json.loads(result),
        error_message=error_message,
        priority=priority,
        progress=progress,
        attempts=attempts,
        max_attempts=max_attempts,
        claimed_by=claimed_by,
        claimed_at=claimed_at,
        lease_expires_at=lease_expires_at,
        lease_token=lease_token,
        completed_at=completed_at,
        run_after=run_after,
        expires_at=expires_at,
        assigned_to=assigned_to,
        created_at=created_at,
        updated_at=updated_at,
        dedupe_key=dedupe_key,
        policy=_policy(claim_timeout, retry_delay, retry_max_delay, type_dedupe),
    )


#: Status text to member, a dict lookup instead of an Enum call for every row read.
_STATUSES = {status.value: status for status in TaskStatus}


@lru_cache(maxsize=1024)
def _policy(claim_timeout: int, retry_delay: float, retry_max_delay: float, dedupe: str) -> Policy:
    """The type settings a task carries: the same few combinations on every row, so shared."""
    return Policy(claim_timeout, retry_delay, retry_max_delay, DedupeScope(dedupe))


def type_from_row(row: Sequence[Any]) -> TaskType:
    """A task type from a row of ``Selects.task_type`` (positional, like ``task_from_row``)."""
    (
        id_,
        name,
        version,
        param_schema,
        is_active,
        description,
        max_attempts,
        claim_timeout,
        retry_delay,
        retry_max_delay,
        dedupe,
        max_pending,
        created_at,
        updated_at,
    ) = row
    return TaskType(
        id=id_,
        name=name,
        version=version,
        param_schema=json.loads(param_schema),
        is_active=bool(is_active),
        max_attempts=max_attempts,
        claim_timeout=claim_timeout,
        retry_delay=retry_delay,
        retry_max_delay=retry_max_delay,
        dedupe=DedupeScope(dedupe),
        max_pending=max_pending,
        description=description,
        created_at=created_at,
        updated_at=updated_at,
    )


def encode_changes(changes: dict[str, Any]) -> dict[str, Any]:
    unknown = changes.keys() - WRITABLE
    if unknown:
        raise ValueError(f"not writable task columns: {sorted(unknown)}")
    values = dict(changes)
    if "status" in values:
        status = values["status"]
        values["status"] = status.value if isinstance(status, TaskStatus) else TaskStatus(status).value
    if "result" in values:
        values["result"] = dump(values["result"])
    return values


def event_row(task_id: int, event: NewEvent, now: datetime) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "event": event.event.value,
        "worker_id": event.worker_id,
        "message": event.message,
        "metadata": dump(event.metadata),
        "created_at": now,
    }


@dataclass
class Decided:
    """What ``decide`` made of a set of locked tasks, ready for the store to write."""

    #: Every locked task as it reads after its transition (unchanged if it had none).
    tasks: list[Task] = field(default_factory=list)
    #: Rows to update, ``{"_id": id, column: value, ...}``, grouped by the columns they change,
    #: so each shape of change is one statement.
    updates: dict[tuple[str, ...], list[dict[str, Any]]] = field(default_factory=dict)
    #: History rows to insert (``event_row``).
    events: list[dict[str, Any]] = field(default_factory=list)
    #: A task went back to pending: claimers waiting elsewhere should look again.
    wakes: bool = False


_TASK_FIELDS = tuple(f.name for f in fields(Task))
_task_values = attrgetter(*_TASK_FIELDS)
#: Each slot's setter: a frozen dataclass refuses ``setattr``, its slot descriptors do not.
_SETTERS = {name: getattr(Task, name).__set__ for name in _TASK_FIELDS}


def _changed(task: Task, changes: dict[str, Any]) -> Task:
    """``dataclasses.replace(task, **changes)`` without the columns a ``Task`` does not carry
    (``dedupe_lock``), at half its cost (it runs once per claimed or completed task)."""
    new = object.__new__(Task)
    for name, value in zip(_TASK_FIELDS, _task_values(task), strict=True):
        _SETTERS[name](new, value)
    for name, value in changes.items():
        setter = _SETTERS.get(name)
        if setter is not None:
            setter(new, value)
    return new


def decide_all(locked: list[Task], decide: Decide, now: datetime) -> Decided:
    """Run ``decide`` on each locked task, in order (both ways of writing use this)."""
    decided = Decided()
    for task in locked:
        transition = decide(task)
        if transition is None:
            decided.tasks.append(task)
            continue
        values = encode_changes(transition.changes)
        decided.updates.setdefault(tuple(sorted(values)), []).append({"_id": task.id, **values})
        decided.events.extend(event_row(task.id, e, now) for e in transition.events)
        decided.tasks.append(_changed(task, transition.changes))
        decided.wakes = decided.wakes or transition.changes.get("status") == TaskStatus.PENDING
    return decided
