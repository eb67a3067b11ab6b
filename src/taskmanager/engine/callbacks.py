"""Signed callbacks (API.md B.5 ``callback_url``): what a delivery carries and when it is tried.

Pure rules, no I/O: the signature of a body, the delivery's headers, and the retry schedule.
Sending (and refusing non-public addresses) is ``server/webhooks.py``'s; the durable outbox is
the store's, not built yet (ADR 0018).

A receiver verifies a delivery by computing the HMAC-SHA256 of the exact body bytes it received,
keyed with the shared secret, and comparing it in constant time with the
``X-TaskManager-Signature`` header (``sha256=<hex>``); ``docs/guides/callbacks.md`` shows it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

SIGNATURE_HEADER = "X-TaskManager-Signature"
DELIVERY_HEADER = "X-TaskManager-Delivery"
#: Tries of one delivery before it is given up (the first included).
MAX_TRIES = 10
#: Seconds before each retry: after try n (1-based) the next waits RETRY_DELAYS[n - 1]. Doubling
#: from 15 s, capped at 15 min: the ten tries span about an hour (3,645 s of waiting).
RETRY_DELAYS = (15, 30, 60, 120, 240, 480, 900, 900, 900)
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


def retry_delay(tries: int) -> float | None:
    """Seconds to wait after ``tries`` failed tries before the next; None: give up."""
    if tries >= MAX_TRIES:
        return None
    return float(RETRY_DELAYS[min(tries, len(RETRY_DELAYS)) - 1])


__all__ = [
    "DELIVERY_HEADER",
    "DELIVERY_TIMEOUT",
    "MAX_TRIES",
    "RETRY_DELAYS",
    "SIGNATURE_HEADER",
    "body_of",
    "headers",
    "retry_delay",
    "signature",
]
