"""children and case links: who a case is about (a child's record, or the member of staff in an allegation)

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "children",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("school_id", sa.String(64), nullable=False),
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("date_of_birth", sa.Text(), nullable=True),
        sa.Column("upn", sa.Text(), nullable=True),
        sa.Column("mis_id", sa.Text(), nullable=True),
        sa.Column("year_group", sa.String(40), nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("directory_id", sa.String(255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("uq_children_token", "children", ["school_id", "token"], unique=True)
    op.create_index("uq_children_directory", "children", ["school_id", "directory_id"], unique=True)
    op.create_table(
        "case_links",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("school_id", sa.String(64), nullable=False),
        sa.Column("incident_id", sa.Integer(), sa.ForeignKey("incidents.id"), nullable=False),
        sa.Column("child_id", sa.Integer(), sa.ForeignKey("children.id"), nullable=True),
        sa.Column("staff_id", sa.String(255), nullable=True),
        sa.Column("staff_name", sa.Text(), nullable=True),
        sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("linked_by", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("uq_case_links_child", "case_links", ["incident_id", "child_id"], unique=True)
    op.create_index("uq_case_links_staff", "case_links", ["incident_id", "staff_id"], unique=True)
    op.create_index("ix_case_links_child", "case_links", ["school_id", "child_id"])


def downgrade() -> None:
    op.drop_table("case_links")
    op.drop_table("children")
