"""What the client returns: the server's response shapes (``taskmanager.models``), typed and parsed
(timestamps are aware ``datetime`` objects), that also read like the dicts PrismQ's client returned.

``task.params`` and ``task["params"]`` give the same value, ``task.get("result")`` works, and so
does ``"lease_token" in task``. Fields a newer server adds are kept and readable both ways too.
``to_dict()`` gives the JSON form, as the server sent it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict

from taskmanager import models


class Record(BaseModel):
    """A response object readable as attributes or as a mapping (``obj["key"]``, ``obj.get``)."""

    model_config = ConfigDict(extra="allow")

    def _has(self, key: str) -> bool:
        return key in type(self).model_fields or key in (self.model_extra or {})

    def __getitem__(self, key: str) -> Any:
        if not self._has(key):
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if self._has(key) else default

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._has(key)

    def keys(self) -> list[str]:
        return [*type(self).model_fields, *(self.model_extra or {})]

    def items(self) -> Iterator[tuple[str, Any]]:
        return ((key, getattr(self, key)) for key in self.keys())

    def to_dict(self) -> dict[str, Any]:
        """The object as JSON-ready data (timestamps as ISO strings)."""
        return self.model_dump(mode="json")


class Health(Record, models.HealthData):
    """``GET /health``: ``status``, ``database``, ``version``, ``timestamp``."""


class TaskType(Record, models.RegisterData):
    """A task type and its settings; ``created``/``updated`` are set on a register answer."""


class Task(Record, models.TaskOut):
    """A task. A claimed task also carries its ``lease_token``."""

    lease_token: str | None = None


class CreatedTask(Record, models.CreatedTask):
    """A create's answer: the new task (every task field, readable by key), or for a duplicate
    (``duplicate`` is True) the existing task's ``id``, ``type``, ``status`` and ``dedupe_key``."""


class BatchItem(Record, models.BatchItemResult):
    """One item of a batch create: its ``index``, and ``id``/``status``/``duplicate`` or ``error``."""


class BatchResult(Record, models.BatchCreated):
    results: list[BatchItem]  # type: ignore[assignment]  # the same shape, readable by key


class BulkResult(Record, models.BulkResult):
    """What ``POST /tasks/bulk`` did: ``matched`` tasks, ``changed`` of them."""


class Completion(Record, models.CompletedTask):
    """A complete's answer: ``status`` is ``completed``, ``failed`` or ``pending (retry)``."""


class BatchCompletion(Record, models.CompleteBatchItemResult):
    """One item of a batched complete: ``status`` as a single complete would answer it, or
    ``None`` with the ``error`` message and ``code`` (``lease_lost``, ``not_found``...)."""


class ProgressUpdate(Record, models.ProgressData):
    """A progress report's answer, with the extended ``lease_expires_at``."""


class HeartbeatResult(Record, models.HeartbeatData):
    """A heartbeat's answer: the new ``lease_expires_at`` and whether a cancel was requested."""


class TaskEvent(Record, models.HistoryEventOut):
    """One entry of a task's history."""


class TaskPage(Record):
    """One page of ``GET /tasks``: ``tasks`` (newest first) and the ``total`` of all matches."""

    tasks: list[Task]
    count: int
    total: int
    limit: int
    offset: int


class TypeStats(Record, models.TypeStatsOut):
    """One type's line of ``GET /stats``: counts by status, oldest pending age, last hour."""


class ThroughputMinute(Record, models.ThroughputMinute):
    """One minute of the last hour: tasks ``completed`` and ``failed`` in it."""


class Stats(Record, models.StatsData):
    """``GET /stats``: ``by_status``, ``by_type``, ``workers_active``, ``throughput``."""

    by_type: list[TypeStats]  # type: ignore[assignment]  # the same shape, readable by key
    throughput: list[ThroughputMinute]  # type: ignore[assignment]


class Worker(Record, models.WorkerOut):
    """A worker seen in the last 24 hours (``GET /workers``)."""


__all__ = [
    "BatchCompletion",
    "BatchItem",
    "BatchResult",
    "BulkResult",
    "Completion",
    "CreatedTask",
    "Health",
    "HeartbeatResult",
    "ProgressUpdate",
    "Record",
    "Stats",
    "Task",
    "TaskEvent",
    "TaskPage",
    "TaskType",
    "ThroughputMinute",
    "TypeStats",
    "Worker",
]
