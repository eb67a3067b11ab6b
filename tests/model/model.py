"""A plain model of the task lifecycle (docs/design/lifecycle.md), written from the table of
transitions rather than from the engine's code: what each request should do to a task and what
it should answer. ``test_lifecycle_model.py`` runs it side by side with the real engine."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from taskmanager.engine.clock import FrozenClock
from taskmanager.errors import Forbidden, LeaseLost, TaskManagerError, ValidationFailed

#: The task types of every example: one per dedupe scope, with small attempts and leases.
TYPES: dict[str, dict[str, Any]] = {
    "m.all": {"dedupe": "all", "max_attempts": 2, "claim_timeout": 30},
    "m.active": {"dedupe": "active", "max_attempts": 3, "claim_timeout": 20},
    "m.none": {"dedupe": "none", "max_attempts": 1, "claim_timeout": 10},
}
FINAL = ("completed", "failed", "cancelled")

#: An outcome: the error class a request must raise, or the status text it answers.
Outcome = type[TaskManagerError] | str


@dataclass
class ModelTask:
    id: int
    type: str
    key: str
    created_at: datetime
    priority: int
    max_attempts: int
    expires_at: datetime | None
    status: str = "pending"
    attempts: int = 0
    holder: str | None = None
    token: str | None = None
    lease_until: datetime | None = None
    run_after: datetime | None = None
    result: Any = None
    error_message: str | None = None
    progress: int = 0
    holds_lock: bool = True
    tokens: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=lambda: ["created"])

    @property
    def claim_timeout(self) -> int:
        return int(TYPES[self.type]["claim_timeout"])

    def view(self, iso: Callable[[datetime | None], str | None]) -> dict[str, Any]:
        """The task as the test compares it with the store's."""
        return {
            "status": self.status,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "claimed_by": self.holder,
            "lease_expires_at": iso(self.lease_until),
            "run_after": iso(self.run_after),
            "expires_at": iso(self.expires_at),
            "result": self.result,
            "error_message": self.error_message,
            "progress": self.progress,
            "lease_token": self.token,
            "dedupe_lock": self.key if self.holds_lock else None,
            "events": self.events,
        }


