"""TaskService: every lifecycle rule of TaskManager, behind one object.

It takes parsed wire models (``taskmanager.models``), talks to a ``Store`` and returns ``Reply``
objects holding the envelope message and the ``data`` of API.md. It imports no web framework and
no SQL; time comes from the injected clock and randomness (retry jitter) from the injected RNG.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from taskmanager import models
from taskmanager.engine import lifecycle
from taskmanager.engine.clock import Clock, SystemClock
from taskmanager.engine.policy import Defaults, compute_dedupe_key
from taskmanager.engine.records import (
    TERMINAL_STATUSES,
    DedupeScope,
    NewEvent,
    Task,
    TaskStatus,
    TaskType,
    TypePolicy,
)
from taskmanager.engine.records import HistoryEvent as Ev
from taskmanager.engine.schema import ParamValidator, check_param_schema
from taskmanager.engine.signal import WorkSignal
from taskmanager.engine.store import (
    ClaimQuery,
    InsertOutcome,
    InsertResult,
    InsertTask,
    SaveType,
    SettleQuery,
    Store,
    TaskQuery,
    Transition,
)
from taskmanager.engine.wire import event_data, iso, task_data, type_data
from taskmanager.errors import (
    LeaseLost,
    NoTasks,
    NotFound,
    QueueFull,
    TaskManagerError,
    Unavailable,
    ValidationFailed,
)

TASK_NOT_FOUND = "Task not found"
TYPE_NOT_FOUND = "Task type not found"
SORT_BY_ERROR = "Invalid sort_by field. Allowed values: created_at, priority, id, attempts"
SORT_ORDER_ERROR = "Invalid sort_order. Allowed values: ASC, DESC"
SORT_COLUMNS = ("created_at", "priority", "id", "attempts")
#: Default claim order: highest priority first, first in first out within a priority.
DEFAULT_ORDER: tuple[tuple[str, bool], ...] = (
    ("priority", True),
    ("created_at", False),
    ("id", False),
)
#: How often (engine clock and real time) the whole table is checked for due expiries.
SETTLE_INTERVAL = timedelta(seconds=1)
#: Rounds of expiry settling one request may run (each handles up to SettleQuery.limit rows).
MAX_SETTLE_ROUNDS = 20
#: Most tasks one list request returns.
MAX_LIST_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class Reply:
    """An engine answer: the envelope ``message`` and the ``data`` object of API.md."""

    message: str
    data: dict[str, Any] = field(default_factory=dict)


def _params_json(params: Any) -> str:
    return json.dumps(params, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


class TaskService:
    """The lifecycle engine. One per process; safe to share between concurrent requests."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock | None = None,
        defaults: Defaults | None = None,
        rng: random.Random | None = None,
        version: str = "0",
    ) -> None:
        self.store = store
        self.clock = clock or SystemClock()
        self.defaults = defaults or Defaults()
        self.rng = rng or random.Random()
        self.version = version
        self._validator = ParamValidator()
        self.signal = WorkSignal()
        self._settled_at: tuple[datetime, float] | None = None
        self._listening = False

    # -- health ---------------------------------------------------------------------------------

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

    # -- task types -----------------------------------------------------------------------------

    def _type_settings(self, body: models.TypeSettings, existing: TaskType | None) -> dict[str, Any]:
        # A null means "not set" for a setting that must have a value; for ``max_pending`` and
        # ``description`` it clears them.
        clearable = {"max_pending", "description"}
        given = {
            name: value
            for name, value in body.model_dump(
                include=body.model_fields_set & set(models.TypeSettings.model_fields)
            ).items()
            if value is not None or name in clearable
        }
        if existing is not None:
            base: dict[str, Any] = {
                name: getattr(existing, name) for name in models.TypeSettings.model_fields
            }
            base["dedupe"] = existing.dedupe.value
        else:
            d = self.defaults
            base = {
                "max_attempts": d.max_attempts,
                "claim_timeout": d.claim_timeout,
                "retry_delay": d.retry_delay,
                "retry_max_delay": d.retry_max_delay,
                "dedupe": DedupeScope.ALL.value,
                "max_pending": None,
                "description": None,
            }
        return {**base, **given}

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

    # -- create ---------------------------------------------------------------------------------

    async def _prepare(self, body: models.CreateTask, now: datetime) -> InsertTask:
        models.refuse_unsupported(body, "depends_on", "callback_url")
        task_type = await self._type(body.type)
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
                task_type.id, task_type.updated_at, task_type.param_schema, body.params
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
            run_after=_when(body.run_at, body.delay_seconds, now, "run_at", "delay_seconds"),
            expires_at=_when(body.expires_at, body.ttl_seconds, now, "expires_at", "ttl_seconds"),
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

    def _event(self, event: NewEvent) -> NewEvent | None:
        return event if self.defaults.enable_history else None

    def _events(self, transition: Transition | None, task: Task) -> Transition | None:
        """Finish a transition: release an ``active``-scoped dedupe key when the task ends, and
        drop history events when history is off."""
        if transition is None:
            return None
        changes, events = transition.changes, transition.events
        if task.policy.dedupe == DedupeScope.ACTIVE and changes.get("status") in TERMINAL_STATUSES:
            changes = {**changes, "dedupe_lock": None}
        return Transition(changes, events if self.defaults.enable_history else ())

    async def create_task(self, body: models.CreateTask) -> Reply:
        item = await self._prepare(body, self.clock.now())
        (result,) = await self.store.insert_tasks([item])
        if result.outcome == InsertOutcome.CREATED:
            self.signal.notify()
        return _created_reply(await self._current(result), body.type)

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
        prepared: list[tuple[int, InsertTask | str]] = []
        for index, raw in enumerate(body.tasks):
            try:
                parsed = models.parse_body(models.CreateTask, raw)
                prepared.append((index, await self._prepare(parsed, now)))
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
            entry = _batch_entry(index, outcome)
            counts[_batch_bucket(entry)] += 1
            results.append(entry)
        if counts["created"]:
            self.signal.notify()
        message = f"{counts['created']} created, {counts['duplicates']} duplicates, {counts['failed']} failed"
        return Reply(message, {"results": results, **counts})

    # -- read -----------------------------------------------------------------------------------

    async def _settle(self) -> None:
        """Apply every transition the clock has made due (expired leases, expired tasks).

        Runs at most once per ``SETTLE_INTERVAL`` of both the engine's clock and real time, so a
        busy server does not pay for it on every claim; single tasks are settled as they are read
        or changed (``_task``, ``_transition``), so they are never stale.
        """
        now, real = self.clock.now(), time.monotonic()
        if self._settled_at is not None:
            clock_at, real_at = self._settled_at
            interval = SETTLE_INTERVAL.total_seconds()
            if now - clock_at < SETTLE_INTERVAL and real - real_at < interval:
                return
        self._settled_at = (now, real)
        query = SettleQuery(now)
        for _ in range(MAX_SETTLE_ROUNDS):
            settled = await self.store.settle_tasks(
                query, lambda t: self._events(lifecycle.settle(t, now=now), t)
            )
            if settled:
                self.signal.notify()  # a lease ran out: its task may be claimable again
            if settled < query.limit:
                return

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
        statuses = _statuses(status)
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise ValidationFailed("Validation failed", details=[f"limit: must be 1-{MAX_LIST_LIMIT}"])
        if offset < 0:
            raise ValidationFailed("Validation failed", details=["offset: must be 0 or more"])
        await self._settle()
        like = type if type is not None and "%" in type else None
        query = TaskQuery(statuses, None if like else type, like, worker_id, limit, offset)
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

    # -- claim ----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Begin hearing about work created by other processes (PostgreSQL LISTEN)."""
        self._listening = True
        await self.store.listen(self.signal.notify)

    async def claim(self, body: models.ClaimTasks) -> Reply:
        order = _claim_order(body.sort_by, body.sort_order)
        ids = None
        if body.task_type_id is not None or body.task_type_ids is not None:
            ids = tuple(
                {
                    *(body.task_type_ids or ()),
                    *(() if body.task_type_id is None else (body.task_type_id,)),
                }
            )
        if body.wait and not self._listening:
            await self.start()  # hosts that never run the app's start-up hook (WSGI adapters)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + float(body.wait or 0)
        while True:
            ticket = self.signal.ticket()  # taken before claiming, so no wake-up is missed
            tasks = await self._claim_once(body, order, ids)
            remaining = deadline - loop.time()
            if tasks or remaining <= 0:
                break
            await self.signal.wait(ticket, min(remaining, self.store.wake_interval))
        claimed = [
            {**task_data(t), "lease_token": t.lease_token, "message": "Task claimed successfully"}
            for t in tasks
        ]
        if body.limit is not None:
            return Reply(f"{len(claimed)} tasks claimed", {"tasks": claimed, "count": len(claimed)})
        if not claimed:
            raise NoTasks("No available tasks")
        return Reply("Task claimed successfully", claimed[0])

    async def _claim_once(
        self, body: models.ClaimTasks, order: tuple[tuple[str, bool], ...], ids: tuple[int, ...] | None
    ) -> list[Task]:
        await self._settle()
        now = self.clock.now()
        query = ClaimQuery(
            now=now,
            worker_id=body.worker_id,
            limit=body.limit or 1,
            order=order,
            type_ids=ids,
            type_like=body.type_pattern,
            type_names=tuple(body.types) if body.types else None,
        )
        return await self.store.claim_tasks(
            query,
            lambda t: self._events(
                lifecycle.claim(t, now=now, worker_id=body.worker_id, lease_seconds=body.lease_seconds),
                t,
            ),
        )

    async def complete_batch(self, body: models.CompleteBatch) -> Reply:
        """Complete many tasks in one transaction; each item is judged as a single complete is."""
        now = self.clock.now()
        await self._settle()
        items = {item.id: item for item in body.results}
        failures: dict[int, TaskManagerError] = {}

        def decide(task: Task) -> Transition | None:
            due = lifecycle.settle(task, now=now)
            if due is not None:  # the lease ran out before this report arrived
                failures[task.id] = LeaseLost("Lease lost: the lease expired")
                return self._events(due, task)
            item = items[task.id]
            request = lifecycle.Completion(
                body.worker_id, item.success, item.result, item.error, item.lease_token
            )
            try:
                return self._events(lifecycle.complete(task, request, now=now, rng=self.rng), task)
            except TaskManagerError as exc:
                failures[task.id] = exc
                return None

        done = {t.id: t for t in await self.store.transition_tasks(list(items), decide, now)}
        results = [_batch_complete_entry(i, done.get(i), failures.get(i)) for i in items]
        if any(t.status == TaskStatus.PENDING for t in done.values()):
            self.signal.notify()
        ok = sum(1 for r in results if r["error"] is None)
        return Reply(f"{ok} of {len(results)} completed", {"results": results, "count": len(results)})

    # -- worker reports -------------------------------------------------------------------------

    async def _transition(
        self, task_id: int, decide: Callable[[Task], Transition | None], now: datetime
    ) -> Task:
        """Lock the task and apply ``decide`` — after any transition its timestamps made due."""
        settled = False

        def settle_then_decide(task: Task) -> Transition | None:
            nonlocal settled
            due = lifecycle.settle(task, now=now)
            if due is not None:
                settled = True  # apply the expiry now; judge the request on the result below
                return self._events(due, task)
            return self._events(decide(task), task)

        task = await self.store.transition_task(task_id, settle_then_decide, now)
        if task is None:
            raise NotFound(TASK_NOT_FOUND)
        if settled:
            return await self._transition(task_id, decide, now)
        if task.status == TaskStatus.PENDING:
            self.signal.notify()
        return task

    async def complete(self, task_id: int, body: models.CompleteTask) -> Reply:
        request = lifecycle.Completion(
            body.worker_id, body.success, body.result, body.error, body.lease_token
        )
        now = self.clock.now()
        task = await self._transition(
            task_id, lambda t: lifecycle.complete(t, request, now=now, rng=self.rng), now
        )
        status = lifecycle.outcome_status(task)
        message = {
            "completed": "Task completed successfully",
            "failed": "Task marked as failed",
            lifecycle.RETRY_STATUS: "Task failed, retry scheduled",
        }[status]
        return Reply(
            message,
            {
                "id": task.id,
                "status": status,
                "message": message,
                "attempts": task.attempts,
                "run_after": iso(task.run_after),
            },
        )

    async def progress(self, task_id: int, body: models.ReportProgress) -> Reply:
        now = self.clock.now()
        task = await self._transition(
            task_id,
            lambda t: lifecycle.progress(
                t,
                worker_id=body.worker_id,
                value=body.progress,
                message=body.message,
                lease_token=body.lease_token,
                now=now,
            ),
            now,
        )
        message = "Task progress updated successfully"
        return Reply(
            message,
            {
                "id": task.id,
                "progress": task.progress,
                "lease_expires_at": iso(task.lease_expires_at),
                "message": message,
            },
        )

    async def heartbeat(self, task_id: int, body: models.Heartbeat) -> Reply:
        now = self.clock.now()
        task = await self._transition(
            task_id,
            lambda t: lifecycle.heartbeat(
                t,
                worker_id=body.worker_id,
                lease_token=body.lease_token,
                lease_seconds=body.lease_seconds,
                now=now,
                record=False,
            ),
            now,
        )
        return Reply(
            "Lease extended",
            {
                "id": task.id,
                "lease_expires_at": iso(task.lease_expires_at),
                "cancel_requested": task.status == TaskStatus.CANCELLED,
            },
        )

    # -- operator actions -----------------------------------------------------------------------

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


