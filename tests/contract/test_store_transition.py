"""Store contract: update_task (compare-and-set), update_tasks, due_tasks and delete_task."""

from __future__ import annotations

from datetime import timedelta

import pytest

from taskmanager.engine import lifecycle
from taskmanager.engine.clock import FrozenClock
from taskmanager.engine.records import DedupeScope, HistoryEvent, NewEvent, Task, TaskStatus, TaskType
from taskmanager.engine.store import DueQuery, Expected, TaskChange, TaskQuery
from taskmanager.store import SqlStore
from tests.contract.builders import add_task, change, claim, make_type, set_columns


async def _get(store: SqlStore, task_id: int) -> Task:
    found = await store.get_task(task_id)
    assert found is not None
    return found


# -- update_task -----------------------------------------------------------------------------------


async def test_update_applies_changes_and_events(store: SqlStore, clock: FrozenClock) -> None:
    task_type = await make_type(store, "t", clock.now())
    task = await add_task(store, task_type, clock.now())
    clock.advance(3)
    now = clock.now()
    after = await store.update_task(
        change(
            task.id,
            now,
            expected={"status": TaskStatus.PENDING, "claimed_by": None},
            events=(NewEvent(HistoryEvent.COMPLETED, "w1", "done", {"k": 1}),),
            status=TaskStatus.COMPLETED,
            result={"words": ["ahoj", "světe"], "n": 2},
            error_message="warning ⚠",
            progress=100,
            completed_at=now,
            updated_at=now,
        )
    )
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


async def test_update_writes_several_events_in_order(store: SqlStore, clock: FrozenClock) -> None:
    task_type = await make_type(store, "t", clock.now())
    task = await add_task(store, task_type, clock.now())
    events = (
        NewEvent(HistoryEvent.FAILED, "w1", "no"),
        NewEvent(HistoryEvent.RETRY_SCHEDULED, "w1", None, {"a": 1}),
    )
    assert await store.update_task(change(task.id, clock.now(), events=events, progress=1)) is not None
    stored = await store.list_events(task.id)
    assert [(e.event, e.message, e.metadata) for e in stored[1:]] == [
        ("failed", "no", None),
        ("retry_scheduled", None, {"a": 1}),
    ]


@pytest.mark.parametrize(
    ("expected", "matches"),
    [
        pytest.param({"status": TaskStatus.CLAIMED, "claimed_by": "w1"}, True, id="holder"),
        pytest.param({"status": TaskStatus.CLAIMED, "claimed_by": "w2"}, False, id="other-worker"),
        pytest.param({"status": TaskStatus.PENDING}, False, id="other-status"),
        pytest.param({"lease_token": "stale"}, False, id="other-token"),
        pytest.param({"attempts": 1, "expires_at": None}, True, id="null-compared"),
        pytest.param({"attempts": 2}, False, id="other-attempts"),
        pytest.param({"completed_at": None, "run_after": None}, True, id="nulls"),
    ],
)
async def test_update_writes_only_where_the_row_holds_what_it_expects(
    store: SqlStore, clock: FrozenClock, expected: dict[str, object], matches: bool
) -> None:
    task_type = await make_type(store, "t", clock.now())
    task = await add_task(store, task_type, clock.now())
    (claimed,) = await claim(store, clock.now())
    after = await store.update_task(change(task.id, clock.now(), expected=expected, progress=42))
    if matches:
        assert after is not None
        assert after.progress == 42
        assert after == await _get(store, task.id)
    else:
        assert after is None
        assert await _get(store, task.id) == claimed


