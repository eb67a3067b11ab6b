"""Schedules declared beside their handler: ``@worker.task("report.daily", schedule=Cron(...))``.

The worker saves each declared schedule (``POST /schedules``, by name: the type's name unless
given) when it starts, right after it registers the type; the servers then create a task of the
type at each tick (API.md B.8). The cron expression and the time zone are checked by the server.

    @worker.task("report.daily", schedule=Cron("0 6 * * *", timezone="Europe/Prague"))
    def daily_report(ctx: TaskContext) -> None: ...

    @worker.task("cache.refresh", schedule=Every(300, params={"warm": True}))
    def refresh(ctx: TaskContext) -> None: ...
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, kw_only=True)
class Schedule:
    """What every schedule may set: its ``name`` (default: the task type's), the tasks'
    ``params`` and ``priority``, and whether it is ``enabled``."""

    name: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    priority: int = 0
    enabled: bool = True

    def cadence(self) -> dict[str, Any]:  # pragma: no cover - every subclass has its own
        raise NotImplementedError

    def body(self) -> dict[str, Any]:
        """The keywords of ``save_schedule`` besides the name and the type."""
        return {
            **self.cadence(),
            "params": dict(self.params),
            "priority": self.priority,
            "enabled": self.enabled,
        }


@dataclass(frozen=True, kw_only=True)
class Cron(Schedule):
    """At each tick of a 5-field cron ``expression`` read in the IANA ``timezone``."""

    expression: str = field(kw_only=False)
    timezone: str = "UTC"

    def cadence(self) -> dict[str, Any]:
        return {"cron": self.expression, "timezone": self.timezone}


@dataclass(frozen=True, kw_only=True)
class Every(Schedule):
    """Every ``seconds`` (at whole multiples of it since the Unix epoch, UTC)."""

    seconds: int = field(kw_only=False)

    def cadence(self) -> dict[str, Any]:
        return {"interval_seconds": self.seconds}


__all__ = ["Cron", "Every", "Schedule"]
