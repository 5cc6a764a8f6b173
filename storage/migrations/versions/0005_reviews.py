"""the review calendar

Revision ID: 0005
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0001"
branch_labels = ("reviews",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "review_items",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("school_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("open_key", sa.String(160), nullable=True),
        sa.Column("due_on", sa.Date(), nullable=False),
        sa.Column("owner_role", sa.String(32), nullable=False),
        sa.Column("reminders_sent", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_by_id", sa.String(255), nullable=True),
        sa.Column("completed_by_name", sa.String(255), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("next_due_on", sa.Date(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("open_key", name="uq_review_items_open_key"),
    )
    op.create_index("ix_review_items_school", "review_items", ["school_id", "kind"])


def downgrade() -> None:
    op.drop_index("ix_review_items_school", table_name="review_items")
    op.drop_table("review_items")
