"""Turning request values into store queries: claim order, status filters, schedule times."""

from __future__ import annotations

from datetime import datetime, timedelta

from taskmanager.engine.records import TaskStatus
from taskmanager.errors import ValidationFailed

SORT_BY_ERROR = "Invalid sort_by field. Allowed values: created_at, priority, id, attempts"
SORT_ORDER_ERROR = "Invalid sort_order. Allowed values: ASC, DESC"
SORT_COLUMNS = ("created_at", "priority", "id", "attempts")
#: Default claim order: highest priority first, first in first out within a priority.
DEFAULT_ORDER: tuple[tuple[str, bool], ...] = (
    ("priority", True),
    ("created_at", False),
    ("id", False),
)
#: Most tasks one list request returns.
MAX_LIST_LIMIT = 1000


def when(
    at: datetime | None, seconds: float | None, now: datetime, at_name: str, seconds_name: str
) -> datetime | None:
    if at is not None and seconds is not None:
        raise ValidationFailed(
            "Validation failed",
            details=[f"{seconds_name}: give {at_name} or {seconds_name}, not both"],
        )
    if seconds is not None:
        return now + timedelta(seconds=seconds)
    return at


def statuses(value: str | None) -> tuple[TaskStatus, ...]:
    if not value:
        return ()
    allowed = {s.value for s in TaskStatus}
    wanted = [part.strip() for part in value.split(",") if part.strip()]
    bad = [part for part in wanted if part not in allowed]
    if bad:
        raise ValidationFailed(
            "Validation failed",
            details=[f"status: {bad[0]!r} is not one of {', '.join(sorted(allowed))}"],
        )
    return tuple(TaskStatus(part) for part in dict.fromkeys(wanted))


def claim_order(sort_by: str | None, sort_order: str | None) -> tuple[tuple[str, bool], ...]:
    if sort_order is not None and sort_order.upper() not in ("ASC", "DESC"):
        raise ValidationFailed(SORT_ORDER_ERROR)
    if sort_by is None:
        return DEFAULT_ORDER
    if sort_by not in SORT_COLUMNS:
        raise ValidationFailed(SORT_BY_ERROR)
    descending = (sort_order or "ASC").upper() == "DESC"
    if sort_by == "priority":
        return (("priority", descending), ("created_at", False), ("id", False))
    if sort_by == "id":
        return (("id", descending),)
    return ((sort_by, descending), ("id", descending))
