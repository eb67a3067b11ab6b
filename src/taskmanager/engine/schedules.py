"""Schedules (API.md B.8): periodic tasks, saved by name and fired by every running server.

``Schedules`` saves, reads and deletes them, and fires the ticks that are due: for each, one
``Store.fire_tick`` — a compare-and-set on the schedule's ``next_run_at`` in the transaction that
inserts the tick's task — so however many servers fire the same tick, one task is created.
A tick is the latest one due: ticks missed while no server ran are not replayed, except the most
recent. ``Ticker`` is the loop each server runs in its lifespan: fire what is due, then sleep
until the next tick (at most ``MAX_SLEEP``, to hear of schedules saved on other servers), woken at
once by a save here. Its time is the engine's clock, so tests fire ticks with a frozen clock.

A tick's task is deduplicated on a key of its own, ``sha256("schedule" NUL name NUL tick)``: never
against another tick's task nor against tasks created by hand, and a second guard (the dedupe
unique index) beside the compare-and-set.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from datetime import datetime

from taskmanager import models
from taskmanager.engine import scope
from taskmanager.engine.cadence import Cadence, check_cron, check_timezone, first_tick
from taskmanager.engine.policy import dedupe_lock
from taskmanager.engine.records import HistoryEvent, NewEvent, Schedule, TaskType, TypePolicy
from taskmanager.engine.replies import TYPE_NOT_FOUND, Reply
from taskmanager.engine.schema import ParamValidator
from taskmanager.engine.store import FireTick, InsertOutcome, InsertTask, SaveSchedule
from taskmanager.engine.transitions import Transitions
from taskmanager.engine.wire import iso, schedule_data
from taskmanager.errors import Conflict, NotFound, Unavailable, ValidationFailed

log = logging.getLogger("taskmanager.schedules")

SCHEDULE_NOT_FOUND = "Schedule not found"
#: Most seconds the ticker sleeps: a schedule saved on another server is fired by this one too
#: (should that server stop) at most this late. One indexed MIN() per server per sleep.
MAX_SLEEP = 5.0
#: Due schedules fired per pass (a pass that fills it runs again at once).
DUE_BATCH = 100


def scheduled_dedupe_key(name: str, tick: datetime) -> str:
    """The dedupe key of a schedule's task for ``tick``: one per tick, no other task's."""
    return hashlib.sha256(f"schedule\0{name}\0{iso(tick)}".encode()).hexdigest()


def cadence_of(body: models.SaveScheduleBody) -> Cadence:
    """The body's cadence, or 400 naming the field at fault."""
    if (body.cron is None) == (body.interval_seconds is None):
        raise ValidationFailed(
            "Validation failed", details=["cron: give exactly one of cron and interval_seconds"]
        )
    check_timezone(body.timezone)
    if body.cron is not None:
        check_cron(body.cron)
    return Cadence(body.cron, body.interval_seconds, body.timezone)


def _cadence(schedule: Schedule) -> Cadence:
    return Cadence(schedule.cron, schedule.interval_seconds, schedule.timezone)


