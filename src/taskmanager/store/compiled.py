"""A SQLAlchemy Core statement compiled once, for a store that sends it to its driver itself
(PostgreSQL's asyncpg statements, SQLite's single create): its SQL, and its parameters in
placeholder order made from values by name."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Dialect


@dataclass(frozen=True)
class Compiled:
    """One statement compiled for one shape: its SQL and, in placeholder order, the names of its
    parameters (the values a statement carries itself, e.g. the server's defaults, included) and,
    where asked for, each one's bind processing by its type (as SQLAlchemy applies it)."""

    sql: str
    names: tuple[str, ...]
    fixed: Mapping[str, Any]
    processors: tuple[Callable[[Any], Any] | None, ...] | None = None

    @classmethod
    def of(
        cls, statement: Any, dialect: Dialect, keys: tuple[str, ...] | None = None, *, processed: bool = False
    ) -> Compiled:
        """``statement`` for ``dialect`` (an INSERT of the columns ``keys``, if given); with
        ``processed``, ``args`` binds each value through its type's processor."""
        compiled = statement.compile(dialect=dialect, column_keys=list(keys) if keys else None)
        names = tuple(compiled.positiontup or ())
        binds = compiled.binds
        fixed = {name: binds[name].value for name in names if not binds[name].required}
        processors = (
            tuple(binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names)
            if processed
            else None
        )
        return cls(str(compiled), names, fixed, processors)

    def args(self, values: Mapping[str, Any]) -> list[Any]:
        """The parameters in placeholder order (a KeyError names one not given)."""
        fixed = self.fixed
        given = [values[name] if name in values else fixed[name] for name in self.names]
        if self.processors is None:
            return given
        processed = zip(self.processors, given, strict=True)
        return [value if process is None else process(value) for process, value in processed]
