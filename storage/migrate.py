"""Apply Alembic migrations at start-up and tell whether the schema is current."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).parent / "migrations"
# Any constant works; it only has to be the same for every replica of this app.
MIGRATION_LOCK_ID = 7_302_119


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        # Two replicas starting together must not both run the same migration.
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
    command.upgrade(_config(connection), "heads")


async def upgrade(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade)


def _pending(connection: Connection) -> set[str]:
    heads = set(ScriptDirectory.from_config(_config()).get_heads())
    current = set(MigrationContext.configure(connection).get_current_heads())
    return heads - current


async def pending_migrations(engine: AsyncEngine) -> set[str]:
    """Heads not yet applied; empty when the schema is current."""
    async with engine.connect() as connection:
        return await connection.run_sync(_pending)
