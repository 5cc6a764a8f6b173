"""Audit trail: the key id that sealed each entry (HMAC chain); NULL marks entries from before it

Revision ID: 0012
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0001"
branch_labels = ("audit_hmac",)
depends_on = None


def upgrade() -> None:
    # Existing rows keep their plain SHA-256 hashes: no key is available here to re-seal them. The first HMAC
    # entry after this migration seals them in (bot/audit.py).
    op.add_column("audit_events", sa.Column("key_id", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("key_id")
