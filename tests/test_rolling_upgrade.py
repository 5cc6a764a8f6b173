"""A rolling upgrade, two replicas: once the new release has migrated, the older replica still starts and is ready.

The newer release is stood in for by the database itself: its alembic_version names a revision these scripts have
never seen, as it would after a newer image migrated it.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
from sqlalchemy import text

from adapters.clock import SettableClock
from storage.db import create_engine
from storage.migrate import pending_migrations, upgrade
from tests.support.harness import start_harness

NEWER = "9999_next_release"


async def _migrated_then_moved_on(database_url: str) -> str:
    """Migrate with this release, then make one branch's head a revision of a later release; return the old head."""
    engine = create_engine(database_url)
    try:
        await upgrade(engine)
        async with engine.begin() as connection:
            head = (await connection.execute(text("SELECT min(version_num) FROM alembic_version"))).scalar_one()
            await connection.execute(
                text("UPDATE alembic_version SET version_num = :newer WHERE version_num = :head"),
                {"newer": NEWER, "head": head},
            )
        return str(head)
    finally:
        await engine.dispose()


async def test_a_database_behind_this_release_is_pending_and_one_ahead_is_not(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        assert await pending_migrations(engine), "a fresh database has every head to apply"
        await upgrade(engine)
        assert await pending_migrations(engine) == set()
    finally:
        await engine.dispose()
    await _migrated_then_moved_on(database_url)
    engine = create_engine(database_url)
    try:
        assert await pending_migrations(engine) == set()
    finally:
        await engine.dispose()


async def test_the_older_replica_restarts_on_a_newer_schema_and_reports_ready(
    database_url: str, clock: SettableClock, tmp_path: Path
) -> None:
    await _migrated_then_moved_on(database_url)
    async with start_harness(database_url=database_url, clock=clock, var_dir=tmp_path / "var") as harness:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{harness.url}/readyz") as response:
                body = await response.json()
        assert response.status == 200 and body["status"] == "ready", body
        # and it serves: a member of staff still gets help
        reply = await harness.user("Leah Brooks").says("help")
        assert reply.status == 200 and reply.cards
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            versions = (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalars().all()
        assert NEWER in versions, "the older release must not touch the newer release's schema record"
    finally:
        await engine.dispose()
