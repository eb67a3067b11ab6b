"""The lifecycle against a model: a hypothesis state machine drives TaskService over a real store
(SQLite, PostgreSQL, MariaDB) with a frozen clock, and after every step checks the store against
a plain in-memory model of docs/design/lifecycle.md and against invariants that hold whatever
the model says.

Reproducible by design: ``derandomize=True`` makes hypothesis draw its examples from a seed fixed
by the test itself, so CI (a fresh clone with no example database to carry failures over) runs the
same sequences every time and a failure in CI fails the same way on a laptop. The price is that
each run explores the same space; set ``TASKMANAGER_MODEL_RANDOM=1`` (and raise
``TASKMANAGER_MODEL_EXAMPLES``) to explore new sequences locally.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select, text
from sqlalchemy.engine import Connection

from taskmanager import models
from taskmanager.engine.clock import FrozenClock
from taskmanager.engine.records import TypePolicy
from taskmanager.engine.service import TaskService
from taskmanager.engine.wire import iso
from taskmanager.errors import NoTasks, TaskManagerError
from taskmanager.store import SqlStore, open_store
from taskmanager.store.tables import tasks as tasks_table
from tests.conftest import START, TestDatabase
from tests.model.model import TYPES, Model, ModelTask

T = TypeVar("T")

RANDOM = os.environ.get("TASKMANAGER_MODEL_RANDOM") == "1"
EXAMPLES = int(os.environ.get("TASKMANAGER_MODEL_EXAMPLES", "25"))
STEPS = int(os.environ.get("TASKMANAGER_MODEL_STEPS", "40"))

WORKERS = ("w1", "w2", "w3")
KEYS = ("k0", "k1", "k2")
TOKEN_CHOICES = ("current", "none", "stale")


def retry_after(policy: TypePolicy, attempts: int, rng: object) -> float:
    """A fixed backoff (5 s per attempt made), so the model knows every ``run_after``."""
    return 5.0 * attempts


class LifecycleMachine(RuleBasedStateMachine):
    """One example: an empty database, three task types (one per dedupe scope), a fresh engine."""

    runner: asyncio.Runner
    store: SqlStore

    def __init__(self) -> None:
        super().__init__()
        self.clock = FrozenClock(START)
        self.service = TaskService(self.store, clock=self.clock, retry_policy=retry_after, version="0")
        self.run(self.store.db.run(_empty, write=True))
        for name, spec in TYPES.items():
            body = models.RegisterTaskType(name=name, version="1", param_schema={"type": "object"}, **spec)
            self.run(self.service.register_type(body))
        self.model = Model(self.clock)
        self.counter = 0

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coro)

    def attempt(self, coro: Coroutine[Any, Any, T]) -> T | TaskManagerError:
        try:
            return self.run(coro)
        except TaskManagerError as exc:
            return exc

    def pick(self, index: int) -> ModelTask:
        ids = sorted(self.model.tasks)
        return self.model.tasks[ids[index % len(ids)]]

    def token(self, task: ModelTask, choice: str) -> str | None:
        if choice == "current":
            return task.token
        if choice == "none":
            return None
        old = [t for t in task.tokens if t != task.token]
        return old[-1] if old else "not-a-token-of-this-task"

    # -- rules -----------------------------------------------------------------------------------

    @rule(
        type_name=st.sampled_from(sorted(TYPES)),
        key=st.sampled_from(KEYS),
        ttl=st.sampled_from([None, None, 5, 40]),
        max_attempts=st.sampled_from([None, None, 1, 2]),
        priority=st.sampled_from([0, 0, 1]),
    )
    def create(
        self, type_name: str, key: str, ttl: int | None, max_attempts: int | None, priority: int
    ) -> None:
        body = models.CreateTask(
            type=type_name,
            params={},
            dedupe_key=key,
            ttl_seconds=ttl,
            max_attempts=max_attempts,
            priority=priority,
        )
        data = self.run(self.service.create_task(body)).data
        holder = self.model.lock_holder(type_name, key)
        if holder is not None:
            assert (data["id"], data["duplicate"]) == (holder.id, True)
            return
        assert data["duplicate"] is False
        assert data["id"] not in self.model.tasks
        self.model.create(data["id"], type_name, key, ttl, max_attempts, priority)

    @rule(worker=st.sampled_from(WORKERS), lease_seconds=st.sampled_from([None, 15, 60]))
    def claim(self, worker: str, lease_seconds: int | None) -> None:
        got = self.attempt(
            self.service.claim(models.ClaimTasks(worker_id=worker, lease_seconds=lease_seconds))
        )
        expected = self.model.next_claimable()
        if expected is None:
            assert isinstance(got, NoTasks), got
            return
        assert not isinstance(got, TaskManagerError), got
        assert got.data["id"] == expected.id
        token = got.data["lease_token"]
        assert all(token not in t.tokens for t in self.model.tasks.values()), "a lease token handed out twice"
        self.model.claim(expected, worker, token, lease_seconds)
        assert got.data["attempts"] == expected.attempts

    @precondition(lambda self: self.model.tasks)
    @rule(
        index=st.integers(0, 63),
        worker=st.sampled_from(WORKERS),
        choice=st.sampled_from(TOKEN_CHOICES),
        lease_seconds=st.sampled_from([None, None, 10, 50]),
    )
    def heartbeat(self, index: int, worker: str, choice: str, lease_seconds: int | None) -> None:
        task = self.pick(index)
        body = models.Heartbeat(
            worker_id=worker, lease_token=self.token(task, choice), lease_seconds=lease_seconds
        )
        got = self.attempt(self.service.heartbeat(task.id, body))
        expected = self.model.heartbeat(task, worker, body.lease_token, lease_seconds)
        self.same_outcome(got, expected)
        if not isinstance(got, TaskManagerError):
            assert got.data["cancel_requested"] is (task.status == "cancelled")

    @precondition(lambda self: self.model.tasks)
    @rule(
        index=st.integers(0, 63),
        worker=st.sampled_from(WORKERS),
        choice=st.sampled_from(TOKEN_CHOICES),
        value=st.integers(0, 100),
    )
    def progress(self, index: int, worker: str, choice: str, value: int) -> None:
        task = self.pick(index)
        body = models.ReportProgress(worker_id=worker, progress=value, lease_token=self.token(task, choice))
        got = self.attempt(self.service.progress(task.id, body))
        self.same_outcome(got, self.model.progress(task, worker, body.lease_token, value))

    @precondition(lambda self: self.model.tasks)
    @rule(
        index=st.integers(0, 63),
        worker=st.sampled_from(WORKERS),
        choice=st.sampled_from(TOKEN_CHOICES),
        success=st.booleans(),
    )
    def complete(self, index: int, worker: str, choice: str, success: bool) -> None:
        task = self.pick(index)
        self.counter += 1
        result = {"n": self.counter}
        error = None if success else f"boom {self.counter}"
        body = models.CompleteTask(
            worker_id=worker,
            success=success,
            result=result,
            error=error,
            lease_token=self.token(task, choice),
        )
        got = self.attempt(self.service.complete(task.id, body))
        expected = self.model.complete(task, worker, body.lease_token, success, result, error)
        self.same_outcome(got, expected)
        if not isinstance(got, TaskManagerError):
            assert got.data["status"] == expected
            assert got.data["attempts"] == task.attempts

    @precondition(lambda self: self.model.tasks)
    @rule(index=st.integers(0, 63), reason=st.sampled_from([None, "operator"]))
    def cancel(self, index: int, reason: str | None) -> None:
        task = self.pick(index)
        got = self.attempt(self.service.cancel(task.id, models.CancelTask(reason=reason)))
        self.same_outcome(got, self.model.cancel(task, reason))

    @precondition(lambda self: self.model.tasks)
    @rule(index=st.integers(0, 63))
    def retry(self, index: int) -> None:
        task = self.pick(index)
        got = self.attempt(self.service.retry(task.id))
        self.same_outcome(got, self.model.retry(task))

    @rule(seconds=st.sampled_from([1, 3, 9, 31]))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)
        self.model.settle()

    @precondition(lambda self: self.model.deadlines())
    @rule(index=st.integers(0, 63), past=st.sampled_from([0, 1]), sweep=st.booleans())
    def expire(self, index: int, past: int, sweep: bool) -> None:
        """Move the clock exactly onto (or just past) a lease's end, a TTL or a retry's due time;
        then let a list's sweep settle what ran out, or the next reads."""
        deadlines = self.model.deadlines()
        self.clock.set(deadlines[index % len(deadlines)] + timedelta(seconds=past))
        if sweep:
            self.run(self.service.list_tasks(limit=1000))
        self.model.settle()

    def same_outcome(self, got: object, expected: object) -> None:
        """The store's answer is the model's: the same error class, or success for success."""
        if isinstance(expected, type):
            assert isinstance(got, expected), f"expected {expected.__name__}, got {got!r}"
        else:
            assert not isinstance(got, TaskManagerError), f"expected success, got {got!r}"

    # -- what must hold after every step ---------------------------------------------------------

    @invariant()
    def store_matches_model(self) -> None:
        seen = {}
        for task in self.model.tasks.values():
            data = self.run(self.service.get_task(task.id)).data
            record = self.run(self.store.get_task(task.id))
            assert record is not None
            events = [e["event"] for e in self.run(self.service.history(task.id)).data["events"]]
            assert_consistent(data, events)
            assert data["attempts"] <= data["max_attempts"]
            seen[task.id] = (data, record.lease_token, events)
        # Read after the reads above, which settled what the clock made due (as the model has).
        locks = dict(self.run(self.store.db.run(_dedupe_locks, write=False)))
        assert set(locks) == set(self.model.tasks), "tasks in the store are not the model's"
        for task in self.model.tasks.values():
            data, token, events = seen[task.id]
            assert {
                "status": data["status"],
                "attempts": data["attempts"],
                "max_attempts": data["max_attempts"],
                "claimed_by": data["claimed_by"],
                "lease_expires_at": data["lease_expires_at"],
                "run_after": data["run_after"],
                "expires_at": data["expires_at"],
                "result": data["result"],
                "error_message": data["error_message"],
                "progress": data["progress"],
                "lease_token": token,
                "dedupe_lock": locks[task.id],
                "events": events,
            } == task.view(iso)


