"""``taskmanager keys create|list|revoke``: API keys, on the database directly."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated

import typer

from taskmanager.cli.local import DatabaseOption, console, require_server, settings_from

if TYPE_CHECKING:
    from taskmanager.engine.access import KeyService
    from taskmanager.engine.replies import Reply

keys_app = typer.Typer(
    help="API keys: create, list, revoke (on the database directly).", no_args_is_help=True
)


async def _with_keys(database_url: str | None, action: Callable[[KeyService], Awaitable[Reply]]) -> Reply:
    from taskmanager.engine.access import KeyService
    from taskmanager.store import open_store
    from taskmanager.store.migrate import upgrade

    store = open_store(settings_from(database_url=database_url).database_url, pool_size=1)
    try:
        await upgrade(store.db)
        return await action(KeyService(store.keys))
    finally:
        await store.close()


def _key_line(key: dict[str, object]) -> str:
    state = "active" if key["is_active"] else "revoked"
    limit = f"{key['rate_limit']}/min" if key["rate_limit"] else "default limit"
    scopes = " ".join(str(s) for s in key["scopes"])  # type: ignore[attr-defined]
    used = key["last_used_at"] or "never"
    line = f"{key['id']}\t{key['prefix']}\t{state}\t{key['name']}\t{scopes}\t{limit}\tlast used {used}"
    if key.get("types") is not None:
        line += "\ttypes " + " ".join(str(t) for t in key["types"])  # type: ignore[attr-defined]
    return line


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="What the key is for, e.g. 'render workers'.")],
    scope: Annotated[
        list[str],
        typer.Option(
            "--scope",
            "-s",
            help="types:read, types:write, tasks:read, tasks:write, tasks:work or admin (repeatable).",
        ),
    ],
    rate_limit: Annotated[
        int | None, typer.Option(help="Requests per minute (default: the server's).")
    ] = None,
    types: Annotated[
        list[str] | None,
        typer.Option(
            "--types",
            "-t",
            help="Limit the key to task types matching this pattern, '*' any characters (repeatable).",
        ),
    ] = None,
    database_url: DatabaseOption = None,
) -> None:
    """Create a key and print it once (to stdout; nothing else goes there)."""
    require_server("keys create")
    from taskmanager import models
    from taskmanager.errors import TaskManagerError

    try:
        body = models.parse_body(
            models.CreateApiKey,
            {"name": name, "scopes": scope, "rate_limit": rate_limit, "types": types or None},
        )
        reply = asyncio.run(_with_keys(database_url, lambda keys: keys.create(body)))
    except TaskManagerError as exc:
        console.print(f"[red]{exc.message}[/red] " + "; ".join(exc.details or []))
        raise typer.Exit(2) from None
    console.print(_key_line(reply.data))
    console.print("Store this key now: it is not shown again.")
    typer.echo(reply.data["key"])


@keys_app.command("list")
def keys_list(database_url: DatabaseOption = None) -> None:
    """List keys (id, prefix, state, name, scopes, limit, last use); never their secrets."""
    require_server("keys list")
    reply = asyncio.run(_with_keys(database_url, lambda keys: keys.list()))
    for key in reply.data["items"]:
        typer.echo(_key_line(key))
    if not reply.data["items"]:
        console.print("no API keys")


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[int, typer.Argument(help="The key's id (see `taskmanager keys list`).")],
    database_url: DatabaseOption = None,
) -> None:
    """Revoke a key: servers stop accepting it within their key cache time (5 s by default)."""
    require_server("keys revoke")
    from taskmanager.errors import NotFound

    try:
        reply = asyncio.run(_with_keys(database_url, lambda keys: keys.revoke(key_id)))
    except NotFound as exc:
        console.print(f"[red]{exc.message}[/red]")
        raise typer.Exit(1) from None
    typer.echo(_key_line(reply.data))
