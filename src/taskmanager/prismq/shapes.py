"""What an import is asked to do, what it read, and what it reports."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from typing import Any

from taskmanager.engine.policy import Defaults

#: Bad rows (or ids) named in one refusal; the rest are counted.
SHOWN_PROBLEMS = 10


@dataclass(frozen=True, slots=True)
class ImportOptions:
    """How to import: type settings come from ``defaults``, as for a newly registered type."""

    defaults: Defaults = field(default_factory=Defaults)
    source_timezone: tzinfo = UTC
    skip_existing: bool = False
    dry_run: bool = False
    #: Told ``(rows written, rows to write)`` as the copy goes on (the CLI's progress bar), from
    #: the thread that writes.
    progress: Callable[[int, int], None] | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What was read from PrismQ, already shaped as rows of our tables."""

    types: list[dict[str, Any]]
    tasks: list[dict[str, Any]]
    history: list[dict[str, Any]]
    #: Tasks whose stored dedupe key is not the one our server computes from their params.
    unmatched_keys: int


@dataclass(frozen=True, slots=True)
class ImportReport:
    types: int
    tasks_by_status: dict[str, int]
    history: int
    skipped_types: int = 0
    skipped_tasks: int = 0
    unmatched_keys: int = 0
    dry_run: bool = False

    def lines(self) -> list[str]:
        """The summary printed by ``taskmanager import-prismq``."""
        total = sum(self.tasks_by_status.values())
        statuses = ", ".join(f"{s} {n}" for s, n in sorted(self.tasks_by_status.items()))
        lines = [
            "Dry run: nothing was written. Would import:" if self.dry_run else "Imported:",
            f"  task types: {self.types}",
            f"  tasks: {total}" + (f" ({statuses})" if statuses else ""),
            f"  history events: {self.history}",
        ]
        if self.skipped_types or self.skipped_tasks:
            lines.append(
                f"  skipped (already in the target): {self.skipped_types} task types, "
                f"{self.skipped_tasks} tasks"
            )
        if self.unmatched_keys:
            lines.append(
                f"  note: {self.unmatched_keys} tasks keep a dedupe key that differs from the one "
                "computed from their params (stored as other than compact JSON, e.g. escaped "
                "slashes): a create with the same params is not deduplicated against them"
            )
        return lines
