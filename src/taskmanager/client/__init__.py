"""The Python client of TaskManager: ``TaskManagerClient`` (blocking) and
``AsyncTaskManagerClient`` (asyncio), over HTTP or, given a database URL, in-process.

Both are thin shells over one sans-I/O core (``core``, ``work``, ``settle``): it builds every
request, decodes every answer, maps errors (see ``errors``) and decides retries.
"""

from taskmanager.client.async_ import AsyncTaskManagerClient
from taskmanager.client.config import TaskManagerConfig
from taskmanager.client.errors import (
    APIError,
    AuthenticationError,
    LeaseLostError,
    RateLimitError,
    ResourceNotFoundError,
    TaskManagerAPIError,
    TaskManagerAuthError,
    TaskManagerConflictError,
    TaskManagerConnectionError,
    TaskManagerError,
    TaskManagerForbiddenError,
    TaskManagerNotFoundError,
    TaskManagerQueueFullError,
    TaskManagerRateLimitError,
    TaskManagerServerError,
    TaskManagerUnavailableError,
    TaskManagerValidationError,
    ValidationError,
)
from taskmanager.client.models import (
    BatchCompletion,
    BatchItem,
    BatchResult,
    BulkResult,
    Completion,
    CreatedTask,
    Health,
    HeartbeatResult,
    ProgressUpdate,
    Task,
    TaskEvent,
    TaskPage,
    TaskType,
)
from taskmanager.client.sync import TaskManagerClient

__all__ = [
    "APIError",
    "AsyncTaskManagerClient",
    "AuthenticationError",
    "BatchCompletion",
    "BatchItem",
    "BatchResult",
    "BulkResult",
    "Completion",
    "CreatedTask",
    "Health",
    "HeartbeatResult",
    "LeaseLostError",
    "ProgressUpdate",
    "RateLimitError",
    "ResourceNotFoundError",
    "Task",
    "TaskEvent",
    "TaskManagerAPIError",
    "TaskManagerAuthError",
    "TaskManagerClient",
    "TaskManagerConfig",
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
    "TaskPage",
    "TaskType",
    "ValidationError",
]
