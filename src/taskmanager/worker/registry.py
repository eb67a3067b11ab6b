"""The handlers a worker runs, one per task type, registered with ``@worker.task(...)``."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from taskmanager.worker.context import TaskContext
from taskmanager.worker.schedule import Schedule

HandlerFn = Callable[[TaskContext], Any]
F = TypeVar("F", bound=HandlerFn)

#: The schema of a type registered without one: any JSON object of params.
OPEN_SCHEMA: Mapping[str, Any] = {"type": "object"}


@dataclass(frozen=True, slots=True)
class Handler:
    """A task type's handler, and what to register for the type when the worker starts."""

    name: str
    fn: HandlerFn
    version: str = "1"
    schema: Mapping[str, Any] = field(default_factory=lambda: dict(OPEN_SCHEMA))
    #: Seconds one run may take before it is stopped and reported as failed (None: no limit).
    timeout: float | None = None
    #: Task-type settings sent on register (``max_attempts``, ``claim_timeout``, ``retry_delay``...).
    settings: Mapping[str, Any] = field(default_factory=dict)
    #: A schedule saved (by name) when the worker starts, creating tasks of this type (B.8).
    schedule: Schedule | None = None

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.fn)


class Registry:
    """Handlers by task type name."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def task(
        self,
        name: str,
        *,
        version: str = "1",
        schema: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        schedule: Schedule | None = None,
        **settings: Any,
    ) -> Callable[[F], F]:
        """Decorator: ``fn(ctx)`` (sync or async) handles tasks of type ``name``; ``schedule``
        (``Cron`` or ``Every``) has the servers create one at each of its ticks."""
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be positive")

        def register(fn: F) -> F:
            if name in self._handlers:
                raise ValueError(f"a handler for {name!r} is already registered")
            self._handlers[name] = Handler(
                name, fn, version, dict(schema or OPEN_SCHEMA), timeout, dict(settings), schedule
            )
            return fn

        return register

    def get(self, name: str) -> Handler | None:
        return self._handlers.get(name)

    def names(self) -> list[str]:
        return list(self._handlers)

    def __iter__(self) -> Iterator[Handler]:
        return iter(self._handlers.values())

    def __len__(self) -> int:
        return len(self._handlers)


__all__ = ["Handler", "HandlerFn", "Registry"]
