"""filter requests: an idempotency key per request, unique within a school

Revision ID: 0009
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: requests made before keys existed have none, and NULLs never collide in a unique index.
    op.add_column("filter_requests", sa.Column("idempotency_key", sa.String(64), nullable=True))
    op.create_index(
        "uq_filter_requests_idempotency_key", "filter_requests", ["school_id", "idempotency_key"], unique=True
    )


def downgrade() -> None:
    op.drop_index("uq_filter_requests_idempotency_key", table_name="filter_requests")
    op.drop_column("filter_requests", "idempotency_key")
