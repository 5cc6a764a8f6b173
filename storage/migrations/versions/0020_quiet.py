"""quiet: one greeting per install, and when each conversation last had activity (for quiet cards)

Revision ID: 0020
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0001"
branch_labels = ("quiet",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "greetings",
        sa.Column("school_id", sa.String(64), nullable=False),
        sa.Column("conversation_key", sa.String(64), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("greeted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("school_id", "conversation_key"),
    )
    op.create_table(
        "conversation_activity",
        sa.Column("school_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("in_conversation", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("school_id", "kind", "key"),
    )


def downgrade() -> None:
    op.drop_table("conversation_activity")
    op.drop_table("greetings")