class Model:
    def __init__(self, clock: FrozenClock) -> None:
        self.clock = clock
        self.tasks: dict[int, ModelTask] = {}
        #: Whether the last complete repeated the report that had ended its task.
        self.repeated = False

    def now(self) -> datetime:
        return self.clock.now()

    # -- creating and claiming -------------------------------------------------------------------

    def lock_holder(self, type_name: str, key: str) -> ModelTask | None:
        """The task whose dedupe lock a create with ``key`` runs into, if any."""
        for task in self.tasks.values():
            if task.type == type_name and task.key == key and task.holds_lock:
                return task
        return None

    def create(
        self, task_id: int, type_name: str, key: str, ttl: int | None, max_attempts: int | None, priority: int
    ) -> None:
        now = self.now()
        self.tasks[task_id] = ModelTask(
            id=task_id,
            type=type_name,
            key=key,
            created_at=now,
            priority=priority,
            max_attempts=max_attempts or int(TYPES[type_name]["max_attempts"]),
            expires_at=None if ttl is None else now + timedelta(seconds=ttl),
            holds_lock=TYPES[type_name]["dedupe"] != "none",
        )

    def next_claimable(self) -> ModelTask | None:
        """The task a claim with the default order gets: priority first, then first in."""
        now = self.now()
        ready = [
            t
            for t in self.tasks.values()
            if t.status == "pending"
            and (t.run_after is None or t.run_after <= now)
            and (t.expires_at is None or t.expires_at > now)
        ]
        ready.sort(key=lambda t: (-t.priority, t.created_at, t.id))
        return ready[0] if ready else None

    def claim(self, task: ModelTask, worker: str, token: str, lease_seconds: int | None) -> None:
        assert task.attempts < task.max_attempts, "a pending task with no attempts left"
        now = self.now()
        task.status, task.holder, task.token = "claimed", worker, token
        task.attempts += 1
        task.progress = 0
        task.lease_until = now + timedelta(seconds=lease_seconds or task.claim_timeout)
        task.tokens.append(token)
        task.events.append("claimed")

    # -- the holder's reports --------------------------------------------------------------------

    def refusal(self, task: ModelTask, worker: str, token: str | None) -> type[TaskManagerError] | None:
        """Why ``worker`` (with ``token``) does not hold ``task``'s lease now, if it does not."""
        if token is not None and token != task.token:
            return LeaseLost
        if task.status == "cancelled" and task.holder == worker:
            return LeaseLost
        if task.status != "claimed":
            return ValidationFailed
        if task.holder != worker:
            return Forbidden
        return None

    def extended(self, task: ModelTask, until: datetime) -> datetime:
        current = task.lease_until
        return until if current is None or current < until else current

    def heartbeat(
        self, task: ModelTask, worker: str, token: str | None, lease_seconds: int | None
    ) -> Outcome:
        if task.status == "cancelled" and task.holder == worker and token in (None, task.token):
            return "cancel_requested"
        refused = self.refusal(task, worker, token)
        if refused is not None:
            return refused
        until = self.now() + timedelta(seconds=lease_seconds or task.claim_timeout)
        task.lease_until = until if lease_seconds else self.extended(task, until)
        return "claimed"

    def progress(self, task: ModelTask, worker: str, token: str | None, value: int) -> Outcome:
        refused = self.refusal(task, worker, token)
        if refused is not None:
            return refused
        task.progress = value
        task.lease_until = self.extended(task, self.now() + timedelta(seconds=task.claim_timeout))
        task.events.append("progress")
        return "claimed"

    def complete(
        self, task: ModelTask, worker: str, token: str | None, success: bool, result: Any, error: str | None
    ) -> Outcome:
        self.repeated = token is not None and token == task.token  # a repeat of the report that ended it?
        if self.repeated:
            if success and task.status == "completed":
                return "completed"
            if not success and task.status == "failed":
                return "failed"
            if not success and task.status == "pending" and task.holder is None:
                return "pending (retry)"
            self.repeated = False
        refused = self.refusal(task, worker, token)
        if refused is not None:
            return refused
        now = self.now()
        task.result, task.error_message, task.lease_until = result, error, None
        if success:
            task.status, task.progress = "completed", 100
            task.events.append("completed")
            self.ended(task)
            return "completed"
        task.events.append("failed")
        if task.attempts < task.max_attempts:
            task.status, task.holder = "pending", None
            task.run_after = now + timedelta(seconds=5.0 * task.attempts)
            task.events.append("retry_scheduled")
            return "pending (retry)"
        task.status = "failed"
        self.ended(task)
        return "failed"

    # -- the operator's actions ------------------------------------------------------------------

    def cancel(self, task: ModelTask, reason: str | None) -> Outcome:
        if task.status not in ("pending", "claimed"):
            return ValidationFailed
        task.status, task.error_message, task.lease_until = "cancelled", reason or "cancelled", None
        task.events.append("cancelled")
        self.ended(task)
        return "cancelled"

    def retry(self, task: ModelTask) -> Outcome:
        if task.status not in ("failed", "cancelled"):
            return ValidationFailed
        task.status, task.attempts, task.progress = "pending", 0, 0
        task.result = task.error_message = task.holder = task.token = None
        task.lease_until = task.run_after = task.expires_at = None
        task.events.append("retried")
        return "pending"

    # -- time ------------------------------------------------------------------------------------

    def deadlines(self) -> list[datetime]:
        """Every future moment at which some task changes by itself (or becomes claimable)."""
        now = self.now()
        moments = set()
        for task in self.tasks.values():
            for when in (task.lease_until, task.expires_at, task.run_after):
                if when is not None and when > now:
                    moments.add(when)
        return sorted(moments)

    def settle(self) -> list[str]:
        """Apply every expiry the clock has made due (as the engine does when a task is read);
        the events they add."""
        now = self.now()
        added = []
        for task in self.tasks.values():
            before = len(task.events)
            while self.expire(task, now):
                pass
            added.extend(task.events[before:])
        return added

    def expire(self, task: ModelTask, now: datetime) -> bool:
        if task.status == "pending" and task.expires_at is not None and task.expires_at <= now:
            task.status, task.error_message = "cancelled", "expired"
            task.events.append("expired")
            self.ended(task)
            return True
        if task.status != "claimed" or task.lease_until is None or task.lease_until > now:
            return False
        task.events.append("lease_expired")
        task.lease_until, task.token = None, None
        if task.attempts >= task.max_attempts:
            task.status = "failed"
            task.error_message = f"Claim timeout exceeded after {task.attempts} attempts"
            task.events.append("failed")
            self.ended(task)
        else:
            task.status, task.holder = "pending", None
        return True

    def ended(self, task: ModelTask) -> None:
        """A final state: an ``active``-scoped task gives its dedupe key up (for good)."""
        if TYPES[task.type]["dedupe"] == "active":
            task.holds_lock = False
