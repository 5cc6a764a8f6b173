"""incidents: a partial index of the open incidents about pupils, for the digest (PostgreSQL only)

Revision ID: 0023
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0002"
branch_labels = None
depends_on = None

# Word for word the digest's own condition (storage/digest.py), or PostgreSQL cannot tell that the index holds every
# row the digest counts. With sla_breached included, the old open incidents are counted from the index alone: most
# of a school's incidents are closed, so it stays small, and the digest no longer reads the whole table.
OPEN_ABOUT_PUPILS = "status <> 'closed' AND subject_kind NOT IN ('staff', 'headteacher')"


def upgrade() -> None:
    # SQLite reads the school's rows in table order for these figures (see storage/digest.py) and would not use it.
    if op.get_bind().dialect.name != "postgresql":
        return
    op.create_index(
        "ix_incidents_open_pupils",
        "incidents",
        ["school_id", "reported_at"],
        postgresql_include=["sla_breached"],
        postgresql_where=sa.text(OPEN_ABOUT_PUPILS),
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_index("ix_incidents_open_pupils", table_name="incidents")
