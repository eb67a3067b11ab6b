"""Concurrency limits and retention (API.md B.9, B.10): three task-type settings.

``task_types.max_running``, ``keep_completed_seconds`` and ``keep_failed_seconds``, each a
nullable INTEGER without a default (NULL = the server's default; for ``max_running``, no limit).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07

A database with millions of tasks upgrades without a long lock: the columns are added to
``task_types`` only (a small table), and a nullable column without a default is a change to the
catalogue, not a rewrite, on PostgreSQL (11+), MariaDB (10.3+, instant ADD COLUMN), MySQL (8.0,
instant) and SQLite. ``tasks`` is not touched: neither the claim's limit nor the retention sweep
needs a new index (the sweep walks ``ix_tasks_status_created``: a finished task due by
``completed_at`` was created before its cutoff too). The downgrade drops exactly these columns.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

COLUMNS = ("max_running", "keep_completed_seconds", "keep_failed_seconds")


def upgrade() -> None:
    for name in COLUMNS:
        op.add_column("task_types", sa.Column(name, sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("task_types") as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)
