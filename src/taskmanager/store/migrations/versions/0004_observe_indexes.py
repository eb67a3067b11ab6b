"""Indexes for observing the queue (GET /stats, /workers, /metrics) without scanning tasks.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_tasks_type_status_created", "tasks", ["type_id", "status", "created_at"])
    op.create_index(
        "ix_tasks_status_completed",
        "tasks",
        ["status", "completed_at", "type_id", "claimed_at", "claimed_by"],
    )
    op.create_index("ix_task_history_created", "task_history", ["created_at", "worker_id", "event"])


def downgrade() -> None:
    op.drop_index("ix_task_history_created", table_name="task_history")
    op.drop_index("ix_tasks_status_completed", table_name="tasks")
    op.drop_index("ix_tasks_type_status_created", table_name="tasks")
