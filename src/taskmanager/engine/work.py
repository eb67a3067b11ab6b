"""What workers do to tasks: claim (with long-poll), complete (one or many), progress, heartbeat."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from taskmanager import models
from taskmanager.engine import lifecycle, scope
from taskmanager.engine.queries import claim_order
from taskmanager.engine.records import TERMINAL_STATUSES, Task, TaskStatus
from taskmanager.engine.replies import Reply, batch_complete_entry
from taskmanager.engine.store import ClaimQuery, TaskChange
from taskmanager.engine.transitions import MAX_DECIDE_ROUNDS, Transitions
from taskmanager.engine.wire import iso, task_data
from taskmanager.errors import LeaseLost, NoTasks, TaskManagerError


@dataclass
class WorkerOperations:
    """The worker-facing half of the engine, on the engine's shared ``Transitions``."""

    core: Transitions

    async def claim(
        self, body: models.ClaimTasks, gone: Callable[[], Awaitable[bool]] | None = None
    ) -> Reply:
        """Claim now, or (with ``wait``) as soon as a task is claimable. ``gone`` tells whether the
        caller has left: a long-poll whose caller hung up must not claim a task nobody receives."""
        order = claim_order(body.sort_by, body.sort_order)
        ids = None
        if body.task_type_id is not None or body.task_type_ids is not None:
            ids = tuple(
                {
                    *(body.task_type_ids or ()),
                    *(() if body.task_type_id is None else (body.task_type_id,)),
                }
            )
        core = self.core
        if body.wait and not core.listening:
            await core.start()  # hosts that never run the app's start-up hook (WSGI adapters)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + float(body.wait or 0)
        while True:
            ticket = core.signal.ticket()  # taken before claiming, so no wake-up is missed
            tasks = await self._claim_once(body, order, ids)
            remaining = deadline - loop.time()
            if tasks or remaining <= 0:
                break
            await core.signal.wait(ticket, min(remaining, core.store.wake_interval))
            if gone is not None and await gone():
                tasks = []
                break
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
        core = self.core
        await core.expire_due()
        now = core.clock.now()
        query = ClaimQuery(
            now=now,
            worker_id=body.worker_id,
            limit=body.limit or 1,
            order=order,
            type_ids=ids,
            type_like=body.type_pattern,
            type_names=tuple(body.types) if body.types else None,
            type_scope=scope.like_patterns(),
        )
        params = lifecycle.claim_params(
            now=now, worker_id=body.worker_id, lease_seconds=body.lease_seconds, count=query.limit
        )
        if not core.defaults.enable_history:
            params = replace(params, event=None)
        # A claim ends no task, so there is no dedupe key to release.
        return await core.store.claim_tasks(query, params)

    async def complete_batch(self, body: models.CompleteBatch) -> Reply:
        """Complete many tasks; each item is judged as a single complete is, and the changes
        are written in one transaction (a row changed meanwhile is read and judged again)."""
        core = self.core
        now = core.clock.now()
        await core.expire_due()
        items = {item.id: item for item in body.results}
        failures: dict[int, TaskManagerError] = {}
        # A key limited to some types has each row read, so its type is checked first.
        done = {} if scope.scoped() else await self._complete_unread(body.worker_id, items.values(), now)
        todo = sorted(items.keys() - done.keys())
        for _ in range(MAX_DECIDE_ROUNDS):
            if not todo:
                break
            changes: list[TaskChange] = []
            for task in await core.store.get_tasks(todo):
                if not scope.allowed(task.type):
                    continue  # another type's task: reported as not found
                failures.pop(task.id, None)
                change = self._judge(task, items[task.id], body.worker_id, now, failures)
                if change is None:
                    done[task.id] = task
                else:
                    changes.append(change)
            written = await core.store.update_tasks(changes) if changes else []
            todo = []
            for change, after in zip(changes, written, strict=True):
                if after is None:
                    todo.append(change.task_id)  # changed meanwhile: judge it again
                else:
                    done[after.id] = after
        await core.settle_ended(list(done.values()))
        results = [batch_complete_entry(i, done.get(i), failures.get(i)) for i in items]
        if any(t.status == TaskStatus.PENDING for t in done.values()):
            core.signal.notify()
        if any(t.status in TERMINAL_STATUSES for t in done.values()):
            core.ended.notify()
            core.delivered_ends(done.values())
        ok = sum(1 for r in results if r["error"] is None)
        return Reply(f"{ok} of {len(results)} completed", {"results": results, "count": len(results)})

    async def _complete_unread(
        self, worker_id: str, items: Iterable[models.CompleteItem], now: datetime
    ) -> dict[int, Task]:
        """The batch's successes by their holders, written at once as compare-and-sets decided
        before their rows are read (``lifecycle.complete_unread``, as a single complete tries
        first): the tasks they completed. Every other item, and every miss, is read and judged."""
        core = self.core
        changes = []
        for item in items:
            request = lifecycle.Completion(worker_id, item.success, item.result, item.error, item.lease_token)
            unread = lifecycle.complete_unread(request, now=now)
            if unread is not None:
                changes.append(core.change(item.id, *unread, now))
        written = await core.store.update_tasks(changes) if changes else []
        return {after.id: after for after in written if after is not None}

    def _judge(
        self,
        task: Task,
        item: models.CompleteItem,
        worker_id: str,
        now: datetime,
        failures: dict[int, TaskManagerError],
    ) -> TaskChange | None:
        """The change one item of a batch complete makes (a failure is noted in ``failures``)."""
        core = self.core
        due = lifecycle.expiry(task, now=now)
        if due is not None:  # the lease ran out before this report arrived
            failures[task.id] = LeaseLost("Lease lost: the lease expired")
            transition = core.finish(due, task)
        else:
            request = lifecycle.Completion(worker_id, item.success, item.result, item.error, item.lease_token)
            try:
                decided = lifecycle.complete(task, request, now=now, rng=core.rng, backoff=core.backoff)
            except TaskManagerError as exc:
                failures[task.id] = exc
                return None
            transition = core.finish(decided, task)
        return None if transition is None else core.on_row(task, transition, now)

    async def complete(self, task_id: int, body: models.CompleteTask) -> Reply:
        request = lifecycle.Completion(
            body.worker_id, body.success, body.result, body.error, body.lease_token
        )
        core = self.core
        now = core.clock.now()
        task = await core.transition(
            task_id,
            lambda t: lifecycle.complete(t, request, now=now, rng=core.rng, backoff=core.backoff),
            now,
            lifecycle.complete_unread(request, now=now),
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
        now = self.core.clock.now()
        task = await self.core.transition(
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
        now = self.core.clock.now()
        task = await self.core.transition(
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
