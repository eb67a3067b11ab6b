"""The worker runtime: ``Worker`` runs task handlers (``@worker.task``) on claimed tasks, with
heartbeats, time limits, failure reports and graceful shutdown; ``TaskContext`` is what a handler
is given; ``Cron`` and ``Every`` declare a schedule beside a handler."""

from taskmanager.worker.app import Worker
from taskmanager.worker.context import TaskCancelled, TaskContext
from taskmanager.worker.schedule import Cron, Every

__all__ = ["Cron", "Every", "TaskCancelled", "TaskContext", "Worker"]
