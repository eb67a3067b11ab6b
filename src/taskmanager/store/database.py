"""Connecting to a database: URL normalisation, engines per dialect, and what differs between them.

The store's SQL is written once, as plain functions on a synchronous SQLAlchemy ``Connection``.
``Database.run`` runs such a function inside one transaction, the right way for each database:

* **SQLite** — the stdlib driver in worker threads: one writer thread (SQLite allows one writer;
  queuing writers here beats busy-waiting on the file lock) and a few reader threads. A whole
  transaction is one thread hop, which measured ~18x faster per statement than an async driver.
* **PostgreSQL / MySQL** — async drivers (asyncpg, asyncmy); the same function runs through
  SQLAlchemy's ``run_sync`` bridge, so no thread is held while the database answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from taskmanager.errors import Unavailable

R = TypeVar("R")

#: Milliseconds a SQLite connection waits for another process's write lock before failing.
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: Threads that run SQLite read transactions concurrently (WAL lets readers run beside the writer).
SQLITE_READERS = 4
#: Times a transaction the database picked as a deadlock victim is run again before giving up.
DEADLOCK_RETRIES = 3
#: Driver codes of a deadlock victim: MySQL/MariaDB ER_LOCK_DEADLOCK, PostgreSQL deadlock_detected.
DEADLOCK_CODES = frozenset({1213, "40P01"})
#: Seconds to open a connection, to wait for a free pooled one, and for one statement: a database
#: that stopped answering turns into 503 ``unavailable`` instead of a request that hangs.
CONNECT_TIMEOUT = 10
POOL_TIMEOUT = 10
STATEMENT_TIMEOUT = 30
#: Driver chosen for each URL scheme a user may write.
DRIVERS = {
    "sqlite": "sqlite+pysqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "mysql": "mysql+asyncmy",
    "mariadb": "mysql+asyncmy",
}


def driver_url(url: str) -> URL:
    """``postgresql://…`` → ``postgresql+asyncpg://…`` (explicit drivers are kept)."""
    parsed = make_url(url)
    if "+" in parsed.drivername:
        return parsed
    driver = DRIVERS.get(parsed.drivername)
    if driver is None:
        raise ValueError(
            f"Unsupported database URL scheme {parsed.drivername!r}: use sqlite, postgresql or mysql"
        )
    return parsed.set(drivername=driver)


def is_memory(url: str | URL) -> bool:
    """True for an in-memory SQLite URL: its database lives and dies with one process."""
    parsed = make_url(url)
    return parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:")


def display_url(url: str) -> str:
    """The URL with its password hidden, for logs and start-up banners."""
    return make_url(url).render_as_string(hide_password=True)


def _is_deadlock(exc: DBAPIError) -> bool:
    """The database rolled this transaction back to break a deadlock: running it again is safe."""
    orig = exc.orig
    codes = {getattr(orig, "pgcode", None), *getattr(orig, "args", ())[:1]}
    return not DEADLOCK_CODES.isdisjoint(codes)


#: asyncpg's errors meaning the database or the connection to it is gone, or that it refuses
#: connections for now (``CannotConnectNowError``, 57P03: starting up or shutting down, an
#: ``OperatorInterventionError``; too many connections, an ``InsufficientResourcesError``) — a
#: 503, never a 500. Raised raw by asyncpg's own calls, and by SQLAlchemy too when a *new*
#: connection fails: its asyncpg adapter translates the errors of statements, not of connects.
ASYNCPG_CONNECTION_ERRORS = (
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,
    asyncpg.InsufficientResourcesError,
)


@contextlib.contextmanager
def _unavailable_on_connection_errors() -> Iterator[None]:
    """A database that cannot be reached is a 503 ``unavailable``, never a 500 with driver text."""
    try:
        yield
    except (
        OperationalError,
        InterfaceError,
        OSError,
        TimeoutError,
        sqlite3.OperationalError,
        *ASYNCPG_CONNECTION_ERRORS,
    ) as exc:
        raise Unavailable("Database unavailable") from exc
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise Unavailable("Database unavailable") from exc
        raise


