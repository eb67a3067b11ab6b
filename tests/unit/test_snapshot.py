"""engine/observe.py's Snapshot: an expensive read done once per max_age, whatever the callers."""

from __future__ import annotations

import asyncio

import pytest

from taskmanager.engine.clock import FrozenClock
from taskmanager.engine.observe import Snapshot
from tests.conftest import START


class Reads:
    """A read that counts its runs and, while ``gate`` is clear, waits for it."""

    def __init__(self) -> None:
        self.runs = 0
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self) -> int:
        self.runs += 1
        await self.gate.wait()
        return self.runs


async def test_an_answer_is_reused_while_fresh_and_served_stale_while_one_refresh_runs() -> None:
    clock, read = FrozenClock(START), Reads()
    snapshot = Snapshot(read, clock, max_age=2)
    assert await snapshot.get() == 1
    clock.advance(2)
    assert await snapshot.get() == 1  # still fresh: no read
    clock.advance(1)
    read.gate.clear()
    assert [await snapshot.get(), await snapshot.get()] == [1, 1]  # stale: one refresh behind
    await asyncio.sleep(0)  # the refresh starts on this loop (a yield, not a wait for time)
    assert read.runs == 2
    read.gate.set()
    for _ in range(3):  # and completes
        await asyncio.sleep(0)
    assert await snapshot.get() == 2
    assert read.runs == 2


async def test_a_too_old_answer_is_waited_for_by_every_caller_together() -> None:
    clock, read = FrozenClock(START), Reads()
    snapshot = Snapshot(read, clock, max_age=2)
    await snapshot.get()
    clock.advance(11)  # more than 5 times max_age
    assert await asyncio.gather(*(snapshot.get() for _ in range(5))) == [2] * 5
    assert read.runs == 2


async def test_max_age_zero_reads_every_time() -> None:
    read = Reads()
    snapshot = Snapshot(read, FrozenClock(START), max_age=0)
    assert [await snapshot.get() for _ in range(3)] == [1, 2, 3]


async def test_a_failed_read_reaches_its_callers_and_is_not_kept() -> None:
    clock, calls = FrozenClock(START), []

    async def failing() -> int:
        calls.append(1)
        raise RuntimeError("database down")

    snapshot = Snapshot(failing, clock, max_age=2)
    for _ in range(2):
        with pytest.raises(RuntimeError, match="database down"):
            await snapshot.get()
    assert len(calls) == 2
