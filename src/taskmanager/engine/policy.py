"""Small policy objects: defaults, the dedupe key and the retry backoff."""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from typing import Any, Protocol

from taskmanager.engine.records import TERMINAL_STATUSES, DedupeScope, TaskStatus, TypePolicy

#: Attempts before a task fails for good (PrismQ's default).
DEFAULT_MAX_ATTEMPTS = 3
#: Seconds a claim's lease lasts before another worker may take the task (PrismQ's default).
DEFAULT_CLAIM_TIMEOUT = 300
#: Base seconds of the retry backoff: 2 s, 4 s, 8 s ... (0 = retry at once).
DEFAULT_RETRY_DELAY = 2.0
#: The backoff never waits longer than an hour.
DEFAULT_RETRY_MAX_DELAY = 3600.0
#: Seconds a completed task is kept before it is removed (B.10; 0 = forever): a week.
DEFAULT_KEEP_COMPLETED = 604800
#: Seconds a failed or cancelled task is kept: thirty days, long enough to look into it.
DEFAULT_KEEP_FAILED = 2592000
#: Retry delays are spread by up to ±10% so failed tasks do not come back in lock-step.
RETRY_JITTER = 0.10


def compute_dedupe_key(type_name: str, params: Any) -> str:
    """SHA-256 of the type name, a NUL byte and the params as compact JSON in received order.

    This is the exact dedupe key of the API (docs/reference/api.md, Creating tasks),
    byte-compatible with PrismQ.
    """
    body = json.dumps(params, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(f"{type_name}\0{body}".encode()).hexdigest()


def dedupe_lock(scope: DedupeScope, key: str | None) -> str | None:
    """What a new task's ``dedupe_lock`` holds: its key, unless its type never deduplicates."""
    return None if scope == DedupeScope.NONE else key


def releases_dedupe_lock(scope: DedupeScope, status: TaskStatus | str | None) -> bool:
    """True when a change to ``status`` must clear the task's ``dedupe_lock``: an ``active``-
    scoped key blocks new tasks only while its task has not ended."""
    return scope == DedupeScope.ACTIVE and status in TERMINAL_STATUSES


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``min(max_delay, delay * 2**(attempts-1))`` seconds, spread by ±``jitter``."""

    delay: float = DEFAULT_RETRY_DELAY
    max_delay: float = DEFAULT_RETRY_MAX_DELAY
    jitter: float = RETRY_JITTER

    def backoff(self, attempts: int, rng: random.Random) -> float:
        if self.delay <= 0:
            return 0.0
        exponent = max(attempts - 1, 0)
        # Cap the exponent so huge attempt counts cannot overflow a float.
        base = min(self.max_delay, self.delay * float(2 ** min(exponent, 64)))
        spread = base * self.jitter
        return max(0.0, base + rng.uniform(-spread, spread))


class Backoff(Protocol):
    """Seconds a failed attempt waits before its retry, given the type's settings."""

    def __call__(self, policy: TypePolicy, attempts: int, rng: random.Random) -> float: ...


def exponential_backoff(policy: TypePolicy, attempts: int, rng: random.Random) -> float:
    """The default ``Backoff``: ``RetryPolicy`` on the type's ``retry_delay`` and cap."""
    return RetryPolicy(policy.retry_delay, policy.retry_max_delay).backoff(attempts, rng)


@dataclass(frozen=True, slots=True)
class Defaults:
    """Server-wide defaults (section C), used where a task type sets nothing of its own."""

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    claim_timeout: int = DEFAULT_CLAIM_TIMEOUT
    retry_delay: float = DEFAULT_RETRY_DELAY
    retry_max_delay: float = DEFAULT_RETRY_MAX_DELAY
    enable_history: bool = True
    enable_schema_validation: bool = True
    keep_completed_seconds: int = DEFAULT_KEEP_COMPLETED
    keep_failed_seconds: int = DEFAULT_KEEP_FAILED
