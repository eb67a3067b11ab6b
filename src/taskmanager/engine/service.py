"""TaskService: every lifecycle rule of TaskManager, behind one object.

It takes parsed wire models (``taskmanager.models``), talks to a ``Store`` and returns ``Reply``
objects holding the envelope message and the ``data`` of the API (docs/reference/api.md). It
imports no web framework and no SQL; time comes from the injected clock and randomness (retry
jitter) from the injected RNG. It is composed of parts: ``Transitions`` (``engine/transitions.py``:
store, clock, signal, expiry and compare-and-set writes) shared by ``WorkerOperations``
(``engine/work.py``: claim, complete, progress, heartbeat) and this class, which holds task types,
creating, reading and operator actions and hands the worker's calls on.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from taskmanager import models
from taskmanager.engine import lifecycle, observe, scope
from taskmanager.engine.bulk import BulkOperations
from taskmanager.engine.callbacks import Webhooks, check_callback
from taskmanager.engine.clock import Clock, SystemClock
from taskmanager.engine.dependencies import Dependencies
from taskmanager.engine.feed import Feed
from taskmanager.engine.policy import Backoff, Defaults, compute_dedupe_key, dedupe_lock, exponential_backoff
from taskmanager.engine.queries import MAX_LIST_LIMIT, statuses, when
from taskmanager.engine.records import DedupeScope, NewEvent, TaskStatus, TaskType, TypePolicy
from taskmanager.engine.records import HistoryEvent as Ev
from taskmanager.engine.replies import (
    TASK_NOT_FOUND,
    TYPE_NOT_FOUND,
    Reply,
    batch_bucket,
    batch_entry,
    created_reply,
)
from taskmanager.engine.retention import Retainer, removed
from taskmanager.engine.schedules import Schedules
from taskmanager.engine.schema import PATTERN_TIME_BUDGET, ParamValidator, check_param_schema
from taskmanager.engine.signal import WorkSignal
from taskmanager.engine.store import (
    InsertOutcome,
    InsertResult,
    InsertTask,
    QueueStats,
    SaveType,
    Store,
    TaskQuery,
)
from taskmanager.engine.transitions import Transitions
from taskmanager.engine.waiting import wait_for_end
from taskmanager.engine.wire import event_data, task_data, type_data
from taskmanager.engine.work import WorkerOperations
from taskmanager.errors import Conflict, NotFound, TaskManagerError, Unavailable, ValidationFailed


def _earlier(indexes: list[int], index: int, positions: dict[int, int]) -> tuple[int, ...]:
    """Where the batch items ``indexes`` (each earlier than ``index``) stand among the valid
    items; an item not earlier, or one that failed, fails this one too."""
    found: list[int] = []
    for earlier in dict.fromkeys(indexes):
        if not 0 <= earlier < index:
            problem = f"depends_on_index: {earlier} is not an earlier item of the batch"
            raise ValidationFailed("Validation failed", details=[problem])
        if earlier not in positions:
            raise ValidationFailed("Validation failed", details=[f"depends_on_index: item {earlier} failed"])
        found.append(positions[earlier])
    return tuple(found)


#: Task types a server keeps (by name) so that a single create reads none before its insert.
TYPE_CACHE_SIZE = 1024
#: Times a create prepares its task, each against its type as read anew, while the type keeps
#: changing between that read and the insert.
TYPE_READS = 3
TYPE_CHANGED = "Task type changed while the task was being created; try again"


def _params_json(params: Any) -> str:
    return json.dumps(params, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


class TaskService:
    """The lifecycle engine. One per process; safe to share between concurrent requests.

    ``retry_policy`` gives the seconds a failed attempt waits before its retry (default: the
    type's exponential backoff with jitter, ``policy.exponential_backoff``); ``rng`` feeds it.
    ``webhooks`` signs and sends callbacks (the server's; the engine imports no HTTP)."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock | None = None,
        defaults: Defaults | None = None,
        rng: random.Random | None = None,
        retry_policy: Backoff = exponential_backoff,
        version: str = "0",
        stats_max_age: float = observe.DEFAULT_STATS_MAX_AGE,
        webhooks: Webhooks | None = None,
    ) -> None:
        self.core = Transitions(
            store, clock or SystemClock(), defaults or Defaults(), rng or random.Random(), retry_policy
        )
        self.work = WorkerOperations(self.core)
        self.retention = Retainer(store, self.core.clock)
        #: Dependencies (B.5): settles dependants when a task ends; its ``sweep`` resumes cascades.
        self.dependencies = Dependencies(self.core)
        self.core.settle = self.dependencies.settle
        self.bulk_operations = BulkOperations(self.core, self.retention)
        self.version = version
        #: Signing and sending callbacks (B.5); None or without a secret: ``callback_url`` is 400.
        self.webhooks = webhooks
        self._validator = ParamValidator()
        #: The task types read so far, by name: a single create is prepared against its type's
        #: copy here and inserted only while the type is still at the copy's revision.
        self._types: dict[str, TaskType] = {}
        #: Periodic tasks (B.8): the routes call it, the server's lifespan runs its ``Ticker``.
        self.schedules = Schedules(self.core, self._validator)
        self._stats = observe.Snapshot(self._fresh_stats, self.core.clock, stats_max_age)
        self._workers = observe.Snapshot(
            lambda: observe.worker_stats(self.store, self.clock), self.core.clock, stats_max_age
        )
        #: The one reader of the history behind every ``GET /events`` stream of this process.
        self.feed = Feed(self.store, (self.core.signal, self.core.ended))

    @property
    def store(self) -> Store:
        return self.core.store

    @property
    def clock(self) -> Clock:
        return self.core.clock

    @property
    def defaults(self) -> Defaults:
        return self.core.defaults

    @property
    def signal(self) -> WorkSignal:
        return self.core.signal

    async def start(self) -> None:
        """Begin hearing about work created, tasks ended and history written by other processes."""
        await self.core.start()

    async def stop(self) -> None:
        """End the ``/events`` feed's reader (open streams end as the server stops them)."""
        await self.feed.stop()

    # -- the worker's calls ---------------------------------------------------------------------

    async def claim(
        self, body: models.ClaimTasks, gone: Callable[[], Awaitable[bool]] | None = None
    ) -> Reply:
        return await self.work.claim(body, gone)

    async def complete(self, task_id: int, body: models.CompleteTask) -> Reply:
        return await self.work.complete(task_id, body)

    async def complete_batch(self, body: models.CompleteBatch) -> Reply:
        return await self.work.complete_batch(body)

    async def progress(self, task_id: int, body: models.ReportProgress) -> Reply:
        return await self.work.progress(task_id, body)

    async def heartbeat(self, task_id: int, body: models.Heartbeat) -> Reply:
        return await self.work.heartbeat(task_id, body)

    # -- types, creating, reading, operator actions ---------------------------------------------

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
        await check_callback(self.webhooks, body.callback_url)
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
            self._types.pop(name, None)
            raise NotFound(TYPE_NOT_FOUND)
        if len(self._types) >= TYPE_CACHE_SIZE:
            self._types.clear()
        self._types[name] = found
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

    async def _prepare_one(self, body: models.CreateTask, now: datetime, cached: bool) -> InsertTask:
        """The insert for a single create, prepared against this process's copy of its type if
        ``cached`` and it has one: the insert then holds only while the type is still at that
        revision. A refusal that copy would give is confirmed against the type as stored."""
        scope.check_type(body.type)  # a key limited to other types: as if the type did not exist
        known = self._types.get(body.type) if cached else None
        if known is not None and known.is_active:
            try:
                return await self._prepare(body, now, known)
            except TaskManagerError:
                pass
        return await self._prepare(body, now, await self._type(body.type))

    async def _prepare(
        self, body: models.CreateTask, now: datetime, task_type: TaskType, deadline: float | None = None
    ) -> InsertTask:
        """The insert for one create of ``task_type``; ``deadline`` bounds the time schema
        patterns may take (one budget for a whole batch)."""
        if not task_type.is_active:
            raise ValidationFailed("Task type is not active")
        await check_callback(self.webhooks, body.callback_url)
        if task_type.dedupe == DedupeScope.ACTIVE or task_type.max_pending is not None:
            await self.core.expire_due()  # an expired task must neither block its key nor fill the queue
        try:
            params_json = _params_json(body.params)
        except ValueError:
            raise ValidationFailed(
                "Validation failed", details=["params: NaN and Infinity are not JSON"]
            ) from None
        if self.defaults.enable_schema_validation:
            problems = self._validator.problems(
                task_type.id, task_type.revision, task_type.param_schema, body.params, deadline=deadline
            )
            if problems:
                raise ValidationFailed(
                    "Parameter validation failed: " + "; ".join(problems), details=problems
                )
        dedupe_key = body.dedupe_key or compute_dedupe_key(task_type.name, body.params)
        depends_on = tuple(dict.fromkeys(body.depends_on or ()))  # as named, each once
        await self._check_dependencies(depends_on, now)
        return InsertTask(
            type_id=task_type.id,
            params=body.params,
            params_json=params_json,
            priority=body.priority,
            max_attempts=body.max_attempts or task_type.max_attempts,
            dedupe_key=dedupe_key,
            dedupe_lock=dedupe_lock(task_type.dedupe, dedupe_key),
            max_pending=task_type.max_pending,
            run_after=when(body.run_at, body.delay_seconds, now, "run_at", "delay_seconds"),
            expires_at=when(body.expires_at, body.ttl_seconds, now, "expires_at", "ttl_seconds"),
            assigned_to=body.assigned_to,
            type_name=task_type.name,
            policy=TypePolicy.of(task_type),
            now=now,
            event=self.core.event(NewEvent(Ev.CREATED)),
            depends_on=depends_on,
            # The create's own URL, else its type's (checked when the type was registered).
            callback_url=body.callback_url or task_type.callback_url,
            type_revision=task_type.revision,
        )

    async def _check_dependencies(self, ids: tuple[int, ...], now: datetime) -> None:
        """400 unless every task of ``ids`` exists (for this key: a task of a type the key does
        not reach, or past its retention, does not)."""
        if not ids:
            return
        found = {
            task.id
            for task in await self.store.get_tasks(ids)
            if not removed(task, now) and scope.allowed(task.type)
        }
        missing = [task_id for task_id in ids if task_id not in found]
        if missing:
            details = [f"depends_on: task {task_id} does not exist" for task_id in missing]
            raise ValidationFailed("Validation failed", details=details)

    async def create_task(self, body: models.CreateTask) -> Reply:
        now = self.clock.now()
        if body.depends_on_index is not None:
            raise ValidationFailed(
                "Validation failed", details=["depends_on_index: only in a batch (POST /tasks/batch)"]
            )
        for attempt in range(TYPE_READS):
            item = await self._prepare_one(body, now, cached=attempt == 0)
            (result,) = await self.store.insert_tasks([item])
            holder = result.task if result.outcome == InsertOutcome.DUPLICATE else None
            if holder is not None and removed(holder, now):
                # Its holder is past its retention (gone for reads) and the sweep has not deleted
                # it yet: delete it now, freeing its key (B.10), and create.
                await self.store.delete_tasks([holder.id])
                (result,) = await self.store.insert_tasks([item])
            if result.outcome != InsertOutcome.STALE_TYPE:
                break
        else:
            raise Conflict(TYPE_CHANGED)
        if result.outcome == InsertOutcome.CREATED:
            result = (await self._judge_blocked([result]))[0]
            self.signal.notify()
        return created_reply(await self._current(result), body.type)

    async def _judge_blocked(self, results: list[InsertResult]) -> list[InsertResult]:
        """The results of a create, with the tasks created blocked judged on their dependencies
        as they are now (B.5: all completed already, a task is claimable at once)."""
        created = [r.task for r in results if r.outcome == InsertOutcome.CREATED and r.task is not None]
        blocked = [task for task in created if task.blocked]
        if not blocked:
            return results
        await self.dependencies.attached(blocked)
        now = {task.id: task for task in await self.store.get_tasks([task.id for task in blocked])}
        return [
            InsertResult(r.outcome, now.get(r.task.id, r.task))
            if r.outcome == InsertOutcome.CREATED and r.task
            else r
            for r in results
        ]

    async def _current(self, result: InsertResult) -> InsertResult:
        """A duplicate as it reads now (A.6 "its current status"): a passed deadline is applied."""
        task = result.task
        if result.outcome != InsertOutcome.DUPLICATE or task is None:
            return result
        if lifecycle.expiry(task, now=self.clock.now()) is None:
            return result
        return InsertResult(result.outcome, await self.core.current(task.id))

    async def _prepare_batch(
        self, body: models.CreateTasksBatch, now: datetime
    ) -> list[tuple[int, InsertTask | str]]:
        """Each item's insert, or why it failed; its types read once each, as they are stored."""
        deadline = time.monotonic() + PATTERN_TIME_BUDGET  # one budget for the whole batch
        prepared: list[tuple[int, InsertTask | str]] = []
        types: dict[str, TaskType] = {}
        positions: dict[int, int] = {}  # batch index -> position among the valid items
        for index, raw in enumerate(body.tasks):
            try:
                parsed = models.parse_body(models.CreateTask, raw)
                scope.check_type(parsed.type)  # a key limited to other types: as if it did not exist
                if parsed.type not in types:
                    types[parsed.type] = await self._type(parsed.type)
                ready = await self._prepare(parsed, now, types[parsed.type], deadline)
                if parsed.depends_on_index:
                    earlier = _earlier(parsed.depends_on_index, index, positions)
                    ready = replace(ready, depends_on_index=earlier)
                positions[index] = len(positions)
                prepared.append((index, ready))
            except TaskManagerError as exc:
                detail = "; ".join(exc.details) if exc.details else None
                # "Parameter validation failed: ..." already lists its details: do not repeat them.
                known = detail is None or exc.message.endswith(detail)
                prepared.append((index, exc.message if known else f"{exc.message}: {detail}"))
        return prepared

    async def create_tasks(self, body: models.CreateTasksBatch) -> Reply:
        now = self.clock.now()
        for _ in range(TYPE_READS):
            prepared = await self._prepare_batch(body, now)
            valid = [item for _, item in prepared if isinstance(item, InsertTask)]
            stored = await self.store.insert_tasks(valid) if valid else []
            if not any(r.outcome == InsertOutcome.STALE_TYPE for r in stored):
                break
        else:
            raise Conflict(TYPE_CHANGED)
        inserted = iter(await self._judge_blocked(stored))
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

    async def get_task(self, task_id: int) -> Reply:
        return Reply("Task retrieved successfully", task_data(await self.core.current(task_id)))

    async def wait(
        self, task_id: int, seconds: float, gone: Callable[[], Awaitable[bool]] | None = None
    ) -> Reply:
        """The task once it is terminal, or after ``seconds`` as it is then."""
        return await wait_for_end(self.core, task_id, seconds, gone)

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
        await self.core.expire_due()
        like = type if type is not None and "%" in type else None
        query = TaskQuery(
            wanted,
            None if like else type,
            like,
            worker_id,
            limit,
            offset,
            scope.like_patterns(),
            retention=await self.retention.now(),
        )
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
        await self.core.current(task_id)
        events = [event_data(e) for e in await self.store.list_events(task_id)]
        return Reply("Task history retrieved successfully", {"events": events, "count": len(events)})

    # -- observing ------------------------------------------------------------------------------

    async def stats(self) -> Reply:
        at, found = await self._stats.get()
        return Reply("Statistics retrieved successfully", observe.stats(at, found, scope.allowed))

    async def workers(self) -> Reply:
        found = await self._workers.get()
        return Reply("Workers retrieved successfully", observe.workers(found, scope.allowed))

    async def _fresh_stats(self) -> tuple[datetime, QueueStats]:
        await self.core.expire_due()  # counts after expired leases and deadlines are settled
        return await observe.queue_stats(self.store, self.clock)

    async def event_cursor(self, after: int | None) -> int:
        """Where a feed starts: after ``after``, or (None) after the newest event now."""
        return await self.store.last_event_id() if after is None else after

    def follow(
        self,
        after: int,
        wanted: observe.FeedFilter,
        timing: observe.FeedTiming,
        stopping: Callable[[], bool],
    ) -> AsyncIterator[observe.FeedItem | observe.KeepAlive | observe.Dropped]:
        """The live feed of history events (``engine/feed.py``)."""
        return self.feed.follow(after, wanted, timing, stopping)

    async def cancel(self, task_id: int, body: models.CancelTask) -> Reply:
        now = self.clock.now()
        task = await self.core.transition(
            task_id, lambda t: lifecycle.cancel(t, reason=body.reason, now=now), now
        )
        return Reply("Task cancelled", task_data(task))

    async def retry(self, task_id: int) -> Reply:
        now = self.clock.now()
        before = await self.core.current(task_id)
        if before.status in (TaskStatus.FAILED, TaskStatus.CANCELLED):
            # A dependant's dependencies are marked before it is blocked again (B.5), so their
            # ends (or the sweep) judge it even if this request stops short.
            await self.store.mark_dependencies(before.depends_on)
        task = await self.core.transition(task_id, lambda t: lifecycle.retry(t, now=now), now)
        if task.blocked:
            await self.dependencies.attached([task])
            task = await self.core.current(task_id)
        return Reply("Task queued for retry", task_data(task))

    async def bulk(self, body: models.BulkAction) -> Reply:
        return await self.bulk_operations.bulk(body)

    async def delete(self, task_id: int) -> Reply:
        found = await self.store.get_task(task_id)
        if found is not None:
            await self.dependencies.before_delete([found])  # no dependant left waiting for it
        if not await self.store.delete_task(task_id):
            raise NotFound(TASK_NOT_FOUND)
        self.core.ended.notify()  # a request waiting for it answers 404 now
        return Reply("Task deleted", {"id": task_id, "deleted": True})


__all__ = ["Reply", "TaskService"]
