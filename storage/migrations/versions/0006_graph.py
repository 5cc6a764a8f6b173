"""Microsoft Graph sync state: delta links for new-staff detection

Revision ID: 0006
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0001"
branch_labels = ("graph",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "graph_delta_links",
        sa.Column("school_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("link", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("school_id", "name"),
    )


def downgrade() -> None:
    op.drop_table("graph_delta_links")
