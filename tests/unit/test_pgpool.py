"""PostgresStore's connection pool, on a real PostgreSQL: it lends at most ``size`` connections,
reuses the ones given back, hands them to waiters in turn, and never lends one an operation left
in an unknown state, an idle-expired one or one of a closed pool."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from taskmanager.store.pgpool import ConnectionPool, PoolClosed
from tests.conftest import PG_ADMIN_URL


class Opener:
    """Opens real connections, counting them; ``fail`` makes the next open fail."""

    def __init__(self) -> None:
        self.opened: list[asyncpg.Connection] = []
        self.fail = 0

    async def __call__(self) -> asyncpg.Connection:
        if self.fail:
            self.fail -= 1
            raise OSError("connection refused")
        conn = await asyncpg.connect(PG_ADMIN_URL)
        self.opened.append(conn)
        return conn

    def still_open(self) -> int:
        return sum(not conn.is_closed() for conn in self.opened)


@pytest.fixture
def opener() -> Opener:
    return Opener()


@pytest.fixture
async def pool(opener: Opener) -> AsyncIterator[ConnectionPool]:
    pool = ConnectionPool(opener, 2, timeout=5)
    yield pool
    await pool.close()
    for conn in opener.opened:  # anything a test left on loan
        conn.terminate()


async def run_ready_tasks() -> None:
    """Let every ready task run (no time passes)."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_connection_given_back_is_lent_again(pool: ConnectionPool, opener: Opener) -> None:
    first = await pool.acquire()
    assert await first.fetchval("SELECT 1") == 1
    pool.release(first)
    again = await pool.acquire()
    assert again is first
    assert len(opener.opened) == 1
    assert pool.opened == 1


async def test_the_most_recently_returned_idle_connection_is_lent_first(pool: ConnectionPool) -> None:
    a, b = await pool.acquire(), await pool.acquire()
    pool.release(a)
    pool.release(b)
    assert await pool.acquire() is b
    assert await pool.acquire() is a


async def test_no_more_than_size_are_open_and_a_waiter_gets_the_next_returned(
    pool: ConnectionPool, opener: Opener
) -> None:
    a, b = await pool.acquire(), await pool.acquire()
    third = asyncio.ensure_future(pool.acquire())
    await run_ready_tasks()
    assert not third.done()
    assert len(opener.opened) == 2
    pool.release(b)
    assert await third is b
    assert pool.opened == 2
    assert pool.idle == 0
    pool.release(a)
    assert pool.idle == 1


async def test_waiters_are_served_first_come_first_served(pool: ConnectionPool) -> None:
    a, b = await pool.acquire(), await pool.acquire()
    first = asyncio.ensure_future(pool.acquire())
    await run_ready_tasks()
    second = asyncio.ensure_future(pool.acquire())
    await run_ready_tasks()
    pool.release(a)
    await run_ready_tasks()
    assert first.done()
    assert await first is a
    assert not second.done()
    pool.release(b)
    assert await second is b


async def test_waiting_longer_than_the_timeout_fails(opener: Opener) -> None:
    pool = ConnectionPool(opener, 1, timeout=0.05)
    held = await pool.acquire()
    with pytest.raises(TimeoutError):
        await pool.acquire()
    pool.release(held)  # the waiter that gave up takes nothing with it
    assert await pool.acquire() is held
    await pool.close()
    held.terminate()


async def test_a_discarded_connection_is_closed_and_its_place_goes_to_a_waiter(
    opener: Opener,
) -> None:
    pool = ConnectionPool(opener, 1, timeout=5)
    broken = await pool.acquire()
    waiting = asyncio.ensure_future(pool.acquire())
    await run_ready_tasks()
    pool.release(broken, discard=True)
    fresh = await waiting
    assert fresh is not broken
    assert broken.is_closed()
    assert await fresh.fetchval("SELECT 2") == 2
    assert pool.opened == 1
    pool.release(fresh)
    await pool.close()


