"""Importing a PrismQ TaskManager database: its task types, tasks and history, ids kept.

PrismQ (the PHP service this project is compatible with) keeps its queue in MySQL/MariaDB:
``task_types(id, name, version, param_schema_json, is_active, created_at, updated_at)``,
``tasks(id, type_id, status, params_json, dedupe_key, result_json, error_message, priority,
progress, attempts, claimed_by, claimed_at, completed_at, created_at, updated_at)`` (``priority``
and ``progress`` came with later migrations, so either may be missing) and, optionally,
``task_history(id, task_id, status_change, worker_id, message, created_at)``.

The import reads all of it in one consistent snapshot, then writes it into our schema in one
transaction: either everything is imported or nothing is. Ids, statuses, params and results (as
the exact JSON text PrismQ stored) and dedupe keys are kept, so PrismQ workers and clients carry
on against our server: a create with the same params is deduplicated against the imported task.

``reader`` reads the source, ``writer`` plans and writes the rows, ``shapes`` holds what passes
between them, ``errors`` what stops an import (all under ``TaskManagerError``). This package
needs the server's dependencies (SQLAlchemy and the drivers).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from taskmanager.prismq.errors import IdsTaken, ImportRefused, PrismqImportError
from taskmanager.prismq.reader import read_prismq
from taskmanager.prismq.shapes import ImportOptions, ImportReport, Snapshot
from taskmanager.prismq.writer import plan_report, write_snapshot
from taskmanager.store.database import connect, driver_url, is_memory
from taskmanager.store.migrate import upgrade


def _file_missing(url: str) -> bool:
    """A SQLite file that does not exist yet (opening it would create it)."""
    parsed = driver_url(url)
    name = parsed.database
    return parsed.get_backend_name() == "sqlite" and not is_memory(parsed) and not Path(str(name)).exists()


async def import_prismq(source_url: str, target_url: str, options: ImportOptions) -> ImportReport:
    """Copy the PrismQ database at ``source_url`` into ours at ``target_url`` (migrated first)."""
    snapshot = await read_prismq(source_url, options, datetime.now(UTC))
    if options.dry_run and _file_missing(target_url):
        return plan_report(snapshot)
    target = connect(target_url, pool_size=1)
    try:
        if not options.dry_run:
            await upgrade(target)
        return await write_snapshot(target, snapshot, options)
    finally:
        await target.dispose()


__all__ = [
    "IdsTaken",
    "ImportOptions",
    "ImportRefused",
    "ImportReport",
    "PrismqImportError",
    "Snapshot",
    "import_prismq",
    "read_prismq",
    "write_snapshot",
]
