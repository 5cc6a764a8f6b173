"""work_items: whether a send is quiet (not urgent), so due work is claimed urgent first

Revision ID: 0025
Revises: 0013

The work runner claimed due work oldest first. A publish queues its AUP cards (quiet: they may wait) ahead of
anything that comes later, so a concern's alert reported meanwhile waited behind them: 6.5 s in `make bench`'s
2,000-card publish, and longer in a trust, where every school's sweep queues its own. Claimed by this column first,
an urgent send goes ahead of every quiet one. Rows from before it are not quiet; a release before this one writes
rows without it (the default) and claims oldest first, as it did.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("work_items", sa.Column("quiet", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("work_items") as batch_op:
        batch_op.drop_column("quiet")
