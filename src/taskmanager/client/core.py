"""The client's core, with no I/O: every API operation as a ``Call``, and how answers settle.

``ClientCore`` builds each request (path, JSON body, whether it is safe to repeat) and knows how
to read its answer: the task-type and task calls are here, the worker's calls in ``work``, and
the decoding of answers and the retry policy in ``settle``. ``TaskManagerClient`` and
``AsyncTaskManagerClient`` are thin loops around it, and the HTTP and embedded transports only
carry its requests.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote

from taskmanager.client.config import TaskManagerConfig
from taskmanager.client.models import (
    BatchResult,
    BulkResult,
    CreatedTask,
    Health,
    Schedule,
    Stats,
    Task,
    TaskEvent,
    TaskPage,
    TaskType,
    WaitedTask,
    Worker,
)
from taskmanager.client.paging import TaskPager
from taskmanager.client.protocol import Call, Leases, Request, fields, get, post
from taskmanager.client.settle import Settler
from taskmanager.client.waiting import TaskWaiter
from taskmanager.client.work import WorkCalls


def _type_path(name: str) -> str:
    return f"/task-types/{quote(name, safe='')}"


def _schedule_path(name: str) -> str:
    return f"/schedules/{quote(name, safe='')}"


def _task_page(data: Any) -> TaskPage:
    # ``items`` repeats ``tasks`` (PrismQ's front end reads either): parse the tasks once.
    return TaskPage.model_validate({key: value for key, value in data.items() if key != "items"})


class ClientCore(Settler, WorkCalls):
    """Builds every call and settles every answer; one per client, shared by nothing else."""

    def __init__(self, config: TaskManagerConfig, *, rng: random.Random | None = None) -> None:
        super().__init__(config, rng=rng)
        self.leases = Leases()

    def headers(self) -> dict[str, str]:
        """Headers of every HTTP request."""
        headers = {"Accept": "application/json", "User-Agent": "taskmanager-python-client"}
        if self.config.api_key:
            headers["X-API-Key"] = self.config.api_key
        return {**headers, **self.config.headers}

    # -- health and task types ------------------------------------------------------------------

    def health_check(self) -> Call[Health]:
        """The server's health: ``status``, ``database``, ``version``."""
        return get("/health", Health.model_validate)

    def register_task_type(
        self,
        /,
        name: str,
        version: str,
        param_schema: Mapping[str, Any] | str,
        *,
        max_attempts: int | None = None,
        claim_timeout: int | None = None,
        retry_delay: float | None = None,
        retry_max_delay: float | None = None,
        dedupe: Literal["all", "active", "none"] | None = None,
        max_pending: int | None = None,
        description: str | None = None,
        max_running: int | None = None,
        keep_completed_seconds: int | None = None,
        keep_failed_seconds: int | None = None,
        callback_url: str | None = None,
        **extra: Any,
    ) -> Call[TaskType]:
        """Register a task type, or replace the version, schema and given settings of one."""
        body = fields(
            name=name,
            version=version,
            param_schema=param_schema,
            max_attempts=max_attempts,
            claim_timeout=claim_timeout,
            retry_delay=retry_delay,
            retry_max_delay=retry_max_delay,
            dedupe=dedupe,
            max_pending=max_pending,
            description=description,
            max_running=max_running,
            keep_completed_seconds=keep_completed_seconds,
            keep_failed_seconds=keep_failed_seconds,
            callback_url=callback_url,
            **extra,
        )
        return post("/task-types/register", body, TaskType.model_validate, idempotent=True)

    def get_task_type(self, name: str) -> Call[TaskType]:
        """One task type by name."""
        return get(_type_path(name), TaskType.model_validate)

    def list_task_types(self, active_only: bool = False) -> Call[list[TaskType]]:
        """Every task type, sorted by name (``active_only``: leave out deactivated ones)."""
        return get(
            "/task-types",
            lambda data: [TaskType.model_validate(item) for item in data["task_types"]],
            active_only="true" if active_only else None,
        )

    def deactivate_task_type(self, name: str) -> Call[TaskType]:
        """Pause a type: its tasks stay but are not claimed until it is registered again."""
        return Call(Request("DELETE", _type_path(name), idempotent=True), TaskType.model_validate)

    # -- creating and reading tasks -------------------------------------------------------------

    def create_task(
        self,
        /,
        task_type: str,
        params: Mapping[str, Any] | None = None,
        priority: int = 0,
        *,
        dedupe_key: str | None = None,
        max_attempts: int | None = None,
        run_at: datetime | str | None = None,
        delay_seconds: float | None = None,
        expires_at: datetime | str | None = None,
        ttl_seconds: float | None = None,
        assigned_to: str | None = None,
        depends_on: Iterable[int] | None = None,
        callback_url: str | None = None,
        **extra: Any,
    ) -> Call[CreatedTask]:
        """Create a task, or get the existing one with the same dedupe key (``duplicate`` True).

        ``depends_on``: ids of tasks that must complete first (it is ``blocked`` until then, and
        cancelled if one of them fails or is cancelled).

        The clients' ``create_task`` also takes ``wait=True`` (and ``wait_timeout``, seconds;
        None: no limit): then it returns the task once it has ended (``wait_for``)."""
        body = fields(
            type=task_type,
            params={} if params is None else params,
            priority=priority,
            dedupe_key=dedupe_key,
            max_attempts=max_attempts,
            run_at=run_at,
            delay_seconds=delay_seconds,
            expires_at=expires_at,
            ttl_seconds=ttl_seconds,
            assigned_to=assigned_to,
            depends_on=None if depends_on is None else [int(task_id) for task_id in depends_on],
            callback_url=callback_url,
            **extra,
        )
        # Every create has a dedupe key (the server computes one when none is given), so a create
        # sent again returns the task the first one made: safe to retry.
        return post("/tasks", body, CreatedTask.model_validate, idempotent=True)

    def create_tasks(self, batch: Iterable[Mapping[str, Any]]) -> Call[BatchResult]:
        """Create up to 1000 tasks (``{"type", "params", ...}`` each); each succeeds or fails alone."""
        body = {"tasks": list(batch)}
        return post("/tasks/batch", body, BatchResult.model_validate, idempotent=True)

    def get_task(self, task_id: int) -> Call[Task]:
        """One task."""
        return get(f"/tasks/{int(task_id)}", Task.model_validate)

    def wait_task(self, task_id: int, timeout: float = 30) -> Call[WaitedTask]:
        """The task once it has ended, or as it is after ``timeout`` seconds (0-60), one request:
        ``done`` says which. ``wait_for`` repeats it for longer waits."""
        seconds = float(timeout)
        path, query = f"/tasks/{int(task_id)}/wait", (("timeout", f"{seconds:g}"),)
        request = Request("GET", path, query, idempotent=True, timeout=self.config.timeout + seconds)
        return Call(request, WaitedTask.model_validate)

    def task_waiter(self, task_id: int, timeout: float | None, now: float) -> TaskWaiter:
        """The waits of ``wait_for``: ``GET /tasks/{id}/wait`` until the task has ended or
        ``timeout`` seconds (None: no limit) from ``now`` (a monotonic clock) have passed."""
        return TaskWaiter(lambda seconds: self.wait_task(task_id, seconds), timeout, now)

    def get_task_history(self, task_id: int) -> Call[list[TaskEvent]]:
        """A task's history events, oldest first."""
        return get(
            f"/tasks/{int(task_id)}/history",
            lambda data: [TaskEvent.model_validate(item) for item in data["events"]],
        )

    def list_tasks_page(
        self,
        status: str | Sequence[str] | None = None,
        task_type: str | None = None,
        worker_id: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Call[TaskPage]:
        """One page of tasks, newest first. ``status``: one or several; ``task_type`` with ``%``
        is a LIKE pattern."""
        statuses = status if status is None or isinstance(status, str) else ",".join(status)
        return get(
            "/tasks",
            _task_page,
            status=statuses,
            type=task_type,
            worker_id=worker_id,
            limit=limit,
            offset=offset,
        )

    def task_pager(
        self,
        status: str | Sequence[str] | None = None,
        task_type: str | None = None,
        worker_id: str | None = None,
        *,
        page_size: int = 100,
        limit: int | None = None,
        offset: int = 0,
    ) -> TaskPager:
        """The pages of one listing, fetched one at a time by whoever iterates."""
        return TaskPager(
            lambda at, size: self.list_tasks_page(status, task_type, worker_id, size, at),
            page_size=page_size,
            limit=limit,
            offset=offset,
        )

    # -- operator actions -----------------------------------------------------------------------

    def cancel_task(self, task_id: int, reason: str | None = None) -> Call[Task]:
        """Cancel a pending or claimed task (its worker learns it on its next heartbeat)."""
        return post(f"/tasks/{int(task_id)}/cancel", fields(reason=reason), Task.model_validate)

    def retry_task(self, task_id: int) -> Call[Task]:
        """Send a failed or cancelled task back to pending, its attempts reset."""
        return post(f"/tasks/{int(task_id)}/retry", {}, Task.model_validate)

    def bulk(
        self,
        action: Literal["cancel", "retry", "delete"],
        *,
        ids: Sequence[int] | None = None,
        type: str | None = None,
        status: str | None = None,
        created_before: datetime | str | None = None,
    ) -> Call[BulkResult]:
        """Cancel, retry or delete (admin) every task matching all the filters given (at least
        one); the server works through them in batches. ``matched`` and ``changed`` counts."""
        before = created_before.isoformat() if isinstance(created_before, datetime) else created_before
        body = {
            "action": action,
            "filter": fields(
                ids=None if ids is None else [int(i) for i in ids],
                type=type,
                status=status,
                created_before=before,
            ),
        }
        return post("/tasks/bulk", body, BulkResult.model_validate)

    def delete_task(self, task_id: int) -> Call[bool]:
        """Remove a task and its history (needs an admin key)."""
        return Call(Request("DELETE", f"/tasks/{int(task_id)}"), lambda data: bool(data["deleted"]))

    # -- schedules (API.md B.8) -----------------------------------------------------------------

    def save_schedule(
        self,
        /,
        name: str,
        task_type: str,
        *,
        cron: str | None = None,
        interval_seconds: int | None = None,
        params: Mapping[str, Any] | None = None,
        priority: int = 0,
        timezone: str = "UTC",
        enabled: bool = True,
        **extra: Any,
    ) -> Call[Schedule]:
        """Create or update (by ``name``) a schedule creating a ``task_type`` task at each tick of
        ``cron`` (5 fields, in ``timezone``) or every ``interval_seconds``; ``created`` says which."""
        body = fields(
            name=name,
            type=task_type,
            cron=cron,
            interval_seconds=interval_seconds,
            params={} if params is None else params,
            priority=priority,
            timezone=timezone,
            enabled=enabled,
            **extra,
        )
        return post("/schedules", body, Schedule.model_validate, idempotent=True)

    def list_schedules(self) -> Call[list[Schedule]]:
        """Every schedule, by name."""
        return get("/schedules", lambda data: [Schedule.model_validate(item) for item in data["schedules"]])

    def get_schedule(self, name: str) -> Call[Schedule]:
        """One schedule by name."""
        return get(_schedule_path(name), Schedule.model_validate)

    def delete_schedule(self, name: str) -> Call[bool]:
        """Delete a schedule (the tasks it created stay)."""
        return Call(Request("DELETE", _schedule_path(name)), lambda data: bool(data["deleted"]))

    # -- observing ------------------------------------------------------------------------------

    def stats(self) -> Call[Stats]:
        """Counts per status and type, oldest pending ages, the last hour's throughput."""
        return get("/stats", Stats.model_validate)

    def workers(self) -> Call[list[Worker]]:
        """Every worker seen in the last 24 hours."""
        return get("/workers", lambda data: [Worker.model_validate(item) for item in data["workers"]])


__all__ = ["ClientCore"]
