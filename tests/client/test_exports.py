"""The public names: ``__all__`` lists exactly what ``taskmanager`` and ``taskmanager.client``
export, and each name imports."""

from __future__ import annotations

import importlib
import inspect
import typing

import pytest

import taskmanager
import taskmanager.client
import taskmanager.worker
from taskmanager.client.core import ClientCore
from taskmanager.client.protocol import Call

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
    "taskmanager.worker": {"Cron", "Every", "TaskCancelled", "TaskContext", "Worker"},
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


def _operations() -> list[str]:
    """The core's operations: its public methods that build a ``Call``."""
    return [
        name
        for name, function in inspect.getmembers(ClientCore, inspect.isfunction)
        if not name.startswith("_")
        and typing.get_origin(typing.get_type_hints(function).get("return")) is Call
    ]


@pytest.mark.parametrize("shell", [taskmanager.TaskManagerClient, taskmanager.AsyncTaskManagerClient])
def test_every_operation_of_the_core_is_a_method_of_both_clients(shell: type) -> None:
    """An operation added to ``ClientCore`` (a new route's call) is one line in each shell: this
    names the shell that lacks it."""
    operations = _operations()
    assert len(operations) >= 20
    missing = [name for name in operations if not callable(getattr(shell, name, None))]
    assert not missing, f"{shell.__name__} lacks {missing}"
    for name in operations:
        assert getattr(shell, name).__doc__ == getattr(ClientCore, name).__doc__, name
