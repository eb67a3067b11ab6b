"""Engine answers: the envelope message and the ``data`` object of the API for each outcome
(docs/reference/api.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from taskmanager.engine import lifecycle
from taskmanager.engine.records import Task
from taskmanager.engine.store import InsertOutcome, InsertResult
from taskmanager.engine.wire import task_data
from taskmanager.errors import NotFound, QueueFull, TaskManagerError

TASK_NOT_FOUND = "Task not found"
TYPE_NOT_FOUND = "Task type not found"


@dataclass(frozen=True, slots=True)
class Reply:
    """An engine answer: the envelope ``message`` and the ``data`` object of the API."""

    message: str
    data: dict[str, Any] = field(default_factory=dict)


def created_reply(result: InsertResult, type_name: str) -> Reply:
    if result.outcome == InsertOutcome.QUEUE_FULL:
        raise QueueFull("Queue is full")
    task = result.task
    assert task is not None
    if result.outcome == InsertOutcome.DUPLICATE:
        message = "Task already exists (deduplicated)"
        return Reply(
            message,
            {
                "id": task.id,
                "type": type_name,
                "status": task.status.value,
                "dedupe_key": task.dedupe_key,
                "duplicate": True,
                "deduplicated": True,
                "message": message,
            },
        )
    message = "Task created successfully"
    return Reply(message, {**task_data(task), "duplicate": False, "deduplicated": False, "message": message})


def batch_complete_entry(task_id: int, task: Task | None, failure: TaskManagerError | None) -> dict[str, Any]:
    if task is None:
        failure = failure or NotFound(TASK_NOT_FOUND)
    if failure is not None:
        return {"id": task_id, "status": None, "error": failure.message, "code": failure.code}
    assert task is not None
    return {"id": task_id, "status": lifecycle.outcome_status(task), "error": None, "code": None}


def batch_entry(index: int, outcome: InsertResult | str) -> dict[str, Any]:
    if isinstance(outcome, str):
        return {"index": index, "id": None, "status": None, "duplicate": False, "error": outcome}
    if outcome.outcome == InsertOutcome.QUEUE_FULL or outcome.task is None:
        error = (
            "depends_on_index: an item it depends on was not created"
            if outcome.outcome == InsertOutcome.DEPENDENCY_NOT_CREATED
            else "Queue is full"
        )
        return {"index": index, "id": None, "status": None, "duplicate": False, "error": error}
    return {
        "index": index,
        "id": outcome.task.id,
        "status": outcome.task.status.value,
        "duplicate": outcome.outcome == InsertOutcome.DUPLICATE,
        "error": None,
    }


def batch_bucket(entry: dict[str, Any]) -> str:
    if entry["error"] is not None:
        return "failed"
    return "duplicates" if entry["duplicate"] else "created"
