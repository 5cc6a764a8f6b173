"""incidents and their chronology

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = ("incidents",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "incidents",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("school_id", sa.String(64), nullable=False),
        sa.Column("reference", sa.String(32), nullable=False),
        sa.Column("reporter_id", sa.String(255), nullable=False),
        sa.Column("reporter_name", sa.String(255), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("subject_kind", sa.String(16), nullable=False),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("category_group", sa.String(32), nullable=False),
        sa.Column("illegal", sa.Boolean(), nullable=False),
        sa.Column("urgent", sa.Boolean(), nullable=False),
        sa.Column("immediate_danger", sa.Boolean(), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("location", sa.String(32), nullable=True),
        sa.Column("occurred", sa.Text(), nullable=True),
        sa.Column("subjects", sa.Text(), nullable=True),
        sa.Column("narrative", sa.Text(), nullable=True),
        sa.Column("evidence", sa.Text(), nullable=True),
        sa.Column("actions_taken", sa.Text(), nullable=True),
        sa.Column("complete", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("owner_id", sa.String(255), nullable=True),
        sa.Column("owner_name", sa.String(255), nullable=True),
        sa.Column("outcome", sa.String(64), nullable=True),
        sa.Column("recorded_actions", sa.JSON(), nullable=False),
        sa.Column("case_roles", sa.JSON(), nullable=False),
        sa.Column("viewer_ids", sa.JSON(), nullable=False),
        sa.Column("excluded_ids", sa.JSON(), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sla_breached", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("school_id", "reference"),
    )
    op.create_index("ix_incidents_school_status", "incidents", ["school_id", "status"])
    op.create_index("ix_incidents_reporter", "incidents", ["school_id", "reporter_id"])
    op.create_index("ix_incidents_reported_at", "incidents", ["school_id", "reported_at"])
    op.create_table(
        "incident_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("incident_id", sa.Integer(), sa.ForeignKey("incidents.id"), nullable=False),
        sa.Column("school_id", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_id", sa.String(255), nullable=True),
        sa.Column("actor_name", sa.String(255), nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_incident_events_incident", "incident_events", ["incident_id", "id"])


def downgrade() -> None:
    op.drop_table("incident_events")
    op.drop_table("incidents")
