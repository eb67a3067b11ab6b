"""Exceptions the client raises, and how an error response becomes one of them.

The client's exceptions live under the package's one root, :class:`taskmanager.errors.TaskManagerError`,
so ``except TaskManagerError`` catches everything TaskManager raises, in-process or over HTTP. The
server's own classes (``NotFound``, ``LeaseLost``...) are what the engine raises; the client raises
the classes below instead, one per *family* of answers, and keeps the exact wire code in
``error_code``. The embedded (in-process) client raises exactly the same classes, because its
answers are decoded by the same code as HTTP answers.

The tree::

    TaskManagerError                  taskmanager.errors: root of every error of the package
    ├── TaskManagerConnectionError    no answer: refused, reset, timed out (``request_sent`` says
    │                                 whether the request may have reached the server)
    └── TaskManagerAPIError           the server answered with an error (``status_code``,
        │                             ``message``, ``response_data``, ``error_code``, ``details``)
        ├── TaskManagerValidationError    400 invalid_json / validation_failed, 413 payload_too_large
        ├── TaskManagerAuthError          401 unauthorized: missing or wrong API key
        ├── TaskManagerForbiddenError     403 forbidden: a key without the scope, another worker's task
        ├── TaskManagerNotFoundError      404 not_found, no_tasks
        ├── TaskManagerConflictError      409 conflict
        │   └── LeaseLostError            409 lease_lost: the lease was lost or the task cancelled
        ├── TaskManagerRateLimitError     429 rate_limited (``retry_after`` seconds, when known)
        │   └── TaskManagerQueueFullError 429 queue_full: the type's ``max_pending`` is reached
        └── TaskManagerServerError        500 internal, 502/504 from a proxy, other 5xx
            └── TaskManagerUnavailableError  503 unavailable: the database cannot be reached

PrismQ's client names are aliases of the same classes: ``APIError``, ``AuthenticationError``,
``ValidationError``, ``ResourceNotFoundError`` and ``RateLimitError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from taskmanager.errors import TaskManagerError


class TaskManagerConnectionError(TaskManagerError):
    """The server could not be reached, or the connection broke before an answer arrived."""

    code = "connection_error"
    status = 0  # no HTTP answer at all
    default_message = "Could not reach the TaskManager server"

    def __init__(self, message: str | None = None, *, request_sent: bool = True) -> None:
        super().__init__(message)
        #: False when the request certainly never reached the server (so any request may be re-sent).
        self.request_sent = request_sent


class TaskManagerAPIError(TaskManagerError):
    """The server answered with an error envelope (or with something that is not an envelope)."""

    code = "api_error"
    status = 500
    default_message = "TaskManager API error"

    def __init__(
        self, status_code: int, message: str, response_data: Mapping[str, Any] | None = None
    ) -> None:
        body = dict(response_data or {})
        details = body.get("details")
        data = body.get("data")
        error = body.get("error")
        super().__init__(
            message,
            details=[str(d) for d in details] if isinstance(details, list) else None,
            data=data if isinstance(data, dict) else None,
            error=error if isinstance(error, str) else None,
        )
        #: The HTTP status of the answer.
        self.status_code = status_code
        #: The whole decoded error body (empty when the body was not JSON).
        self.response_data = body
        #: The stable code the server sent (``no_tasks``, ``lease_lost``...), else the class's code.
        self.error_code = body["code"] if isinstance(body.get("code"), str) else self.code

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status_code}, {self.message!r}, code={self.error_code!r})"


class TaskManagerValidationError(TaskManagerAPIError):
    code = "validation_failed"
    status = 400


class TaskManagerAuthError(TaskManagerAPIError):
    code = "unauthorized"
    status = 401


class TaskManagerForbiddenError(TaskManagerAPIError):
    code = "forbidden"
    status = 403


class TaskManagerNotFoundError(TaskManagerAPIError):
    code = "not_found"
    status = 404


class TaskManagerConflictError(TaskManagerAPIError):
    code = "conflict"
    status = 409


class LeaseLostError(TaskManagerConflictError):
    """The worker no longer holds the task: its lease expired and it was reclaimed, or it was
    cancelled. Stop working on it; the result would be refused."""

    code = "lease_lost"


class TaskManagerRateLimitError(TaskManagerAPIError):
    code = "rate_limited"
    status = 429

    def __init__(
        self,
        status_code: int,
        message: str,
        response_data: Mapping[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(status_code, message, response_data)
        #: Seconds the server asked the client to wait (``Retry-After``), when it said.
        self.retry_after = retry_after


class TaskManagerQueueFullError(TaskManagerRateLimitError):
    code = "queue_full"


class TaskManagerServerError(TaskManagerAPIError):
    code = "internal"
    status = 500


class TaskManagerUnavailableError(TaskManagerServerError):
    code = "unavailable"
    status = 503


# PrismQ's names for the same classes.
APIError = TaskManagerAPIError
AuthenticationError = TaskManagerAuthError
ValidationError = TaskManagerValidationError
ResourceNotFoundError = TaskManagerNotFoundError
RateLimitError = TaskManagerRateLimitError

_BY_CODE: dict[str, type[TaskManagerAPIError]] = {
    "invalid_json": TaskManagerValidationError,
    "validation_failed": TaskManagerValidationError,
    "payload_too_large": TaskManagerValidationError,
    "unauthorized": TaskManagerAuthError,
    "forbidden": TaskManagerForbiddenError,
    "not_found": TaskManagerNotFoundError,
    "no_tasks": TaskManagerNotFoundError,
    "conflict": TaskManagerConflictError,
    "lease_lost": LeaseLostError,
    "rate_limited": TaskManagerRateLimitError,
    "queue_full": TaskManagerQueueFullError,
    "unavailable": TaskManagerUnavailableError,
    "internal": TaskManagerServerError,
}
_BY_STATUS: dict[int, type[TaskManagerAPIError]] = {
    400: TaskManagerValidationError,
    401: TaskManagerAuthError,
    403: TaskManagerForbiddenError,
    404: TaskManagerNotFoundError,
    409: TaskManagerConflictError,
    413: TaskManagerValidationError,
    429: TaskManagerRateLimitError,
    503: TaskManagerUnavailableError,
}


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds: a number of seconds or an HTTP date (RFC 9110 10.2.3)."""
    if value is None or not value.strip():
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def error_from_response(
    status_code: int, body: Any, headers: Mapping[str, str] | None = None
) -> TaskManagerAPIError:
    """The exception for an error answer: by the envelope's ``code``, else by HTTP status."""
    envelope: dict[str, Any] = body if isinstance(body, dict) else {}
    code = envelope.get("code")
    cls = _BY_CODE.get(code) if isinstance(code, str) else None
    if cls is None:
        cls = _BY_STATUS.get(status_code)
    if cls is None:
        cls = TaskManagerServerError if status_code >= 500 else TaskManagerAPIError
    message = envelope.get("message") or envelope.get("error")
    if not isinstance(message, str) or not message:
        message = f"HTTP {status_code} from the TaskManager server"
    if issubclass(cls, TaskManagerRateLimitError):
        header = (headers or {}).get("retry-after")
        retry_after = parse_retry_after(header)
        if retry_after is None and isinstance(envelope.get("retry_after"), int | float):
            retry_after = float(envelope["retry_after"])
        return cls(status_code, message, envelope, retry_after=retry_after)
    return cls(status_code, message, envelope)


__all__ = [
    "APIError",
    "AuthenticationError",
    "LeaseLostError",
    "RateLimitError",
    "ResourceNotFoundError",
    "TaskManagerAPIError",
    "TaskManagerAuthError",
    "TaskManagerConflictError",
    "TaskManagerConnectionError",
    "TaskManagerError",
    "TaskManagerForbiddenError",
    "TaskManagerNotFoundError",
    "TaskManagerQueueFullError",
    "TaskManagerRateLimitError",
    "TaskManagerServerError",
    "TaskManagerUnavailableError",
    "TaskManagerValidationError",
    "ValidationError",
    "error_from_response",
    "parse_retry_after",
]
