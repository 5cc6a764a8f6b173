"""Inbound claims: one row per activity received, so a redelivered activity has no second effect

Revision ID: 0007
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0001"
branch_labels = ("inbound",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inbound_claims",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("response", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_inbound_claims_claimed_at", "inbound_claims", ["claimed_at"])


def downgrade() -> None:
    op.drop_index("ix_inbound_claims_claimed_at", table_name="inbound_claims")
    op.drop_table("inbound_claims")