def _when(
    at: datetime | None, seconds: float | None, now: datetime, at_name: str, seconds_name: str
) -> datetime | None:
    if at is not None and seconds is not None:
        raise ValidationFailed(
            "Validation failed",
            details=[f"{seconds_name}: give {at_name} or {seconds_name}, not both"],
        )
    if seconds is not None:
        return now + timedelta(seconds=seconds)
    return at


def _statuses(value: str | None) -> tuple[TaskStatus, ...]:
    if not value:
        return ()
    allowed = {s.value for s in TaskStatus}
    wanted = [part.strip() for part in value.split(",") if part.strip()]
    bad = [part for part in wanted if part not in allowed]
    if bad:
        raise ValidationFailed(
            "Validation failed",
            details=[f"status: {bad[0]!r} is not one of {', '.join(sorted(allowed))}"],
        )
    return tuple(TaskStatus(part) for part in dict.fromkeys(wanted))


def _claim_order(sort_by: str | None, sort_order: str | None) -> tuple[tuple[str, bool], ...]:
    if sort_order is not None and sort_order.upper() not in ("ASC", "DESC"):
        raise ValidationFailed(SORT_ORDER_ERROR)
    if sort_by is None:
        return DEFAULT_ORDER
    if sort_by not in SORT_COLUMNS:
        raise ValidationFailed(SORT_BY_ERROR)
    descending = (sort_order or "ASC").upper() == "DESC"
    if sort_by == "priority":
        return (("priority", descending), ("created_at", False), ("id", False))
    if sort_by == "id":
        return (("id", descending),)
    return ((sort_by, descending), ("id", descending))


