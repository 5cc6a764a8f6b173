"""incidents: an idempotency key per report and per early alert, unique within a school

Revision ID: 0008
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: incidents filed before keys existed (and those filed without a dialog) have none, and NULLs never
    # collide in a unique index on SQLite or PostgreSQL.
    op.add_column("incidents", sa.Column("idempotency_key", sa.String(64), nullable=True))
    op.create_index("uq_incidents_idempotency_key", "incidents", ["school_id", "idempotency_key"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_incidents_idempotency_key", table_name="incidents")
    op.drop_column("incidents", "idempotency_key")
