"""The lifecycle rules of engine/lifecycle.py on hand-built task records, with a frozen clock."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from taskmanager.engine import lifecycle
from taskmanager.engine.clock import FrozenClock
from taskmanager.engine.lifecycle import Completion
from taskmanager.engine.policy import RetryPolicy
from taskmanager.engine.records import DedupeScope, HistoryEvent, Task, TaskStatus, TypePolicy
from taskmanager.engine.store import Transition
from taskmanager.engine.wire import iso
from taskmanager.errors import Forbidden, LeaseLost, TaskManagerError, ValidationFailed

START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
TOKEN = "token-of-the-current-lease"
POLICY = TypePolicy(claim_timeout=300, retry_delay=2.0, retry_max_delay=3600.0, dedupe=DedupeScope.ALL)

PENDING = Task(
    id=7,
    type_id=1,
    type="PrismQ.Script.Generate",
    status=TaskStatus.PENDING,
    params={"topic": "AI"},
    result=None,
    error_message=None,
    priority=0,
    progress=0,
    attempts=0,
    max_attempts=3,
    claimed_by=None,
    claimed_at=None,
    lease_expires_at=None,
    lease_token=None,
    completed_at=None,
    run_after=None,
    expires_at=None,
    assigned_to=None,
    created_at=START - timedelta(minutes=5),
    updated_at=START - timedelta(minutes=5),
    dedupe_key="k",
    schedule=None,
    scheduled_for=None,
    depends_on=(),
    blocked=False,
    dependant_marks=0,
    awaited=False,
    callback_url=None,
    policy=POLICY,
)


@pytest.fixture
def now(clock: FrozenClock) -> datetime:
    return clock.now()


def claimed(now: datetime, **changes: Any) -> Task:
    """The base task held by worker w1 under TOKEN, on its first attempt, lease still running."""
    fields: dict[str, Any] = {
        "status": TaskStatus.CLAIMED,
        "claimed_by": "w1",
        "claimed_at": now - timedelta(seconds=10),
        "lease_expires_at": now + timedelta(seconds=290),
        "lease_token": TOKEN,
        "attempts": 1,
        **changes,
    }
    return replace(PENDING, **fields)


def events(transition: Transition | None) -> list[HistoryEvent]:
    assert transition is not None
    return [e.event for e in transition.events]


def apply(task: Task, transition: Transition | None) -> Task:
    assert transition is not None
    return replace(task, **transition.changes)


# -- claim -----------------------------------------------------------------------------------------


def test_claim_hands_the_task_to_the_worker_under_a_fresh_lease(now: datetime) -> None:
    task = replace(PENDING, progress=40)
    transition = lifecycle.claim(task, now=now, worker_id="w1", lease_seconds=None)
    after = apply(task, transition)
    assert after.status == TaskStatus.CLAIMED
    assert after.claimed_by == "w1"
    assert after.claimed_at == now
    assert after.lease_expires_at == now + timedelta(seconds=300)
    assert after.attempts == 1
    assert after.progress == 0
    assert after.updated_at == now
    assert after.lease_token
    assert len(after.lease_token) >= 24
    (event,) = transition.events
    assert (event.event, event.worker_id, event.metadata) == (HistoryEvent.CLAIMED, "w1", {"attempt": 1})


def test_claim_counts_the_attempt_on_top_of_earlier_ones(now: datetime) -> None:
    task = replace(PENDING, attempts=2)
    after = apply(task, lifecycle.claim(task, now=now, worker_id="w2", lease_seconds=None))
    assert after.attempts == 3


def test_claim_lease_seconds_overrides_the_claim_timeout(now: datetime) -> None:
    after = apply(PENDING, lifecycle.claim(PENDING, now=now, worker_id="w1", lease_seconds=30))
    assert after.lease_expires_at == now + timedelta(seconds=30)


def test_every_claim_gets_a_new_lease_token(now: datetime) -> None:
    tokens = {
        apply(PENDING, lifecycle.claim(PENDING, now=now, worker_id="w1", lease_seconds=None)).lease_token
        for _ in range(50)
    }
    assert len(tokens) == 50


# -- expiry ----------------------------------------------------------------------------------------


def test_expiry_returns_an_expired_lease_with_attempts_left_to_pending(now: datetime) -> None:
    task = claimed(now, lease_expires_at=now - timedelta(seconds=1), attempts=2)
    transition = lifecycle.expiry(task, now=now)
    after = apply(task, transition)
    assert after.status == TaskStatus.PENDING
    assert (after.claimed_by, after.claimed_at, after.lease_expires_at, after.lease_token) == (
        None,
        None,
        None,
        None,
    )
    assert after.attempts == 2
    assert after.error_message is None
    assert after.updated_at == now
    assert events(transition) == [HistoryEvent.LEASE_EXPIRED]
    assert transition is not None
    assert transition.events[0].worker_id == "w1"


def test_expiry_treats_a_lease_ending_exactly_now_as_expired(now: datetime) -> None:
    task = claimed(now, lease_expires_at=now)
    assert apply(task, lifecycle.expiry(task, now=now)).status == TaskStatus.PENDING


def test_expiry_fails_an_expired_lease_without_attempts_left(now: datetime) -> None:
    task = claimed(now, lease_expires_at=now - timedelta(seconds=1), attempts=3, max_attempts=3)
    transition = lifecycle.expiry(task, now=now)
    after = apply(task, transition)
    assert after.status == TaskStatus.FAILED
    assert after.error_message == "Claim timeout exceeded after 3 attempts"
    assert after.completed_at == now
    assert after.lease_token is None
    assert events(transition) == [HistoryEvent.LEASE_EXPIRED, HistoryEvent.FAILED]
    assert transition is not None
    assert transition.events[1].message == "Claim timeout exceeded after 3 attempts"


def test_expiry_failure_message_names_the_attempt_count(now: datetime) -> None:
    task = claimed(now, lease_expires_at=now - timedelta(seconds=1), attempts=1, max_attempts=1)
    after = apply(task, lifecycle.expiry(task, now=now))
    assert after.error_message == "Claim timeout exceeded after 1 attempts"


def test_expiry_cancels_a_pending_task_past_expires_at(now: datetime) -> None:
    task = replace(PENDING, expires_at=now - timedelta(seconds=1))
    transition = lifecycle.expiry(task, now=now)
    after = apply(task, transition)
    assert after.status == TaskStatus.CANCELLED
    assert after.error_message == "expired"
    assert after.completed_at == now
    assert events(transition) == [HistoryEvent.EXPIRED]


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({}, id="pending-without-deadline"),
        pytest.param({"expires_at": START + timedelta(seconds=1)}, id="pending-not-yet-expired"),
        pytest.param(
            {
                "status": TaskStatus.CLAIMED,
                "claimed_by": "w1",
                "attempts": 1,
                "lease_expires_at": START + timedelta(seconds=1),
            },
            id="lease-still-running",
        ),
        pytest.param(
            {
                "status": TaskStatus.CLAIMED,
                "claimed_by": "w1",
                "attempts": 1,
                "lease_expires_at": START + timedelta(seconds=1),
                "expires_at": START - timedelta(hours=1),
            },
            id="claimed-past-expires-at",
        ),
        pytest.param(
            {
                "status": TaskStatus.COMPLETED,
                "lease_expires_at": START - timedelta(hours=1),
                "expires_at": START - timedelta(hours=1),
            },
            id="completed",
        ),
        pytest.param({"status": TaskStatus.FAILED, "expires_at": START - timedelta(hours=1)}, id="failed"),
    ],
)
def test_expiry_leaves_tasks_that_are_not_due(changes: dict[str, Any], now: datetime) -> None:
    assert now == START
    assert lifecycle.expiry(replace(PENDING, **changes), now=now) is None


# -- complete --------------------------------------------------------------------------------------


def test_complete_success_stores_the_result(now: datetime) -> None:
    task = claimed(now, progress=30)
    request = Completion("w1", True, {"words": 3}, None, TOKEN)
    transition = lifecycle.complete(task, request, now=now, rng=random.Random(1))
    after = apply(task, transition)
    assert after.status == TaskStatus.COMPLETED
    assert after.result == {"words": 3}
    assert after.completed_at == now
    assert after.lease_expires_at is None
    assert after.progress == 100
    assert after.updated_at == now
    assert events(transition) == [HistoryEvent.COMPLETED]
    assert lifecycle.outcome_status(after) == "completed"


def test_complete_success_without_a_lease_token_is_accepted(now: datetime) -> None:
    task = claimed(now)
    after = apply(task, lifecycle.complete(task, Completion("w1", True), now=now, rng=random.Random(1)))
    assert after.status == TaskStatus.COMPLETED


def test_complete_failure_with_attempts_left_schedules_a_retry(now: datetime) -> None:
    task = claimed(now, attempts=2, max_attempts=3)
    request = Completion("w1", False, None, "boom", TOKEN)
    transition = lifecycle.complete(task, request, now=now, rng=random.Random(5))
    after = apply(task, transition)
    expected_delay = RetryPolicy(2.0, 3600.0).backoff(2, random.Random(5))
    assert after.status == TaskStatus.PENDING
    assert after.error_message == "boom"
    assert (after.claimed_by, after.claimed_at, after.lease_expires_at) == (None, None, None)
    assert after.run_after == now + timedelta(seconds=expected_delay)
    # attempt 2 of a 2 s base: 4 s, spread by at most 10%
    assert now + timedelta(seconds=3.6) <= after.run_after <= now + timedelta(seconds=4.4)
    assert after.attempts == 2
    assert after.completed_at is None
    assert events(transition) == [HistoryEvent.FAILED, HistoryEvent.RETRY_SCHEDULED]
    assert transition is not None
    assert transition.events[1].metadata == {"run_after": iso(after.run_after)}
    assert lifecycle.outcome_status(after) == "pending (retry)"


def test_complete_failure_with_zero_retry_delay_is_due_at_once(now: datetime) -> None:
    task = claimed(now, policy=replace(POLICY, retry_delay=0.0))
    request = Completion("w1", False, None, "boom")
    after = apply(task, lifecycle.complete(task, request, now=now, rng=random.Random(1)))
    assert after.run_after == now


def test_complete_failure_retry_delay_is_capped_by_the_type(now: datetime) -> None:
    task = claimed(now, attempts=9, max_attempts=10, policy=replace(POLICY, retry_max_delay=60.0))
    request = Completion("w1", False)
    after = apply(task, lifecycle.complete(task, request, now=now, rng=random.Random(1)))
    assert after.run_after is not None
    assert now + timedelta(seconds=54) <= after.run_after <= now + timedelta(seconds=66)


def test_complete_failure_on_the_last_attempt_is_final(now: datetime) -> None:
    task = claimed(now, attempts=3, max_attempts=3)
    request = Completion("w1", False, {"partial": True}, "boom", TOKEN)
    transition = lifecycle.complete(task, request, now=now, rng=random.Random(1))
    after = apply(task, transition)
    assert after.status == TaskStatus.FAILED
    assert after.error_message == "boom"
    assert after.result == {"partial": True}
    assert after.completed_at == now
    assert after.lease_expires_at is None
    assert after.run_after is None
    assert events(transition) == [HistoryEvent.FAILED]
    assert lifecycle.outcome_status(after) == "failed"


def test_complete_by_another_worker_is_forbidden(now: datetime) -> None:
    with pytest.raises(Forbidden) as raised:
        lifecycle.complete(claimed(now), Completion("w2", True), now=now, rng=random.Random(1))
    assert raised.value.message == "Task is claimed by another worker"
    assert raised.value.status == 403


@pytest.mark.parametrize("status", [TaskStatus.PENDING, TaskStatus.COMPLETED, TaskStatus.FAILED])
def test_complete_of_a_task_not_claimed_is_refused(status: TaskStatus, now: datetime) -> None:
    task = replace(PENDING, status=status, claimed_by="w1")
    with pytest.raises(ValidationFailed) as raised:
        lifecycle.complete(task, Completion("w1", True), now=now, rng=random.Random(1))
    assert raised.value.message == "Task is not in claimed state"
    assert raised.value.status == 400


def test_complete_with_a_stale_lease_token_is_lease_lost(now: datetime) -> None:
    task = claimed(now, claimed_by="w1", lease_token="newer-token")
    with pytest.raises(LeaseLost) as raised:
        lifecycle.complete(task, Completion("w1", True, lease_token=TOKEN), now=now, rng=random.Random(1))
    assert raised.value.code == "lease_lost"
    assert raised.value.status == 409


def test_complete_with_a_stale_token_after_reclaim_by_another_worker_is_lease_lost(now: datetime) -> None:
    task = claimed(now, claimed_by="w2", lease_token="w2-token", attempts=2)
    with pytest.raises(LeaseLost):
        lifecycle.complete(task, Completion("w1", True, lease_token=TOKEN), now=now, rng=random.Random(1))


@pytest.mark.parametrize("token", [None, TOKEN])
def test_complete_of_a_cancelled_task_by_its_holder_is_lease_lost(token: str | None, now: datetime) -> None:
    task = claimed(now, status=TaskStatus.CANCELLED, error_message="cancelled")
    with pytest.raises(LeaseLost) as raised:
        lifecycle.complete(task, Completion("w1", True, lease_token=token), now=now, rng=random.Random(1))
    assert raised.value.data == {"id": 7, "status": "cancelled"}


def test_repeated_successful_complete_is_idempotent(now: datetime) -> None:
    task = claimed(now)
    request = Completion("w1", True, {"ok": 1}, None, TOKEN)
    done = apply(task, lifecycle.complete(task, request, now=now, rng=random.Random(1)))
    assert lifecycle.complete(done, request, now=now, rng=random.Random(1)) is None
    assert lifecycle.outcome_status(done) == "completed"


def test_repeated_final_failure_is_idempotent(now: datetime) -> None:
    task = claimed(now, attempts=3)
    request = Completion("w1", False, None, "boom", TOKEN)
    failed = apply(task, lifecycle.complete(task, request, now=now, rng=random.Random(1)))
    assert lifecycle.complete(failed, request, now=now, rng=random.Random(1)) is None


def test_repeated_failure_that_scheduled_a_retry_is_idempotent(now: datetime) -> None:
    task = claimed(now, attempts=1)
    request = Completion("w1", False, None, "boom", TOKEN)
    retrying = apply(task, lifecycle.complete(task, request, now=now, rng=random.Random(1)))
    assert lifecycle.complete(retrying, request, now=now, rng=random.Random(1)) is None
    assert lifecycle.outcome_status(retrying) == "pending (retry)"


def test_repeat_without_a_lease_token_is_not_idempotent(now: datetime) -> None:
    done = claimed(now, status=TaskStatus.COMPLETED)
    with pytest.raises(ValidationFailed, match="Task is not in claimed state"):
        lifecycle.complete(done, Completion("w1", True), now=now, rng=random.Random(1))


def test_repeat_with_the_other_outcome_is_not_idempotent(now: datetime) -> None:
    done = claimed(now, status=TaskStatus.COMPLETED)
    with pytest.raises(ValidationFailed, match="Task is not in claimed state"):
        lifecycle.complete(done, Completion("w1", False, lease_token=TOKEN), now=now, rng=random.Random(1))


# -- a successful complete decided before its row is read (ADR 0008, 0012) ----------------------

REQUESTS = [
    Completion("w1", True, {"n": 1}, None, TOKEN),
    Completion("w1", True, None, "a warning", None),
    Completion("w1", True, None, None, "a-stale-token"),
    Completion("w2", True, None, None, TOKEN),
    Completion("w1", False, None, "boom", TOKEN),
]
ROWS = [
    claimed(START, **changes)
    for changes in (
        {},
        {"lease_expires_at": None},
        {"lease_expires_at": START},
        {"lease_expires_at": START - timedelta(seconds=1)},
        {"lease_token": "another-token"},
        {"claimed_by": "w2"},
        {"status": TaskStatus.PENDING},
        {"status": TaskStatus.COMPLETED, "lease_expires_at": None},
        {"status": TaskStatus.CANCELLED},
        {"status": TaskStatus.FAILED, "lease_expires_at": None},
        {"attempts": 3},
    )
]


def _on_the_row(task: Task, request: Completion) -> Transition | TaskManagerError | None:
    """What deciding on the locked row gives: the due expiry first, then ``complete``."""
    due = lifecycle.expiry(task, now=START)
    if due is not None:
        return due
    try:
        return lifecycle.complete(task, request, now=START, rng=random.Random(1))
    except TaskManagerError as exc:  # compared with the ahead transition, not handled
        return exc


@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: f"{r.worker_id}-{r.success}-{r.lease_token}")
@pytest.mark.parametrize("scope", list(DedupeScope))
def test_complete_unread_matches_exactly_the_rows_where_complete_would_decide_the_same(
    request_: Completion, scope: DedupeScope
) -> None:
    unread = lifecycle.complete_unread(request_, now=START)
    if not request_.success:
        assert unread is None  # a failure's retry depends on the row: decided on it
        return
    assert unread is not None
    expected, transition = unread
    matched = 0
    for row in ROWS:
        task = replace(row, policy=replace(POLICY, dedupe=scope))
        on_the_row = _on_the_row(task, request_)
        if expected.matches(task):
            matched += 1
            assert on_the_row == transition, task
        else:
            # A task whose key is released when it ends: the engine must decide on the row.
            assert on_the_row != transition or scope == DedupeScope.ACTIVE, task
    # Every request names a holder and token that some row has (the grid is not all misses).
    assert matched >= 1 or request_.lease_token == "a-stale-token" or scope == DedupeScope.ACTIVE


def test_complete_unread_expects_the_holder_its_token_a_live_lease_and_a_key_that_stays() -> None:
    unread = lifecycle.complete_unread(Completion("w1", True, None, None, TOKEN), now=START)
    assert unread is not None
    expected, _ = unread
    assert expected.columns == {
        "status": TaskStatus.CLAIMED,
        "claimed_by": "w1",
        "lease_token": TOKEN,
        "callback_url": None,
    }
    assert expected.lease_alive_at == START
    assert expected.dedupe_scopes == (DedupeScope.ALL, DedupeScope.NONE)
    assert expected.matches(claimed(START))
    assert expected.matches(claimed(START, lease_expires_at=None))
    assert not expected.matches(claimed(START, lease_expires_at=START))
    assert not expected.matches(claimed(START, policy=replace(POLICY, dedupe=DedupeScope.ACTIVE)))
    without_token = lifecycle.complete_unread(Completion("w1", True), now=START)
    assert without_token is not None
    assert "lease_token" not in without_token[0].columns
    assert without_token[0].matches(claimed(START, lease_token="any"))
    # A task with a callback is read and judged, so that its end writes its delivery (B.5).
    assert not expected.matches(claimed(START, callback_url="https://example.com/hook"))


def test_as_read_expects_every_column_a_rule_reads(now: datetime) -> None:
    task = claimed(now)
    expected = lifecycle.as_read(task)
    assert set(expected.columns) == set(lifecycle.READ_COLUMNS)
    assert expected.matches(task)
    for name, value in (("status", TaskStatus.PENDING), ("lease_token", "x"), ("attempts", 2)):
        assert not expected.matches(replace(task, **{name: value}))


def test_a_claim_applies_its_params_to_each_row(now: datetime) -> None:
    params = lifecycle.claim_params(now=now, worker_id="w1", lease_seconds=None, count=2)
    first = apply(PENDING, params.applied(PENDING, 0))
    second = apply(PENDING, params.applied(replace(PENDING, attempts=1), 1))
    assert (first.lease_token, second.lease_token) == params.tokens
    assert (first.attempts, second.attempts) == (1, 2)
    assert params.applied(PENDING, 1).events[0].metadata == {"attempt": 1}


def test_the_retry_backoff_is_injectable(now: datetime) -> None:
    seen: list[tuple[TypePolicy, int]] = []

    def backoff(policy: TypePolicy, attempts: int, rng: random.Random) -> float:
        seen.append((policy, attempts))
        return 42.0

    task = claimed(now, attempts=2)
    transition = lifecycle.complete(
        task, Completion("w1", False), now=now, rng=random.Random(1), backoff=backoff
    )
    assert apply(task, transition).run_after == now + timedelta(seconds=42)
    assert seen == [(POLICY, 2)]


# -- progress --------------------------------------------------------------------------------------


def test_progress_sets_the_value_and_extends_the_lease(now: datetime) -> None:
    task = claimed(now, lease_expires_at=now + timedelta(seconds=5))
    transition = lifecycle.progress(
        task, worker_id="w1", value=40, message="halfway", lease_token=TOKEN, now=now
    )
    after = apply(task, transition)
    assert after.progress == 40
    assert after.lease_expires_at == now + timedelta(seconds=300)
    assert after.status == TaskStatus.CLAIMED
    assert transition.events[0].event == HistoryEvent.PROGRESS
    assert transition.events[0].message == "halfway"
    assert transition.events[0].metadata == {"progress": 40}


def test_progress_by_another_worker_is_forbidden(now: datetime) -> None:
    with pytest.raises(Forbidden):
        lifecycle.progress(claimed(now), worker_id="w2", value=1, message=None, lease_token=None, now=now)


def test_progress_of_a_pending_task_is_refused(now: datetime) -> None:
    with pytest.raises(ValidationFailed, match="Task is not in claimed state"):
        lifecycle.progress(PENDING, worker_id="w1", value=1, message=None, lease_token=None, now=now)


def test_progress_with_a_stale_token_is_lease_lost(now: datetime) -> None:
    with pytest.raises(LeaseLost):
        lifecycle.progress(claimed(now), worker_id="w1", value=1, message=None, lease_token="old", now=now)


# -- heartbeat -------------------------------------------------------------------------------------


def test_heartbeat_extends_the_lease_by_the_claim_timeout(now: datetime) -> None:
    task = claimed(now)
    transition = lifecycle.heartbeat(
        task, worker_id="w1", lease_token=TOKEN, lease_seconds=None, now=now, record=False
    )
    after = apply(task, transition)
    assert after.lease_expires_at == now + timedelta(seconds=300)
    assert after.updated_at == now
    assert transition is not None
    assert transition.events == ()


def test_heartbeat_lease_seconds_overrides_and_is_recorded_when_asked(now: datetime) -> None:
    task = claimed(now)
    transition = lifecycle.heartbeat(
        task, worker_id="w1", lease_token=None, lease_seconds=45, now=now, record=True
    )
    assert apply(task, transition).lease_expires_at == now + timedelta(seconds=45)
    assert events(transition) == [HistoryEvent.HEARTBEAT]


@pytest.mark.parametrize("token", [None, TOKEN])
def test_heartbeat_of_a_cancelled_task_is_answered_without_change(token: str | None, now: datetime) -> None:
    task = claimed(now, status=TaskStatus.CANCELLED)
    assert (
        lifecycle.heartbeat(task, worker_id="w1", lease_token=token, lease_seconds=None, now=now, record=True)
        is None
    )


def test_heartbeat_of_a_cancelled_task_with_a_stale_token_is_lease_lost(now: datetime) -> None:
    task = claimed(now, status=TaskStatus.CANCELLED)
    with pytest.raises(LeaseLost):
        lifecycle.heartbeat(
            task, worker_id="w1", lease_token="old", lease_seconds=None, now=now, record=False
        )


def test_heartbeat_by_another_worker_is_forbidden(now: datetime) -> None:
    with pytest.raises(Forbidden):
        lifecycle.heartbeat(
            claimed(now), worker_id="w2", lease_token=None, lease_seconds=None, now=now, record=False
        )


def test_heartbeat_of_a_completed_task_is_refused(now: datetime) -> None:
    with pytest.raises(ValidationFailed, match="Task is not in claimed state"):
        lifecycle.heartbeat(
            claimed(now, status=TaskStatus.COMPLETED),
            worker_id="w1",
            lease_token=None,
            lease_seconds=None,
            now=now,
            record=False,
        )


# -- cancel ----------------------------------------------------------------------------------------


def test_cancel_a_pending_task(now: datetime) -> None:
    transition = lifecycle.cancel(PENDING, reason=None, now=now)
    after = apply(PENDING, transition)
    assert after.status == TaskStatus.CANCELLED
    assert after.error_message == "cancelled"
    assert after.completed_at == now
    assert events(transition) == [HistoryEvent.CANCELLED]


def test_cancel_a_claimed_task_keeps_its_holder_so_the_worker_can_be_told(now: datetime) -> None:
    task = claimed(now)
    transition = lifecycle.cancel(task, reason="operator said so", now=now)
    after = apply(task, transition)
    assert after.status == TaskStatus.CANCELLED
    assert after.error_message == "operator said so"
    assert after.claimed_by == "w1"
    assert after.lease_token == TOKEN
    assert after.lease_expires_at is None
    assert transition.events[0].worker_id == "w1"
    assert transition.events[0].message == "operator said so"


@pytest.mark.parametrize("status", [TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED])
def test_cancel_a_terminal_task_is_refused(status: TaskStatus, now: datetime) -> None:
    with pytest.raises(ValidationFailed) as raised:
        lifecycle.cancel(replace(PENDING, status=status), reason=None, now=now)
    assert raised.value.message == f"Task cannot be cancelled in state {status.value}"


# -- retry -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [TaskStatus.FAILED, TaskStatus.CANCELLED])
def test_retry_brings_a_finished_task_back_to_pending(status: TaskStatus, now: datetime) -> None:
    task = claimed(
        now,
        status=status,
        attempts=3,
        progress=70,
        result={"partial": 1},
        error_message="boom",
        completed_at=now - timedelta(seconds=1),
        run_after=now + timedelta(hours=1),
        expires_at=now - timedelta(hours=1),
    )
    transition = lifecycle.retry(task, now=now)
    after = apply(task, transition)
    assert after.status == TaskStatus.PENDING
    assert after.attempts == 0
    assert after.progress == 0
    assert (after.result, after.error_message, after.completed_at) == (None, None, None)
    assert (after.claimed_by, after.claimed_at, after.lease_expires_at, after.lease_token) == (
        None,
        None,
        None,
        None,
    )
    assert (after.run_after, after.expires_at) == (None, None)
    assert after.updated_at == now
    assert transition.events[0].event == HistoryEvent.RETRIED
    assert transition.events[0].metadata == {"previous_status": status.value}


@pytest.mark.parametrize("status", [TaskStatus.PENDING, TaskStatus.CLAIMED, TaskStatus.COMPLETED])
def test_retry_of_a_task_that_has_not_failed_is_refused(status: TaskStatus, now: datetime) -> None:
    with pytest.raises(ValidationFailed, match="Only failed or cancelled tasks can be retried"):
        lifecycle.retry(replace(PENDING, status=status), now=now)
