"""PostgreSQL's statements: built with SQLAlchemy Core and compiled once per shape; every shape
binds each of its placeholders to the value of the parameter of that name."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from taskmanager.engine import lifecycle
from taskmanager.engine.policy import Defaults
from taskmanager.engine.queries import DEFAULT_ORDER
from taskmanager.engine.records import DedupeScope, HistoryEvent, NewEvent, TaskStatus, TypePolicy
from taskmanager.engine.store import ClaimQuery, Expected, InsertTask, TaskChange
from taskmanager.store.pgstatements import PgStatements, Statement

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
NAIVE = NOW.replace(tzinfo=None)
DEFAULTS = Defaults(claim_timeout=111, retry_delay=2.5, retry_max_delay=99.0)


def bound(statement: Statement) -> dict[str, Any]:
    """Each parameter's value by name, after checking the placeholders are exactly $1..$n."""
    numbers = {int(n) for n in re.findall(r"\$(\d+)", statement.sql)}
    assert numbers == set(range(1, len(statement.args) + 1))
    assert len(statement.compiled.names) == len(statement.args)
    return dict(zip(statement.compiled.names, statement.args, strict=True))


def claim_queries() -> list[ClaimQuery]:
    base = ClaimQuery(now=NOW, worker_id="w1", limit=3, order=DEFAULT_ORDER)
    return [
        base,
        replace(base, type_like="PrismQ.%"),
        replace(base, type_names=("a", "b")),
        replace(base, type_ids=(4, 5)),
        replace(base, type_like="x%", type_names=("c",), type_ids=(6,), order=(("id", True),)),
    ]


@pytest.mark.parametrize("query", claim_queries())
@pytest.mark.parametrize("evented", [True, False])
@pytest.mark.parametrize("lease_seconds", [None, 45])
def test_a_claim_binds_its_query_and_params(
    query: ClaimQuery, evented: bool, lease_seconds: int | None
) -> None:
    statements = PgStatements(DEFAULTS)
    params = lifecycle.claim_params(now=NOW, worker_id="w1", lease_seconds=lease_seconds, count=3)
    if not evented:
        params = replace(params, event=None)
    statement = statements.claim(query, params)
    values = bound(statement)
    assert values["now"] == values["claimed_at_now"] == NAIVE
    assert (values["worker_id"], values["limit"]) == ("w1", 3)
    assert values["lease_seconds"] == lease_seconds
    assert values["default_claim_timeout"] == 111
    assert values["tokens"] == list(params.tokens)
    assert values["c_status"] == "claimed"
    assert (values["c_claimed_by"], values["c_claimed_at"], values["c_progress"]) == ("w1", NAIVE, 0)
    for name, given in (
        ("type_like", query.type_like),
        ("type_names", query.type_names),
        ("type_ids", query.type_ids),
    ):
        if given is None:
            assert name not in values
        else:
            assert values[name] == (given if isinstance(given, str) else list(given))
    assert ("e_event" in values) == evented
    if evented:
        assert (values["e_event"], values["e_worker_id"], values["e_message"]) == ("claimed", "w1", None)
    # The server's defaults of the task read: claim timeout, retry delay and its cap.
    assert all(v in values.values() for v in (111, 2.5, 99.0))
    assert "FOR UPDATE OF tasks SKIP LOCKED" in statement.sql
    again = statements.claim(
        query, lifecycle.claim_params(now=NOW, worker_id="w2", lease_seconds=None, count=3)
    )
    if evented:  # the same shape: compiled once
        assert again.compiled is statement.compiled


def test_claim_shapes_differ_only_where_the_shape_does() -> None:
    statements = PgStatements(DEFAULTS)
    params = lifecycle.claim_params(now=NOW, worker_id="w1", lease_seconds=None, count=3)
    compiled = {id(statements.claim(query, params).compiled) for query in claim_queries()}
    assert len(compiled) == len(claim_queries())
    first = claim_queries()[0]
    later = replace(first, now=NOW + timedelta(seconds=5), worker_id="w9", limit=1)
    assert statements.claim(later, params).compiled is statements.claim(first, params).compiled


def changes() -> list[TaskChange]:
    unread = lifecycle.complete_unread(lifecycle.Completion("w1", True, {"r": 1}, None, "tok"), now=NOW)
    assert unread is not None
    expected, completed = unread
    retried = {"status": TaskStatus.PENDING, "claimed_by": None, "run_after": NOW, "updated_at": NOW}
    events = (
        NewEvent(HistoryEvent.FAILED, "w1", "boom", {"attempt": 1}),
        NewEvent(HistoryEvent.RETRY_SCHEDULED, "w1", None, {"run_after": "x"}),
    )
    read = Expected(
        {
            "status": TaskStatus.CLAIMED,
            "claimed_by": "w1",
            "lease_token": None,
            "attempts": 1,
            "lease_expires_at": NOW,
        }
    )
    return [
        TaskChange(7, expected, completed.changes, completed.events, NOW),
        TaskChange(7, read, retried, events, NOW, wakes=True),
        TaskChange(7, Expected({}), {"progress": 5}, (), NOW),
    ]


