"""inbound_claims: on SQLite, rows kept in the order of their key (WITHOUT ROWID), so a turn writes fewer pages

Revision ID: 0024
Revises: 0007

Every turn inserts a claim and finishes it. As a rowid table with a text primary key, SQLite kept each claim in
three b-trees (the rows, the key's own index, the claimed_at index): a claim wrote three pages to the log, its finish
one more. Kept in key order, the rows are the key's index, so a claim writes two pages. The columns do not change,
so a release before this one reads and writes the table as before. PostgreSQL keeps its heap and indexes as they
are.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0007"
branch_labels = None
depends_on = None

_COLUMNS = "key, claimed_at, lease_until, finished_at, response"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild(with_rowid=False)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild(with_rowid=True)


def _rebuild(*, with_rowid: bool) -> None:
    """SQLite cannot change how a table is stored: a copy is made, the claims in flight with it, and put in its place,
    all in the migration's one transaction."""
    op.create_table(
        "inbound_claims_rebuilt",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("response", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("key"),
        sqlite_with_rowid=with_rowid,
    )
    op.execute(f"INSERT INTO inbound_claims_rebuilt ({_COLUMNS}) SELECT {_COLUMNS} FROM inbound_claims")  # noqa: S608
    op.drop_index("ix_inbound_claims_claimed_at", table_name="inbound_claims")
    op.drop_table("inbound_claims")
    op.rename_table("inbound_claims_rebuilt", "inbound_claims")
    op.create_index("ix_inbound_claims_claimed_at", "inbound_claims", ["claimed_at"])