async def test_update_compares_timestamps_and_the_lease(store: SqlStore, clock: FrozenClock) -> None:
    task_type = await make_type(store, "t", clock.now())
    task = await add_task(store, task_type, clock.now())
    (claimed,) = await claim(store, clock.now())
    assert claimed.lease_expires_at is not None
    until = claimed.lease_expires_at
    stale = Expected({"lease_expires_at": until - timedelta(microseconds=1)})
    assert await store.update_task(TaskChange(task.id, stale, {"progress": 1}, (), clock.now())) is None
    same = Expected({"lease_expires_at": until})
    assert await store.update_task(TaskChange(task.id, same, {"progress": 2}, (), clock.now())) is not None
    over = Expected({}, lease_alive_at=until)
    assert await store.update_task(TaskChange(task.id, over, {"progress": 3}, (), clock.now())) is None
    alive = Expected({}, lease_alive_at=until - timedelta(microseconds=1))
    after = await store.update_task(TaskChange(task.id, alive, {"progress": 4}, (), clock.now()))
    assert after is not None
    assert after.progress == 4
    # A row without a lease has none to run out.
    await set_columns(store, task.id, clock.now(), lease_expires_at=None)
    assert await store.update_task(TaskChange(task.id, over, {"progress": 5}, (), clock.now())) is not None


@pytest.mark.parametrize("scope", list(DedupeScope))
async def test_update_compares_the_type_dedupe_scope(
    store: SqlStore, clock: FrozenClock, scope: DedupeScope
) -> None:
    task_type = await make_type(store, "t", clock.now(), dedupe=scope.value)
    task = await add_task(store, task_type, clock.now())
    expected = Expected({}, dedupe_scopes=(DedupeScope.ALL, DedupeScope.NONE))
    after = await store.update_task(TaskChange(task.id, expected, {"progress": 7}, (), clock.now()))
    assert (after is not None) == (scope != DedupeScope.ACTIVE)


async def test_a_missed_update_writes_no_events(store: SqlStore, clock: FrozenClock) -> None:
    task_type = await make_type(store, "t", clock.now())
    task = await add_task(store, task_type, clock.now())
    missed = change(
        task.id,
        clock.now(),
        expected={"status": TaskStatus.CLAIMED},
        events=(NewEvent(HistoryEvent.COMPLETED, "w1"),),
        status=TaskStatus.COMPLETED,
    )
    assert await store.update_task(missed) is None
    assert await store.get_task(task.id) == task
    assert len(await store.list_events(task.id)) == 1


async def test_update_of_an_unknown_task_is_none(store: SqlStore, clock: FrozenClock) -> None:
    assert await store.update_task(change(999, clock.now(), progress=1)) is None


async def test_an_update_back_to_pending_with_a_wake_is_written(store: SqlStore, clock: FrozenClock) -> None:
    """``wakes`` tells claimers in other processes to look again (PostgreSQL NOTIFY); the change
    is written as any other."""
    task_type = await make_type(store, "t", clock.now())
    task = await add_task(store, task_type, clock.now())
    await claim(store, clock.now())
    back = TaskChange(
        task.id,
        Expected({"status": TaskStatus.CLAIMED}),
        {"status": TaskStatus.PENDING, "claimed_by": None, "lease_token": None},
        (NewEvent(HistoryEvent.LEASE_EXPIRED),),
        clock.now(),
        wakes=True,
    )
    after = await store.update_task(back)
    assert after is not None
    assert (after.status, after.claimed_by) == (TaskStatus.PENDING, None)
    assert [t.id for t in await claim(store, clock.now())] == [task.id]


async def test_a_change_to_an_unknown_column_is_refused(store: SqlStore, clock: FrozenClock) -> None:
    task_type = await make_type(store, "t", clock.now())
    task = await add_task(store, task_type, clock.now())
    with pytest.raises(ValueError, match="not writable"):
        await store.update_task(change(task.id, clock.now(), progress=5, type_id=2))
    assert await store.get_task(task.id) == task


async def test_the_dedupe_lock_is_writable_but_not_part_of_the_task(
    store: SqlStore, clock: FrozenClock
) -> None:
    task_type = await make_type(store, "t", clock.now())
    task = await add_task(store, task_type, clock.now())
    after = await set_columns(store, task.id, clock.now(), dedupe_lock=None, progress=1)
    assert after.progress == 1
    assert after.dedupe_key == task.dedupe_key


