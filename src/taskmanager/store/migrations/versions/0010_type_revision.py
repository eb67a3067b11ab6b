"""Count a task type's changes: ``task_types.revision``.

A server keeps the task types it has read, so that a create validates its params and inserts in
one round trip instead of reading its type first. The insert then holds only while the type is
still at the revision the server validated against (``InsertTask.type_revision``); every save and
every activation change adds one. ``updated_at`` cannot serve: two changes in the same
microsecond (or under a frozen clock) leave it equal.

NOT NULL with a constant default: on PostgreSQL 11+, MariaDB 10.3+/MySQL 8 and SQLite adding it
changes only the catalogue, as 0009's column. The downgrade drops it (SQLite: batch mode copies
the table, which holds one row per type).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    column = sa.Column("revision", sa.Integer, nullable=False, server_default=sa.text("1"))
    op.add_column("task_types", column)


def downgrade() -> None:
    with op.batch_alter_table("task_types") as batch:
        batch.drop_column("revision")
