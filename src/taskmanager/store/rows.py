"""How tasks, task types and history events move between rows and engine records."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from functools import lru_cache
from operator import attrgetter
from typing import Any

from sqlalchemy import Select, bindparam, func, select

from taskmanager.engine.policy import Defaults
from taskmanager.engine.records import DedupeScope, NewEvent, Task, TaskStatus, TaskType
from taskmanager.engine.records import TypePolicy as Policy
from taskmanager.store.tables import UTCDateTime, task_history, task_types, tasks

T, TT, H = tasks.c, task_types.c, task_history.c


#: Task fields read from the ``tasks`` column of the same name, in ``Task``'s order.
TASK_COLUMN_FIELDS = tuple(f.name for f in fields(Task) if f.name in tasks.c)
#: Task fields with a source of their own: the type's name, and its settings (``TypePolicy``'s
#: fields, each a ``task_types`` column, read through the server's default where unset).
TASK_DERIVED_FIELDS = {"type": (TT.name,), "policy": tuple(TT[f.name] for f in fields(Policy))}
#: TaskType fields, each a ``task_types`` column of the same name.
TYPE_FIELDS = tuple(f.name for f in fields(TaskType))


def _setting(column: Any, defaults: Defaults) -> Any:
    """A type's setting, or (where the type leaves it NULL) the server's default of that name."""
    default = getattr(defaults, column.name, None)
    return column if default is None else func.coalesce(column, default).label(column.name)


def task_columns(defaults: Defaults, utc: Callable[[Any], Any] = lambda c: c) -> list[Any]:
    """What a task read selects, in ``Task``'s field order (``policy`` last, one column per
    setting); ``utc`` wraps each timestamp column (raw asyncpg reads them as aware UTC so)."""
    selected: list[Any] = []
    for f in fields(Task):
        if f.name in tasks.c:
            column = T[f.name]
            selected.append(utc(column).label(f.name) if isinstance(column.type, UTCDateTime) else column)
        elif f.name == "type":
            selected.append(TT.name.label("type_name"))
    policy = TASK_DERIVED_FIELDS["policy"]
    selected += [_setting(c, defaults).label(f"type_{c.name}") for c in policy]
    return selected


def type_columns(defaults: Defaults, utc: Callable[[Any], Any] = lambda c: c) -> list[Any]:
    """What a task-type read selects, in ``TaskType``'s field order."""
    return [
        utc(TT[name]).label(name) if isinstance(TT[name].type, UTCDateTime) else _setting(TT[name], defaults)
        for name in TYPE_FIELDS
    ]


TASKS_JOIN = tasks.join(task_types, T.type_id == TT.id)


@dataclass(frozen=True)
class Selects:
    """The task and task-type SELECTs of one store: a type setting left unset (NULL) reads as
    the server's default, so changing a default changes every type that never set its own."""

    task: Select[Any]
    task_type: Select[Any]
    #: The hottest reads, built once with their values as parameters: SQLAlchemy keys its cache of
    #: compiled statements by walking a statement, and remembers that key on the statement object,
    #: so a statement made once is walked once instead of at every read.
    type_by_name: Select[Any]
    task_by_id: Select[Any]
    task_by_lock: Select[Any]
    tasks_by_ids: Select[Any]

    @classmethod
    def with_defaults(cls, defaults: Defaults) -> Selects:
        task = select(*task_columns(defaults)).select_from(TASKS_JOIN)
        task_type = select(*type_columns(defaults))
        return cls(
            task,
            task_type,
            type_by_name=task_type.where(TT.name == bindparam("name")),
            task_by_id=task.where(T.id == bindparam("id")),
            task_by_lock=task.where(T.type_id == bindparam("type_id"), T.dedupe_lock == bindparam("lock")),
            tasks_by_ids=task.where(T.id.in_(bindparam("ids", expanding=True))),
        )


#: Columns a transition may change (anything else in ``changes`` is a programming error).
WRITABLE = frozenset(c.name for c in tasks.columns) - {"id", "type_id", "created_at"}


def json_or_none(value: str | None) -> Any:
    return None if value is None else json.loads(value)


#: One encoder for every value stored as JSON text (``json.dumps`` with options builds one per call).
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def dump(value: Any) -> str | None:
    return None if value is None else _ENCODER.encode(value)


_N_TASK = len(fields(Task)) - 1  # every field before ``policy``, one column each
#: The columns of a task read: then ``policy``'s, one per setting (a statement may add more).
TASK_ROW_WIDTH = _N_TASK + len(fields(Policy))
_STATUS, _PARAMS, _RESULT, _DEPENDS_ON, _BLOCKED = (
    [f.name for f in fields(Task)].index(n) for n in ("status", "params", "result", "depends_on", "blocked")
)
#: Status text to member, a dict lookup instead of an Enum call for every row read.
_STATUSES = {status.value: status for status in TaskStatus}


def task_from_row(row: Sequence[Any]) -> Task:
    """A task from a row of ``task_columns``: positional, so SQLAlchemy rows and asyncpg records
    both serve. (``type`` is the row's third column, as it is ``Task``'s third field.)"""
    values = list(row[:_N_TASK])
    values[_STATUS] = _STATUSES[values[_STATUS]]
    values[_PARAMS] = json.loads(values[_PARAMS])
    result = values[_RESULT]
    values[_RESULT] = None if result is None else json.loads(result)
    depends_on = values[_DEPENDS_ON]
    values[_DEPENDS_ON] = () if depends_on is None else tuple(json.loads(depends_on))
    values[_BLOCKED] = bool(values[_BLOCKED])
    values.append(_policy(*row[_N_TASK:TASK_ROW_WIDTH]))
    return Task(*values)


@lru_cache(maxsize=1024)
def _policy(*settings: Any) -> Policy:
    """The type settings a task carries (``TypePolicy``'s fields, in order): the same few
    combinations on every row, so shared."""
    values = dict(zip(_POLICY_NAMES, settings, strict=True))
    values["dedupe"] = DedupeScope(values["dedupe"])
    return Policy(**values)


_POLICY_NAMES = tuple(f.name for f in fields(Policy))


_DECODE_TYPE: dict[str, Callable[[Any], Any]] = {
    "param_schema": json.loads,
    "is_active": bool,
    "dedupe": DedupeScope,
}


def type_from_row(row: Sequence[Any]) -> TaskType:
    """A task type from a row of ``type_columns`` (positional, like ``task_from_row``)."""
    return TaskType(
        *(
            _DECODE_TYPE[name](value) if name in _DECODE_TYPE else value
            for name, value in zip(TYPE_FIELDS, row, strict=True)
        )
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
    if "depends_on" in values:
        values["depends_on"] = dump(list(values["depends_on"]) or None)
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


_TASK_FIELDS = tuple(f.name for f in fields(Task))
_task_values = attrgetter(*_TASK_FIELDS)
#: Each slot's setter: a frozen dataclass refuses ``setattr``, its slot descriptors do not.
_SETTERS = {name: getattr(Task, name).__set__ for name in _TASK_FIELDS}


def with_changes(task: Task, changes: dict[str, Any]) -> Task:
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