async def test_lifecycle_through_updates(store: SqlStore, clock: FrozenClock) -> None:
    task_type = await make_type(store, "t", clock.now())
    task = await add_task(store, task_type, clock.now())
    (claimed,) = await claim(store, clock.now())
    clock.advance(10)
    now = clock.now()
    transition = lifecycle.progress(
        claimed, worker_id="w1", value=50, message="half", lease_token=None, now=now
    )
    progressed = await store.update_task(
        TaskChange(task.id, lifecycle.as_read(claimed), transition.changes, transition.events, now)
    )
    assert progressed is not None
    assert progressed.progress == 50
    assert progressed.lease_expires_at == now + timedelta(seconds=300)
    assert progressed.lease_token == claimed.lease_token
    events = [e.event for e in await store.list_events(task.id)]
    assert events == ["created", "claimed", "progress"]
    # Decided on the row as it read before the progress: the row moved on, so it misses.
    again = await store.update_task(
        TaskChange(task.id, lifecycle.as_read(claimed), {"progress": 60}, (), now)
    )
    assert again is None


# -- update_tasks ----------------------------------------------------------------------------------


async def test_update_many_writes_each_row_what_it_was_given(store: SqlStore, clock: FrozenClock) -> None:
    task_type = await make_type(store, "t", clock.now())
    tasks = [await add_task(store, task_type, clock.now(), params={"n": n}) for n in range(4)]
    clock.advance(2)
    now = clock.now()
    results = {tasks[0].id: {"same": 1}, tasks[1].id: {"same": 1}, tasks[2].id: [2]}
    changes = [
        change(
            t.id,
            now,
            expected={"status": TaskStatus.PENDING},
            events=(NewEvent(HistoryEvent.COMPLETED, "w1", None, {"n": 2} if t.id == tasks[2].id else None),),
            status=TaskStatus.COMPLETED,
            result=results[t.id],
            progress=100,
            updated_at=now,
        )
        for t in reversed(tasks[:3])
    ]
    changes.append(change(tasks[3].id, now, expected={"status": TaskStatus.CLAIMED}, progress=9))  # misses
    after = await store.update_tasks(changes)
    assert [t.id if t is not None else None for t in after] == [tasks[2].id, tasks[1].id, tasks[0].id, None]
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
    assert (untouched.status, untouched.progress) == (TaskStatus.PENDING, 0)
    assert len(await store.list_events(tasks[3].id)) == 1
    assert await store.update_tasks([]) == []


async def test_a_batch_of_one_shape_compares_each_row_with_its_own_values(
    store: SqlStore, clock: FrozenClock
) -> None:
    """The usual batch complete: every change alike but in its values (holder, token, result).
    Each row is compared with its own expectation — holder, token, a lease still running, the
    type's dedupe scope — and a miss leaves its row and history alone."""
    kept = await make_type(store, "kept", clock.now(), dedupe="all")
    freed = await make_type(store, "freed", clock.now(), dedupe="active")
    made = [await add_task(store, kept, clock.now()) for _ in range(4)]
    other = await add_task(store, freed, clock.now())
    held = {}
    for n, task in enumerate([*made, other]):
        (held[task.id],) = await claim(store, clock.now(), f"w{n}", lease_seconds=30 if n == 0 else 60)
        assert held[task.id].id == task.id  # claims take the oldest first
    clock.advance(31)  # w0's lease (30 s) has run out; the others' have not
    now = clock.now()

    def complete(task: Task, worker_id: str, token: str | None) -> TaskChange:
        return TaskChange(
            task.id,
            Expected(
                {"status": TaskStatus.CLAIMED, "claimed_by": worker_id, "lease_token": token},
                lease_alive_at=now,
                dedupe_scopes=(DedupeScope.ALL, DedupeScope.NONE),
            ),
            {"status": TaskStatus.COMPLETED, "result": {"by": worker_id}, "completed_at": now},
            (NewEvent(HistoryEvent.COMPLETED, worker_id, None, None),),
            now,
        )

    token = {task_id: task.lease_token for task_id, task in held.items()}
    changes = [
        complete(made[3], "w3", token[made[3].id]),  # matches
        complete(made[0], "w0", token[made[0].id]),  # its lease ran out
        complete(made[1], "w1", token[made[1].id]),  # matches
        complete(made[2], "w9", token[made[2].id]),  # not its holder
        complete(other, "w4", token[other.id]),  # its type's dedupe scope is another
    ]
    after = await store.update_tasks(changes)
    assert [t.id if t is not None else None for t in after] == [made[3].id, None, made[1].id, None, None]
    for task, worker_id in ((made[3], "w3"), (made[1], "w1")):
        stored = await _get(store, task.id)
        expected = (TaskStatus.COMPLETED, {"by": worker_id}, now)
        assert (stored.status, stored.result, stored.completed_at) == expected
        assert stored in after
        events = await store.list_events(task.id)
        assert (events[-1].event, events[-1].worker_id) == ("completed", worker_id)
    for task in (made[0], made[2], other):
        stored = await _get(store, task.id)
        assert (stored.status, stored.result) == (TaskStatus.CLAIMED, None)
        assert [e.event for e in await store.list_events(task.id)][-1] == "claimed"


