"""Deliveries: the delivery group a queued send belongs to

Revision ID: 0010
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0001"
branch_labels = ("delivery",)
depends_on = None


def upgrade() -> None:
    op.add_column("work_items", sa.Column("delivery_group", sa.String(255), nullable=True))
    op.create_index("ix_work_delivery_group", "work_items", ["delivery_group"])


def downgrade() -> None:
    with op.batch_alter_table("work_items") as batch_op:
        batch_op.drop_index("ix_work_delivery_group")
        batch_op.drop_column("delivery_group")
