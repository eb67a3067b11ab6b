"""Announce only awaited ends: ``tasks.awaited``, set when a request waits for a task's end.

On PostgreSQL every statement that ended a task sent a NOTIFY on the ends channel so that
``GET /tasks/{id}/wait`` in another server process woke at once. A NOTIFY takes a database-wide
lock at commit, so every complete and fail queued behind every other one: measured, most of
the single-request path's loss after the wait route landed (docs/performance.md). With this
column a wait marks its task first, and an ending statement NOTIFYs only if a task it ended is
marked — a queue nobody waits on sends none.

The column is NOT NULL with a constant default: adding it changes only the catalogue on
PostgreSQL 11+ (the default is kept in pg_attribute, no rewrite), MariaDB 10.3+/MySQL 8
(ALGORITHM=INSTANT, appended last) and SQLite (ALTER TABLE ADD COLUMN), so a table of millions
of tasks upgrades in a moment. No index: it is read only in rows a statement already holds. The
downgrade's DROP COLUMN is metadata-only on PostgreSQL and instant on MariaDB 10.4+; on SQLite
Alembic's batch mode copies the table.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tasks", sa.Column("awaited", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("awaited")
