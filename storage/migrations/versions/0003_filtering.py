"""web-filter change requests and the change log

Revision ID: 0003
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0001"
branch_labels = ("filtering",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "filter_requests",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("school_id", sa.String(64), nullable=False),
        sa.Column("reference", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("domain", sa.String(255), nullable=False),
        sa.Column("audience", sa.String(16), nullable=False),
        sa.Column("year_groups", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("lesson_date", sa.Date(), nullable=True),
        sa.Column("until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("previewed", sa.Boolean(), nullable=False),
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("needs_headteacher", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("requester_id", sa.String(255), nullable=False),
        sa.Column("requester_name", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("approver_id", sa.String(255), nullable=True),
        sa.Column("approver_name", sa.String(255), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decision_note", sa.Text(), nullable=True),
        sa.Column("applier_id", sa.String(255), nullable=True),
        sa.Column("applier_name", sa.String(255), nullable=True),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("backend_result", sa.Text(), nullable=True),
        sa.Column("reverted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("linked_to", sa.String(32), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("school_id", "reference"),
    )
    with op.batch_alter_table("filter_requests", schema=None) as batch_op:
        batch_op.create_index("ix_filter_domain", ["school_id", "domain"], unique=False)
    op.create_table(
        "filter_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("school_id", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reference", sa.String(32), nullable=True),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("actor_id", sa.String(255), nullable=True),
        sa.Column("actor_name", sa.String(255), nullable=False),
        sa.Column("domain", sa.String(255), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("filter_log", schema=None) as batch_op:
        batch_op.create_index("ix_filter_log_school_at", ["school_id", "at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("filter_log", schema=None) as batch_op:
        batch_op.drop_index("ix_filter_log_school_at")
    op.drop_table("filter_log")
    with op.batch_alter_table("filter_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_filter_domain")
    op.drop_table("filter_requests")
