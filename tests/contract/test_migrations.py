"""The Alembic migrations: upgrade from empty, downgrade to base, upgrade again, each downgrade
undoing its own upgrade, and the migrated schema equal to the models in store/tables.py — on a
throwaway database of each kind."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, make_url

from taskmanager.engine.records import TaskStatus
from taskmanager.engine.store import TaskQuery
from taskmanager.store import open_store
from taskmanager.store.migrate import current, downgrade, head_revision, upgrade
from taskmanager.store.migrate import revisions as all_revisions
from taskmanager.store.tables import metadata
from tests.conftest import MYSQL_ADMIN_URL, PG_ADMIN_URL, START, TestDatabase, _admin
from tests.contract.builders import add_task, make_type, run_raw

MODEL_TABLES = {
    "task_types",
    "tasks",
    "task_history",
    "task_dependencies",
    "api_keys",
    "schedules",
    "callback_deliveries",
}


@pytest.fixture
async def fresh_url(database: TestDatabase, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database of the session's kind, created for one test and dropped after it."""
    if database.kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrations.db'}"
        return
    name = f"tm_mig_{uuid.uuid4().hex[:12]}"
    if database.kind == "postgresql":
        admin, create, drop = (
            PG_ADMIN_URL,
            f'CREATE DATABASE "{name}"',
            f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
        )
    else:
        admin = MYSQL_ADMIN_URL
        create, drop = f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4", f"DROP DATABASE IF EXISTS `{name}`"
    await _admin(admin, [create])
    try:
        yield f"{admin.rsplit('/', 1)[0]}/{name}"
    finally:
        await _admin(admin, [drop])


def schema_differences(conn: Connection) -> list[Any]:
    context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": False})
    return list(compare_metadata(context, metadata))


def table_names(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names())


async def migrate(url: str, action: str, revision: str = "head") -> str | None:
    store = open_store(url, pool_size=1)
    try:
        if action == "upgrade":
            await upgrade(store.db, revision)
        elif action == "downgrade":
            await downgrade(store.db, revision)
        return await current(store.db)
    finally:
        await store.close()


async def test_upgrade_downgrade_upgrade(fresh_url: str) -> None:
    assert await run_raw(fresh_url, table_names) == set()
    assert await migrate(fresh_url, "current") is None

    assert await migrate(fresh_url, "upgrade") == head_revision()
    assert await run_raw(fresh_url, table_names) == MODEL_TABLES | {"alembic_version"}
    assert await run_raw(fresh_url, schema_differences) == []

    assert await migrate(fresh_url, "downgrade", "base") is None
    assert await run_raw(fresh_url, table_names) - {"alembic_version"} == set()

    assert await migrate(fresh_url, "upgrade") == head_revision()
    assert await run_raw(fresh_url, schema_differences) == []


async def test_upgrade_of_a_migrated_database_changes_nothing(fresh_url: str) -> None:
    await migrate(fresh_url, "upgrade")
    assert await migrate(fresh_url, "upgrade") == head_revision()
    assert await run_raw(fresh_url, schema_differences) == []


async def test_the_migrated_schema_serves_the_store(fresh_url: str) -> None:
    await migrate(fresh_url, "upgrade")
    await migrate(fresh_url, "downgrade", "base")
    await migrate(fresh_url, "upgrade")
    store = open_store(fresh_url, pool_size=1)
    try:
        task_type = await make_type(store, "t", START)
        task = await add_task(store, task_type, START)
        assert task.id == 1
        listed = await store.list_tasks(TaskQuery(statuses=(TaskStatus.PENDING,)))
        assert [t.id for t in listed.tasks] == [task.id]
    finally:
        await store.close()


async def test_the_schema_comparison_notices_a_missing_index(fresh_url: str, database: TestDatabase) -> None:
    """Guards the check above: a schema that differs from the models must not compare equal."""
    await migrate(fresh_url, "upgrade")
    on_table = " ON tasks" if database.kind == "mysql" else ""

    def drop_claim_index(conn: Connection) -> None:
        conn.execute(text(f"DROP INDEX ix_tasks_claim{on_table}"))

    await run_raw(fresh_url, drop_claim_index)
    differences = await run_raw(fresh_url, schema_differences)
    assert [(d[0], d[1].name) for d in differences] == [("add_index", "ix_tasks_claim")]


def schema_snapshot(conn: Connection) -> dict[str, Any]:
    """Every table's columns (name, type, nullability) and indexes, bookkeeping left out."""
    found = inspect(conn)
    return {
        table: (
            sorted((c["name"], str(c["type"]), c["nullable"]) for c in found.get_columns(table)),
            sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"]), _where(i))
                for i in found.get_indexes(table)
            ),
        )
        for table in found.get_table_names()
        if table != "alembic_version"
    }


def _where(index: Any) -> str:
    """A partial index's condition as the database reports it ("" for a whole index)."""
    options = index.get("dialect_options", {})
    where = options.get("postgresql_where", options.get("sqlite_where"))
    return "" if where is None else str(where)


#: Revisions that change nothing on a database family, by design: 0011 makes indexes partial,
#: which MariaDB/MySQL cannot.
NO_OP = {("0011", "mysql")}


async def test_each_downgrade_undoes_exactly_its_upgrade(fresh_url: str) -> None:
    """Step by step: the schema after a revision's upgrade and downgrade is the schema before it
    (a downgrade that forgets to drop what its upgrade added fails here, though a downgrade to
    base would still drop the whole table)."""
    revisions = all_revisions()
    assert revisions[-1] == head_revision()
    previous = "base"
    for revision in revisions:
        before = await run_raw(fresh_url, schema_snapshot)
        assert await migrate(fresh_url, "upgrade", revision) == revision
        changed = await run_raw(fresh_url, schema_snapshot) != before
        assert changed != ((revision, make_url(fresh_url).get_backend_name()) in NO_OP), revision
        await migrate(fresh_url, "downgrade", previous)
        assert await run_raw(fresh_url, schema_snapshot) == before, f"downgrading {revision}"
        await migrate(fresh_url, "upgrade", revision)
        previous = revision
