"""The worker runtime: ``Worker`` runs task handlers (``@worker.task``) on claimed tasks, with
heartbeats, time limits, failure reports and graceful shutdown; ``TaskContext`` is what a handler
is given."""

from taskmanager.worker.app import Worker
from taskmanager.worker.context import TaskCancelled, TaskContext

__all__ = ["TaskCancelled", "TaskContext", "Worker"]
