"""SQLite across processes: the watcher that turns a create through another connection into a
wake-up. Each test uses a real SQLite file; a second connection (or a second store, as a second
server process would hold) makes the commit the watcher must notice.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from taskmanager import models
from taskmanager.engine.records import Task
from taskmanager.engine.service import TaskService
from taskmanager.store import SqlStore, open_store
from taskmanager.store.migrate import upgrade
from taskmanager.store.watch import SqliteWatcher

#: A re-check interval no test waits for: a claim that returns was woken by the watcher.
NEVER = 3600.0


@pytest.fixture
def no_recheck(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("taskmanager.store.sql.SHARED_POLL_INTERVAL", NEVER)
    monkeypatch.setattr("taskmanager.store.watch.SHARED_POLL_INTERVAL", NEVER)


def _commit(path: str, *statements: str) -> None:
    with sqlite3.connect(path) as other:
        for statement in statements:
            other.execute(statement)


async def test_a_create_wakes_the_watcher_and_other_commits_do_not(tmp_path: Path) -> None:
    path = str(tmp_path / "watched.db")
    _commit(path, "PRAGMA journal_mode = WAL", "CREATE TABLE tasks (id INTEGER PRIMARY KEY, n INTEGER)")
    wakes: list[int] = []
    woken = asyncio.Event()

    def on_work() -> None:
        wakes.append(1)
        woken.set()

    watcher = SqliteWatcher(path, on_work)
    await watcher.start()
    try:
        _commit(path, "INSERT INTO tasks (n) VALUES (0)")
        await asyncio.wait_for(woken.wait(), 5)
        woken.clear()
        # An update (a claim, a complete) changes the file but creates nothing: no wake-up. The
        # create after it does wake, and it is the only one: the update was looked at and passed.
        _commit(path, "UPDATE tasks SET n = 1")
        for _ in range(2):  # the second look began after the update's commit
            watcher._looked.clear()
            assert await asyncio.to_thread(watcher._looked.wait, 5)
        assert len(wakes) == 1
        _commit(path, "INSERT INTO tasks (n) VALUES (2)")
        await asyncio.wait_for(woken.wait(), 5)
        assert len(wakes) == 2
    finally:
        await watcher.stop()


async def test_a_file_that_cannot_be_opened_leaves_claimers_re_checking(tmp_path: Path) -> None:
    watcher = SqliteWatcher(str(tmp_path / "no-such-dir" / "x.db"), lambda: None)
    await watcher.start()  # returns: the watcher gave up, it does not hang the start-up
    await watcher.stop()


async def _service(url: str) -> tuple[SqlStore, TaskService]:
    store = open_store(url, pool_size=2)
    service = TaskService(store)
    await service.start()
    return store, service


@pytest.mark.usefixtures("no_recheck")
async def test_a_create_through_another_store_wakes_a_waiting_claim(tmp_path: Path) -> None:
    """Two stores on one file, as two server processes hold: the claim waiting on one returns
    the task the other created, though it would not look again by itself for an hour."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    migrating = open_store(url)
    await upgrade(migrating.db)
    await migrating.close()
    (store_a, waiting), (store_b, creating) = await _service(url), await _service(url)
    try:
        assert store_a.wake_interval == NEVER
        await creating.register_type(
            models.RegisterTaskType(name="job", version="1", param_schema={"type": "object"})
        )
        found_nothing = asyncio.Event()
        claim_tasks = store_a.claim_tasks

        async def claim_and_tell(*args: Any) -> list[Task]:
            claimed = await claim_tasks(*args)
            if not claimed:
                found_nothing.set()
            return claimed

        store_a.claim_tasks = claim_and_tell  # type: ignore[method-assign]
        claim = asyncio.create_task(waiting.claim(models.ClaimTasks(worker_id="w", wait=60)))
        await asyncio.wait_for(found_nothing.wait(), 30)  # the claim waits now
        created = (await creating.create_task(models.CreateTask(type="job", params={}))).data
        claimed = (await asyncio.wait_for(claim, 30)).data
        assert claimed["id"] == created["id"]
    finally:
        await store_a.close()
        await store_b.close()
