"""Records as the JSON objects of API.md (ids as integers, timestamps ISO 8601 UTC ending in Z)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from taskmanager.engine.records import Event, Task, TaskType


def iso(value: datetime | None) -> str | None:
    """``2026-01-01T12:00:00.000000Z`` (aware UTC in, fixed-width UTC text out)."""
    if value is None:
        return None
    return value.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def type_data(item: TaskType) -> dict[str, Any]:
    return {
        "id": item.id,
        "name": item.name,
        "version": item.version,
        "param_schema": item.param_schema,
        "is_active": item.is_active,
        "max_attempts": item.max_attempts,
        "claim_timeout": item.claim_timeout,
        "retry_delay": item.retry_delay,
        "retry_max_delay": item.retry_max_delay,
        "dedupe": item.dedupe.value,
        "max_pending": item.max_pending,
        "description": item.description,
        "created_at": iso(item.created_at),
        "updated_at": iso(item.updated_at),
    }


def task_data(task: Task) -> dict[str, Any]:
    return {
        "id": task.id,
        "type": task.type,
        "type_id": task.type_id,
        "status": task.status.value,
        "params": task.params,
        "result": task.result,
        "error_message": task.error_message,
        "priority": task.priority,
        "progress": task.progress,
        "attempts": task.attempts,
        "max_attempts": task.max_attempts,
        "claimed_by": task.claimed_by,
        "claimed_at": iso(task.claimed_at),
        "lease_expires_at": iso(task.lease_expires_at),
        "completed_at": iso(task.completed_at),
        "run_after": iso(task.run_after),
        "expires_at": iso(task.expires_at),
        "assigned_to": task.assigned_to,
        "created_at": iso(task.created_at),
        "updated_at": iso(task.updated_at),
        "dedupe_key": task.dedupe_key,
    }


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