async def test_a_connection_still_in_a_transaction_is_not_lent_again(pool: ConnectionPool) -> None:
    conn = await pool.acquire()
    await conn.execute("BEGIN")
    pool.release(conn)
    assert conn.is_closed()
    assert pool.opened == 0
    fresh = await pool.acquire()
    assert fresh is not conn
    assert not fresh.is_in_transaction()
    pool.release(fresh)


async def test_a_closed_connection_given_back_frees_its_place(pool: ConnectionPool) -> None:
    conn = await pool.acquire()
    await conn.close()
    pool.release(conn)
    assert pool.opened == 0
    assert pool.idle == 0


async def test_a_waiter_that_gives_up_leaves_the_connection_for_the_next(pool: ConnectionPool) -> None:
    a, b = await pool.acquire(), await pool.acquire()
    quitter = asyncio.ensure_future(pool.acquire())
    stayer = asyncio.ensure_future(pool.acquire())
    await run_ready_tasks()
    quitter.cancel()
    await run_ready_tasks()
    pool.release(a)
    assert await stayer is a
    assert quitter.cancelled()
    pool.release(b)
    pool.release(a)
    assert pool.idle == 2
    assert pool.opened == 2


async def test_a_failed_open_frees_its_place(pool: ConnectionPool, opener: Opener) -> None:
    opener.fail = 1
    with pytest.raises(OSError, match="refused"):
        await pool.acquire()
    assert pool.opened == 0
    conn = await pool.acquire()
    assert await conn.fetchval("SELECT 3") == 3
    pool.release(conn)


async def test_an_idle_expired_connection_is_closed_not_lent(opener: Opener) -> None:
    pool = ConnectionPool(opener, 2, timeout=5, idle_seconds=0)
    old = await pool.acquire()
    pool.release(old)
    new = await pool.acquire()
    assert new is not old
    pool.release(new)
    await pool.close()  # waits for the expired connection's close
    assert old.is_closed()
    assert new.is_closed()
    assert opener.still_open() == 0


async def test_closing_fails_the_waiters_closes_the_idle_and_refuses_to_lend(
    pool: ConnectionPool, opener: Opener
) -> None:
    a, b = await pool.acquire(), await pool.acquire()
    waiting = asyncio.ensure_future(pool.acquire())
    await run_ready_tasks()
    pool.release(a)
    assert await waiting is a
    waiting = asyncio.ensure_future(pool.acquire())
    await run_ready_tasks()
    pool.release(a)  # straight to the waiter
    assert await waiting is a
    pool.release(a)
    waiting = asyncio.ensure_future(pool.acquire())
    await run_ready_tasks()
    assert await waiting is a
    late = asyncio.ensure_future(pool.acquire())
    await run_ready_tasks()
    await pool.close()
    with pytest.raises(PoolClosed):
        await late
    with pytest.raises(PoolClosed):
        await pool.acquire()
    pool.release(a)  # on loan when the pool closed: closed on its way back
    pool.release(b)
    assert opener.still_open() == 0
    assert pool.opened == 0


async def test_a_connection_handed_to_a_borrower_cancelled_meanwhile_is_not_lost(
    pool: ConnectionPool,
) -> None:
    a, b = await pool.acquire(), await pool.acquire()
    waiting = asyncio.ensure_future(pool.acquire())
    await run_ready_tasks()
    pool.release(a)  # handed over; the borrower has not run since
    waiting.cancel()
    await run_ready_tasks()
    assert waiting.cancelled()
    assert pool.idle == 1
    assert await pool.acquire() is a
    pool.release(a)
    pool.release(b)


async def test_a_free_place_handed_to_a_borrower_cancelled_meanwhile_goes_to_the_next(
    opener: Opener,
) -> None:
    pool = ConnectionPool(opener, 1, timeout=5)
    broken = await pool.acquire()
    quitter = asyncio.ensure_future(pool.acquire())
    await run_ready_tasks()
    stayer = asyncio.ensure_future(pool.acquire())
    await run_ready_tasks()
    pool.release(broken, discard=True)  # its place to the first waiter, who is gone meanwhile
    quitter.cancel()
    fresh = await stayer
    assert quitter.cancelled()
    assert fresh is not broken
    assert await fresh.fetchval("SELECT 4") == 4
    pool.release(fresh)
    await pool.close()
