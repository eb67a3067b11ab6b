"""The lifecycle engine: every rule of a task's life, with no web framework and no SQL."""

from taskmanager.engine.clock import Clock, FrozenClock, SystemClock
from taskmanager.engine.policy import Defaults, RetryPolicy, compute_dedupe_key
from taskmanager.engine.records import Task, TaskStatus, TaskType
from taskmanager.engine.service import Reply, TaskService
from taskmanager.engine.store import Store

__all__ = [
    "Clock",
    "Defaults",
    "FrozenClock",
    "Reply",
    "RetryPolicy",
    "Store",
    "SystemClock",
    "Task",
    "TaskService",
    "TaskStatus",
    "TaskType",
    "compute_dedupe_key",
]
