"""incidents: an opaque random token per case, unique within a school, for cards to carry instead of the id

Revision ID: 0011
Revises: 0008
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0008"
branch_labels = None
depends_on = None

TOKEN_BYTES = 24  # as bot.incidents.TOKEN_BYTES; copied so this revision never changes with the app


def upgrade() -> None:
    op.add_column("incidents", sa.Column("token", sa.String(64), nullable=True))
    # Cases filed before tokens existed get one now; cards already posted still carry the old integer id, which the
    # app answers with the same refusal as a wrong token (the team reopens those cases with `case REF`).
    bind = op.get_bind()
    incidents = sa.table("incidents", sa.column("id", sa.Integer), sa.column("token", sa.String))
    for (incident_id,) in bind.execute(sa.select(incidents.c.id).where(incidents.c.token.is_(None))).all():
        bind.execute(
            incidents.update().where(incidents.c.id == incident_id).values(token=secrets.token_urlsafe(TOKEN_BYTES))
        )
    op.create_index("uq_incidents_token", "incidents", ["school_id", "token"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_incidents_token", table_name="incidents")
    op.drop_column("incidents", "token")
