"""Row keys for durable work: a random key, set before the insert, that a sealed payload is bound to

Revision ID: 0013
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL for rows written before row-bound sealing; `python app.py rotate-key` gives them one as it re-seals them.
    op.add_column("work_items", sa.Column("row_key", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("work_items") as batch_op:
        batch_op.drop_column("row_key")
