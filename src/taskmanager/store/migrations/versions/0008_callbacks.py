"""Callbacks (API.md B.5): ``callback_url`` on tasks and task types, and the outbox of deliveries.

``tasks.callback_url`` and ``task_types.callback_url`` are nullable without a default: adding
them changes only the catalogue (no table rewrite, no long lock) on PostgreSQL 11+, MariaDB
10.3+/MySQL 8 (instant ADD COLUMN) and SQLite, so a table of millions of tasks is upgraded in a
moment. No index is added on ``tasks``. ``callback_deliveries`` is new and empty; its index on
``next_try_at`` is what the delivery loop reads (ADR 0018), the one on ``task_id`` what deleting a
task reads. The downgrade drops exactly these (on SQLite Alembic's batch mode copies the tables).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

from taskmanager.store.tables import CallbackUrl, Id, UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("task_types", sa.Column("callback_url", CallbackUrl, nullable=True))
    op.add_column("tasks", sa.Column("callback_url", CallbackUrl, nullable=True))
    op.create_table(
        "callback_deliveries",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("task_id", Id, nullable=False),
        sa.Column("url", CallbackUrl, nullable=False),
        sa.Column("tries", sa.Integer, nullable=False),
        sa.Column("next_try_at", UTCDateTime, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_callback_deliveries"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_callback_deliveries_next_try_at", "callback_deliveries", ["next_try_at"])
    op.create_index("ix_callback_deliveries_task_id", "callback_deliveries", ["task_id"])


def downgrade() -> None:
    op.drop_index("ix_callback_deliveries_task_id", table_name="callback_deliveries")
    op.drop_index("ix_callback_deliveries_next_try_at", table_name="callback_deliveries")
    op.drop_table("callback_deliveries")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("callback_url")
    with op.batch_alter_table("task_types") as batch:
        batch.drop_column("callback_url")
