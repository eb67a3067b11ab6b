"""What stops a PrismQ import: each under the package's one root, ``TaskManagerError``.

When any of these is raised, nothing was written.
"""

from __future__ import annotations

from taskmanager.errors import TaskManagerError


class PrismqImportError(TaskManagerError):
    """The import did not run (the source cannot be read, or is not a MySQL/MariaDB URL)."""

    code = "prismq_import_failed"
    status = 500
    default_message = "The PrismQ import did not run"


class ImportRefused(PrismqImportError):
    """The source holds data the import cannot take, or the target cannot take it as it is."""

    code = "prismq_import_refused"
    status = 400
    default_message = "The PrismQ import was refused"


class IdsTaken(ImportRefused):
    """The target already holds rows with some of the ids (or dedupe keys) being imported."""

    code = "prismq_ids_taken"
    status = 409
    default_message = "The target already holds some of the rows being imported"


__all__ = ["IdsTaken", "ImportRefused", "PrismqImportError"]
