"""Schedules (API.md B.8): the ``schedules`` table, and on ``tasks`` the schedule that created a
task and the tick it was created for.

The two task columns are nullable without a default: adding them changes only the catalogue (no
table rewrite, no long lock) on PostgreSQL, MariaDB 10.3+/MySQL 8 (ALGORITHM=INSTANT, the column
appended last) and SQLite (ALTER TABLE ADD COLUMN edits the stored schema), so a table of
millions of tasks is upgraded in a moment. No index is added on ``tasks``. The downgrade's DROP
COLUMN is metadata-only on PostgreSQL and instant on MariaDB 10.4+; on SQLite Alembic's batch
mode copies the table.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

from taskmanager.store.tables import Id, Key, LongText, UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("name", Key, nullable=False),
        sa.Column("type", Key, nullable=False),
        sa.Column("cron", sa.String(255), nullable=True),
        sa.Column("interval_seconds", sa.Integer, nullable=True),
        sa.Column("params", LongText, nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("next_run_at", UTCDateTime, nullable=True),
        sa.Column("last_run_at", UTCDateTime, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_schedules"),
        sa.UniqueConstraint("name", name="uq_schedules_name"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_schedules_next_run_at", "schedules", ["next_run_at"])
    op.add_column("tasks", sa.Column("schedule", Key, nullable=True))
    op.add_column("tasks", sa.Column("scheduled_for", UTCDateTime, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("scheduled_for")
        batch.drop_column("schedule")
    op.drop_index("ix_schedules_next_run_at", table_name="schedules")
    op.drop_table("schedules")
