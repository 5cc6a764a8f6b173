"""incident_events: when an entry happened, apart from when it was recorded; work_items: the case a send shows

Revision ID: 0014
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL for entries recorded before this: they happened when they were recorded, as far as anyone said.
    op.add_column("incident_events", sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("work_items", sa.Column("about", sa.String(64), nullable=True))
    op.create_index("ix_work_about", "work_items", ["school_id", "about"])


def downgrade() -> None:
    op.drop_index("ix_work_about", table_name="work_items")
    op.drop_column("work_items", "about")
    op.drop_column("incident_events", "occurred_at")
