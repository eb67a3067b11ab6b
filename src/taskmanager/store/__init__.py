"""Storage: the engine's ``Store`` protocol, one class per database family, and migrations."""

from taskmanager.engine.policy import Defaults
from taskmanager.store.base import SqlStore
from taskmanager.store.database import Database, connect, display_url
from taskmanager.store.mysql import MySQLStore
from taskmanager.store.postgres import PostgresStore
from taskmanager.store.sqlite import SqliteStore

__all__ = [
    "Database",
    "MySQLStore",
    "PostgresStore",
    "SqlStore",
    "SqliteStore",
    "connect",
    "display_url",
    "open_store",
]


def open_store(url: str, *, pool_size: int = 10, defaults: Defaults | None = None) -> SqlStore:
    """The store for ``url``'s database family (no connection is made until first use)."""
    database = connect(url, pool_size=pool_size)
    if database.dialect == "postgresql":
        return PostgresStore(database, defaults, pool_size=pool_size)
    if database.dialect == "mysql":
        return MySQLStore(database, defaults)
    return SqliteStore(database, defaults)
