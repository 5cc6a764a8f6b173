"""SQLite: the write-ahead log is copied into the database in the background, not by the writer.

By default SQLite checkpoints inside the commit that takes the log past 1,000 pages: that commit copies the pages
and flushes the database file while it still holds the one writer connection, so every turn queued behind it waits
(the longest waits of the card action at ten at once). Here the writer checkpoints only as a safety net, far later
(WRITER_CHECKPOINT_PAGES), and a checkpoint runs about once a second on a connection of its own. It is PASSIVE: it
copies what no reader still needs, without waiting for or blocking anyone, and the writer goes on appending
meanwhile. Nothing here is durable work: a checkpoint missed (a stopped process) is simply done by the next one, or
by the writer's safety net.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)

# About 32 MB of log at SQLite's 4 KB pages: reached only if the background checkpoints stop or fall far behind.
WRITER_CHECKPOINT_PAGES = 8_000
EVERY_SECONDS = 1.0


class WalCheckpoints:
    """Checkpoints the log of `engine`'s database (a reads engine: its connections never hold the writer)."""

    def __init__(self, engine: AsyncEngine, every: float = EVERY_SECONDS) -> None:
        self._engine = engine
        self._every = every

    async def once(self) -> tuple[int, int, int]:
        """One PASSIVE checkpoint: (1 if it could not finish for a reader or writer, else 0, pages in the log,
        pages copied)."""
        async with self._engine.connect() as connection:
            pooled = await connection.get_raw_connection()
            driver: Any = pooled.driver_connection  # aiosqlite.Connection: straight to it, outside any transaction
            async with driver.execute("PRAGMA wal_checkpoint(PASSIVE)") as cursor:
                row = await cursor.fetchone()
        busy, pages, copied = row
        return int(busy), int(pages), int(copied)

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(self._every)
            try:
                await self.once()
            except Exception:  # noqa: BLE001 - the next one retries; the writer's own checkpoint is the safety net
                log.exception("could not checkpoint the SQLite write-ahead log")