@pytest.mark.parametrize("change", changes())
def test_a_compare_and_set_binds_what_it_expects_and_writes(change: TaskChange) -> None:
    statements = PgStatements(DEFAULTS)
    statement = statements.update(change)
    values = bound(statement)
    assert values["id"] == 7
    for name, value in change.expected.columns.items():
        key = f"x_{name}"
        if value is None:
            assert key not in values  # compared with IS NULL
        else:
            plain = value.value if isinstance(value, TaskStatus) else value
            assert values[key] == (plain.replace(tzinfo=None) if isinstance(plain, datetime) else plain)
    assert ("alive_at" in values) == (change.expected.lease_alive_at is not None)
    if change.expected.dedupe_scopes:
        assert values["scopes"] == [s.value for s in change.expected.dedupe_scopes]
    for name in change.changes:
        assert f"c_{name}" in values
    for n, event in enumerate(change.events):
        assert (values[f"e{n}_event"], values[f"e{n}_worker_id"]) == (event.event.value, event.worker_id)
    assert f"e{len(change.events)}_event" not in values
    assert ("pg_notify" in statement.sql) == change.wakes
    assert statements.update(replace(change, task_id=8)).compiled is statement.compiled


def test_a_create_binds_the_row_its_event_and_its_queue_limit() -> None:
    statements = PgStatements(DEFAULTS)
    item = InsertTask(
        type_id=3,
        params={"a": 1},
        params_json='{"a":1}',
        priority=2,
        max_attempts=4,
        dedupe_key="k",
        dedupe_lock="k",
        max_pending=10,
        run_after=NOW,
        expires_at=None,
        assigned_to="w1",
        type_name="t",
        policy=TypePolicy(300, 2.0, 3600.0, DedupeScope.ALL),
        now=NOW,
        event=NewEvent(HistoryEvent.CREATED),
    )
    values = bound(statements.create(item))
    assert (values["type_id"], values["params"], values["priority"], values["max_attempts"]) == (
        3,
        '{"a":1}',
        2,
        4,
    )
    assert (values["dedupe_key"], values["dedupe_lock"], values["max_pending"]) == ("k", "k", 10)
    assert (values["run_after"], values["expires_at"], values["created_at"]) == (NAIVE, None, NAIVE)
    assert (values["status"], values["event"], values["event_metadata"]) == ("pending", "created", None)
    quiet = bound(statements.create(replace(item, event=None, dedupe_lock=None, max_pending=None)))
    assert (quiet["event"], quiet["dedupe_lock"], quiet["max_pending"]) == (None, None, None)


def test_reads_bind_their_key_and_the_defaults() -> None:
    statements = PgStatements(DEFAULTS)
    assert bound(statements.task_by_id(9))["id"] == 9
    assert bound(statements.type_by_name("t"))["name"] == "t"
    by_lock = bound(statements.task_by_dedupe_lock(3, "k"))
    assert (by_lock["type_id"], by_lock["dedupe_lock"]) == (3, "k")
    assert all(v in bound(statements.task_by_id(9)).values() for v in (111, 2.5, 99.0))
    assert Defaults().max_attempts in bound(statements.type_by_name("t")).values()


def test_only_a_change_that_ends_a_task_with_a_callback_writes_to_the_outbox() -> None:
    """The plain path pays nothing for callbacks (B.5): an end without ``callback`` compiles to
    the statement it always was, one with it adds the outbox insert as a CTE of the same
    statement (no extra round trip), bound to the change's instant."""
    statements = PgStatements(DEFAULTS)
    unread = lifecycle.complete_unread(lifecycle.Completion("w1", True, {"r": 1}, None, "tok"), now=NOW)
    assert unread is not None
    expected, completed = unread
    plain = TaskChange(7, expected, completed.changes, completed.events, NOW, ends=True)
    assert "callback_deliveries" not in statements.update(plain).sql
    assert "callback_url IS NULL" in statements.update(plain).sql  # decided unread: no callback
    assert "callback_deliveries" not in statements.update_many([plain, replace(plain, task_id=8)]).sql
    read = Expected({"status": TaskStatus.CLAIMED, "claimed_by": "w1"})
    with_callback = TaskChange(7, read, completed.changes, completed.events, NOW, ends=True, callback=True)
    statement = statements.update(with_callback)
    assert "INSERT INTO callback_deliveries" in statement.sql
    assert bound(statement)["event_at"] == NAIVE
    many = statements.update_many([with_callback, replace(with_callback, task_id=8)])
    assert "INSERT INTO callback_deliveries" in many.sql
    bound(many)