def _created_reply(result: InsertResult, type_name: str) -> Reply:
    if result.outcome == InsertOutcome.QUEUE_FULL:
        raise QueueFull("Queue is full")
    task = result.task
    assert task is not None
    if result.outcome == InsertOutcome.DUPLICATE:
        message = "Task already exists (deduplicated)"
        return Reply(
            message,
            {
                "id": task.id,
                "type": type_name,
                "status": task.status.value,
                "dedupe_key": task.dedupe_key,
                "duplicate": True,
                "deduplicated": True,
                "message": message,
            },
        )
    message = "Task created successfully"
    return Reply(message, {**task_data(task), "duplicate": False, "deduplicated": False, "message": message})


def _batch_complete_entry(
    task_id: int, task: Task | None, failure: TaskManagerError | None
) -> dict[str, Any]:
    if task is None:
        failure = failure or NotFound(TASK_NOT_FOUND)
    if failure is not None:
        return {"id": task_id, "status": None, "error": failure.message, "code": failure.code}
    assert task is not None
    return {"id": task_id, "status": lifecycle.outcome_status(task), "error": None, "code": None}


def _batch_entry(index: int, outcome: InsertResult | str) -> dict[str, Any]:
    if isinstance(outcome, str):
        return {"index": index, "id": None, "status": None, "duplicate": False, "error": outcome}
    if outcome.outcome == InsertOutcome.QUEUE_FULL or outcome.task is None:
        return {
            "index": index,
            "id": None,
            "status": None,
            "duplicate": False,
            "error": "Queue is full",
        }
    return {
        "index": index,
        "id": outcome.task.id,
        "status": outcome.task.status.value,
        "duplicate": outcome.outcome == InsertOutcome.DUPLICATE,
        "error": None,
    }


def _batch_bucket(entry: dict[str, Any]) -> str:
    if entry["error"] is not None:
        return "failed"
    return "duplicates" if entry["duplicate"] else "created"


__all__ = ["Reply", "TaskService"]
