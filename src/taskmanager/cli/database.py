"""``taskmanager db upgrade|downgrade|current``: the schema's migrations, on the database directly."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated

import typer

from taskmanager.cli.local import DatabaseOption, require_server, settings_from

if TYPE_CHECKING:
    from taskmanager.store import Database

db_app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)


async def on_store(database_url: str | None, action: Callable[[Database], Awaitable[object]]) -> str | None:
    """Run a migration ``action`` on the configured database; return its revision afterwards."""
    from taskmanager.store import open_store
    from taskmanager.store.migrate import current

    store = open_store(settings_from(database_url=database_url).database_url, pool_size=1)
    try:
        await action(store.db)
        return await current(store.db)
    finally:
        await store.close()


async def _nothing(_db: Database) -> None:
    return None


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
    database_url: DatabaseOption = None,
) -> None:
    """Migrate the schema up to REVISION (default: the latest)."""
    require_server("db upgrade")
    from taskmanager.store.migrate import upgrade

    found = asyncio.run(on_store(database_url, lambda db: upgrade(db, revision)))
    typer.echo(f"database at revision {found or 'base (empty)'}")


# ``-1`` is a revision, not an option: unknown options are taken as the argument.
@db_app.command("downgrade", context_settings={"ignore_unknown_options": True})
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision: -1, a revision id, or base.")],
    database_url: DatabaseOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before dropping every table.")] = False,
) -> None:
    """Roll the schema back to REVISION (``base`` drops every table, after asking)."""
    require_server("db downgrade")
    if revision.startswith("--"):
        raise typer.BadParameter(f"no such option: {revision}", param_hint="REVISION")
    if revision == "base" and not yes:
        typer.confirm(
            "Downgrade to base drops every table and all their data. Continue?", abort=True, err=True
        )
    from taskmanager.store.migrate import downgrade

    found = asyncio.run(on_store(database_url, lambda db: downgrade(db, revision)))
    typer.echo(f"database at revision {found or 'base (empty)'}")


@db_app.command("current")
def db_current(database_url: DatabaseOption = None) -> None:
    """Print the database's schema revision and the latest one."""
    require_server("db current")
    from taskmanager.store.migrate import head_revision

    found = asyncio.run(on_store(database_url, _nothing))
    typer.echo(f"current: {found or 'base (empty)'}")
    typer.echo(f"latest:  {head_revision()}")
