"""The public names: ``__all__`` lists exactly what ``taskmanager`` and ``taskmanager.client``
export, and each name imports."""

from __future__ import annotations

import importlib

import pytest

import taskmanager
import taskmanager.client
import taskmanager.worker

PUBLIC = {
    "taskmanager": {
        "__version__",
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
    },
    "taskmanager.worker": {"TaskCancelled", "TaskContext", "Worker"},
}


@pytest.mark.parametrize("module_name", sorted(PUBLIC))
def test_all_is_explicit(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert set(module.__all__) == PUBLIC[module_name]
    assert len(module.__all__) == len(set(module.__all__))
    for name in module.__all__:
        assert getattr(module, name) is not None


def test_the_client_package_exports_the_top_level_client_names() -> None:
    client_names = set(taskmanager.client.__all__)
    assert PUBLIC["taskmanager"] - {"__version__", "TaskCancelled", "TaskContext", "Worker"} <= client_names
    for name in taskmanager.client.__all__:
        assert getattr(taskmanager.client, name) is not None
    assert taskmanager.TaskManagerClient is taskmanager.client.TaskManagerClient
    assert taskmanager.Worker is taskmanager.worker.Worker


def test_the_version_is_kept() -> None:
    assert isinstance(taskmanager.__version__, str)
    assert taskmanager.__version__.count(".") >= 2
