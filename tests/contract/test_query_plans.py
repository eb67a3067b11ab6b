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
from sqlalchemy.ext.asyncio import create_async_engine

from taskmanager.engine.clock import FrozenClock
from taskmanager.engine.records import DedupeScope, HistoryEvent, NewEvent, TaskStatus
from taskmanager.engine.store import DeliveryClaim, Expected, PurgeQuery, Retention, TaskChange
from taskmanager.store import PostgresStore, SqlStore, deliveries, open_store
from taskmanager.store.observe import stats_statements, worker_statements
from taskmanager.store.tables import callback_deliveries, task_history, tasks
from tests.conftest import TestDatabase
from tests.contract.builders import claim, claim_params, claim_query, make_type, raw_url, run_raw

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


async def test_a_claim_within_max_running_still_walks_the_claim_index(
    store: SqlStore, clock: FrozenClock, clean_database: TestDatabase
) -> None:
    """With a type limited by ``max_running`` in reach, every store claims through the shared
    pick (on PostgreSQL too: its one statement steps aside, B.9); that pick walks the index too."""
    kind = clean_database.kind
    task_type = await make_type(store, "t", clock.now(), max_running=5)
    await run_raw(clean_database.url, fill(task_type.id, clock, kind))
    # The statement the shared claim sends (PostgresStore.explain_claim explains its own one).
    plan = await SqlStore.explain_claim(store, claim_query(clock.now()), claim_params(clock.now(), count=1))
    if kind == "sqlite":
        details = [str(row[-1]) for row in plan]
        assert any("tasks USING INDEX ix_tasks_claim" in d for d in details), details
        assert not any("TEMP B-TREE" in d for d in details), details
    elif kind == "postgresql":
        _assert_postgres_walks_the_index(plan)
    else:
        by_table = {row[2]: row for row in plan}
        assert by_table["tasks"][5] == "ix_tasks_claim", plan
        assert not any("filesort" in str(row[9]) for row in plan), plan


# -- GET /stats -------------------------------------------------------------------------------

#: The statements of ``/stats`` and the index each must read instead of the table.
STATS_INDEXES = {
    "counts": "ix_tasks_type_status_created",
    "ended": "ix_tasks_status_completed",
    "minutes": "ix_tasks_status_completed",
    "processing": "ix_tasks_status_completed",
}


#: Params of a realistic size: a task row is much wider than an entry of the indexes.
PARAMS = '{"text": "' + "x" * 300 + '"}'


def fill_ended(type_id: int, clock: FrozenClock) -> Any:
    """Mostly tasks that ended over the last day, some pending and claimed ones."""

    def run(conn: Connection) -> None:
        start = clock.now() - timedelta(days=1)
        rows = []
        for n in range(ROWS):
            at = start + timedelta(seconds=n * 17)
            status = ("pending", "claimed", "failed")[n % 3] if n % 10 == 0 else "completed"
            ended = status in ("completed", "failed")
            rows.append(
                {
                    "type_id": type_id,
                    "status": status,
                    "params": PARAMS,
                    "priority": 0,
                    "progress": 0,
                    "attempts": 1,
                    "max_attempts": 3,
                    "claimed_by": None if status == "pending" else f"w{n % 7}",
                    "claimed_at": None if status == "pending" else at,
                    "lease_expires_at": at + timedelta(minutes=5) if status == "claimed" else None,
                    "completed_at": at + timedelta(seconds=3) if ended else None,
                    "created_at": at,
                    "updated_at": at,
                }
            )
        conn.execute(insert(tasks), rows)
        # Most of the history is older than the last day /workers reads.
        history = [
            {
                "task_id": n + 1,
                "event": row["status"],
                "worker_id": row["claimed_by"],
                "created_at": at if n % 10 == 1 else at - timedelta(days=9),
            }
            for n, row in enumerate(rows)
            if (at := row["completed_at"]) is not None
        ]
        conn.execute(insert(task_history), history)

    return run