class Schedules:
    """Saving, reading and firing schedules; one per engine."""

    def __init__(self, core: Transitions, validator: ParamValidator) -> None:
        self.core = core
        self.validator = validator
        #: Set when a schedule is saved here, so this server's ticker looks again at once.
        self.changed = asyncio.Event()

    def _problems(self, task_type: TaskType, params: dict[str, object]) -> list[str]:
        if not self.core.defaults.enable_schema_validation:
            return []
        return self.validator.problems(task_type.id, task_type.revision, task_type.param_schema, params)

    async def save(self, body: models.SaveScheduleBody) -> Reply:
        cadence = cadence_of(body)
        now = self.core.clock.now()
        first = first_tick(cadence, now)
        # A key limited to other types: as if the type did not exist.
        task_type = await self.core.store.get_type(body.type) if scope.allowed(body.type) else None
        if task_type is None:
            raise ValidationFailed(TYPE_NOT_FOUND, details=[f"type: no task type named {body.type!r}"])
        try:
            params_json = json.dumps(body.params, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        except ValueError:
            raise ValidationFailed(
                "Validation failed", details=["params: NaN and Infinity are not JSON"]
            ) from None
        problems = self._problems(task_type, body.params)
        if problems:
            raise ValidationFailed("Parameter validation failed: " + "; ".join(problems), details=problems)
        existing = await self.core.store.get_schedule(body.name)
        if existing is not None and not scope.allowed(existing.type):
            raise Conflict("Schedule name is taken")  # by a schedule of a type this key cannot see
        unchanged = (
            existing is not None
            and existing.enabled
            and body.enabled
            and (existing.cron, existing.interval_seconds, existing.timezone)
            == (body.cron, body.interval_seconds, body.timezone)
        )
        saved, created = await self.core.store.save_schedule(
            SaveSchedule(
                name=body.name,
                type=body.type,
                cron=body.cron,
                interval_seconds=body.interval_seconds,
                params_json=params_json,
                priority=body.priority,
                timezone=body.timezone,
                enabled=body.enabled,
                next_run_at=first if body.enabled else None,
                reschedule=not unchanged,
                now=now,
            )
        )
        self.changed.set()
        message = "Schedule created" if created else "Schedule updated"
        return Reply(message, {**schedule_data(saved), "created": created})

    async def _one(self, name: str) -> Schedule:
        found = await self.core.store.get_schedule(name)
        if found is None or not scope.allowed(found.type):
            raise NotFound(SCHEDULE_NOT_FOUND)
        return found

    async def get(self, name: str) -> Reply:
        return Reply("Schedule retrieved successfully", schedule_data(await self._one(name)))

    async def list(self) -> Reply:
        found = [schedule_data(s) for s in await self.core.store.list_schedules() if scope.allowed(s.type)]
        return Reply("Schedules retrieved successfully", {"schedules": found, "count": len(found)})

    async def delete(self, name: str) -> Reply:
        await self._one(name)
        if not await self.core.store.delete_schedule(name):
            raise NotFound(SCHEDULE_NOT_FOUND)
        self.changed.set()
        return Reply("Schedule deleted", {"id": name, "deleted": True})

    # -- firing ---------------------------------------------------------------------------------

    async def next_due(self) -> datetime | None:
        return await self.core.store.next_schedule_at()

    async def fire_due(self) -> int:
        """Fire every tick due now; the number of tasks this server created (others may have
        fired some of the same ticks: each is fired once in all)."""
        created = 0
        while True:
            now = self.core.clock.now()
            due = await self.core.store.due_schedules(now, DUE_BATCH)
            for schedule in due:
                created += await self._fire(schedule, now)
            if len(due) < DUE_BATCH:
                return created

    async def _fire(self, schedule: Schedule, now: datetime) -> int:
        assert schedule.next_run_at is not None
        cadence = _cadence(schedule)
        tick = max(schedule.next_run_at, cadence.latest_at(now))  # missed ticks: the latest only
        task = await self._task(schedule, tick, now)
        fired = FireTick(
            schedule.id, schedule.next_run_at, schedule.updated_at, tick, cadence.next_after(now), task
        )
        won, result = await self.core.store.fire_tick(fired)
        if not won or result is None:
            return 0
        if result.outcome == InsertOutcome.CREATED:
            self.core.signal.notify()
            return 1
        log.warning("schedule %r: no task for %s (%s)", schedule.name, iso(tick), result.outcome.value)
        return 0

    async def _task(self, schedule: Schedule, tick: datetime, now: datetime) -> InsertTask | None:
        """The task of ``schedule``'s ``tick``; None (the tick passes, logged) when its type is
        gone or paused, or no longer accepts the params."""
        task_type = await self.core.store.get_type(schedule.type)
        if task_type is None or not task_type.is_active:
            log.warning(
                "schedule %r: task type %r is missing or paused; tick %s skipped",
                schedule.name,
                schedule.type,
                iso(tick),
            )
            return None
        problems = self._problems(task_type, schedule.params)
        if problems:
            log.warning(
                "schedule %r: params no longer valid (%s); tick %s skipped",
                schedule.name,
                "; ".join(problems),
                iso(tick),
            )
            return None
        key = scheduled_dedupe_key(schedule.name, tick)
        event = NewEvent(
            HistoryEvent.CREATED, metadata={"schedule": schedule.name, "scheduled_for": iso(tick)}
        )
        return InsertTask(
            type_id=task_type.id,
            params=schedule.params,
            params_json=json.dumps(schedule.params, ensure_ascii=False, separators=(",", ":")),
            priority=schedule.priority,
            max_attempts=task_type.max_attempts,
            dedupe_key=key,
            dedupe_lock=dedupe_lock(task_type.dedupe, key),
            max_pending=task_type.max_pending,
            run_after=None,
            expires_at=None,
            assigned_to=None,
            type_name=task_type.name,
            policy=TypePolicy(
                task_type.claim_timeout, task_type.retry_delay, task_type.retry_max_delay, task_type.dedupe
            ),
            now=now,
            event=self.core.event(event),
            schedule=schedule.name,
            scheduled_for=tick,
            callback_url=task_type.callback_url,
        )


class Ticker:
    """The loop firing due schedules, started and stopped with the server's lifespan."""

    def __init__(self, schedules: Schedules, max_sleep: float = MAX_SLEEP) -> None:
        self.schedules = schedules
        self.max_sleep = max_sleep
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._unavailable = False  # logged once per outage, not once per try

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="taskmanager-schedules")

    def wake(self) -> None:
        """Look for due ticks now (a schedule saved, the clock moved)."""
        self.schedules.changed.set()

    async def stop(self) -> None:
        """Stop the loop and wait for a pass under way to end."""
        self._stopping = True
        self.wake()
        if self._task is not None:
            task, self._task = self._task, None
            await task

    async def _run(self) -> None:
        changed = self.schedules.changed
        while not self._stopping:
            changed.clear()  # before the pass: a save during it makes the wait below return at once
            delay = await self.pass_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), delay)

    async def pass_once(self) -> float:
        """Fire what is due; the seconds until the next tick, at most ``max_sleep``."""
        try:
            await self.schedules.fire_due()
            upcoming = await self.schedules.next_due()
        except Unavailable:
            if not self._unavailable:
                log.warning("database unavailable: due schedules are fired once it is back")
            self._unavailable = True
            return self.max_sleep
        except Exception:  # never end the loop: the next pass tries again
            log.exception("firing due schedules failed; trying again in %.0f s", self.max_sleep)
            return self.max_sleep
        self._unavailable = False
        if upcoming is None:
            return self.max_sleep
        seconds = (upcoming - self.schedules.core.clock.now()).total_seconds()
        return min(self.max_sleep, max(seconds, 0.0))


__all__ = ["MAX_SLEEP", "SCHEDULE_NOT_FOUND", "Schedules", "Ticker", "scheduled_dedupe_key"]
