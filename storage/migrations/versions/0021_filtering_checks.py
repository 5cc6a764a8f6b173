"""filtering_checks: the termly filtering check (DfE filtering and monitoring standards)

Revision ID: 0021
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0001"
branch_labels = ("filtering_checks",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "filtering_checks",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("school_id", sa.String(64), nullable=False),
        sa.Column("form_token", sa.String(64), nullable=False),
        sa.Column("run_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_by_id", sa.String(255), nullable=False),
        sa.Column("run_by_name", sa.String(255), nullable=False),
        sa.Column("run_by_role", sa.String(64), nullable=False),
        sa.Column("device", sa.String(255), nullable=False),
        sa.Column("results", sa.Text(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.UniqueConstraint("school_id", "form_token", name="uq_filtering_checks_token"),
    )
    op.create_index("ix_filtering_checks_school_run_at", "filtering_checks", ["school_id", "run_at"])


def downgrade() -> None:
    op.drop_index("ix_filtering_checks_school_run_at", table_name="filtering_checks")
    op.drop_table("filtering_checks")
