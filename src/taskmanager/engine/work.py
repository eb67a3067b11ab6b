"""What workers do to tasks: claim (with long-poll), complete (one or many), progress, heartbeat."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import replace

from taskmanager import models
from taskmanager.engine import lifecycle
from taskmanager.engine.queries import claim_order
from taskmanager.engine.records import Task, TaskStatus
from taskmanager.engine.replies import Reply, batch_complete_entry
from taskmanager.engine.store import ClaimQuery, Transition
from taskmanager.engine.transitions import Transitions
from taskmanager.engine.wire import iso, task_data
from taskmanager.errors import LeaseLost, NoTasks, TaskManagerError


class WorkerOperations(Transitions):
    """The worker-facing half of the engine."""

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
        ahead = lifecycle.claim_ahead(
            now=now, worker_id=body.worker_id, lease_seconds=body.lease_seconds, count=query.limit
        )
        if not self.defaults.enable_history:
            ahead = replace(ahead, event=None)  # what _events does to the transition
        # Each row decided takes the next token (a transaction run again takes the next ones: a
        # claim never takes more rows than its limit, so those within one are distinct). A claim
        # ends no task, so _events has no dedupe key to release.
        index = itertools.cycle(range(query.limit))
        return await self.store.claim_tasks(
            query, lambda t: self._events(lifecycle.claimed(t, ahead, next(index)), t), ahead
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
        results = [batch_complete_entry(i, done.get(i), failures.get(i)) for i in items]
        if any(t.status == TaskStatus.PENDING for t in done.values()):
            self.signal.notify()
        ok = sum(1 for r in results if r["error"] is None)
        return Reply(f"{ok} of {len(results)} completed", {"results": results, "count": len(results)})

    async def complete(self, task_id: int, body: models.CompleteTask) -> Reply:
        request = lifecycle.Completion(
            body.worker_id, body.success, body.result, body.error, body.lease_token
        )
        now = self.clock.now()
        task = await self._transition(
            task_id,
            lambda t: lifecycle.complete(t, request, now=now, rng=self.rng),
            now,
            lifecycle.complete_ahead(request, now=now),
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
