"""retention: legal holds on cases, marks for records already anonymised, and each sweep's figures

Revision ID: 0019
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "retention_holds",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("school_id", sa.String(64), nullable=False),
        sa.Column("incident_id", sa.Integer(), sa.ForeignKey("incidents.id"), nullable=False),
        sa.Column("active_key", sa.String(32), nullable=True),
        sa.Column("set_by", sa.String(255), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("released_by", sa.String(255), nullable=True),
        sa.Column("release_reason", sa.Text(), nullable=True),
    )
    op.create_index("uq_retention_holds_active", "retention_holds", ["school_id", "active_key"], unique=True)
    op.create_index("ix_retention_holds_incident", "retention_holds", ["school_id", "incident_id"])
    op.create_table(
        "retention_marks",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("school_id", sa.String(64), nullable=False),
        sa.Column("record_type", sa.String(32), nullable=False),
        sa.Column("record_key", sa.String(64), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("uq_retention_marks", "retention_marks", ["school_id", "record_type", "record_key"], unique=True)
    op.create_table(
        "retention_sweeps",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("school_id", sa.String(64), nullable=False),
        sa.Column("ran_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("figures", sa.JSON(), nullable=False),
    )
    op.create_index("ix_retention_sweeps_school", "retention_sweeps", ["school_id", "ran_at"])


def downgrade() -> None:
    op.drop_index("ix_retention_sweeps_school", table_name="retention_sweeps")
    op.drop_table("retention_sweeps")
    op.drop_index("uq_retention_marks", table_name="retention_marks")
    op.drop_table("retention_marks")
    op.drop_index("ix_retention_holds_incident", table_name="retention_holds")
    op.drop_index("uq_retention_holds_active", table_name="retention_holds")
    op.drop_table("retention_holds")
