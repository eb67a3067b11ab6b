"""Keys limited to task types (API.md B.6 ``types``): which types the caller of this request may
create, read, claim and report.

A key's ``types`` are type-name patterns where ``*`` matches any run of characters (every other
character matches itself: ``PrismQ.Script.*`` matches ``PrismQ.Script.Generate``, not
``PrismQXScript.Generate``). The server sets ``current`` for each request from its key
(``server/table.py``, after authentication); the engine consults it where a task is created,
read, listed, claimed or reported, so no operation needs a parameter for it and none can forget
it: a task of another type reads as missing (404) and a claim's statement only walks the allowed
types (``ClaimQuery.type_scope``, as SQL ``LIKE`` patterns).
"""

from __future__ import annotations

import re
from contextvars import ContextVar
from dataclasses import dataclass, field

from taskmanager.engine.replies import TASK_NOT_FOUND, TYPE_NOT_FOUND
from taskmanager.errors import NotFound

#: The escape character of the LIKE patterns (the default of PostgreSQL and MySQL; SQLite is told).
LIKE_ESCAPE = "\\"


def like_pattern(pattern: str) -> str:
    """``PrismQ.Script_*`` → ``PrismQ.Script\\_%``: the SQL LIKE pattern matching the same names."""
    escaped = (c if c == "*" else f"{LIKE_ESCAPE}{c}" if c in "%_\\" else c for c in pattern)
    return "".join(escaped).replace("*", "%")


@dataclass(frozen=True)
class TypeScope:
    """The type-name patterns a caller is limited to."""

    patterns: tuple[str, ...]
    _matcher: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        alternatives = (
            "".join(".*" if part == "*" else re.escape(part) for part in re.split(r"(\*)", p))
            for p in self.patterns
        )
        object.__setattr__(
            self, "_matcher", re.compile("|".join(f"(?:{a})" for a in alternatives), re.DOTALL)
        )

    def allows(self, type_name: str) -> bool:
        return self._matcher.fullmatch(type_name) is not None

    def like_patterns(self) -> tuple[str, ...]:
        return tuple(like_pattern(p) for p in self.patterns)


#: The type scope of the request being served; None: every type (unscoped keys, the admin key,
#: open mode, embedded mode).
current: ContextVar[TypeScope | None] = ContextVar("type_scope", default=None)


def like_patterns() -> tuple[str, ...] | None:
    """The current request's patterns as SQL LIKE patterns; None: every type."""
    scope = current.get()
    return None if scope is None else scope.like_patterns()


def scoped() -> bool:
    return current.get() is not None


def allowed(type_name: str) -> bool:
    scope = current.get()
    return scope is None or scope.allows(type_name)


def check_type(type_name: str, message: str = TYPE_NOT_FOUND) -> None:
    """404 (as if it did not exist) when the current request may not touch ``type_name``."""
    scope = current.get()
    if scope is not None and not scope.allows(type_name):
        raise NotFound(message)


def check_task_type(type_name: str) -> None:
    check_type(type_name, TASK_NOT_FOUND)
