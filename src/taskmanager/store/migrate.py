"""Schema migrations (Alembic) run programmatically: upgrade, downgrade and current revision."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection

from taskmanager.store.database import Database

MIGRATIONS = Path(__file__).parent / "migrations"
#: Key of the PostgreSQL advisory lock / MySQL named lock that serialises concurrent migrations.
MIGRATION_LOCK_ID = 0x7A5C_4D61
MYSQL_LOCK_NAME = "CONCAT('taskmanager_migrate:', DATABASE())"


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def revisions() -> list[str]:
    """Every revision id, oldest first."""
    script = ScriptDirectory.from_config(_config())
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def _serialise(connection: Connection) -> None:
    """Several servers starting at once must not migrate the same database together."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
    elif connection.dialect.name in ("mysql", "mariadb"):
        # Named locks are server-wide: name it after the database so only its migrations queue.
        connection.execute(text(f"SELECT GET_LOCK({MYSQL_LOCK_NAME}, 60)"))


def _run(connection: Connection, action: str, revision: str) -> None:
    _serialise(connection)
    try:
        getattr(command, action)(_config(connection), revision)
    finally:
        if connection.dialect.name in ("mysql", "mariadb"):
            # MySQL's named lock belongs to the session, not the transaction: a pooled
            # connection would keep it and stall every later migration for a minute.
            connection.execute(text(f"SELECT RELEASE_LOCK({MYSQL_LOCK_NAME})"))


def _current(connection: Connection) -> Any:
    return MigrationContext.configure(connection).get_current_revision()


async def upgrade(database: Database, revision: str = "head") -> None:
    await database.run(lambda conn: _run(conn, "upgrade", revision), write=True)


async def downgrade(database: Database, revision: str) -> None:
    await database.run(lambda conn: _run(conn, "downgrade", revision), write=True)


async def current(database: Database) -> str | None:
    found = await database.run(_current, write=False)
    return None if found is None else str(found)
