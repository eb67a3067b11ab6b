"""What ``taskmanager serve`` decides before it starts: whether it may, and who migrates.

Pure decisions on the settings: the command looks at the database (is it in memory, how many
keys does it hold) and passes what it found, so the rules are tested without a server.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from taskmanager.settings import Settings, is_loopback


@dataclass(frozen=True, slots=True)
class ServePlan:
    """How to start, or why not to (``refusal`` set: print it and exit 2, creating nothing)."""

    refusal: str | None = None
    #: An API key is required (the admin key is set, or the database holds keys).
    auth_on: bool = False
    #: The command migrates the database once, before any server process starts.
    migrate_first: bool = False
    #: Each server process migrates when it starts (an in-memory database lives only there).
    migrate_on_start: bool = False


def _refused(reason: str) -> ServePlan:
    return ServePlan(refusal=reason)


def plan_serve(
    settings: Settings, *, workers: int, in_memory: bool, stored_keys: Callable[[], int]
) -> ServePlan:
    """The plan for serving ``settings`` with ``workers`` processes.

    ``stored_keys`` counts the database's keys without creating it; it is called only when
    no admin key is set and the database is a file or a server, so a refused start leaves
    nothing behind.
    """
    if in_memory and workers > 1:
        return _refused("An in-memory SQLite database cannot be shared by several workers.")
    auth_on = settings.api_key is not None or (not in_memory and stored_keys() > 0)
    if not auth_on and not is_loopback(settings.host) and not settings.allow_open:
        return _refused(
            f"Refusing to serve in open mode on {settings.host}: no API key is set. "
            "Set TASKMANAGER_API_KEY, create a key (taskmanager keys create), bind to 127.0.0.1, "
            "or pass --allow-open."
        )
    return ServePlan(auth_on=auth_on, migrate_first=not in_memory, migrate_on_start=in_memory)


__all__ = ["ServePlan", "plan_serve"]
