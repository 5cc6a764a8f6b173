"""SQLite's write-ahead log is copied into the database in the background, never by a writer that others queue for,
and the writer still does it itself, far later, should the background checkpoints stop."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

import storage.db
from storage.checkpoint import WalCheckpoints
from storage.db import create_engine

PAGE = 4096
ROWS = 1_500  # each about a page: well past SQLite's own checkpoint at 1,000 pages


async def _write(writer: AsyncEngine, rows: int) -> None:
    async with writer.begin() as connection:
        await connection.execute(text("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body BLOB)"))
    for start in range(0, rows, 100):  # many commits, as turns make
        async with writer.begin() as connection:
            await connection.execute(
                text("INSERT INTO notes (body) VALUES (randomblob(:size))"), [{"size": PAGE}] * min(100, rows - start)
            )


def _count(path: Path) -> int:
    with sqlite3.connect(path) as reader:
        return int(reader.execute("SELECT count(*) FROM notes").fetchone()[0])


async def test_the_writer_leaves_the_log_to_the_background_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "school.db"
    writer = create_engine(f"sqlite+aiosqlite:///{path}")
    reads = create_engine(f"sqlite+aiosqlite:///{path}", reads_only=True)
    try:
        await _write(writer, ROWS)
        # Everything written is still only in the log: no commit stopped to copy it while others queued.
        assert path.stat().st_size < ROWS * PAGE / 10
        busy, pages, copied = await WalCheckpoints(reads).once()
        assert busy == 0 and pages >= ROWS and copied == pages
        assert path.stat().st_size >= ROWS * PAGE
        assert _count(path) == ROWS
    finally:
        await reads.dispose()
        await writer.dispose()


async def test_with_no_background_checkpoint_the_writer_still_checkpoints_in_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage.db, "WRITER_CHECKPOINT_PAGES", 200)  # the safety net, lowered to keep this short
    path = tmp_path / "school.db"
    writer = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        await _write(writer, ROWS)
        assert path.stat().st_size >= (ROWS - 200) * PAGE  # copied by the writer itself, no later than it must
        assert _count(path) == ROWS
    finally:
        await writer.dispose()
