"""Signed callbacks (API.md B.5 ``callback_url``): what a delivery carries and when it is tried.

Pure rules, no I/O: the signature of a body, the delivery's headers, the retry schedule, and
what a try comes to (``outcome``). Sending (and refusing non-public addresses) is
``server/webhooks.py``'s, reached through the ``Transport`` the server hands the engine; the
durable outbox is the store's, and the loop that drains it ``engine/deliveries.py`` (ADR 0018).

A receiver verifies a delivery by computing the HMAC-SHA256 of the exact body bytes it received,
keyed with the shared secret, and comparing it in constant time with the
``X-TaskManager-Signature`` header (``sha256=<hex>``); ``docs/guides/callbacks.md`` shows it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from taskmanager.engine.records import Delivery, HistoryEvent, NewEvent
from taskmanager.engine.store import DeliveryOutcome
from taskmanager.engine.wire import iso
from taskmanager.errors import ValidationFailed

SIGNATURE_HEADER = "X-TaskManager-Signature"
DELIVERY_HEADER = "X-TaskManager-Delivery"
#: Tries of one delivery before it is given up (the first included).
MAX_TRIES = 10
#: Seconds before the first retry (the server's ``webhook_retry_delay``); each next one doubles,
#: up to ``MAX_RETRY_DELAY``: 15, 30, 60 s, 2, 4, 8 min, then 15 min thrice — the ten tries span
#: about an hour (3,645 s of waiting).
FIRST_RETRY_DELAY = 15.0
#: Longest wait between two tries.
MAX_RETRY_DELAY = 900.0
#: Seconds one try may take (connect, send, answer).
DELIVERY_TIMEOUT = 10.0


def signature(secret: str, body: bytes) -> str:
    """The ``X-TaskManager-Signature`` value of ``body``: ``sha256=<hex HMAC-SHA256>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def body_of(task: Mapping[str, Any]) -> bytes:
    """The bytes a delivery POSTs: the task object as JSON (compact, UTF-8). Signed as sent."""
    return json.dumps(task, separators=(",", ":"), ensure_ascii=False).encode()


def headers(secret: str, body: bytes, delivery_id: int | str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: signature(secret, body),
        DELIVERY_HEADER: str(delivery_id),
        "User-Agent": "taskmanager-callbacks",
    }


def retry_delay(tries: int, first: float = FIRST_RETRY_DELAY) -> float | None:
    """Seconds to wait after ``tries`` failed tries before the next (``first`` after the first,
    doubling, at most ``MAX_RETRY_DELAY``); None: give up."""
    if tries >= MAX_TRIES:
        return None
    return float(min(first * 2 ** (tries - 1), max(first, MAX_RETRY_DELAY)))


#: Longest error text kept in the outbox and the history.
MAX_ERROR_LENGTH = 500


class Transport(Protocol):
    """How the engine reaches callback URLs (``server/webhooks.py``): the engine imports no HTTP."""

    async def check(self, url: str) -> object:
        """Raise ``ValueError`` (its message: why) for a URL the server will not call."""
        ...

    async def send(self, url: str, body: bytes, headers: Mapping[str, str], seconds: float) -> int:
        """POST ``body`` to ``url`` (checked again) within ``seconds``; the status code. Raises on
        a refused address or a network error."""
        ...


@dataclass(frozen=True, slots=True)
class Webhooks:
    """What callbacks need from the server: the HMAC key (None: ``callback_url`` is refused, and
    no delivery is sent), the transport, and the seconds before a failed try's first retry."""

    secret: str | None
    transport: Transport
    first_retry: float = FIRST_RETRY_DELAY


async def check_callback(webhooks: Webhooks | None, url: str | None) -> None:
    """400 naming ``callback_url`` unless the server signs deliveries (a webhook secret is set)
    and may call ``url`` (http/https, a public address or an allowed network): at create and
    at register (a task takes its type's URL unchecked: it was checked at register)."""
    if url is None:
        return
    if webhooks is None or not webhooks.secret:
        raise ValidationFailed(
            "Validation failed",
            details=["callback_url: this server has no webhook secret (TASKMANAGER_WEBHOOK_SECRET)"],
        )
    try:
        await webhooks.transport.check(url)
    except ValueError as exc:
        raise ValidationFailed("Validation failed", details=[f"callback_url: {exc}"]) from None


def outcome(
    delivery: Delivery,
    status: int | None,
    error: str | None,
    *,
    now: datetime,
    history: bool,
    first_retry: float = FIRST_RETRY_DELAY,
) -> DeliveryOutcome:
    """What try ``delivery.tries`` of ``delivery`` comes to, answered ``status`` (None: no answer)
    or failed with ``error``: a 2xx delivers it (the outbox row is deleted); anything else is
    retried after ``retry_delay(tries, first_retry)`` — or, after the last try, given up (deleted
    too). Each try is a ``callback_delivered`` / ``callback_failed`` event in the task's history
    (unless ``history`` is off)."""
    tries = delivery.tries
    meta: dict[str, Any] = {"delivery": delivery.id, "try": tries}
    if status is not None:
        meta["status_code"] = status
    if status is not None and 200 <= status < 300:
        event = NewEvent(HistoryEvent.CALLBACK_DELIVERED, None, f"Callback delivered (HTTP {status})", meta)
        return DeliveryOutcome(
            delivery.id, delivery.task_id, tries, None, None, event if history else None, now
        )
    reason = (f"HTTP {status}" if status is not None else error or "no answer")[:MAX_ERROR_LENGTH]
    meta["error"] = reason
    delay = retry_delay(tries, first_retry)
    if delay is None:
        meta["gave_up"] = True
        message = f"Callback failed: {reason}; gave up after {tries} tries"
        next_try = None
    else:
        next_try = now + timedelta(seconds=delay)
        meta["next_try_at"] = iso(next_try)
        message = f"Callback failed: {reason}; try {tries} of {MAX_TRIES}, next at {iso(next_try)}"
    event = NewEvent(HistoryEvent.CALLBACK_FAILED, None, message, meta)
    return DeliveryOutcome(
        delivery.id, delivery.task_id, tries, next_try, reason, event if history else None, now
    )


__all__ = [
    "DELIVERY_HEADER",
    "DELIVERY_TIMEOUT",
    "FIRST_RETRY_DELAY",
    "MAX_ERROR_LENGTH",
    "MAX_RETRY_DELAY",
    "MAX_TRIES",
    "SIGNATURE_HEADER",
    "Transport",
    "Webhooks",
    "body_of",
    "headers",
    "outcome",
    "retry_delay",
    "signature",
]
