"""Task dependencies (API.md B.5): settling a task's dependants when it ends, in bounded work.

A task created (or retried) with dependencies is pending and ``blocked``, and each task it
depends on carries a *dependant mark* (``Store.mark_dependencies``, before the dependant's row is
written). When a task with marks ends — completed, failed for good, cancelled, expired — its
blocked dependants are judged (``lifecycle.dependencies``): unblocked once all their
dependencies completed, cancelled (``dependency <id> <status>``) when one failed or was
cancelled. A cancelled dependant that has dependants of its own is settled in turn, so a
cascade walks a chain of any length — a page of dependants per transaction, never recursion.

The request that ended the task settles up to ``INLINE_PAGES`` pages itself; what is left keeps
its marks, and every server's sweep (``Sweeper``, each second) resumes from the ended tasks that
still carry marks (``Store.unsettled_tasks``). A task's marks are cleared only once all its
blocked dependants were judged, as a compare-and-set on the row as it was settled, so a
dependant attached meanwhile is never lost, and a server that dies mid-cascade leaves the rest
to the next sweep. A task without dependants has no marks: its end costs nothing more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial

from taskmanager.engine import lifecycle
from taskmanager.engine.records import ACTIVE_STATUSES, TERMINAL_STATUSES, Task, TaskStatus
from taskmanager.engine.store import Dependant, DependantsQuery, TaskChange, Transition
from taskmanager.engine.transitions import Transitions

#: Blocked dependants read and judged per transaction.
SETTLE_BATCH = 500
#: Pages a request settles itself after ending a task with dependants (the sweep does the rest).
INLINE_PAGES = 20
#: Ended tasks with marks one sweep picks up, and the pages it may spend on them.
SWEEP_TASKS = 100
SWEEP_PAGES = 200


def needs_settling(task: Task | None) -> bool:
    """Whether ``task`` ended with dependants to settle (a plain task never does)."""
    return task is not None and task.dependant_marks > 0 and task.status in TERMINAL_STATUSES


def _cancel_if_active(task: Task, *, now: datetime) -> Transition | None:
    if task.status not in ACTIVE_STATUSES:
        return None
    return lifecycle.cancel(task, reason="deleted", now=now)


@dataclass
class Dependencies:
    core: Transitions
    batch: int = SETTLE_BATCH

    async def settle(self, ended: Sequence[Task | None], pages: int = INLINE_PAGES) -> int:
        """Settle the dependants of the tasks of ``ended`` that need it, following cascades, for
        up to ``pages`` pages; how many pages it read. What is left keeps its marks."""
        frontier = [task for task in ended if needs_settling(task) and task is not None]
        used = 0
        while frontier and used < pages:
            of = tuple(task.id for task in frontier)
            after, finished, cascade = 0, False, []
            while used < pages:
                page = await self.core.store.blocked_dependants(DependantsQuery(of, after, self.batch))
                used += 1
                changed, missed = await self.judge(page)
                cascade += [task for task in changed if needs_settling(task)]
                if missed:
                    break  # a dependant changed under us: the sweep judges it again later
                if len(page) < self.batch:
                    finished = True
                    break
                after = page[-1].task.id
            if finished:
                await self.core.store.clear_dependant_marks(frontier)
            frontier = cascade
        return used

    async def judge(self, page: Sequence[Dependant]) -> tuple[list[Task], bool]:
        """Apply ``lifecycle.dependencies`` to each blocked dependant of ``page``: the tasks it
        changed, and whether a row had changed under the decision (nothing written to it)."""
        core = self.core
        now = core.clock.now()
        changes: list[TaskChange] = []
        for dependant in page:
            decided = lifecycle.dependencies(dependant.task, dependant.dependencies, now=now)
            transition = core.finish(decided, dependant.task)
            if transition is not None:
                change = core.on_row(dependant.task, transition, now)
                unblocked = "status" not in transition.changes
                changes.append(replace(change, wakes=True) if unblocked else change)
        written = await core.store.update_tasks(changes) if changes else []
        changed = [task for task in written if task is not None]
        if any(task.status == TaskStatus.PENDING for task in changed):
            core.signal.notify()  # unblocked: claimable now
        if any(task.status in TERMINAL_STATUSES for task in changed):
            core.ended.notify()
        return changed, len(changed) < len(changes)

    async def attached(self, tasks: Sequence[Task]) -> None:
        """Judge tasks just made blocked (created or retried with dependencies) on their
        dependencies as they are now. Their dependencies carry marks already, so if this never
        runs, their ends — or the sweep, for those already ended — judge them instead."""
        blocked = tuple(task.id for task in tasks if task.blocked)
        if blocked:
            await self.judge(await self.core.store.blocked_dependants(DependantsQuery((), ids=blocked)))

    async def before_delete(self, tasks: Sequence[Task]) -> None:
        """Before tasks are deleted: an unfinished one with dependants is cancelled first, and
        the dependants of each are settled, so none is left waiting for a task that is gone."""
        ended: list[Task] = []
        for task in tasks:
            if task.dependant_marks == 0:
                continue
            if task.status in ACTIVE_STATUSES:
                now = self.core.clock.now()
                ended.append(await self.core.transition(task.id, partial(_cancel_if_active, now=now), now))
            else:
                ended.append(task)
        if ended:
            await self.settle(ended)

    async def sweep(self) -> int:
        """One pass of the sweep: settle ended tasks still carrying marks (a cascade a request
        left, or one a server died in); how many such tasks it found."""
        found = await self.core.store.unsettled_tasks(SWEEP_TASKS)
        if found:
            await self.settle(found, SWEEP_PAGES)
        return len(found)
