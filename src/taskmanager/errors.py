"""Errors of TaskManager: one root, a stable ``code`` on each, and the HTTP status table.

The tree::

    TaskManagerError                 root of every error this package raises
    ├── InvalidJSON                  400 invalid_json       body is empty or not JSON
    ├── ValidationFailed             400 validation_failed  input breaks a rule (``details`` per field)
    ├── Unauthorized                 401 unauthorized       missing or wrong API key
    ├── Forbidden                    403 forbidden          a key without the scope, another worker's task
    ├── NotFound                     404 not_found          unknown task, task type or route
    ├── NoTasks                      404 no_tasks           nothing claimable
    ├── Conflict                     409 conflict           state does not allow the change
    ├── LeaseLost                    409 lease_lost         the worker's lease is no longer current
    ├── PayloadTooLarge              413 payload_too_large  body over the size limit
    ├── RateLimited                  429 rate_limited       too many requests
    ├── QueueFull                    429 queue_full         a type's ``max_pending`` is reached
    ├── Unavailable                  503 unavailable        the database cannot be reached
    └── InternalError                500 internal           anything unexpected (never leaks internals)

The engine raises these; the server turns them into the error envelope (docs/reference/api.md,
Conventions) and the client raises its own subclasses, so ``code`` and ``status`` mean the same
on both sides. The PrismQ importer's errors (``taskmanager.prismq.errors``: ``PrismqImportError``,
``ImportRefused``, ``IdsTaken``) are under the same root; they stop a command, not a request.
"""

from __future__ import annotations

from typing import ClassVar


class TaskManagerError(Exception):
    """Root of every TaskManager error. ``message`` is the text sent to clients."""

    code: ClassVar[str] = "internal"
    status: ClassVar[int] = 500
    default_message: ClassVar[str] = "Internal server error"

    def __init__(
        self,
        message: str | None = None,
        *,
        details: list[str] | None = None,
        data: dict[str, object] | None = None,
        error: str | None = None,
        extra: dict[str, object] | None = None,
    ) -> None:
        self.message = message or self.default_message
        #: The envelope's ``error`` text; the same as ``message`` unless a route says otherwise.
        self.error = error or self.message
        self.details = details
        self.data = data
        #: More top-level fields of the error body (``retry_after``, ``limit``, ``window`` of a 429).
        self.extra = extra
        super().__init__(self.message)


class InvalidJSON(TaskManagerError):
    code = "invalid_json"
    status = 400
    default_message = "Invalid JSON in request body"


class ValidationFailed(TaskManagerError):
    code = "validation_failed"
    status = 400
    default_message = "Validation failed"


class Unauthorized(TaskManagerError):
    code = "unauthorized"
    status = 401
    default_message = "Unauthorized"


class Forbidden(TaskManagerError):
    code = "forbidden"
    status = 403
    default_message = "Insufficient permissions"


class NotFound(TaskManagerError):
    code = "not_found"
    status = 404
    default_message = "Not found"


class NoTasks(TaskManagerError):
    code = "no_tasks"
    status = 404
    default_message = "No available tasks"


class Conflict(TaskManagerError):
    code = "conflict"
    status = 409
    default_message = "Conflict"


class LeaseLost(TaskManagerError):
    code = "lease_lost"
    status = 409
    default_message = "Lease lost"


class PayloadTooLarge(TaskManagerError):
    code = "payload_too_large"
    status = 413
    default_message = "Request body too large"


class RateLimited(TaskManagerError):
    code = "rate_limited"
    status = 429
    default_message = "Too Many Requests"


class QueueFull(TaskManagerError):
    code = "queue_full"
    status = 429
    default_message = "Queue is full"


class Unavailable(TaskManagerError):
    code = "unavailable"
    status = 503
    default_message = "Service unavailable"


class InternalError(TaskManagerError):
    code = "internal"
    status = 500
    default_message = "Internal server error"


ERROR_CLASSES: tuple[type[TaskManagerError], ...] = (
    InvalidJSON,
    ValidationFailed,
    Unauthorized,
    Forbidden,
    NotFound,
    NoTasks,
    Conflict,
    LeaseLost,
    PayloadTooLarge,
    RateLimited,
    QueueFull,
    Unavailable,
    InternalError,
)

#: Every stable error code and the HTTP status it is sent with.
STATUS_BY_CODE: dict[str, int] = {cls.code: cls.status for cls in ERROR_CLASSES}
