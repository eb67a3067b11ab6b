"""Records as the JSON objects of the API (docs/reference/api.md): ids as integers, timestamps
ISO 8601 UTC ending in Z."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from operator import attrgetter
from typing import Any, get_args, get_origin, get_type_hints

from taskmanager import models
from taskmanager.engine.records import Event, Schedule, Task, TaskType


def iso(value: datetime | None) -> str | None:
    """``2026-01-01T12:00:00.000000Z`` (aware UTC in, fixed-width UTC text out)."""
    if value is None:
        return None
    return value.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _is_enum(hint: object) -> bool:
    return isinstance(hint, type) and issubclass(hint, Enum)


class _Shape:
    """How one record becomes its JSON object: which of its fields the object shows, and which of
    those are timestamps (shown as ``iso``), enums (shown as their value) or tuples (lists). Built once per
    record type from the record's own field declarations, so a new field needs no line here."""

    def __init__(self, record: type, shown: tuple[str, ...]) -> None:
        declared = get_type_hints(record)
        self.names = shown
        self.get = attrgetter(*shown)
        self.times = tuple(n for n in shown if datetime in (declared[n], *get_args(declared[n])))
        self.enums = tuple(
            n for n in shown if isinstance(declared[n], type) and issubclass(declared[n], Enum)
        )
        self.lists = tuple(n for n in shown if get_origin(declared[n]) is tuple)

    def data(self, item: Any) -> dict[str, Any]:
        data = dict(zip(self.names, self.get(item), strict=True))
        for name in self.times:
            data[name] = iso(data[name])
        for name in self.enums:
            data[name] = data[name].value
        for name in self.lists:
            data[name] = list(data[name])
        return data


#: A task type's and a task's JSON objects show the fields their wire models declare (the records
#: have more: a type's revision, a task's lease token and its type's policy are not shown).
_TYPE = _Shape(TaskType, tuple(models.TaskTypeOut.model_fields))
_TASK = _Shape(Task, tuple(models.TaskOut.model_fields))
_SCHEDULE = _Shape(Schedule, tuple(models.ScheduleOut.model_fields))


def type_data(item: TaskType) -> dict[str, Any]:
    return _TYPE.data(item)


def task_data(task: Task) -> dict[str, Any]:
    return _TASK.data(task)


def schedule_data(schedule: Schedule) -> dict[str, Any]:
    return _SCHEDULE.data(schedule)


def event_data(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "task_id": event.task_id,
        "event": event.event,
        "worker_id": event.worker_id,
        "message": event.message,
        "metadata": event.metadata,
        "created_at": iso(event.created_at),
    }
