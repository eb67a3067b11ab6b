"""Task dependencies (API.md B.5): the ``task_dependencies`` table, three columns on ``tasks``
(``depends_on``, ``blocked``, ``dependant_marks``), the two claim indexes rebuilt with
``blocked`` after ``status``, and ``ix_tasks_dependant_marks`` (partial on PostgreSQL and
SQLite: only rows with marks have an entry, so updates of plain tasks never write to it).

Upgrading a table of millions of tasks without a long lock:

* The columns: ``depends_on`` is nullable without a default, ``blocked`` and
  ``dependant_marks`` are NOT NULL with a constant default. Each is a change to the catalogue
  only, no rewrite: PostgreSQL 11+ (a constant default is stored once), MariaDB 10.3+ / MySQL
  8.0 (instant ADD COLUMN), SQLite (ADD COLUMN edits the stored schema).
* The indexes: on **MariaDB/MySQL** each claim index is replaced by one ``ALTER TABLE … DROP
  INDEX, ADD INDEX …, ALGORITHM=INPLACE, LOCK=NONE``: built online, reads and writes go on,
  and claims keep the old index until the new one is in place. On **PostgreSQL** a plain
  ``CREATE INDEX`` inside the migration's transaction blocks writes to ``tasks`` while it builds
  (seconds per million rows). To avoid even that on a big table, build the indexes first, online,
  under the names ``<name>_new`` — the migration then only swaps names (a moment's lock)::

      CREATE INDEX CONCURRENTLY ix_tasks_claim_new
          ON tasks (status, blocked, priority DESC, created_at, id);
      CREATE INDEX CONCURRENTLY ix_tasks_type_claim_new
          ON tasks (type_id, status, blocked, priority DESC, created_at, id);
      CREATE INDEX CONCURRENTLY ix_tasks_dependant_marks_new ON tasks (dependant_marks)
          WHERE dependant_marks > 0;

  (they need the columns, so on a live database run the ``ALTER TABLE tasks ADD COLUMN`` of this
  revision first: ``blocked BOOLEAN NOT NULL DEFAULT false``, ``dependant_marks INTEGER NOT NULL
  DEFAULT 0``, ``depends_on TEXT``; the migration adds only the columns still missing). On
  **SQLite** there is one writer: the build holds it for its length, as any write would.

The downgrade restores exactly the schema of 0006 (the old claim indexes, no new table, columns
or index), the same way round.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

from taskmanager.store.tables import Id

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

#: The claim indexes before and after this revision (``priority`` descending, as the claim order).
OLD_INDEXES = {
    "ix_tasks_claim": ("status", "priority DESC", "created_at", "id"),
    "ix_tasks_type_claim": ("type_id", "status", "priority DESC", "created_at", "id"),
}
NEW_INDEXES = {
    "ix_tasks_claim": ("status", "blocked", "priority DESC", "created_at", "id"),
    "ix_tasks_type_claim": ("type_id", "status", "blocked", "priority DESC", "created_at", "id"),
}
MARKS_INDEX = "ix_tasks_dependant_marks"


def _columns(names: tuple[str, ...]) -> list[Any]:
    return [sa.text(name) if " " in name else name for name in names]


def _prebuilt(name: str) -> bool:
    """Whether an operator built ``<name>_new`` beforehand (PostgreSQL, CONCURRENTLY)."""
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return False
    return bind.scalar(sa.text("SELECT to_regclass(:name)"), {"name": f"{name}_new"}) is not None


def _replace_index(name: str, columns: tuple[str, ...]) -> None:
    """Replace index ``name`` of ``tasks`` by one on ``columns``, as online as the database allows."""
    dialect = op.get_bind().dialect.name
    if dialect in ("mysql", "mariadb"):
        op.execute(
            f"ALTER TABLE tasks DROP INDEX {name}, ADD INDEX {name} ({', '.join(columns)}), "
            "ALGORITHM=INPLACE, LOCK=NONE"
        )
        return
    op.drop_index(name, table_name="tasks")
    if _prebuilt(name):
        op.execute(f"ALTER INDEX {name}_new RENAME TO {name}")
    else:
        op.create_index(name, "tasks", _columns(columns))


def _after_claim_indexes() -> None:
    """On SQLite, ``ix_tasks_type_status_created`` is made again after the claim indexes: its
    planner (with no statistics) breaks a tie between covering indexes by the newest, and the
    counts of ``/stats`` must keep reading that narrow index (as they did before 0007)."""
    if op.get_bind().dialect.name == "sqlite":
        op.drop_index("ix_tasks_type_status_created", table_name="tasks")
        op.create_index("ix_tasks_type_status_created", "tasks", ["type_id", "status", "created_at"])


def _missing_columns() -> set[str]:
    present = {column["name"] for column in sa.inspect(op.get_bind()).get_columns("tasks")}
    return {"depends_on", "blocked", "dependant_marks"} - present


def upgrade() -> None:
    missing = _missing_columns()
    if "depends_on" in missing:
        op.add_column("tasks", sa.Column("depends_on", sa.Text, nullable=True))
    if "blocked" in missing:
        op.add_column("tasks", sa.Column("blocked", sa.Boolean, nullable=False, server_default=sa.false()))
    if "dependant_marks" in missing:
        op.add_column(
            "tasks", sa.Column("dependant_marks", sa.Integer, nullable=False, server_default=sa.text("0"))
        )
    for name, columns in NEW_INDEXES.items():
        _replace_index(name, columns)
    _after_claim_indexes()
    if _prebuilt(MARKS_INDEX):
        op.execute(f"ALTER INDEX {MARKS_INDEX}_new RENAME TO {MARKS_INDEX}")
    else:
        marked = sa.text("dependant_marks > 0")
        op.create_index(
            MARKS_INDEX, "tasks", ["dependant_marks"], postgresql_where=marked, sqlite_where=marked
        )
    op.create_table(
        "task_dependencies",
        sa.Column("task_id", Id, nullable=False, autoincrement=False),
        sa.Column("depends_on_id", Id, nullable=False, autoincrement=False),
        sa.PrimaryKeyConstraint("task_id", "depends_on_id", name="pk_task_dependencies"),
    )
    op.create_index("ix_task_dependencies_depends_on_id", "task_dependencies", ["depends_on_id", "task_id"])


def downgrade() -> None:
    op.drop_index("ix_task_dependencies_depends_on_id", table_name="task_dependencies")
    op.drop_table("task_dependencies")
    op.drop_index(MARKS_INDEX, table_name="tasks")
    for name, columns in OLD_INDEXES.items():
        _replace_index(name, columns)
    _after_claim_indexes()
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("dependant_marks")
        batch.drop_column("blocked")
        batch.drop_column("depends_on")
