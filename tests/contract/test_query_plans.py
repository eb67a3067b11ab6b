"""The default claim query walks the ix_tasks_claim index instead of scanning and sorting tasks.

The statement checked is the one the store really sends (its ``explain_claim`` runs EXPLAIN on
it, on the store's own connections); the table is filled first so the planner has a reason to
prefer an index.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import insert
from sqlalchemy.engine import Connection

from taskmanager.engine.clock import FrozenClock
from taskmanager.store import PostgresStore, SqlStore, open_store
from taskmanager.store.tables import tasks
from tests.conftest import TestDatabase
from tests.contract.builders import claim_params, claim_query, make_type, run_raw

ROWS = 5000


async def claim_plan(
    store: SqlStore, clock: FrozenClock, type_scope: tuple[str, ...] | None = None
) -> list[tuple[Any, ...]]:
    """The plan of the statement the store sends to pick a default claim's rows (on PostgreSQL,
    the one statement that picks and claims them); ``type_scope``: as a key limited to types."""
    query = replace(claim_query(clock.now()), type_scope=type_scope)
    return await store.explain_claim(query, claim_params(clock.now(), count=1))


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
        assert isinstance(store, PostgresStore)
        plan = await claim_plan(store, clock)
    finally:
        await store.close()
    _assert_postgres_walks_the_index(plan)


@pytest.mark.parametrize("type_scope", [None, ("t%", "other\\_x")], ids=["any-key", "key-limited-to-types"])
async def test_default_claim_query_uses_the_claim_index(
    store: SqlStore, clock: FrozenClock, clean_database: TestDatabase, type_scope: tuple[str, ...] | None
) -> None:
    kind = clean_database.kind
    task_type = await make_type(store, "t", clock.now())
    await run_raw(clean_database.url, fill(task_type.id, clock, kind))
    plan = await claim_plan(store, clock, type_scope)
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