async def _settle_statistics(database: TestDatabase) -> None:
    """Fresh planner statistics (and, on PostgreSQL, the visibility map that lets a scan read
    the index alone, as autovacuum keeps it on a live database). PostgreSQL's indexes are
    rebuilt first: the tests of one worker share its database, emptied with DELETE, so the rows
    earlier tests inserted leave the indexes several times the size of this test's rows, and an
    index-only scan of a bloated index can cost more than reading the table."""
    if database.kind == "postgresql":
        engine = create_async_engine(raw_url(database.url), isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.exec_driver_sql("REINDEX TABLE tasks")
                await conn.exec_driver_sql("REINDEX TABLE task_history")
                await conn.exec_driver_sql("VACUUM ANALYZE tasks")
                await conn.exec_driver_sql("VACUUM ANALYZE task_history")
        finally:
            await engine.dispose()
    elif database.kind == "mysql":
        await run_raw(database.url, lambda conn: conn.exec_driver_sql("ANALYZE TABLE tasks, task_history"))
    # SQLite: the server never runs ANALYZE, so its planner works from the indexes' shapes alone.


def explain_stats(kind: str, now: Any) -> Any:
    prefix = {"sqlite": "EXPLAIN QUERY PLAN ", "postgresql": "EXPLAIN ", "mysql": "EXPLAIN "}[kind]

    def run(conn: Connection) -> dict[str, list[tuple[Any, ...]]]:
        statements = {
            **stats_statements(conn, now, now - timedelta(hours=1)),
            **worker_statements(conn, now - timedelta(days=1)),
        }
        plans = {}
        for name, statement in statements.items():
            compiled = statement.compile(conn, compile_kwargs={"literal_binds": True})
            plans[name] = [tuple(row) for row in conn.exec_driver_sql(prefix + str(compiled))]
        return plans

    return run


async def test_stats_read_indexes_not_the_table(
    store: SqlStore, clock: FrozenClock, clean_database: TestDatabase
) -> None:
    kind = clean_database.kind
    task_type = await make_type(store, "t", clock.now())
    await run_raw(clean_database.url, fill_ended(task_type.id, clock))
    await _settle_statistics(clean_database)
    plans = await run_raw(clean_database.url, explain_stats(kind, clock.now()))
    for name, plan in plans.items():
        text = "\n".join(" ".join(str(part) for part in row) for row in plan)
        wanted = STATS_INDEXES.get(name)
        if kind == "postgresql":
            assert "Seq Scan on tasks" not in text, (name, text)
            assert "Seq Scan on task_history" not in text, (name, text)
            if wanted:  # the index alone (another that covers the statement serves as well)
                assert "Index Only Scan using ix_tasks_" in text, (name, text)
        elif kind == "sqlite":
            assert not any(str(row[-1]) in ("SCAN tasks", "SCAN task_history") for row in plan), (name, text)
            if wanted:
                assert f"USING COVERING INDEX {wanted}" in text, (name, text)
        else:
            tasks_rows = [row for row in plan if row[2] == "tasks"]
            assert all(row[3] != "ALL" for row in plan), (name, plan)
            if wanted:
                assert [row[5] for row in tasks_rows] == [wanted], (name, plan)
                assert "Using index" in str(tasks_rows[0][9]), (name, plan)


async def test_the_retention_sweep_walks_an_index_on_postgresql(
    clock: FrozenClock, pg_database: TestDatabase
) -> None:
    """The sweep runs every second in every server: with nothing due it must read (nearly)
    nothing, however many finished tasks the table keeps. Its rules, unnested and joined to
    ``tasks``, were planned as a scan of the whole table (1.3 M rows read per second by an idle
    queue of 1 M tasks, ``bench.idle``)."""
    store = open_store(pg_database.url, pool_size=2)
    try:
        assert isinstance(store, PostgresStore)
        task_type = await make_type(store, "t", clock.now())
        await run_raw(pg_database.url, fill(task_type.id, clock, "postgresql"))
        cutoff = clock.now() - timedelta(days=7)
        rules = (
            (("completed",), cutoff, (task_type.id,)),
            (("failed", "cancelled"), cutoff, (task_type.id,)),
        )
        plan = [str(row[0]) for row in await store.explain_purge(PurgeQuery(Retention(rules), 500))]
        # What finds the due rows, per rule (the LATERAL subquery "due"), walks an index. (Locking
        # and deleting the few rows it finds may scan a table this small: the planner's choice.)
        start = next(n for n, line in enumerate(plan) if "Subquery Scan on due" in line)
        finder = next(line for line in plan[start + 1 :] if " Scan " in line)
        assert "Index Scan using ix_tasks_" in finder, "\n".join(plan)
    finally:
        await store.close()


async def test_a_batch_compare_and_set_finds_its_rows_by_id_alone(
    clock: FrozenClock, pg_database: TestDatabase
) -> None:
    """A worker's batch complete (``update_many``) finds its hundred rows by their ids alone,
    even on a table never analysed: one read of ``tasks`` (its primary key, or one pass where the
    planner believes the table small), through no other index and joined to nothing it would
    read again per row. Joined to the unnested batch, PostgreSQL went through the type's index
    (the type's every task read to update a hundred) or nested a scan of the whole table inside
    the batch (bench/results/lab-notes.md, issue 15)."""
    store = open_store(pg_database.url, pool_size=2)
    try:
        assert isinstance(store, PostgresStore)
        task_type = await make_type(store, "t", clock.now())
        await run_raw(pg_database.url, fill(task_type.id, clock, "postgresql", analyze=False))
        held = await claim(store, clock.now(), "w1", limit=100)
        now = clock.now()
        changes = [
            TaskChange(
                task.id,
                Expected(
                    {"status": TaskStatus.CLAIMED, "claimed_by": "w1", "lease_token": task.lease_token},
                    lease_alive_at=now,
                    dedupe_scopes=(DedupeScope.ALL, DedupeScope.NONE),
                ),
                {"status": TaskStatus.COMPLETED, "result": {"n": task.id}, "completed_at": now},
                (NewEvent(HistoryEvent.COMPLETED, "w1", None, None),),
                now,
            )
            for task in held
        ]
        plan = [str(row[0]) for row in await store.explain_updates(changes)]
    finally:
        await store.close()
    text = "\n".join(plan)
    assert len(held) == 100
    reads = [line for line in plan if " on tasks" in line and "Scan" in line]
    assert len(reads) == 1, text
    assert "Index Scan using pk_tasks on tasks" in reads[0] or "Seq Scan on tasks" in reads[0], text
    assert "ix_tasks_" not in text, text
    assert "ProjectSet" not in text, text


def fill_outbox(clock: FrozenClock, kind: str) -> Any:
    """A large outbox: most deliveries leased or waiting for a later try, a few due."""

    def run(conn: Connection) -> None:
        now = clock.now()
        rows = [
            {
                "task_id": n + 1,
                "url": "https://hooks.example.com/x",
                "tries": 1,
                "next_try_at": now + timedelta(seconds=60 + n) if n % 100 else now - timedelta(seconds=1),
                "created_at": now,
            }
            for n in range(ROWS)
        ]
        conn.execute(insert(callback_deliveries), rows)
        if kind == "postgresql":
            conn.exec_driver_sql("ANALYZE callback_deliveries")
        elif kind == "mysql":
            conn.exec_driver_sql("ANALYZE TABLE callback_deliveries")

    return run


async def test_the_delivery_loop_reads_the_outbox_index_not_the_table(
    store: SqlStore, clock: FrozenClock, clean_database: TestDatabase
) -> None:
    """The loop's idle read (the earliest ``next_try_at``) and its claim's pick are index reads,
    whatever the outbox's size (B.5: the loop's cost does not grow with it)."""
    kind = clean_database.kind
    await run_raw(clean_database.url, fill_outbox(clock, kind))
    now = clock.now()
    claim = DeliveryClaim(now, now + timedelta(seconds=60), 8)
    prefix = {"postgresql": "EXPLAIN ", "sqlite": "EXPLAIN QUERY PLAN ", "mysql": "EXPLAIN "}[kind]

    def explain(conn: Connection) -> dict[str, list[tuple[Any, ...]]]:
        plans = {}
        for name, statement in (("next_at", deliveries.NEXT_AT), ("due", deliveries.due(claim))):
            compiled = statement.compile(conn, compile_kwargs={"literal_binds": True})
            plans[name] = [tuple(row) for row in conn.exec_driver_sql(prefix + str(compiled))]
        return plans

    for name, plan in (await run_raw(clean_database.url, explain)).items():
        text = "\n".join(" ".join(str(part) for part in row) for row in plan)
        if kind == "postgresql":
            assert "Seq Scan" not in text, (name, text)
            assert "Sort" not in text, (name, text)
        elif kind == "sqlite":
            assert "ix_callback_deliveries_next_try_at" in text, (name, text)
            assert "TEMP B-TREE" not in text, (name, text)
        else:
            assert all(row[3] != "ALL" for row in plan), (name, plan)
            assert "filesort" not in text, (name, plan)