def assert_consistent(data: dict[str, Any], events: list[str]) -> None:
    """History against state, with no model: one holder per attempt (a claim only after the last
    attempt ended), one claim event per attempt counted, and each final state its own event."""
    holding, claims = False, 0
    for event in events:
        if event == "claimed":
            assert not holding, f"claimed while still held: {events}"
            holding, claims = True, claims + 1
        elif event in ("completed", "failed", "lease_expired", "cancelled"):
            holding = False
        elif event == "retried":
            assert not holding, events
            claims = 0
    assert claims == data["attempts"], (data, events)
    assert holding == (data["status"] == "claimed"), (data, events)
    if data["status"] == "claimed":
        assert data["claimed_by"] is not None
        assert data["lease_expires_at"] is not None
    final = {"completed": ("completed",), "failed": ("failed",), "cancelled": ("cancelled", "expired")}
    if data["status"] in final:
        ending = [e for e in events if e not in ("progress", "retry_scheduled")]
        assert ending[-1] in final[data["status"]], (data, events)


def _empty(conn: Connection) -> None:
    for table in ("task_history", "tasks", "task_types"):
        conn.execute(text(f"DELETE FROM {table}"))


def _dedupe_locks(conn: Connection) -> list[tuple[int, str | None]]:
    rows = conn.execute(select(tasks_table.c.id, tasks_table.c.dedupe_lock))
    return [(row[0], row[1]) for row in rows]


async def _open(url: str) -> SqlStore:
    return open_store(url, pool_size=2)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_lifecycle_matches_the_model(clean_database: TestDatabase) -> None:
    with asyncio.Runner() as runner:
        store = runner.run(_open(clean_database.url))
        try:
            LifecycleMachine.runner = runner
            LifecycleMachine.store = store
            run_state_machine_as_test(
                LifecycleMachine,
                settings=settings(
                    max_examples=EXAMPLES,
                    stateful_step_count=STEPS,
                    derandomize=not RANDOM,
                    database=None,
                    deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
                    print_blob=True,
                ),
            )
        finally:
            runner.run(store.close())


def test_the_model_starts_empty() -> None:
    """The model alone (no database): a quick check that it is importable and starts empty."""
    model = Model(FrozenClock(START))
    assert model.tasks == {}
    assert model.next_claimable() is None
    assert START + timedelta(0) == model.clock.now()
