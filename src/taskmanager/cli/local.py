"""What the commands that run the server's code in this process share (``serve``, ``db``,
``keys``, ``import-prismq``): the ``--database-url`` option, settings from the command line over
the environment, the one-line refusal when the ``[server]`` extra is missing, and stderr."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from taskmanager._server_extra import INSTALL_SERVER, missing_server_module

if TYPE_CHECKING:
    from taskmanager.settings import Settings

console = Console(stderr=True, soft_wrap=True)

DatabaseOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="TASKMANAGER_DATABASE_URL",
        show_envvar=True,
        help="sqlite:///PATH, postgresql://... or mysql://...",
    ),
]


def settings_from(**overrides: object) -> Settings:
    from taskmanager.settings import Settings

    given = {k: v for k, v in overrides.items() if v is not None}
    return Settings(**given)  # type: ignore[arg-type]


def require_server(command: str) -> None:
    """Exit 1 with one line naming the install command when the server extra is missing."""
    if missing_server_module() is not None:
        typer.echo(f"taskmanager {command} needs the server: {INSTALL_SERVER}", err=True)
        raise typer.Exit(1)
