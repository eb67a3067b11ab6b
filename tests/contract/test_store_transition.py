"""Store contract: transition_task, settle_tasks and delete_task."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from taskmanager.engine import lifecycle
from taskmanager.engine.clock import FrozenClock
from taskmanager.engine.records import HistoryEvent, NewEvent, Task, TaskStatus, TaskType
from taskmanager.engine.store import SettleQuery, TaskQuery, Transition
from taskmanager.errors import LeaseLost, ValidationFailed
from taskmanager.store import SqlStore
from tests.contract.builders import add_task, claim_by, claim_query, make_type, set_columns


async def _get(store: SqlStore, task_id: int) -> Task:
    found = await store.get_task(task_id)
    assert found is not None
    return found


# -- transition_task -------------------------------------------------------------------------------


async def test_transition_applies_changes_and_events(store: SqlStore, clock: FrozenClock) -> None:
    task_type = await make_type(store, "t", clock.now())
    task = await add_task(store, task_type, clock.now())
    clock.advance(3)
    now = clock.now()
    seen: list[Task] = []

    def decide(current: Task) -> Transition:
        seen.append(current)
        return Transition(
            {
                "status": TaskStatus.COMPLETED,
                "result": {"words": ["ahoj", "světe"], "n": 2},
                "error_message": "warning ⚠",
                "progress": 100,
                "completed_at": now,
                "updated_at": now,
            },
            (NewEvent(HistoryEvent.COMPLETED, "w1", "done", {"k": 1}),),
        )

    after = await store.transition_task(task.id, decide, now)
    assert seen == [task]
    assert after is not None
    assert after.status == TaskStatus.COMPLETED
    assert after.result == {"words": ["ahoj", "světe"], "n": 2}
    assert (after.error_message, after.progress, after.completed_at) == ("warning ⚠", 100, now)
    assert await store.get_task(task.id) == after
    events = await store.list_events(task.id)
    assert [(e.event, e.worker_id, e.message, e.metadata) for e in events[1:]] == [
        ("completed", "w1", "done", {"k": 1})
    ]
    assert events[1].created_at == now


async def test_transition_of_many_writes_each_row_what_it_was_given(
    store: SqlStore, clock: FrozenClock
) -> None:
    """Values some rows share and values that differ, in the same columns, land on the right rows
    (PostgreSQL binds a value every row shares once and unnests the rest)."""
    task_type = await make_type(store, "t", clock.now())
    tasks = [await add_task(store, task_type, clock.now(), params={"n": n}) for n in range(4)]
    clock.advance(2)
    now = clock.now()
    results = {tasks[0].id: {"same": 1}, tasks[1].id: {"same": 1}, tasks[2].id: [2], tasks[3].id: {"same": 1}}

    def decide(current: Task) -> Transition | None:
        if current.id == tasks[3].id:
            return None  # left as it is
        n = current.params["n"]
        return Transition(
            {
                "status": TaskStatus.COMPLETED,
                "result": results[current.id],
                "progress": 100,
                "updated_at": now,
            },
            (NewEvent(HistoryEvent.COMPLETED, "w1", None, {"n": n} if n == 2 else None),),
        )

    after = await store.transition_tasks([t.id for t in reversed(tasks)], decide, now)
    assert [t.id for t in after] == [t.id for t in tasks]
    for task in tasks[:3]:
        stored = await _get(store, task.id)
        assert (stored.status, stored.result, stored.progress, stored.updated_at) == (
            TaskStatus.COMPLETED,
            results[task.id],
            100,
            now,
        )
        assert stored in after
        (_, completed) = await store.list_events(task.id)
        assert (completed.event, completed.worker_id, completed.created_at) == ("completed", "w1", now)
        assert completed.metadata == ({"n": 2} if task.id == tasks[2].id else None)
    untouched = await _get(store, tasks[3].id)
    assert (untouched.status, untouched.result) == (TaskStatus.PENDING, None)
    assert len(await store.list_events(tasks[3].id)) == 1


async def test_a_transition_decided_ahead_is_applied_only_where_the_row_matches(
    store: SqlStore, clock: FrozenClock
) -> None:
    """``ahead`` is what ``decide`` gives on a matching row: where the row matches, the store
    writes it (PostgreSQL in one statement, without calling ``decide``); where it does not,
    ``decide`` judges the row and nothing of ``ahead`` is written."""
    task_type = await make_type(store, "t", clock.now())
    now = clock.now()
    held = await add_task(store, task_type, now, params={"n": 1})
    other = await add_task(store, task_type, now, params={"n": 2})
    for task in (held, other):
        await store.transition_task(task.id, claim_by("w1", now), now)
    token = (await _get(store, held.id)).lease_token
    request = lifecycle.Completion("w1", True, {"done": True}, None, token)
    ahead = lifecycle.complete_ahead(request, now=now)
    assert ahead is not None
    calls: list[int] = []

    def decide(current: Task) -> Transition | None:
        calls.append(current.id)
        return lifecycle.complete(current, request, now=now, rng=random.Random(1))

    done = await store.transition_task(held.id, decide, now, ahead)
    assert done is not None
    assert (done.status, done.result, done.progress, done.completed_at) == (
        TaskStatus.COMPLETED,
        {"done": True},
        100,
        now,
    )
    assert done == await _get(store, held.id)
    assert [e.event for e in await store.list_events(held.id)] == ["created", "claimed", "completed"]
    if store.hot is not None:
        assert calls == []  # one statement, no lock-and-decide
    # The other task is held under another token: ``ahead`` does not match, ``decide`` refuses.
    calls.clear()
    with pytest.raises(LeaseLost):
        await store.transition_task(other.id, decide, now, ahead)
    assert calls == [other.id]
    unchanged = await _get(store, other.id)
    assert (unchanged.status, unchanged.result) == (TaskStatus.CLAIMED, None)
    assert [e.event for e in await store.list_events(other.id)] == ["created", "claimed"]


async def test_transition_of_an_unknown_task_is_none(store: SqlStore, clock: FrozenClock) -> None:
    calls: list[Task] = []

    def decide(task: Task) -> None:
        calls.append(task)

    assert await store.transition_task(999, decide, clock.now()) is None
    assert calls == []


async def test_a_decision_of_none_changes_nothing(store: SqlStore, clock: FrozenClock) -> None:
    task_type = await make_type(store, "t", clock.now())
    task = await add_task(store, task_type, clock.now())
    assert await store.transition_task(task.id, lambda _: None, clock.now()) == task
    assert await store.get_task(task.id) == task
    assert len(await store.list_events(task.id)) == 1


async def test_a_raising_decision_rolls_back(store: SqlStore, clock: FrozenClock) -> None:
    task_type = await make_type(store, "t", clock.now())
    task = await add_task(store, task_type, clock.now())
    request = lifecycle.Completion("w1", True)
    with pytest.raises(ValidationFailed, match="Task is not in claimed state"):
        await store.transition_task(
            task.id,
            lambda t: lifecycle.complete(t, request, now=clock.now(), rng=random.Random(0)),
            clock.now(),
        )
    assert await store.get_task(task.id) == task
    assert len(await store.list_events(task.id)) == 1


async def test_a_change_to_an_unknown_column_is_refused_and_rolled_back(
    store: SqlStore, clock: FrozenClock
) -> None:
    task_type = await make_type(store, "t", clock.now())
    task = await add_task(store, task_type, clock.now())
    with pytest.raises(ValueError, match="not writable"):
        await store.transition_task(task.id, set_columns(progress=5, type_id=2), clock.now())
    assert await store.get_task(task.id) == task


async def test_the_dedupe_lock_is_writable_but_not_part_of_the_task(
    store: SqlStore, clock: FrozenClock
) -> None:
    task_type = await make_type(store, "t", clock.now())
    task = await add_task(store, task_type, clock.now())
    after = await store.transition_task(task.id, set_columns(dedupe_lock=None, progress=1), clock.now())
    assert after is not None
    assert after.progress == 1
    assert after.dedupe_key == task.dedupe_key


async def test_lifecycle_through_transitions(store: SqlStore, clock: FrozenClock) -> None:
    task_type = await make_type(store, "t", clock.now())
    task = await add_task(store, task_type, clock.now())
    (claimed,) = await store.claim_tasks(claim_query(clock.now()), claim_by("w1", clock.now()))
    clock.advance(10)
    now = clock.now()
    progressed = await store.transition_task(
        task.id,
        lambda t: lifecycle.progress(t, worker_id="w1", value=50, message="half", lease_token=None, now=now),
        now,
    )
    assert progressed is not None
    assert progressed.progress == 50
    assert progressed.lease_expires_at == now + timedelta(seconds=300)
    assert progressed.lease_token == claimed.lease_token
    events = [e.event for e in await store.list_events(task.id)]
    assert events == ["created", "claimed", "progress"]


# -- settle_tasks ----------------------------------------------------------------------------------


async def _due_and_not_due(store: SqlStore, task_type: TaskType, clock: FrozenClock) -> dict[str, Task]:
    now = clock.now()
    made = {
        name: await add_task(store, task_type, now, expires_at=expires)
        for name, expires in (
            ("expired", now - timedelta(seconds=1)),
            ("expires_now", now),
            ("expires_later", now + timedelta(seconds=1)),
            ("no_deadline", None),
            ("lease_over", None),
            ("lease_running", None),
            ("done", now - timedelta(hours=1)),
        )
    }
    lease = {"lease_over": now - timedelta(seconds=1), "lease_running": now + timedelta(seconds=1)}
    for name, until in lease.items():
        await store.transition_task(
            made[name].id,
            set_columns(status=TaskStatus.CLAIMED, claimed_by="w1", attempts=1, lease_expires_at=until),
            now,
        )
    await store.transition_task(made["done"].id, set_columns(status=TaskStatus.COMPLETED), now)
    return made


async def test_settle_visits_only_rows_whose_time_is_up(store: SqlStore, clock: FrozenClock) -> None:
    task_type = await make_type(store, "t", clock.now())
    made = await _due_and_not_due(store, task_type, clock)
    before = {name: await _get(store, task.id) for name, task in made.items()}
    visited: list[int] = []

    def decide(task: Task) -> Transition | None:
        visited.append(task.id)
        return lifecycle.settle(task, now=clock.now())

    assert await store.settle_tasks(SettleQuery(clock.now()), decide) == 3
    names = {task.id: name for name, task in made.items()}
    assert sorted(names[i] for i in visited) == ["expired", "expires_now", "lease_over"]
    assert (await _get(store, made["expired"].id)).status == TaskStatus.CANCELLED
    assert (await _get(store, made["expires_now"].id)).error_message == "expired"
    over = await _get(store, made["lease_over"].id)
    assert (over.status, over.claimed_by) == (TaskStatus.PENDING, None)
    assert [e.event for e in await store.list_events(over.id)] == ["created", "lease_expired"]
    for name in ("expires_later", "no_deadline", "lease_running", "done"):
        assert await store.get_task(made[name].id) == before[name]
    # Once settled, nothing is due any more.
    assert await store.settle_tasks(SettleQuery(clock.now()), decide) == 0
    assert len(visited) == 3


async def test_settle_of_one_task(store: SqlStore, clock: FrozenClock) -> None:
    task_type = await make_type(store, "t", clock.now())
    made = await _due_and_not_due(store, task_type, clock)
    decide = lambda t: lifecycle.settle(t, now=clock.now())  # noqa: E731
    assert await store.settle_tasks(SettleQuery(clock.now(), task_id=made["lease_running"].id), decide) == 0
    assert await store.settle_tasks(SettleQuery(clock.now(), task_id=made["lease_over"].id), decide) == 1
    assert (await _get(store, made["expired"].id)).status == TaskStatus.PENDING
    cancelled = await store.list_tasks(TaskQuery(statuses=(TaskStatus.CANCELLED,)))
    assert cancelled.total == 0


async def test_settle_takes_at_most_limit_rows(store: SqlStore, clock: FrozenClock) -> None:
    task_type = await make_type(store, "t", clock.now())
    for _ in range(5):
        await add_task(store, task_type, clock.now(), expires_at=clock.now())
    decide = lambda t: lifecycle.settle(t, now=clock.now())  # noqa: E731
    assert await store.settle_tasks(SettleQuery(clock.now(), limit=2), decide) == 2
    assert await store.settle_tasks(SettleQuery(clock.now(), limit=2), decide) == 2
    assert await store.settle_tasks(SettleQuery(clock.now(), limit=2), decide) == 1
    assert (await store.list_tasks(TaskQuery(statuses=(TaskStatus.CANCELLED,)))).total == 5


async def test_settle_counts_only_rows_it_changed(store: SqlStore, clock: FrozenClock) -> None:
    task_type = await make_type(store, "t", clock.now())
    task = await add_task(store, task_type, clock.now(), expires_at=clock.now())
    visited: list[int] = []

    def decide(current: Task) -> None:
        visited.append(current.id)

    assert await store.settle_tasks(SettleQuery(clock.now()), decide) == 0
    assert visited == [task.id]
    assert await store.get_task(task.id) == task


async def test_settle_with_nothing_due_does_not_call_decide(store: SqlStore, clock: FrozenClock) -> None:
    task_type = await make_type(store, "t", clock.now())
    await add_task(store, task_type, clock.now(), expires_at=clock.now() + timedelta(minutes=1))

    def decide(task: Task) -> None:
        raise AssertionError("nothing is due")

    assert await store.settle_tasks(SettleQuery(clock.now()), decide) == 0


async def test_a_raising_settle_rolls_back_every_row(store: SqlStore, clock: FrozenClock) -> None:
    task_type = await make_type(store, "t", clock.now())
    made = [await add_task(store, task_type, clock.now(), expires_at=clock.now()) for _ in range(3)]
    calls: list[int] = []

    def decide(task: Task) -> Transition | None:
        calls.append(task.id)
        if len(calls) == 2:
            raise RuntimeError("stop")
        return lifecycle.settle(task, now=clock.now())

    with pytest.raises(RuntimeError, match="stop"):
        await store.settle_tasks(SettleQuery(clock.now()), decide)
    assert len(calls) == 2
    for task in made:
        assert await store.get_task(task.id) == task
        assert len(await store.list_events(task.id)) == 1


# -- delete_task -----------------------------------------------------------------------------------


async def test_delete_removes_the_task_and_its_history(store: SqlStore, clock: FrozenClock) -> None:
    task_type = await make_type(store, "t", clock.now())
    doomed = await add_task(store, task_type, clock.now())
    kept = await add_task(store, task_type, clock.now())
    await store.claim_tasks(claim_query(clock.now(), limit=2), claim_by("w1", clock.now()))
    assert len(await store.list_events(doomed.id)) == 2
    assert await store.delete_task(doomed.id) is True
    assert await store.get_task(doomed.id) is None
    assert await store.list_events(doomed.id) == []
    assert (await store.list_tasks(TaskQuery())).total == 1
    assert len(await store.list_events(kept.id)) == 2
    assert await store.delete_task(doomed.id) is False


async def test_delete_of_an_unknown_task_is_false(store: SqlStore) -> None:
    assert await store.delete_task(12345) is False
