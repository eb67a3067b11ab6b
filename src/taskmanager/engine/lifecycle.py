"""The lifecycle rules: given a task's current row, what a request may do to it.

Each function is pure: it reads a ``Task`` and returns a ``Transition`` (or raises the error the
API names). The engine writes it as a compare-and-set on the columns the rule read (``expected``),
so a row changed meanwhile is read and judged again (ADR 0012).
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from taskmanager.engine.policy import Backoff, exponential_backoff
from taskmanager.engine.records import (
    ACTIVE_STATUSES,
    DedupeScope,
    HistoryEvent,
    NewEvent,
    Task,
    TaskStatus,
)
from taskmanager.engine.store import ClaimParams, Expected, Transition
from taskmanager.engine.wire import iso
from taskmanager.errors import Forbidden, LeaseLost, ValidationFailed

RETRY_STATUS = "pending (retry)"
NOT_CLAIMED = "Task is not in claimed state"
OTHER_WORKER = "Task is claimed by another worker"


def new_lease_token() -> str:
    return secrets.token_urlsafe(24)


def claim_params(*, now: datetime, worker_id: str, lease_seconds: int | None, count: int) -> ClaimParams:
    """A claim of up to ``count`` pending tasks by ``worker_id``, decided before they are picked
    (``ClaimParams.applied`` is what it makes of each)."""
    return ClaimParams(
        changes={
            "status": TaskStatus.CLAIMED,
            "claimed_by": worker_id,
            "claimed_at": now,
            "progress": 0,
            "updated_at": now,
        },
        now=now,
        lease_seconds=lease_seconds or None,
        tokens=tuple(new_lease_token() for _ in range(count)),
        event=NewEvent(HistoryEvent.CLAIMED, worker_id),
    )


def claim(task: Task, *, now: datetime, worker_id: str, lease_seconds: int | None) -> Transition:
    """A pending task handed to ``worker_id`` for one more attempt under a fresh lease."""
    params = claim_params(now=now, worker_id=worker_id, lease_seconds=lease_seconds, count=1)
    return params.applied(task, 0)


#: The columns a rule below may read: a change decided on a row expects them unchanged.
READ_COLUMNS = (
    "status",
    "claimed_by",
    "lease_token",
    "attempts",
    "lease_expires_at",
    "expires_at",
    "blocked",
)


def as_read(task: Task) -> Expected:
    """What a decision taken on ``task`` expects of its row: every column the rules read."""
    return Expected({name: getattr(task, name) for name in READ_COLUMNS})


def expiry(task: Task, *, now: datetime) -> Transition | None:
    """The transition a timestamp makes due: an expired lease or an expired pending task."""
    if task.status == TaskStatus.PENDING and task.expires_at is not None and task.expires_at <= now:
        return Transition(
            changes={
                "status": TaskStatus.CANCELLED,
                "blocked": False,
                "error_message": "expired",
                "completed_at": now,
                "updated_at": now,
            },
            events=(NewEvent(HistoryEvent.EXPIRED, None, "expired"),),
        )
    if task.status != TaskStatus.CLAIMED or task.lease_expires_at is None or task.lease_expires_at > now:
        return None
    expired = NewEvent(
        HistoryEvent.LEASE_EXPIRED, task.claimed_by, "Lease expired", {"attempt": task.attempts}
    )
    if task.attempts >= task.max_attempts:
        message = f"Claim timeout exceeded after {task.attempts} attempts"
        return Transition(
            changes={
                "status": TaskStatus.FAILED,
                "error_message": message,
                "completed_at": now,
                "lease_expires_at": None,
                "lease_token": None,
                "updated_at": now,
            },
            events=(expired, NewEvent(HistoryEvent.FAILED, task.claimed_by, message)),
        )
    return Transition(
        changes={
            "status": TaskStatus.PENDING,
            "claimed_by": None,
            "claimed_at": None,
            "lease_expires_at": None,
            "lease_token": None,
            "updated_at": now,
        },
        events=(expired,),
    )


def _check_holder(task: Task, worker_id: str, lease_token: str | None) -> None:
    """Raise unless ``worker_id`` (with ``lease_token`` if given) holds the task's lease now."""
    if lease_token is not None and lease_token != task.lease_token:
        raise LeaseLost("Lease lost", data={"id": task.id, "status": task.status.value})
    if task.status == TaskStatus.CANCELLED and task.claimed_by == worker_id:
        raise LeaseLost("Lease lost: task was cancelled", data={"id": task.id, "status": "cancelled"})
    if task.status != TaskStatus.CLAIMED:
        raise ValidationFailed(NOT_CLAIMED)
    if task.claimed_by != worker_id:
        raise Forbidden(OTHER_WORKER)


