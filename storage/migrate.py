"""Apply Alembic migrations at start-up and tell whether the schema is current."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
# Any constant works; it only has to be the same for every replica of this app.
MIGRATION_LOCK_ID = 7_302_119


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def _script() -> ScriptDirectory:
    """Read once: the scripts are part of the release, and /readyz asks on every probe."""
    return ScriptDirectory.from_config(_config())


def _unknown(script: ScriptDirectory, revisions: set[str]) -> set[str]:
    """Revisions this release's scripts do not have: a newer release has migrated the database."""
    unknown = set()
    for revision in revisions:
        try:
            script.get_revision(revision)
        except CommandError:
            unknown.add(revision)
    return unknown


def _upgrade(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        # Two replicas starting together must not both run the same migration.
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
    newer = _unknown(_script(), set(MigrationContext.configure(connection).get_current_heads()))
    if newer:
        # A rolling upgrade: the new release migrated first and this older replica restarted before it was replaced.
        # Migrations only ever expand the schema within a release pair (docs/operations.md), so it can serve as it is.
        log.warning("the database schema is newer than this release (%s); starting without migrating", sorted(newer))
        return
    command.upgrade(_config(connection), "heads")


async def upgrade(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade)


def _pending(connection: Connection) -> set[str]:
    script = _script()
    current = set(MigrationContext.configure(connection).get_current_heads())
    if _unknown(script, current):
        return set()  # migrated by a newer release, which has everything this one has
    applied = set(current)
    for revision in script.iterate_revisions(tuple(current), "base"):
        applied.add(revision.revision)
    return set(script.get_heads()) - applied


async def pending_migrations(engine: AsyncEngine) -> set[str]:
    """Heads not yet applied; empty when the schema is current (or newer, mid-way through a rolling upgrade)."""
    async with engine.connect() as connection:
        return await connection.run_sync(_pending)