@dataclass
class Database:
    """Runs the store's SQL functions, each in one transaction, on one database."""

    dialect: str
    url: URL
    sync_engine: Engine | None = None
    async_engine: AsyncEngine | None = None
    _writer: ThreadPoolExecutor | None = field(default=None, repr=False)
    _readers: ThreadPoolExecutor | None = field(default=None, repr=False)

    @property
    def locks_rows(self) -> bool:
        """PostgreSQL and MySQL lock rows with FOR UPDATE; SQLite locks the whole database."""
        return self.dialect != "sqlite"

    async def run(self, fn: Callable[[Connection], R], *, write: bool) -> R:
        """``fn(connection)`` inside one transaction, committed if it returns."""
        with _unavailable_on_connection_errors():
            if self.async_engine is not None:
                return await self._run_async(self.async_engine, fn)
            executor = self._writer if write else self._readers
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(executor, self._in_transaction, fn, write)

    @staticmethod
    async def _run_async(engine: AsyncEngine, fn: Callable[[Connection], R]) -> R:
        """One transaction; run again if the database rolled it back to break a deadlock."""
        for _ in range(DEADLOCK_RETRIES):
            try:
                async with engine.begin() as conn:
                    return await conn.run_sync(fn)
            except DBAPIError as exc:
                if not _is_deadlock(exc):
                    raise
        async with engine.begin() as conn:
            return await conn.run_sync(fn)

    def _in_transaction(self, fn: Callable[[Connection], R], write: bool) -> R:
        """SQLite: ``fn`` in one transaction, a writer's taking the write lock first (``BEGIN
        IMMEDIATE``), committed if it returns. The BEGIN goes straight to the driver, not through
        a ``begin`` event: an engine with a connection event dispatches events around every
        statement it executes."""
        assert self.sync_engine is not None
        with self.sync_engine.connect() as conn:
            driver = _driver(conn)
            driver.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                result = fn(conn)
                # SQLAlchemy began its own transaction at its first statement (nothing on the
                # driver, whose isolation_level is None): committing it sends the COMMIT.
                conn.commit()
                if driver.in_transaction:  # ``fn`` ran its statements on the driver, or none
                    driver.execute("COMMIT")
            except BaseException:
                if driver.in_transaction:
                    with contextlib.suppress(sqlite3.Error):  # a broken connection: the pool's
                        driver.execute("ROLLBACK")  # reset on return rolls back what is left
                raise
            return result

    async def write_on_driver(self, fn: Callable[[sqlite3.Connection], R]) -> R:
        """SQLite: ``fn(driver connection)`` in one ``run(write=True)`` transaction, its
        statements sent to the driver without SQLAlchemy's execution around each one (a store's
        measured hot path)."""
        return await self.run(lambda conn: fn(_driver(conn)), write=True)

    async def dispose(self) -> None:
        if self.async_engine is not None:
            await self.async_engine.dispose()
        if self.sync_engine is not None:
            self.sync_engine.dispose()
        for pool in (self._writer, self._readers):
            if pool is not None:
                pool.shutdown(wait=False)


def _driver(conn: Connection) -> sqlite3.Connection:
    """The stdlib driver's connection under a SQLite ``Connection``."""
    driver = conn.connection.driver_connection
    assert isinstance(driver, sqlite3.Connection)
    return driver


def _sqlite_events(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control from the driver so BEGIN IMMEDIATE and SAVEPOINT work.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()


def _sqlite(target: URL) -> Database:
    if is_memory(target):
        # One connection shared by every thread, so one thread runs everything.
        engine = create_engine(target, poolclass=StaticPool, connect_args={"check_same_thread": False})
        single = ThreadPoolExecutor(1, thread_name_prefix="taskmanager-sqlite")
        _sqlite_events(engine)
        return Database("sqlite", target, sync_engine=engine, _writer=single, _readers=single)
    engine = create_engine(
        target,
        pool_size=SQLITE_READERS + 1,
        max_overflow=0,
        connect_args={"check_same_thread": False},
    )
    _sqlite_events(engine)
    return Database(
        "sqlite",
        target,
        sync_engine=engine,
        _writer=ThreadPoolExecutor(1, thread_name_prefix="taskmanager-sqlite-writer"),
        _readers=ThreadPoolExecutor(SQLITE_READERS, thread_name_prefix="taskmanager-sqlite-reader"),
    )


def connect(url: str, *, pool_size: int = 10) -> Database:
    """Create the engine for ``url`` (no connection is made until first use)."""
    target = driver_url(url)
    dialect = target.get_backend_name()
    if dialect == "sqlite":
        return _sqlite(target)
    kwargs: dict[str, Any] = {
        "pool_size": pool_size,
        "max_overflow": pool_size,
        # On PostgreSQL this pool serves only the colder paths (store/postgres.py has its own for
        # create, claim and complete), where a ping per checkout is cheap insurance: after a
        # database restart the first request on each stale connection would otherwise fail.
        "pool_pre_ping": dialect == "postgresql",
        "pool_timeout": POOL_TIMEOUT,
    }
    if dialect in ("mysql", "mariadb"):
        # READ COMMITTED: after a duplicate-key error, a fresh SELECT must see the winner's row.
        kwargs["isolation_level"] = "READ COMMITTED"
        kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT}
        dialect = "mysql"
    else:
        kwargs["connect_args"] = {"timeout": CONNECT_TIMEOUT, "command_timeout": STATEMENT_TIMEOUT}
    return Database(dialect, target, async_engine=create_async_engine(target, **kwargs))
