"""Whether the server's dependencies are installed: they come with the ``[server]`` extra.

A plain install gives the client, the worker runtime and ``taskmanager worker``; the server,
the embedded client (a database URL instead of a server's) and the commands that open a
database need ``pip install 'taskmanager-queue[server]'``. This module imports only the standard
library, so the client and the CLI can ask it before importing anything of the server's.
"""

from __future__ import annotations

import importlib.util

from taskmanager._version import DISTRIBUTION

#: Top-level modules the server always imports.
SERVER_MODULES = (
    "sqlalchemy",
    "alembic",
    "starlette",
    "uvicorn",
    "jsonschema",
    "regex",
    "pydantic_settings",
    "prometheus_client",
    "swagger_ui_bundle",
    "croniter",
)
#: Modules of the extra imported only when a setting asks for them (a database driver, Redis), or
#: only where the system lacks them (tzdata: zoneinfo's time zones where /usr/share/zoneinfo is
#: missing, as on Windows or a slim container).
OPTIONAL_SERVER_MODULES = ("asyncpg", "asyncmy", "redis", "tzdata")
#: The command that installs them.
INSTALL_SERVER = f"pip install '{DISTRIBUTION}[server]'"


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:  # a finder on sys.meta_path refused it
        return False


def missing_server_module() -> str | None:
    """The first server module that cannot be imported, or None when the server is installed."""
    return next((name for name in SERVER_MODULES if not _installed(name)), None)


def is_server_module(name: str | None) -> bool:
    """True for a module of the server's dependencies, or one inside it (``sqlalchemy.ext``)."""
    return name is not None and name.partition(".")[0] in SERVER_MODULES + OPTIONAL_SERVER_MODULES


def embedded_needs_server(exc: ModuleNotFoundError) -> ImportError:
    """The error for a client given a database URL when ``exc`` says the server is not installed."""
    return ImportError(
        f"A TaskManagerClient given a database URL runs the server in-process, and {exc.name} is "
        f"not installed: {INSTALL_SERVER}",
        name=exc.name,
    )
