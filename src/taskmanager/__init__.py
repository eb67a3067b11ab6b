"""TaskManager: a self-hosted HTTP work queue, compatible with the PrismQ TaskManager API.

The Python client and the worker runtime are importable from here::

    from taskmanager import TaskManagerClient, AsyncTaskManagerClient, Worker, TaskContext
"""

from importlib.metadata import PackageNotFoundError, version

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

try:
    __version__ = version("taskmanager")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

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
