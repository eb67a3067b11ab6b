"""SQLite across processes: the watcher that turns a create through another connection into a
wake-up. Each test uses a real SQLite file; a second connection (or a second store, as a second
server process would hold) makes the commit the watcher must notice.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
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


class Watched:
    """A watched SQLite file with a ``tasks`` table, and the watcher's wake-ups."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.commit("PRAGMA journal_mode = WAL", "CREATE TABLE tasks (id INTEGER PRIMARY KEY, n INTEGER)")
        self.waiting = threading.Event()
        self.woken = asyncio.Event()
        self.wakes = 0
        self.watcher = SqliteWatcher(self.path, self._on_work, self.waiting)

    def _on_work(self) -> None:
        self.wakes += 1
        self.woken.set()

    def commit(self, *statements: str) -> None:
        """Run ``statements`` on a connection of their own, as another process would."""
        with sqlite3.connect(self.path) as other:
            for statement in statements:
                other.execute(statement)

    async def woken_up(self) -> None:
        await asyncio.wait_for(self.woken.wait(), 5)
        self.woken.clear()

    async def looked_again(self) -> None:
        """Return after a whole look of the watcher's has begun and ended since the call."""
        for _ in range(2):  # a look in progress at the call may have begun before it
            self.watcher._looked.clear()
            assert await asyncio.to_thread(self.watcher._looked.wait, 5)


@pytest.fixture
async def watched(tmp_path: Path) -> AsyncIterator[Watched]:
    made = Watched(tmp_path / "watched.db")
    await made.watcher.start()
    yield made
    await made.watcher.stop()


async def test_a_create_wakes_a_waiting_claimer_and_other_commits_do_not(watched: Watched) -> None:
    watched.waiting.set()
    await watched.looked_again()
    watched.commit("INSERT INTO tasks (n) VALUES (0)")
    await watched.woken_up()
    # An update (a claim, a complete) changes the file but creates nothing: no wake-up.
    watched.commit("UPDATE tasks SET n = 1")
    await watched.looked_again()
    assert watched.wakes == 1
    watched.commit("INSERT INTO tasks (n) VALUES (2)")
    await watched.woken_up()
    assert watched.wakes == 2


async def test_a_create_made_while_nobody_waited_wakes_the_next_claimer(watched: Watched) -> None:
    """The watcher sleeps while no claimer waits; when one starts waiting, a create made
    meanwhile (after that claimer's own claim found nothing, perhaps) still wakes it."""
    watched.waiting.set()
    await watched.looked_again()
    watched.waiting.clear()
    assert await asyncio.to_thread(watched.watcher._asleep.wait, 5)
    watched.commit("INSERT INTO tasks (n) VALUES (0)")
    assert watched.wakes == 0
    watched.waiting.set()
    await watched.woken_up()
    assert watched.wakes == 1


async def test_a_create_before_the_first_claimer_ever_waits_wakes_it(watched: Watched) -> None:
    """No claimer has waited since the start (the watcher has slept all along); a create made
    then — after the first claimer's own claim found nothing, before it began to wait — still
    wakes it: the watcher's first look, at the start, is what it compares with."""
    assert await asyncio.to_thread(watched.watcher._asleep.wait, 5)
    watched.commit("INSERT INTO tasks (n) VALUES (0)")
    watched.waiting.set()
    await watched.woken_up()
    assert watched.wakes == 1


async def test_a_file_that_cannot_be_opened_leaves_claimers_re_checking(tmp_path: Path) -> None:
    watcher = SqliteWatcher(str(tmp_path / "no-such-dir" / "x.db"), lambda: None, threading.Event())
    await watcher.start()  # returns: the watcher gave up, it does not hang the start-up
    await watcher.stop()


async def _service(url: str) -> tuple[SqlStore, TaskService]:
    store = open_store(url, pool_size=2)
    service = TaskService(store)
    await service.start()
    return store, service


async def test_a_create_through_another_store_wakes_a_waiting_claim(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two stores on one file, as two server processes hold: the claim waiting on one returns
    the task the other created, though it would not look again by itself for an hour."""
    monkeypatch.setattr("taskmanager.store.base.SHARED_POLL_INTERVAL", NEVER)
    monkeypatch.setattr("taskmanager.store.watch.SHARED_POLL_INTERVAL", NEVER)
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
