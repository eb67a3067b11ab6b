"""Settling an answer, with no I/O: the caller's value, the exception to raise, or a retry.

Retries (exponential backoff with jitter, ``Retry-After`` honoured) happen only where sending the
request again cannot do anything twice:

* no connection was made (refused, connect timeout): any request;
* 429 ``rate_limited``: the server refused the request before doing anything — any request;
* a broken connection (reset, closed before the answer, read timeout), 500, 502, 503 or 504:
  only requests marked ``idempotent`` — reads, creates (every create has a dedupe key), registers,
  heartbeats, progress, and completes and complete-batches sent with their lease tokens (the
  server answers a repeated complete by the same holder with the same token as it answered the
  first, without changing anything: ``engine.lifecycle.is_repeat``). One exception the client
  cannot see: a type registered with ``dedupe: none`` ignores dedupe keys, so a create of it
  sent again after its answer was lost makes a second task (``retries=0`` for such creates).
  A 500 is retried like a 503: the request may or may not have been carried out, which is
  exactly the case these are safe in, and a worker's report lost to one would otherwise make its
  task run again.

Never retried once the request may have reached the server: claims (a claim answered 500, or
whose connection broke, may have claimed: sent again it would claim more, and the first tasks
would wait out their lease — the error goes to the caller, and the worker's loop claims again
after its pause), cancels, retries, deletes and bulk actions (operator actions, seen by a person),
completes without a lease token. Never retried at all: 429 ``queue_full`` and every other 4xx.
"""

from __future__ import annotations

import logging
import random
from typing import Any, TypeVar

from pydantic import ValidationError as PydanticValidationError

from taskmanager.client.config import TaskManagerConfig
from taskmanager.client.errors import (
    TaskManagerAPIError,
    TaskManagerConnectionError,
    TaskManagerQueueFullError,
    TaskManagerRateLimitError,
    error_from_response,
    parse_retry_after,
)
from taskmanager.client.protocol import Call, Done, Outcome, Request, Response, Retry, decode

log = logging.getLogger("taskmanager.client")

T = TypeVar("T")
#: Answers after which an idempotent request is worth another try: a transient server error
#: (500), and what a gateway or the server gives while it restarts or its database is away.
RETRY_STATUSES = frozenset({500, 502, 503, 504})


class Settler:
    """Decodes answers and decides retries under one config's retry policy."""

    def __init__(self, config: TaskManagerConfig, *, rng: random.Random | None = None) -> None:
        self.config = config
        self._rng = rng or random.Random()

    def settle(self, call: Call[T], outcome: Outcome, attempt: int) -> Done[T] | Retry:
        """Decode ``outcome`` of send number ``attempt`` (0-based): a value, a retry, or raise."""
        request = call.request
        error: TaskManagerAPIError | TaskManagerConnectionError
        if isinstance(outcome, TaskManagerConnectionError):
            log.debug("%s %s failed: %s (attempt %d)", request.method, request.path, outcome, attempt + 1)
            error = outcome
        else:
            log.debug(
                "%s %s -> %d in %.1f ms (attempt %d)",
                request.method,
                request.path,
                outcome.status_code,
                outcome.elapsed * 1000,
                attempt + 1,
            )
            body = decode(outcome.content)
            if outcome.status_code == 200 and isinstance(body, dict) and body.get("success") is True:
                return Done(_parse(call, outcome, body.get("data")))
            error = error_from_response(outcome.status_code, body, outcome.headers)
        delay = self.retry_delay(request, error, attempt, outcome)
        if delay is not None:
            log.info("retrying %s %s in %.2f s: %s", request.method, request.path, delay, error)
            return Retry(delay)
        if isinstance(error, TaskManagerAPIError) and call.recover is not None:
            return Done(call.recover(error))
        raise error

    def retry_delay(
        self,
        request: Request,
        error: TaskManagerAPIError | TaskManagerConnectionError,
        attempt: int,
        outcome: Outcome | None = None,
    ) -> float | None:
        """Seconds to wait before sending ``request`` again, or None to give up now."""
        if attempt >= self.config.retry_attempts:
            return None
        backoff = self.config.backoff(attempt, self._rng)
        if isinstance(error, TaskManagerConnectionError):
            return backoff if request.idempotent or not error.request_sent else None
        if isinstance(error, TaskManagerRateLimitError) and not isinstance(error, TaskManagerQueueFullError):
            if error.retry_after is None:
                return backoff
            return error.retry_after if error.retry_after <= self.config.retry_max_delay else None
        if error.status_code in RETRY_STATUSES and request.idempotent:
            headers = outcome.headers if isinstance(outcome, Response) else {}
            asked = parse_retry_after(headers.get("retry-after"))
            if asked is not None and asked > self.config.retry_max_delay:
                return None
            return max(backoff, asked or 0.0)
        return None


def _parse(call: Call[T], response: Response, data: Any) -> T:
    try:
        return call.parse(data)
    except (PydanticValidationError, KeyError, TypeError, AttributeError) as exc:
        raise TaskManagerAPIError(response.status_code, f"Unexpected answer from the server: {exc}") from exc


__all__ = ["RETRY_STATUSES", "Settler"]
