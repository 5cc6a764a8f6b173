"""Acceptable Use Policy documents, acknowledgements and open requests

Revision ID: 0004
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0001"
branch_labels = ("aup",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "aup_documents",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("school_id", sa.String(64), nullable=False),
        sa.Column("audience", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(255), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_by", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("school_id", "audience", "version", name="uq_aup_documents_version"),
    )
    op.create_table(
        "aup_acknowledgements",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("school_id", sa.String(64), nullable=False),
        sa.Column("person_id", sa.String(255), nullable=False),
        sa.Column("person_name", sa.String(255), nullable=False),
        sa.Column("audience", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("cycle", sa.String(10), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("read_kcsie", sa.Boolean(), nullable=False),
        sa.Column("agreed", sa.Boolean(), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "school_id", "person_id", "audience", "version", "cycle", name="uq_aup_acknowledgements_once"
        ),
    )
    op.create_index(
        "ix_aup_acknowledgements_version", "aup_acknowledgements", ["school_id", "audience", "version", "cycle"]
    )
    op.create_table(
        "aup_requests",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("school_id", sa.String(64), nullable=False),
        sa.Column("person_id", sa.String(255), nullable=False),
        sa.Column("audience", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("cycle", sa.String(10), nullable=False),
        sa.Column("owed_since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reminders_sent", sa.Integer(), nullable=False),
        sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_card", sa.String(255), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("school_id", "person_id", "audience", "version", "cycle", name="uq_aup_requests_once"),
    )
    op.create_index("ix_aup_requests_version", "aup_requests", ["school_id", "audience", "version", "cycle"])


def downgrade() -> None:
    op.drop_index("ix_aup_requests_version", table_name="aup_requests")
    op.drop_table("aup_requests")
    op.drop_index("ix_aup_acknowledgements_version", table_name="aup_acknowledgements")
    op.drop_table("aup_acknowledgements")
    op.drop_table("aup_documents")
