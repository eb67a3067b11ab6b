"""TaskManager: a self-hosted HTTP work queue, compatible with the PrismQ TaskManager API.

The Python client and the worker runtime are importable from here::

    from taskmanager import TaskManagerClient, AsyncTaskManagerClient, Worker, TaskContext
"""

from taskmanager._version import __version__
from taskmanager.client import (
    APIError,
    AsyncTaskManagerClient,
    AuthenticationError,
    LeaseLostError,
    RateLimitError,
    ResourceNotFoundError,
    Task,
    TaskManagerAPIError,
    TaskManagerAuthError,
    TaskManagerClient,
    TaskManagerConfig,
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
    TaskType,
    ValidationError,
)
from taskmanager.worker import TaskCancelled, TaskContext, Worker

__all__ = [
    "APIError",
    "AsyncTaskManagerClient",
    "AuthenticationError",
    "LeaseLostError",
    "RateLimitError",
    "ResourceNotFoundError",
    "Task",
    "TaskCancelled",
    "TaskContext",
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
    "TaskType",
    "ValidationError",
    "Worker",
    "__version__",
]
