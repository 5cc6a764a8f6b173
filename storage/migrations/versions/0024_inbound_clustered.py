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


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild(with_rowid=False)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild(with_rowid=True)


def _rebuild(*, with_rowid: bool) -> None:
    """SQLite cannot change how a table is stored: a copy of the table as it stands is made, the claims in flight
    with it, and put in its place, all in the migration's one transaction."""
    bind = op.get_bind()
    table = sa.Table("inbound_claims", sa.MetaData(), autoload_with=bind)
    rebuilt = table.to_metadata(sa.MetaData(), name="inbound_claims_rebuilt")
    rebuilt.dialect_options["sqlite"]["with_rowid"] = with_rowid
    rebuilt.indexes.clear()  # made again under their own names once the old table is gone
    rebuilt.create(bind)
    columns = [column.name for column in table.columns]
    op.execute(rebuilt.insert().from_select(columns, sa.select(*table.columns)))
    op.drop_index("ix_inbound_claims_claimed_at", table_name="inbound_claims")
    op.drop_table("inbound_claims")
    op.rename_table("inbound_claims_rebuilt", "inbound_claims")
    op.create_index("ix_inbound_claims_claimed_at", "inbound_claims", ["claimed_at"])
