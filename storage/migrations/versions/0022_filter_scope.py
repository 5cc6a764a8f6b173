"""filter requests: the scope a change covers (url, host or domain) and its target

Revision ID: 0022
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: requests made before scopes covered the whole registrable domain and read as "domain".
    op.add_column("filter_requests", sa.Column("scope", sa.String(8), nullable=True))
    op.add_column("filter_requests", sa.Column("target", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("filter_requests", "target")
    op.drop_column("filter_requests", "scope")