@dataclass(frozen=True, slots=True)
class Completion:
    """A complete request as the engine judges it."""

    worker_id: str
    success: bool
    result: object = None
    error: str | None = None
    lease_token: str | None = None


def outcome_status(task: Task) -> str:
    """The status a complete reports for a task already finished by it."""
    if task.status == TaskStatus.PENDING:
        return RETRY_STATUS
    return task.status.value


def is_repeat(task: Task, request: Completion) -> bool:
    """True when ``request`` repeats the complete that already finished this task (B.3)."""
    if request.lease_token is None or request.lease_token != task.lease_token:
        return False
    if request.success:
        return task.status == TaskStatus.COMPLETED
    return task.status == TaskStatus.FAILED or (task.status == TaskStatus.PENDING and task.claimed_by is None)


def complete(
    task: Task,
    request: Completion,
    *,
    now: datetime,
    rng: random.Random,
    backoff: Backoff = exponential_backoff,
) -> Transition | None:
    """Finish the holder's attempt: completed, back to pending for a retry (after ``backoff``),
    or failed for good. Returns None for an idempotent repeat (nothing to change).
    """
    if is_repeat(task, request):
        return None
    _check_holder(task, request.worker_id, request.lease_token)
    worker = request.worker_id
    if request.success:
        return _completed(request, now)
    common = {"result": request.result, "error_message": request.error, "updated_at": now}
    if task.attempts < task.max_attempts:
        run_after = now + timedelta(seconds=backoff(task.policy, task.attempts, rng))
        return Transition(
            changes={
                **common,
                "status": TaskStatus.PENDING,
                "claimed_by": None,
                "claimed_at": None,
                "lease_expires_at": None,
                "run_after": run_after,
            },
            events=(
                NewEvent(HistoryEvent.FAILED, worker, request.error, {"attempt": task.attempts}),
                NewEvent(HistoryEvent.RETRY_SCHEDULED, worker, None, {"run_after": iso(run_after)}),
            ),
        )
    return Transition(
        changes={
            **common,
            "status": TaskStatus.FAILED,
            "completed_at": now,
            "lease_expires_at": None,
        },
        events=(NewEvent(HistoryEvent.FAILED, worker, request.error, {"attempt": task.attempts}),),
    )


def _completed(request: Completion, now: datetime) -> Transition:
    """A successful attempt: the task is done, with its result."""
    return Transition(
        changes={
            "status": TaskStatus.COMPLETED,
            "result": request.result,
            "error_message": request.error,
            "completed_at": now,
            "lease_expires_at": None,
            "progress": 100,
            "updated_at": now,
        },
        events=(NewEvent(HistoryEvent.COMPLETED, request.worker_id),),
    )


def complete_unread(request: Completion, *, now: datetime) -> tuple[Expected, Transition] | None:
    """A successful complete, decided before the row is read: it holds for a task claimed by the
    request's worker (under its lease token, when one is sent) whose lease has not run out —
    exactly the rows on which ``expiry`` has nothing due and ``complete`` returns this transition.
    Failures (a retry depends on the row's attempts) are decided on the row. Not knowing the
    task's type, it expects one whose dedupe key stays when the task ends (or that has none);
    not knowing its ``callback_url``, one without: a task with a callback is read and decided on
    its row, so that its end writes its delivery (``Transitions.change``, B.5)."""
    if not request.success:
        return None
    columns: dict[str, object] = {
        "status": TaskStatus.CLAIMED,
        "claimed_by": request.worker_id,
        "callback_url": None,
    }
    if request.lease_token is not None:
        columns["lease_token"] = request.lease_token
    expected = Expected(columns, lease_alive_at=now, dedupe_scopes=(DedupeScope.ALL, DedupeScope.NONE))
    return expected, _completed(request, now)


def _extended(task: Task, until: datetime) -> datetime:
    """``until``, unless the current lease (e.g. a claim's longer ``lease_seconds``) lasts longer."""
    current = task.lease_expires_at
    return until if current is None or current < until else current


