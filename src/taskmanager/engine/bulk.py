"""Bulk actions (API.md B.5, ``POST /tasks/bulk``): cancel, retry or delete every task a filter
matches, in bounded batches.

The filter is walked in keyset pages of ``BULK_BATCH`` ids (``Store.find_task_ids``), and each
page is its own short transaction: the ids are read, each task judged by the same lifecycle rule
as its single route (``lifecycle.cancel`` / ``lifecycle.retry``, after any expiry its timestamps
made due), and the changes written as one batch of compare-and-sets (``Store.update_tasks``). A
task whose row changed meanwhile is read and judged again; one the action does not apply to (a
retry of a pending task) is left as it is. A delete removes a page's tasks and their history in
one transaction. So a match of millions never holds one long transaction or its locks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from taskmanager import models
from taskmanager.engine import lifecycle, scope
from taskmanager.engine.dependencies import Dependencies
from taskmanager.engine.records import TERMINAL_STATUSES, Task, TaskStatus
from taskmanager.engine.replies import Reply
from taskmanager.engine.retention import Retainer, removed
from taskmanager.engine.store import TaskChange, TaskFilter, Transition
from taskmanager.engine.transitions import MAX_DECIDE_ROUNDS, Transitions
from taskmanager.errors import ValidationFailed

#: Tasks read, judged and written per transaction: big enough to move a million tasks in a couple
#: of thousand short transactions, small enough that each holds its row locks for milliseconds.
BULK_BATCH = 500
EMPTY_FILTER = "filter: must name at least one of ids, type, status, created_before"

Rule = Callable[[Task, datetime], Transition]


def _cancel(task: Task, now: datetime) -> Transition:
    return lifecycle.cancel(task, reason=None, now=now)


def _retry(task: Task, now: datetime) -> Transition:
    return lifecycle.retry(task, now=now)


RULES: dict[str, Rule] = {"cancel": _cancel, "retry": _retry}
DONE = {"cancel": "cancelled", "retry": "retried", "delete": "deleted"}


@dataclass
class BulkOperations:
    """The operator's bulk actions, on the engine's shared ``Transitions``."""

    core: Transitions
    retention: Retainer
    batch: int = BULK_BATCH

    @property
    def dependencies(self) -> Dependencies:
        return Dependencies(self.core)

    async def bulk(self, body: models.BulkAction) -> Reply:
        given = body.filter
        if given.ids is None and given.type is None and given.status is None and given.created_before is None:
            raise ValidationFailed("Validation failed", details=[EMPTY_FILTER])
        query = TaskFilter(
            ids=None if given.ids is None else tuple(given.ids),
            type_name=given.type,
            status=None if given.status is None else TaskStatus(given.status),
            created_before=given.created_before,
            limit=self.batch,
            retention=await self.retention.now(),  # tasks past their retention are gone
            type_scope=scope.like_patterns(),  # a key limited to types acts on those only
        )
        matched = changed = 0
        store = self.core.store
        while True:
            ids = await store.find_task_ids(query)
            if not ids:
                break
            matched += len(ids)
            if body.action == "delete":
                # No dependant is left waiting for a deleted task (B.5): it is settled first.
                await self.dependencies.before_delete(await store.get_tasks(ids))
                changed += await store.delete_tasks(ids)
                self.core.ended.notify()  # a request waiting for one of them answers 404 now
            else:
                changed += await self._apply(ids, RULES[body.action])
            if len(ids) < query.limit:
                break
            query = replace(query, after_id=ids[-1])
        message = f"{changed} of {matched} matching tasks {DONE[body.action]}"
        return Reply(message, {"matched": matched, "changed": changed})

    async def _apply(self, ids: Sequence[int], rule: Rule) -> int:
        """Judge and write one page; a task whose row changed under it (or whose expiry came
        first) is read and judged again, up to ``MAX_DECIDE_ROUNDS``. How many the rule changed."""
        core = self.core
        changed = 0
        todo = list(ids)
        for _ in range(MAX_DECIDE_ROUNDS):
            now = core.clock.now()
            planned: list[tuple[bool, TaskChange]] = []
            waited_for: set[int] = set()
            for task in await core.store.get_tasks(todo):
                if removed(task, now):
                    continue
                due = lifecycle.expiry(task, now=now)
                try:
                    decided = due if due is not None else rule(task, now)
                except ValidationFailed:
                    continue  # the action does not apply to this task as it is
                transition = core.finish(decided, task)
                if transition is not None:
                    planned.append((due is not None, core.on_row(task, transition, now)))
                    if transition.changes.get("blocked"):
                        waited_for.update(task.depends_on)
            # A dependant retried is blocked again: its dependencies are marked first (B.5).
            await core.store.mark_dependencies(sorted(waited_for))
            results = await core.store.update_tasks([change for _, change in planned]) if planned else []
            await core.settle_ended(results)
            await self.dependencies.attached([task for task in results if task is not None and task.blocked])
            todo = []
            for (expired, change), after in zip(planned, results, strict=True):
                if after is None or expired:
                    todo.append(change.task_id)  # judge it again on its row as it is now
                    continue
                changed += 1
                if after.status == TaskStatus.PENDING:
                    core.signal.notify()  # a retried task is claimable again
                elif after.status in TERMINAL_STATUSES:
                    core.ended.notify()  # a request waiting for it answers now
                    core.delivered_ends([after])
            if not todo:
                break
        return changed
