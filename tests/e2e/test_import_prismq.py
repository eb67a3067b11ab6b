"""``taskmanager import-prismq``: a PrismQ MariaDB database copied into ours, run as a user runs it.

The source is a throwaway MariaDB database with PrismQ's tables (our own DDL, written from
PrismQ's published schema.sql and its three migrations) holding types and tasks in every status.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from taskmanager.store import open_store
from taskmanager.store.database import driver_url
from taskmanager.store.tables import task_history, task_types, tasks
from tests.conftest import ADMIN_KEY, TestDatabase, _create, _drop, selected_databases
from tests.e2e.process import TASKMANAGER, ServerProcess

# PrismQ's tables as schema.sql creates them, with migrations 001 (priority), 002 (progress) and
# 003 (claimed_at index) applied.
PRISMQ_DDL = [
    """CREATE TABLE task_types (
        id INT AUTO_INCREMENT PRIMARY KEY,
        name VARCHAR(255) NOT NULL UNIQUE,
        version VARCHAR(50) NOT NULL,
        param_schema_json TEXT NOT NULL,
        is_active BOOLEAN DEFAULT TRUE,
        created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
        updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
        INDEX idx_name (name),
        INDEX idx_active (is_active)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci""",
    """CREATE TABLE tasks (
        id INT AUTO_INCREMENT PRIMARY KEY,
        type_id INT NOT NULL,
        status ENUM('pending', 'claimed', 'completed', 'failed') DEFAULT 'pending',
        params_json TEXT NOT NULL,
        dedupe_key VARCHAR(64) NOT NULL,
        result_json TEXT,
        error_message TEXT,
        priority INT DEFAULT 0,
        progress INT DEFAULT 0,
        attempts INT DEFAULT 0,
        claimed_by VARCHAR(255),
        claimed_at TIMESTAMP NULL,
        completed_at TIMESTAMP NULL,
        created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
        updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
        FOREIGN KEY (type_id) REFERENCES task_types(id) ON DELETE CASCADE,
        UNIQUE KEY unique_dedupe (dedupe_key),
        INDEX idx_type_status (type_id, status),
        INDEX idx_status (status),
        INDEX idx_created (created_at),
        INDEX idx_priority (priority),
        INDEX idx_progress (progress),
        INDEX idx_claimed_at (claimed_at)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci""",
    """CREATE TABLE task_history (
        id INT AUTO_INCREMENT PRIMARY KEY,
        task_id INT NOT NULL,
        status_change VARCHAR(50) NOT NULL,
        worker_id VARCHAR(255),
        message TEXT,
        created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
        FOREIGN KEY (task_id) REFERENCES tasks(id) ON DELETE CASCADE,
        INDEX idx_task_id (task_id)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci""",
]

SCRIPT, VIDEO, OLD = "PrismQ.Script.Generate", "PrismQ.Video.Render", "PrismQ.Old.Thing"
SCHEMA = '{"type":"object","properties":{"topic":{"type":"string"}}}'
#: (id, name, is_active); ids with a gap, as a database that lost a type has.
TYPES = [(1, SCRIPT, 1), (2, VIDEO, 1), (5, OLD, 0)]
#: The PrismQ server's session time zone when these rows were written: its wall-clock times below
#: are two hours ahead of UTC (TIMESTAMP columns store the instant).
SESSION_ZONE = "+02:00"
#: Stands for the time the source is built: a claim made then still holds its lease.
RECENT = "recent"


def prismq_key(type_name: str, params_json: str) -> str:
    """PrismQ's dedupe key: sha256 of the type name, a NUL byte and params_json as stored."""
    return hashlib.sha256(f"{type_name}\0{params_json}".encode()).hexdigest()


#: id -> (type name, status, params_json, extra columns)
TASKS: dict[int, tuple[str, str, str, dict[str, Any]]] = {
    1: (SCRIPT, "pending", '{"topic":"AI in Healthcare","style":"formal","length":1500}', {"priority": 5}),
    2: (SCRIPT, "pending", '{"topic":"Café ☕ & crème","path":"a/b"}', {}),
    # Failed once and back to pending: PrismQ leaves completed_at and the error in place.
    3: (
        SCRIPT,
        "pending",
        '{"topic":"retry me"}',
        {"attempts": 1, "error_message": "boom", "completed_at": "2025-11-08 15:00:00"},
    ),
    7: (
        VIDEO,
        "claimed",
        '{"clip":7}',
        {"attempts": 1, "claimed_by": "worker-a", "claimed_at": RECENT, "progress": 40},
    ),
    8: (
        VIDEO,
        "claimed",
        '{"clip":8}',
        {"attempts": 2, "claimed_by": "worker-b", "claimed_at": "2025-11-08 15:30:00"},
    ),
    10: (
        SCRIPT,
        "completed",
        '{"topic":"done"}',
        {
            "attempts": 1,
            "claimed_by": "worker-a",
            "claimed_at": "2025-11-08 15:00:00",
            "completed_at": "2025-11-08 15:05:00",
            "result_json": '{"text":"Ünïcode result","url":"https://x.test/a/b"}',
            "progress": 100,
        },
    ),
    11: (
        VIDEO,
        "failed",
        '{"clip":11}',
        {
            "attempts": 3,
            "claimed_by": "worker-b",
            "claimed_at": "2025-11-08 15:00:00",
            "completed_at": "2025-11-08 15:01:00",
            "error_message": "render crashed",
        },
    ),
    # Written by an older PrismQ that escaped slashes: the key hashes the escaped text.
    42: (OLD, "pending", '{"url":"http:\\/\\/old.test\\/x"}', {"priority": -1}),
}
CREATED = "2025-11-08 14:00:00"  # session time (+02:00)
CREATED_UTC = datetime(2025, 11, 8, 12, 0, tzinfo=UTC)
HISTORY = [
    (1, "created", None, "Task created"),
    (3, "claimed", "worker-a", "Task claimed by worker"),
    (3, "pending (retry)", "worker-a", "Task failed: boom"),
    (7, "progress_update", "worker-a", "Progress: 40%"),
]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TASKMANAGER, *args], capture_output=True, text=True, timeout=120, check=False, env=env
    )


Statement = tuple[str, dict[str, Any]]


def _insert(table_name: str, row: dict[str, Any]) -> Statement:
    if row.get("claimed_at") == RECENT:
        now_there = datetime.now(UTC) + timedelta(hours=2)  # the wall clock in SESSION_ZONE
        row = row | {"claimed_at": now_there.replace(tzinfo=None, microsecond=0)}
    columns, values = ", ".join(row), ", ".join(f":{name}" for name in row)
    return f"INSERT INTO {table_name} ({columns}) VALUES ({values})", row


def prismq_statements(ddl: list[str]) -> list[Statement]:
    statements: list[Statement] = [(f"SET time_zone = '{SESSION_ZONE}'", {}), *((d, {}) for d in ddl)]
    for type_id, name, active in TYPES:
        row = {"id": type_id, "name": name, "version": "1.0.0", "param_schema_json": SCHEMA}
        statements.append(_insert("task_types", row | {"is_active": active, "created_at": CREATED}))
    for task_id, (type_name, status, params, extra) in TASKS.items():
        type_id = next(t for t, n, _ in TYPES if n == type_name)
        row = {
            "id": task_id,
            "type_id": type_id,
            "status": status,
            "params_json": params,
            "dedupe_key": prismq_key(type_name, params),
            "created_at": CREATED,
            "updated_at": CREATED,
        }
        statements.append(_insert("tasks", row | extra))
    for task_id, change, worker, message in HISTORY:
        row = {"task_id": task_id, "status_change": change, "worker_id": worker, "message": message}
        statements.append(_insert("task_history", row | {"created_at": CREATED}))
    return statements


def load(url: str, statements: list[Statement]) -> None:
    """Run ``statements`` on one connection of the MariaDB database at ``url``."""

    async def go() -> None:
        engine = create_async_engine(driver_url(url), isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                for statement, params in statements:
                    await conn.execute(text(statement), params)
        finally:
            await engine.dispose()

    asyncio.run(go())


@pytest.fixture(scope="module")
def prismq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a PrismQ database (MariaDB) holding TYPES, TASKS and HISTORY."""
    source = _create("mysql", tmp_path_factory.mktemp("prismq"))
    load(source.url, prismq_statements(PRISMQ_DDL))
    yield source.url
    _drop(source)


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Callable[[str], TestDatabase]]:
    """Make an empty database of a kind (not migrated); dropped after the test."""
    made: list[TestDatabase] = []

    def make(kind: str) -> TestDatabase:
        made.append(_create(kind, tmp_path / f"{kind}-{len(made)}"))
        if kind == "sqlite":
            Path(made[-1].url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        return made[-1]

    yield make
    for db in made:
        _drop(db)


def rows(url: str, table_: Any) -> list[Any]:
    async def read() -> list[Any]:
        store = open_store(url, pool_size=1)
        try:
            query = select(table_).order_by(table_.c.id)
            return await store.db.run(lambda conn: list(conn.execute(query)), write=False)
        finally:
            await store.close()

    return asyncio.run(read())


def execute(url: str, statement: str) -> None:
    async def write() -> None:
        store = open_store(url, pool_size=1)
        try:
            await store.db.run(lambda conn: conn.execute(text(statement)), write=True)
        finally:
            await store.close()

    asyncio.run(write())


def has_tables(url: str) -> bool:
    async def check() -> bool:
        store = open_store(url, pool_size=1)

        def found(conn: Connection) -> bool:
            return bool(conn.dialect.has_table(conn, "tasks"))

        try:
            return await store.db.run(found, write=False)
        finally:
            await store.close()

    return asyncio.run(check())


# -- importing into each kind of database ---------------------------------------------------------


def check_rows(url: str) -> None:
    types = {row.id: row for row in rows(url, task_types)}
    assert {i: (t.name, t.is_active) for i, t in types.items()} == {i: (n, bool(a)) for i, n, a in TYPES}
    assert all(
        t.param_schema == SCHEMA and t.dedupe == "all" and t.max_attempts is None for t in types.values()
    )
    assert types[1].created_at == CREATED_UTC

    found = {row.id: row for row in rows(url, tasks)}
    assert sorted(found) == sorted(TASKS)
    for task_id, (type_name, status, params, extra) in TASKS.items():
        row = found[task_id]
        assert row.status == status
        assert row.params == params, "params text is kept byte for byte"
        assert row.dedupe_key == row.dedupe_lock == prismq_key(type_name, params)
        assert row.result == extra.get("result_json")
        assert row.attempts == extra.get("attempts", 0)
        assert row.priority == extra.get("priority", 0)
        assert row.claimed_by == extra.get("claimed_by")
        assert row.created_at == CREATED_UTC
        assert row.lease_token is None
    assert found[3].completed_at is None, "a pending retry is not completed"
    assert found[10].completed_at == datetime(2025, 11, 8, 13, 5, tzinfo=UTC)
    assert found[8].claimed_at == datetime(2025, 11, 8, 13, 30, tzinfo=UTC)
    assert found[8].lease_expires_at == found[8].claimed_at + timedelta(seconds=300)
    assert found[7].progress == 40

    events = [(h.task_id, h.event, h.worker_id) for h in rows(url, task_history)]
    assert events == [
        (1, "created", None),
        (3, "claimed", "worker-a"),
        (3, "retry_scheduled", "worker-a"),
        (7, "progress", "worker-a"),
    ]


#: The imported tasks finished in 2025: past the default retention (B.10) they would be gone at
#: once, so the server keeps finished tasks for ever, as the deployment guide tells importers to.
KEEP_EVERYTHING = {"TASKMANAGER_KEEP_COMPLETED": "0", "TASKMANAGER_KEEP_FAILED": "0"}


def check_api(url: str) -> None:
    with ServerProcess(url, api_key=ADMIN_KEY, env=KEEP_EVERYTHING) as server:
        headers = {"X-API-Key": ADMIN_KEY}
        with httpx.Client(base_url=f"{server.url}/api", headers=headers, timeout=30) as api:
            check_api_calls(api)


def check_api_calls(api: httpx.Client) -> None:
    first = api.get("/tasks/1").json()["data"]
    assert first["params"] == {"topic": "AI in Healthcare", "style": "formal", "length": 1500}
    assert first["dedupe_key"] == "44ff8188369983e6a8010c424790a4e9326c3db1f84539bfcb356b8927316d71"

    # The same create through the API finds the imported task, pending or finished.
    for task_id, (type_name, status, params, _extra) in TASKS.items():
        if type_name == OLD:  # inactive: creates are refused
            continue
        body = {"type": type_name, "params": json.loads(params)}
        created = api.post("/tasks", json=body).json()["data"]
        assert (created["id"], created["duplicate"]) == (task_id, True), task_id
        assert created["status"] in (status, "pending")  # an expired claim may read as pending

    new = api.post("/tasks", json={"type": SCRIPT, "params": {"topic": "brand new"}}).json()["data"]
    assert new["duplicate"] is False
    assert new["id"] == max(TASKS) + 1, "new tasks continue after the highest imported id"

    # The claim in flight survives the move: its worker completes it as if nothing happened.
    done = api.post("/tasks/7/complete", json={"worker_id": "worker-a", "success": True})
    assert done.status_code == 200, done.text
    assert done.json()["data"]["status"] == "completed"

    inactive = api.get(f"/task-types/{OLD}").json()["data"]
    assert inactive["is_active"] is False
    history = api.get("/tasks/3/history").json()["data"]["events"]
    assert [e["event"] for e in history] == ["claimed", "retry_scheduled"]
    assert history[1]["metadata"] == {"prismq_status_change": "pending (retry)"}


@pytest.mark.parametrize("kind", [k for k in ("sqlite", "postgresql", "mysql") if k in selected_databases()])
def test_import_keeps_ids_statuses_params_and_dedupe_keys(
    kind: str, prismq: str, fresh: Callable[[str], TestDatabase]
) -> None:
    target = fresh(kind)
    result = run("import-prismq", "--from", prismq, "--database-url", target.url)
    assert result.returncode == 0, result.stderr
    assert "task types: 3" in result.stdout
    assert "tasks: 8 (claimed 2, completed 1, failed 1, pending 4)" in result.stdout
    assert "history events: 4" in result.stdout
    assert "1 tasks keep a dedupe key that differs" in result.stdout
    check_rows(target.url)
    check_api(target.url)


def test_import_tells_its_progress_row_by_row_batch(
    prismq: str, fresh: Callable[[str], TestDatabase]
) -> None:
    """What the command's progress bar is fed: rows written out of rows to write, per INSERT."""
    from taskmanager.prismq import ImportOptions, import_prismq

    told: list[tuple[int, int]] = []
    options = ImportOptions(progress=lambda written, total: told.append((written, total)))
    report = asyncio.run(import_prismq(prismq, fresh("sqlite").url, options))
    assert told == [(3, 15), (11, 15), (15, 15)]  # 3 types, 8 tasks, 4 history events
    assert report.history == 4


def test_import_shows_a_progress_bar_on_a_terminal_and_ends_with_its_summary(
    prismq: str, fresh: Callable[[str], TestDatabase]
) -> None:
    target = fresh("sqlite")
    # rich: draw as on an interactive terminal
    env = {**os.environ, "TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1", "COLUMNS": "100"}
    result = run("import-prismq", "--from", prismq, "--database-url", target.url, env=env)
    assert result.returncode == 0, result.stderr
    assert "copying rows" in result.stderr
    assert "15/15" in result.stderr
    assert "tasks: 8 (claimed 2, completed 1, failed 1, pending 4)" in result.stdout


# -- dry run and refusals -------------------------------------------------------------------------


def test_dry_run_reads_everything_and_writes_nothing(
    prismq: str, fresh: Callable[[str], TestDatabase], tmp_path: Path
) -> None:
    never = tmp_path / "never.db"
    result = run("import-prismq", "--from", prismq, "--database-url", f"sqlite:///{never}", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "Dry run: nothing was written" in result.stdout
    assert "tasks: 8 (claimed 2, completed 1, failed 1, pending 4)" in result.stdout
    assert not never.exists()

    target = fresh("postgresql" if "postgresql" in selected_databases() else "sqlite")
    result = run("import-prismq", "--from", prismq, "--database-url", target.url, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert not has_tables(target.url), "a dry run does not even migrate the target"


def test_refuses_ids_the_target_has_unless_told_to_skip_them(
    prismq: str, fresh: Callable[[str], TestDatabase]
) -> None:
    target = fresh("sqlite")
    assert run("import-prismq", "--from", prismq, "--database-url", target.url).returncode == 0

    again = run("import-prismq", "--from", prismq, "--database-url", target.url)
    assert again.returncode == 2
    assert "Import refused" in again.stderr
    assert "3 of the task type ids (1, 2, 5)" in again.stderr
    assert "8 of the tasks (1, 2, 3, 7, 8, 10, 11, 42" in again.stderr
    assert "--skip-existing" in again.stderr
    dry = run("import-prismq", "--from", prismq, "--database-url", target.url, "--dry-run")
    assert dry.returncode == 2, "a dry run reports the refusal too"

    # Task 3 is gone, so its id is free again; task 7 moved to id 99 and still holds its dedupe key.
    execute(target.url, "DELETE FROM task_history WHERE task_id = 3")
    execute(target.url, "DELETE FROM tasks WHERE id = 3")
    execute(target.url, "UPDATE tasks SET id = 99 WHERE id = 7")
    refused = run("import-prismq", "--from", prismq, "--database-url", target.url)
    assert refused.returncode == 2
    assert "7 of the tasks (1, 2, 7, 8, 10, 11, 42; by id or by dedupe key)" in refused.stderr

    skipped = run("import-prismq", "--from", prismq, "--database-url", target.url, "--skip-existing")
    assert skipped.returncode == 0, skipped.stderr
    assert "tasks: 1 (pending 1)" in skipped.stdout
    assert "skipped (already in the target): 3 task types, 7 tasks" in skipped.stdout
    assert sorted(row.id for row in rows(target.url, tasks)) == sorted([*(set(TASKS) - {7}), 99])
    assert [h.task_id for h in rows(target.url, task_history)].count(3) == 2


def test_refuses_a_type_that_has_another_id_in_the_target(
    prismq: str, fresh: Callable[[str], TestDatabase]
) -> None:
    target = fresh("sqlite")
    assert run("db", "upgrade", "--database-url", target.url).returncode == 0
    now = "'2026-01-01 00:00:00.000000'"
    execute(
        target.url,
        "INSERT INTO task_types (id, name, version, param_schema, is_active, max_attempts, claim_timeout,"
        " retry_delay, retry_max_delay, dedupe, created_at, updated_at)"
        f" VALUES (9, '{SCRIPT}', '1', '{{}}', 1, 3, 300, 2, 3600, 'all', {now}, {now})",
    )
    result = run("import-prismq", "--from", prismq, "--database-url", target.url, "--skip-existing")
    assert result.returncode == 2
    assert f"type {SCRIPT!r} has id 9 in the target but another id in PrismQ" in result.stderr
    assert [row.id for row in rows(target.url, tasks)] == []


def test_source_timezone_reads_datetime_columns_as_local_time(
    fresh: Callable[[str], TestDatabase], tmp_path: Path
) -> None:
    """A hand-made PrismQ schema with DATETIME columns holds naive local times."""
    ddl = [statement.replace(" TIMESTAMP", " DATETIME") for statement in PRISMQ_DDL]
    source = _create("mysql", tmp_path / "source")
    try:
        load(source.url, prismq_statements(ddl))
        bad = run("import-prismq", "--from", source.url, "--source-timezone", "Mars/Olympus")
        assert bad.returncode == 2
        assert "Unknown time zone" in bad.stderr

        target = fresh("sqlite")
        args = ["--from", source.url, "--database-url", target.url, "--source-timezone", "Europe/Prague"]
        assert run("import-prismq", *args).returncode == 0
        found = {row.id: row for row in rows(target.url, tasks)}
        # 14:00 in Prague in November (UTC+1) is 13:00 UTC.
        assert found[1].created_at == datetime(2025, 11, 8, 13, 0, tzinfo=UTC)
        assert found[10].completed_at == datetime(2025, 11, 8, 14, 5, tzinfo=UTC)
    finally:
        _drop(source)


def test_refuses_a_database_that_is_not_prismq(fresh: Callable[[str], TestDatabase], tmp_path: Path) -> None:
    source = _create("mysql", tmp_path / "empty")
    try:
        result = run("import-prismq", "--from", source.url, "--database-url", fresh("sqlite").url)
        assert result.returncode == 2
        assert "Not a PrismQ database" in result.stderr
    finally:
        _drop(source)


def test_the_importer_is_a_package_whose_errors_share_the_one_root() -> None:
    """``taskmanager.prismq``'s errors are ``TaskManagerError``s, most specific last."""
    import taskmanager.prismq as prismq
    from taskmanager.errors import TaskManagerError

    assert issubclass(prismq.IdsTaken, prismq.ImportRefused)
    assert issubclass(prismq.ImportRefused, prismq.PrismqImportError)
    assert issubclass(prismq.PrismqImportError, TaskManagerError)
    codes = {error.code for error in (prismq.IdsTaken, prismq.ImportRefused, prismq.PrismqImportError)}
    assert len(codes) == 3
    assert str(prismq.IdsTaken("ids 1, 2 taken")) == "ids 1, 2 taken"
    assert all(hasattr(prismq, name) for name in prismq.__all__)