async def test_get_tasks_reads_those_that_exist_in_id_order(store: SqlStore, clock: FrozenClock) -> None:
    task_type = await make_type(store, "t", clock.now())
    made = [await add_task(store, task_type, clock.now()) for _ in range(3)]
    found = await store.get_tasks([made[2].id, 999, made[0].id, made[2].id])
    assert found == [made[0], made[2]]
    assert await store.get_tasks([]) == []


# -- due_tasks -------------------------------------------------------------------------------------


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
            ("lease_ends_now", None),
            ("lease_running", None),
            ("done", now - timedelta(hours=1)),
        )
    }
    lease = {
        "lease_over": now - timedelta(seconds=1),
        "lease_ends_now": now,
        "lease_running": now + timedelta(seconds=1),
    }
    for name, until in lease.items():
        await set_columns(
            store,
            made[name].id,
            now,
            status=TaskStatus.CLAIMED,
            claimed_by="w1",
            attempts=1,
            lease_expires_at=until,
        )
    await set_columns(store, made["done"].id, now, status=TaskStatus.COMPLETED)
    return made


async def test_due_tasks_are_the_rows_whose_time_is_up(store: SqlStore, clock: FrozenClock) -> None:
    task_type = await make_type(store, "t", clock.now())
    made = await _due_and_not_due(store, task_type, clock)
    names = {task.id: name for name, task in made.items()}
    due = await store.due_tasks(DueQuery(clock.now()))
    assert sorted(names[t.id] for t in due) == ["expired", "expires_now", "lease_ends_now", "lease_over"]
    for task in due:
        assert task == await _get(store, task.id)
        assert lifecycle.expiry(task, now=clock.now()) is not None


async def test_due_tasks_takes_at_most_limit_rows(store: SqlStore, clock: FrozenClock) -> None:
    task_type = await make_type(store, "t", clock.now())
    for _ in range(5):
        await add_task(store, task_type, clock.now(), expires_at=clock.now())
    assert len(await store.due_tasks(DueQuery(clock.now(), limit=2))) == 2
    assert len(await store.due_tasks(DueQuery(clock.now()))) == 5


async def test_nothing_due_is_empty(store: SqlStore, clock: FrozenClock) -> None:
    task_type = await make_type(store, "t", clock.now())
    await add_task(store, task_type, clock.now(), expires_at=clock.now() + timedelta(minutes=1))
    assert await store.due_tasks(DueQuery(clock.now())) == []


# -- delete_task -----------------------------------------------------------------------------------


async def test_delete_removes_the_task_and_its_history(store: SqlStore, clock: FrozenClock) -> None:
    task_type = await make_type(store, "t", clock.now())
    doomed = await add_task(store, task_type, clock.now())
    kept = await add_task(store, task_type, clock.now())
    await claim(store, clock.now(), limit=2)
    assert len(await store.list_events(doomed.id)) == 2
    assert await store.delete_task(doomed.id) is True
    assert await store.get_task(doomed.id) is None
    assert await store.list_events(doomed.id) == []
    assert (await store.list_tasks(TaskQuery())).total == 1
    assert len(await store.list_events(kept.id)) == 2
    assert await store.delete_task(doomed.id) is False


async def test_delete_of_an_unknown_task_is_false(store: SqlStore) -> None:
    assert await store.delete_task(12345) is False
