"""The default claim query walks the ix_tasks_claim index instead of scanning and sorting tasks.

The statement checked is the one the store really sends (captured while it claims); the table is
filled first so the planner has a reason to prefer an index.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, event, insert
from sqlalchemy.engine import Connection

from taskmanager.engine import lifecycle
from taskmanager.engine.clock import FrozenClock
from taskmanager.store import SqlStore, open_store
from taskmanager.store.tables import tasks
from tests.conftest import TestDatabase
from tests.contract.builders import claim_query, make_type, run_raw

ROWS = 5000


async def captured_claim_statement(store: SqlStore, clock: FrozenClock) -> tuple[str, Any]:
    if store.hot is not None:  # PostgreSQL claims on asyncpg directly: ask for its statement
        return store.hot.claim_statement(claim_query(clock.now()))
    seen: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if "FROM tasks" in statement and "ORDER BY tasks.priority DESC" in statement:
            seen.append((statement, parameters))

    event.listen(Engine, "before_cursor_execute", capture)
    try:
        await store.claim_tasks(claim_query(clock.now()), lambda _: None)
    finally:
        event.remove(Engine, "before_cursor_execute", capture)
    assert len(seen) == 1, seen
    return seen[0]


def ahead_claim_statement(store: SqlStore, clock: FrozenClock) -> tuple[str, Any]:
    """The one statement PostgreSQL claims with when the engine decides the claim ahead."""
    assert store.hot is not None
    ahead = lifecycle.claim_ahead(now=clock.now(), worker_id="w1", lease_seconds=None, count=1)
    return store.hot.claim_ahead_statement(claim_query(clock.now()), ahead)


def fill(type_id: int, clock: FrozenClock, kind: str, *, analyze: bool = True) -> Any:
    """Many finished tasks and some pending ones, then (``analyze``) fresh planner statistics."""

    def run(conn: Connection) -> None:
        start = clock.now() - timedelta(days=1)
        rows = [
            {
                "type_id": type_id,
                "status": "pending" if n % 10 == 0 else "completed",
                "params": "{}",
                "priority": n % 5,
                "progress": 0,
                "attempts": 0,
                "max_attempts": 3,
                "created_at": start + timedelta(seconds=n),
                "updated_at": start + timedelta(seconds=n),
            }
            for n in range(ROWS)
        ]
        conn.execute(insert(tasks), rows)
        if not analyze:
            return
        if kind == "postgresql":
            conn.exec_driver_sql("ANALYZE tasks")
        elif kind == "mysql":
            conn.exec_driver_sql("ANALYZE TABLE tasks")

    return run


def explain(statement: str, parameters: Any, kind: str) -> Any:
    prefix = "EXPLAIN QUERY PLAN " if kind == "sqlite" else "EXPLAIN "

    def run(conn: Connection) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in conn.exec_driver_sql(prefix + statement, parameters)]

    return run


def churn(conn: Connection) -> None:
    conn.exec_driver_sql("UPDATE tasks SET status = 'pending'")
    conn.exec_driver_sql("UPDATE tasks SET status = 'completed' WHERE id % 2 = 0")


def _assert_postgres_walks_the_index(plan: list[tuple[Any, ...]]) -> None:
    text = "\n".join(str(row[0]) for row in plan)
    assert "Index Scan using ix_tasks_claim on tasks" in text, text
    assert "Seq Scan on tasks" not in text, text
    assert "Sort" not in text, text


async def test_claim_walks_the_index_before_statistics_catch_up(
    clock: FrozenClock, pg_database: TestDatabase
) -> None:
    """A queue table changes faster than autovacuum analyses it: on a table never analysed, with
    rows worked through, PostgreSQL's planner would sort every pending row per claim unless told
    not to."""
    store = open_store(pg_database.url, pool_size=2)
    try:
        task_type = await make_type(store, "t", clock.now())
        # A busy queue before autovacuum first analyses it: half pending, half worked through.
        await run_raw(pg_database.url, fill(task_type.id, clock, "postgresql", analyze=False))
        await run_raw(pg_database.url, churn)
        assert store.hot is not None
        statement, parameters = await captured_claim_statement(store, clock)
        plan = await store.hot.explain(statement, parameters)
        ahead_plan = await store.hot.explain(*ahead_claim_statement(store, clock))
    finally:
        await store.close()
    _assert_postgres_walks_the_index([(line,) for line in plan])
    _assert_postgres_walks_the_index([(line,) for line in ahead_plan])


async def test_default_claim_query_uses_the_claim_index(
    store: SqlStore, clock: FrozenClock, clean_database: TestDatabase
) -> None:
    kind = clean_database.kind
    task_type = await make_type(store, "t", clock.now())
    await run_raw(clean_database.url, fill(task_type.id, clock, kind))
    statement, parameters = await captured_claim_statement(store, clock)
    if store.hot is not None:
        plan = [(line,) for line in await store.hot.explain(statement, parameters)]
        # The engine's claims pick and write in one statement there: it must walk the index too.
        ahead = await store.hot.explain(*ahead_claim_statement(store, clock))
        _assert_postgres_walks_the_index([(line,) for line in ahead])
    else:
        plan = await run_raw(clean_database.url, explain(statement, parameters, kind))
    if kind == "sqlite":
        details = [str(row[-1]) for row in plan]
        assert any("tasks USING INDEX ix_tasks_claim" in d for d in details), details
        assert not any(d.startswith("SCAN tasks") for d in details), details
        assert not any("TEMP B-TREE" in d for d in details), details
    elif kind == "postgresql":
        _assert_postgres_walks_the_index(plan)
    else:
        # MariaDB: id, select_type, table, type, possible_keys, key, key_len, ref, rows, Extra
        by_table = {row[2]: row for row in plan}
        assert by_table["tasks"][5] == "ix_tasks_claim", plan
        assert by_table["tasks"][3] != "ALL", plan
        assert not any("filesort" in str(row[9]) for row in plan), plan
