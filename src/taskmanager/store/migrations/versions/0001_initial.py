"""Task types, tasks and task history.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

from taskmanager.store.tables import Id, Key, LongText, Token, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "task_types",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("name", Key, nullable=False),
        sa.Column("version", sa.String(50), nullable=False),
        sa.Column("param_schema", LongText, nullable=False),
        sa.Column("is_active", sa.Boolean, nullable=False),
        sa.Column("description", sa.Text, nullable=True),
        sa.Column("max_attempts", sa.Integer, nullable=True),
        sa.Column("claim_timeout", sa.Integer, nullable=True),
        sa.Column("retry_delay", sa.Float, nullable=True),
        sa.Column("retry_max_delay", sa.Float, nullable=True),
        sa.Column("dedupe", sa.String(16), nullable=False),
        sa.Column("max_pending", sa.Integer, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_task_types"),
        sa.UniqueConstraint("name", name="uq_task_types_name"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "tasks",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("type_id", Id, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("params", LongText, nullable=False),
        sa.Column("result", LongText, nullable=True),
        sa.Column("error_message", sa.Text, nullable=True),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("progress", sa.Integer, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("claimed_by", Key, nullable=True),
        sa.Column("claimed_at", UTCDateTime, nullable=True),
        sa.Column("lease_expires_at", UTCDateTime, nullable=True),
        sa.Column("lease_token", Token, nullable=True),
        sa.Column("completed_at", UTCDateTime, nullable=True),
        sa.Column("run_after", UTCDateTime, nullable=True),
        sa.Column("expires_at", UTCDateTime, nullable=True),
        sa.Column("assigned_to", Key, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("dedupe_key", Key, nullable=True),
        sa.Column("dedupe_lock", Key, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_tasks"),
        sa.ForeignKeyConstraint(["type_id"], ["task_types.id"], name="fk_tasks_type_id_task_types"),
        sa.UniqueConstraint("type_id", "dedupe_lock", name="uq_tasks_type_id_dedupe_lock"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_tasks_claim", "tasks", ["status", sa.text("priority DESC"), "created_at", "id"])
    op.create_index(
        "ix_tasks_type_claim",
        "tasks",
        ["type_id", "status", sa.text("priority DESC"), "created_at", "id"],
    )
    op.create_index("ix_tasks_status_created", "tasks", ["status", "created_at", "id"])
    op.create_index("ix_tasks_created", "tasks", ["created_at", "id"])
    op.create_index("ix_tasks_status_lease", "tasks", ["status", "lease_expires_at"])
    op.create_index("ix_tasks_status_expires", "tasks", ["status", "expires_at"])
    op.create_table(
        "task_history",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("task_id", Id, nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("worker_id", Key, nullable=True),
        sa.Column("message", sa.Text, nullable=True),
        sa.Column("metadata", sa.Text, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_task_history"),
    )
    op.create_index("ix_task_history_task_id", "task_history", ["task_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_task_history_task_id", table_name="task_history")
    op.drop_table("task_history")
    for name in (
        "ix_tasks_status_expires",
        "ix_tasks_status_lease",
        "ix_tasks_created",
        "ix_tasks_status_created",
        "ix_tasks_type_claim",
        "ix_tasks_claim",
    ):
        op.drop_index(name, table_name="tasks")
    op.drop_table("tasks")
    op.drop_table("task_types")
