"""Storage: the SQL implementation of the engine's ``Store`` protocol, and its migrations."""

from taskmanager.engine.policy import Defaults
from taskmanager.store.database import Database, connect, display_url
from taskmanager.store.sql import SqlStore

__all__ = ["Database", "SqlStore", "connect", "display_url", "open_store"]


def open_store(url: str, *, pool_size: int = 10, defaults: Defaults | None = None) -> SqlStore:
    """A store on ``url`` (no connection is made until first use)."""
    return SqlStore(connect(url, pool_size=pool_size), defaults, pool_size=pool_size)