def progress(
    task: Task,
    *,
    worker_id: str,
    value: int,
    message: str | None,
    lease_token: str | None,
    now: datetime,
) -> Transition:
    """Record progress; it is also a heartbeat, so the lease is extended."""
    _check_holder(task, worker_id, lease_token)
    return Transition(
        changes={
            "progress": value,
            "updated_at": now,
            "lease_expires_at": _extended(task, now + timedelta(seconds=task.policy.claim_timeout)),
        },
        events=(NewEvent(HistoryEvent.PROGRESS, worker_id, message, {"progress": value}),),
    )


def heartbeat(
    task: Task,
    *,
    worker_id: str,
    lease_token: str | None,
    lease_seconds: int | None,
    now: datetime,
    record: bool,
) -> Transition | None:
    """Extend the holder's lease. A cancelled task's holder is answered, not refused (None)."""
    if (
        task.status == TaskStatus.CANCELLED
        and task.claimed_by == worker_id
        and lease_token in (None, task.lease_token)
    ):
        return None
    _check_holder(task, worker_id, lease_token)
    until = now + timedelta(seconds=lease_seconds or task.policy.claim_timeout)
    events = (NewEvent(HistoryEvent.HEARTBEAT, worker_id),) if record else ()
    return Transition(
        # An explicit lease_seconds sets the lease; the default only ever extends it.
        changes={"lease_expires_at": until if lease_seconds else _extended(task, until), "updated_at": now},
        events=events,
    )


def cancel(task: Task, *, reason: str | None, now: datetime) -> Transition:
    if task.status not in ACTIVE_STATUSES:
        raise ValidationFailed(f"Task cannot be cancelled in state {task.status.value}")
    return Transition(
        changes={
            "status": TaskStatus.CANCELLED,
            "blocked": False,
            "error_message": reason or "cancelled",
            "completed_at": now,
            "lease_expires_at": None,
            "updated_at": now,
        },
        events=(NewEvent(HistoryEvent.CANCELLED, task.claimed_by, reason),),
    )


def retry(task: Task, *, now: datetime) -> Transition:
    """Back to pending with its attempts reset. A task with dependencies is pending *blocked*:
    its dependencies are judged again (``dependencies``) — all completed, it is claimable; one
    still unfinished, it waits for it; one failed or cancelled, it is cancelled again."""
    if task.status not in (TaskStatus.FAILED, TaskStatus.CANCELLED):
        raise ValidationFailed(f"Only failed or cancelled tasks can be retried (task is {task.status.value})")
    return Transition(
        changes={
            "status": TaskStatus.PENDING,
            "blocked": bool(task.depends_on),
            "attempts": 0,
            "progress": 0,
            "result": None,
            "error_message": None,
            "claimed_by": None,
            "claimed_at": None,
            "lease_expires_at": None,
            "lease_token": None,
            "completed_at": None,
            "run_after": None,
            "expires_at": None,
            "updated_at": now,
        },
        events=(NewEvent(HistoryEvent.RETRIED, None, None, {"previous_status": task.status.value}),),
    )


#: The statuses of a dependency that cancel its dependants (a failure with a retry left is
#: ``pending``, so only a final failure counts).
ENDS_DEPENDANTS = (TaskStatus.FAILED, TaskStatus.CANCELLED)


def dependency_message(task_id: int, status: TaskStatus) -> str:
    return f"dependency {task_id} {status.value}"


def dependencies(
    task: Task, states: Sequence[tuple[int, TaskStatus | None]], *, now: datetime
) -> Transition | None:
    """What the states of a blocked task's dependencies make of it (B.5): cancelled if one of
    them ended failed or cancelled (the first by id names it), claimable once every one is
    completed (a dependency deleted meanwhile no longer holds it back), else still waiting
    (None). A task no longer blocked is left alone."""
    if task.status != TaskStatus.PENDING or not task.blocked:
        return None
    for task_id, status in sorted(states, key=lambda state: state[0]):
        if status in ENDS_DEPENDANTS:
            assert status is not None
            message = dependency_message(task_id, status)
            return Transition(
                changes={
                    "status": TaskStatus.CANCELLED,
                    "blocked": False,
                    "error_message": message,
                    "completed_at": now,
                    "updated_at": now,
                },
                events=(NewEvent(HistoryEvent.CANCELLED, None, message, {"dependency": task_id}),),
            )
    if any(status not in (TaskStatus.COMPLETED, None) for _, status in states):
        return None
    return Transition(changes={"blocked": False, "updated_at": now})
