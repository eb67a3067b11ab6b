"""The live ``/events`` feed (API.md B.7) on every store: a reader that joined the shared feed and
then stops reading is dropped once its buffer is full — the feed goes on for everyone else, and
the dropped reader is told where to resume from (``Dropped.last_id``, the last event it was given)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from taskmanager import models
from taskmanager.engine.clock import FrozenClock
from taskmanager.engine.observe import Dropped, FeedFilter, FeedItem, FeedTiming
from taskmanager.engine.service import TaskService
from taskmanager.store import SqlStore

TYPE = "feed.Step"
#: The feed reads every 10 ms where writes are not announced, one event a read (so a reader
#: waiting for its next event gets it before the feed reads on); a reader may hold 3 events.
TIMING = FeedTiming(poll_seconds=0.01, keepalive_seconds=60, max_lag=3, page=1)


async def until(condition: Callable[[], bool], seconds: float = 10) -> None:
    """Wait for ``condition()`` — the feed's own task moves it, and tells nobody — for at most
    ``seconds``."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "the feed did not get there"
        await asyncio.sleep(0.005)


async def test_a_live_reader_whose_buffer_fills_is_dropped_and_told_where_to_resume(
    store: SqlStore, clock: FrozenClock
) -> None:
    service = TaskService(store, clock=clock, rng=random.Random(1))
    await service.start()
    try:
        body = {"name": TYPE, "version": "1", "param_schema": {"type": "object"}, "dedupe": "none"}
        await service.register_type(models.RegisterTaskType(**body))
        after = await service.event_cursor(None)
        stream = service.follow(after, FeedFilter(), TIMING, lambda: False)
        first = asyncio.ensure_future(anext(stream))  # joins the shared feed, then waits
        await until(lambda: service.feed.readers == 1)

        created = [
            (await service.create_task(models.CreateTask(type=TYPE, params={"n": n}))).data["id"]
            for n in range(8)
        ]
        item = await asyncio.wait_for(first, 10)
        assert isinstance(item, FeedItem)
        assert (item.event, item.data["task_id"]) == ("created", created[0])
        # Not read any further: three events fit the buffer, the fourth drops the reader.
        await until(lambda: service.feed.readers == 0)
        dropped = await asyncio.wait_for(anext(stream), 10)
        assert isinstance(dropped, Dropped)
        assert dropped.last_id == item.id  # resume after the last event it was given
        assert dropped.newest_id > item.id
        await stream.aclose()

        # Resumed from there by a client that reads (and may hold more), every event comes.
        roomy = FeedTiming(poll_seconds=0.01, keepalive_seconds=60, max_lag=100, page=100)
        again = service.follow(dropped.last_id, FeedFilter(), roomy, lambda: False)
        resumed = [await asyncio.wait_for(anext(again), 10) for _ in range(7)]
        await again.aclose()
        assert [r.data["task_id"] for r in resumed if isinstance(r, FeedItem)] == created[1:]
    finally:
        await service.stop()
