"""Connecting to a database: URL normalisation, engines per dialect, and what differs between them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from taskmanager.errors import Unavailable

#: Milliseconds a SQLite connection waits for another process's write lock before failing.
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: Async driver chosen for each URL scheme a user may write.
DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "mysql": "mysql+asyncmy",
    "mariadb": "mysql+asyncmy",
}


def async_url(url: str) -> URL:
    """``sqlite:///x.db`` → ``sqlite+aiosqlite:///x.db`` (explicit drivers are kept)."""
    parsed = make_url(url)
    if "+" in parsed.drivername:
        return parsed
    driver = DRIVERS.get(parsed.drivername)
    if driver is None:
        raise ValueError(
            f"Unsupported database URL scheme {parsed.drivername!r}: use sqlite, postgresql or mysql"
        )
    return parsed.set(drivername=driver)


def display_url(url: str) -> str:
    """The URL with its password hidden, for logs and start-up banners."""
    return make_url(url).render_as_string(hide_password=True)


@dataclass
class Database:
    """An async engine plus the few facts about its dialect the store needs."""

    engine: AsyncEngine
    dialect: str
    #: SQLite allows one writer: writes in this process queue on a lock instead of busy-waiting.
    write_lock: asyncio.Lock | None

    @property
    def locks_rows(self) -> bool:
        """PostgreSQL and MySQL lock rows with FOR UPDATE; SQLite locks the whole database."""
        return self.dialect != "sqlite"

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A transaction that will write (on SQLite: BEGIN IMMEDIATE, one writer at a time)."""
        with _unavailable_on_connection_errors():
            if self.write_lock is None:
                async with self.engine.begin() as conn:
                    yield conn
                return
            async with self.write_lock:
                writer = self.engine.execution_options(sqlite_immediate=True)
                async with writer.begin() as conn:
                    yield conn

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        with _unavailable_on_connection_errors():
            async with self.engine.connect() as conn:
                yield conn

    async def dispose(self) -> None:
        await self.engine.dispose()


@contextlib.contextmanager
def _unavailable_on_connection_errors() -> Iterator[None]:
    """A database that cannot be reached is a 503 ``unavailable``, never a 500 with driver text."""
    try:
        yield
    except (OperationalError, InterfaceError, OSError, TimeoutError) as exc:
        raise Unavailable("Database unavailable") from exc
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise Unavailable("Database unavailable") from exc
        raise


def _sqlite_events(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control from the driver so BEGIN IMMEDIATE and SAVEPOINT work.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def connect(url: str, *, pool_size: int = 10) -> Database:
    """Create the engine for ``url`` (no connection is made until first use)."""
    target = async_url(url)
    dialect = target.get_backend_name()
    if dialect == "sqlite":
        memory = target.database in (None, "", ":memory:")
        kwargs: dict[str, Any] = (
            {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
            if memory
            else {"pool_size": pool_size, "max_overflow": 0}
        )
        engine = create_async_engine(target, **kwargs)
        _sqlite_events(engine)
        return Database(engine, "sqlite", asyncio.Lock())
    kwargs = {"pool_size": pool_size, "max_overflow": pool_size, "pool_pre_ping": True}
    if dialect in ("mysql", "mariadb"):
        # READ COMMITTED: after a duplicate-key error, a fresh SELECT must see the winner's row.
        kwargs["isolation_level"] = "READ COMMITTED"
        dialect = "mysql"
    return Database(create_async_engine(target, **kwargs), dialect, None)
