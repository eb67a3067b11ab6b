"""TaskService: every lifecycle rule of TaskManager, behind one object.

It takes parsed wire models (``taskmanager.models``), talks to a ``Store`` and returns ``Reply``
objects holding the envelope message and the ``data`` of API.md. It imports no web framework and
no SQL; time comes from the injected clock and randomness (retry jitter) from the injected RNG.
The worker-facing operations live in ``engine/work.py`` and the shared transition machinery in
``engine/transitions.py``; this module holds task types, creating, reading and operator actions.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

from taskmanager import models
from taskmanager.engine import lifecycle
from taskmanager.engine.policy import compute_dedupe_key
from taskmanager.engine.queries import MAX_LIST_LIMIT, statuses, when
from taskmanager.engine.records import DedupeScope, NewEvent, Task, TaskType, TypePolicy
from taskmanager.engine.records import HistoryEvent as Ev
from taskmanager.engine.replies import (
    TASK_NOT_FOUND,
    TYPE_NOT_FOUND,
    Reply,
    batch_bucket,
    batch_entry,
    created_reply,
)
from taskmanager.engine.schema import PATTERN_TIME_BUDGET, check_param_schema
from taskmanager.engine.store import InsertOutcome, InsertResult, InsertTask, SaveType, TaskQuery
from taskmanager.engine.wire import event_data, task_data, type_data
from taskmanager.engine.work import WorkerOperations
from taskmanager.errors import NotFound, TaskManagerError, Unavailable, ValidationFailed


def _params_json(params: Any) -> str:
    return json.dumps(params, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


class TaskService(WorkerOperations):
    """The lifecycle engine. One per process; safe to share between concurrent requests."""

    async def health(self) -> Reply:
        try:
            await self.store.ping()
        except Unavailable as exc:
            raise Unavailable(
                "Database unavailable", data={"status": "unhealthy", "database": "disconnected"}
            ) from exc
        now = int(self.clock.now().timestamp())
        return Reply(
            "Service is healthy",
            {
                "status": "healthy",
                "database": "connected",
                "version": self.version,
                "timestamp": now,
            },
        )

    def _type_settings(self, body: models.TypeSettings, existing: TaskType | None) -> dict[str, Any]:
        """The settings to store: only those the request names.

        A setting the type never set is stored as NULL and read through the server's default at
        query time, so the defaults of section C hold live for every type that does not set its
        own. Sending ``null`` returns a setting to the server default (``dedupe`` to ``"all"``).
        """
        given = body.model_dump(include=body.model_fields_set & set(models.TypeSettings.model_fields))
        if given.get("dedupe", "") is None or (existing is None and "dedupe" not in given):
            given["dedupe"] = DedupeScope.ALL.value
        return given

    async def register_type(self, body: models.RegisterTaskType) -> Reply:
        schema = body.schema_object()
        check_param_schema(schema)
        existing = await self.store.get_type(body.name)
        settings = self._type_settings(body, existing)
        saved, created = await self.store.save_type(
            SaveType(body.name, body.version, schema, settings, self.clock.now())
        )
        data = type_data(saved)
        if created:
            return Reply("Task type registered successfully", {**data, "created": True})
        return Reply("Task type updated successfully", {**data, "updated": True})

    async def _type(self, name: str) -> TaskType:
        found = await self.store.get_type(name)
        if found is None:
            raise NotFound(TYPE_NOT_FOUND)
        return found

    async def get_type(self, name: str) -> Reply:
        return Reply("Task type retrieved successfully", type_data(await self._type(name)))

    async def list_types(self, active_only: bool = False) -> Reply:
        items = [type_data(t) for t in await self.store.list_types(active_only)]
        return Reply(
            "Task types retrieved successfully",
            {"task_types": items, "items": items, "count": len(items)},
        )

    async def deactivate_type(self, name: str) -> Reply:
        found = await self.store.set_type_active(name, False, self.clock.now())
        if found is None:
            raise NotFound(TYPE_NOT_FOUND)
        return Reply("Task type deactivated", type_data(found))

    async def _prepare(
        self,
        body: models.CreateTask,
        now: datetime,
        types: dict[str, TaskType] | None = None,
        deadline: float | None = None,
    ) -> InsertTask:
        """The insert for one create; ``types`` caches the task types read so far (a batch), and
        ``deadline`` bounds the time schema patterns may take (one budget for a whole batch)."""
        models.refuse_unsupported(body, "depends_on", "callback_url")
        task_type = types.get(body.type) if types is not None else None
        if task_type is None:
            task_type = await self._type(body.type)
            if types is not None:
                types[body.type] = task_type
        if not task_type.is_active:
            raise ValidationFailed("Task type is not active")
        if task_type.dedupe == DedupeScope.ACTIVE or task_type.max_pending is not None:
            await self._settle()  # an expired task must neither block its key nor fill the queue
        try:
            params_json = _params_json(body.params)
        except ValueError:
            raise ValidationFailed(
                "Validation failed", details=["params: NaN and Infinity are not JSON"]
            ) from None
        if self.defaults.enable_schema_validation:
            problems = self._validator.problems(
                task_type.id, task_type.updated_at, task_type.param_schema, body.params, deadline=deadline
            )
            if problems:
                raise ValidationFailed(
                    "Parameter validation failed: " + "; ".join(problems), details=problems
                )
        return InsertTask(
            type_id=task_type.id,
            params=body.params,
            params_json=params_json,
            priority=body.priority,
            max_attempts=body.max_attempts or task_type.max_attempts,
            dedupe_key=body.dedupe_key or compute_dedupe_key(task_type.name, body.params),
            dedupe_scope=task_type.dedupe,
            max_pending=task_type.max_pending,
            run_after=when(body.run_at, body.delay_seconds, now, "run_at", "delay_seconds"),
            expires_at=when(body.expires_at, body.ttl_seconds, now, "expires_at", "ttl_seconds"),
            assigned_to=body.assigned_to,
            type_name=task_type.name,
            policy=TypePolicy(
                task_type.claim_timeout,
                task_type.retry_delay,
                task_type.retry_max_delay,
                task_type.dedupe,
            ),
            now=now,
            event=self._event(NewEvent(Ev.CREATED)),
        )

    async def create_task(self, body: models.CreateTask) -> Reply:
        item = await self._prepare(body, self.clock.now())
        (result,) = await self.store.insert_tasks([item])
        if result.outcome == InsertOutcome.CREATED:
            self.signal.notify()
        return created_reply(await self._current(result), body.type)

    async def _current(self, result: InsertResult) -> InsertResult:
        """A duplicate as it reads now (A.6 "its current status"): a passed deadline is settled."""
        task = result.task
        if result.outcome != InsertOutcome.DUPLICATE or task is None:
            return result
        if lifecycle.settle(task, now=self.clock.now()) is None:
            return result
        return InsertResult(result.outcome, await self._task(task.id))

    async def create_tasks(self, body: models.CreateTasksBatch) -> Reply:
        now = self.clock.now()
        deadline = time.monotonic() + PATTERN_TIME_BUDGET  # one budget for the whole batch
        prepared: list[tuple[int, InsertTask | str]] = []
        types: dict[str, TaskType] = {}
        for index, raw in enumerate(body.tasks):
            try:
                parsed = models.parse_body(models.CreateTask, raw)
                prepared.append((index, await self._prepare(parsed, now, types, deadline)))
            except TaskManagerError as exc:
                detail = "; ".join(exc.details) if exc.details else None
                # "Parameter validation failed: ..." already lists its details: do not repeat them.
                known = detail is None or exc.message.endswith(detail)
                prepared.append((index, exc.message if known else f"{exc.message}: {detail}"))
        valid = [item for _, item in prepared if isinstance(item, InsertTask)]
        inserted = iter(await self.store.insert_tasks(valid) if valid else [])
        results: list[dict[str, Any]] = []
        counts = {"created": 0, "duplicates": 0, "failed": 0}
        for index, item in prepared:
            outcome = item if isinstance(item, str) else await self._current(next(inserted))
            entry = batch_entry(index, outcome)
            counts[batch_bucket(entry)] += 1
            results.append(entry)
        if counts["created"]:
            self.signal.notify()
        message = f"{counts['created']} created, {counts['duplicates']} duplicates, {counts['failed']} failed"
        return Reply(message, {"results": results, **counts})

    async def _task(self, task_id: int) -> Task:
        task = await self.store.get_task(task_id)
        if task is None:
            raise NotFound(TASK_NOT_FOUND)
        if lifecycle.settle(task, now=self.clock.now()) is None:
            return task
        return await self._transition(task_id, lambda _t: None, self.clock.now())

    async def get_task(self, task_id: int) -> Reply:
        return Reply("Task retrieved successfully", task_data(await self._task(task_id)))

    async def list_tasks(
        self,
        *,
        status: str | None = None,
        type: str | None = None,
        worker_id: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Reply:
        wanted = statuses(status)
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise ValidationFailed("Validation failed", details=[f"limit: must be 1-{MAX_LIST_LIMIT}"])
        if offset < 0:
            raise ValidationFailed("Validation failed", details=["offset: must be 0 or more"])
        await self._settle()
        like = type if type is not None and "%" in type else None
        query = TaskQuery(wanted, None if like else type, like, worker_id, limit, offset)
        found = await self.store.list_tasks(query)
        items = [task_data(t) for t in found.tasks]
        return Reply(
            "Tasks retrieved successfully",
            {
                "tasks": items,
                "items": items,
                "count": len(items),
                "total": found.total,
                "limit": limit,
                "offset": offset,
            },
        )

    async def history(self, task_id: int) -> Reply:
        await self._task(task_id)
        events = [event_data(e) for e in await self.store.list_events(task_id)]
        return Reply("Task history retrieved successfully", {"events": events, "count": len(events)})

    async def cancel(self, task_id: int, body: models.CancelTask) -> Reply:
        now = self.clock.now()
        task = await self._transition(
            task_id, lambda t: lifecycle.cancel(t, reason=body.reason, now=now), now
        )
        return Reply("Task cancelled", task_data(task))

    async def retry(self, task_id: int) -> Reply:
        now = self.clock.now()
        task = await self._transition(task_id, lambda t: lifecycle.retry(t, now=now), now)
        return Reply("Task queued for retry", task_data(task))

    async def delete(self, task_id: int) -> Reply:
        if not await self.store.delete_task(task_id):
            raise NotFound(TASK_NOT_FOUND)
        return Reply("Task deleted", {"id": task_id, "deleted": True})


__all__ = ["Reply", "TaskService"]
