"""API keys limited to task types: ``api_keys.types`` (API.md B.6), a JSON list of type-name
patterns; NULL = every type, as every key created before it.

A nullable column without a default: no table rewrite on PostgreSQL, MariaDB, MySQL or SQLite.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("types", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("types")
