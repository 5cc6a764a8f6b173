"""How SQLite stores the inbound claims every turn writes (migration 0024): in key order, so a claim and its finish
write three pages to the log where they wrote four, and the claims in flight survive the change either way."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

from alembic import command
from sqlalchemy import text
from sqlalchemy.engine import Connection

from adapters.clock import SettableClock
from bot.inbound import InvokeAnswer, claim_key
from storage.crypto import FieldCipher, parse_key
from storage.db import create_engine
from storage.migrate import _config, upgrade
from storage.turns import SqlTurns
from tests.support.harness import TEST_DATA_KEY

NOW = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC)
WAL_HEADER = 32  # bytes at the start of SQLite's write-ahead log
FRAME_HEADER = 24  # bytes before each page in it


def _key(n: int) -> str:
    return claim_key("msteams", "a:personal-chat", f"activity-{n}")


def _to_rowid_layout(connection: Connection) -> None:
    command.downgrade(_config(connection), "0007")


def _log_pages(path: Path) -> int:
    """Pages written to the write-ahead log so far (nothing checkpoints it in these tests)."""
    with sqlite3.connect(path) as connection:
        page = connection.execute("PRAGMA page_size").fetchone()[0]
    return (path.with_name(path.name + "-wal").stat().st_size - WAL_HEADER) // (FRAME_HEADER + page)


async def _pages_a_turn_writes(path: Path, turns: SqlTurns, n: int) -> int:
    before = _log_pages(path)
    assert (await turns.begin(_key(n), None)).claimed
    assert await turns.end(_key(n), None, None, None)
    return _log_pages(path) - before


async def test_on_sqlite_a_claim_and_its_finish_write_three_pages_where_the_rowid_table_wrote_four(
    tmp_path: Path,
) -> None:
    path = tmp_path / "claims.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    turns = SqlTurns(engine, FieldCipher(parse_key(TEST_DATA_KEY)), SettableClock(NOW))
    try:
        await upgrade(engine)
        for n in range(20):  # the table has rows on every page a claim touches, and the loop's connection is open
            await _pages_a_turn_writes(path, turns, n)
        # The claim: the row (which is its key's index) and the claimed_at index. The finish: the row.
        assert [await _pages_a_turn_writes(path, turns, n) for n in range(20, 25)] == [3] * 5
        await turns.close()
        async with engine.begin() as connection:
            await connection.run_sync(_to_rowid_layout)
        turns = SqlTurns(engine, FieldCipher(parse_key(TEST_DATA_KEY)), SettableClock(NOW))
        for n in range(25, 30):  # the rebuilt table's first rows, and the loop's connection opened again
            await _pages_a_turn_writes(path, turns, n)
        # As it was: the row, its key's index and the claimed_at index, then the row again.
        assert [await _pages_a_turn_writes(path, turns, n) for n in range(30, 35)] == [4] * 5
    finally:
        await turns.close()
        await engine.dispose()


def _layout(engine_url: str) -> str:
    with sqlite3.connect(engine_url.split("///", 1)[1]) as connection:
        sql = connection.execute("SELECT sql FROM sqlite_master WHERE name = 'inbound_claims'").fetchone()[0]
    return "without rowid" if "WITHOUT ROWID" in sql.upper() else "rowid"


async def test_claims_in_flight_keep_their_effect_across_the_change_and_back(tmp_path: Path) -> None:
    """An answered invoke and a turn still under way, claimed before the upgrade: after it, their redeliveries still
    have no effect and the invoke's redelivery still gets the first answer; the same after a downgrade."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'claims.db'}"
    engine = create_engine(url)
    cipher = FieldCipher(parse_key(TEST_DATA_KEY))
    answer = InvokeAnswer(200, {"type": "AdaptiveCard", "body": [{"type": "TextBlock", "text": "Recorded."}]})
    try:
        await upgrade(engine)
        async with engine.begin() as connection:
            await connection.run_sync(_to_rowid_layout)
        assert _layout(url) == "rowid"
        turns = SqlTurns(engine, cipher, SettableClock(NOW))
        assert (await turns.begin(_key(1), None)).claimed
        assert await turns.end(_key(1), answer, None, None)
        assert (await turns.begin(_key(2), None)).claimed  # under way: never finished
        await turns.close()

        for step in ("upgrade", "downgrade"):
            if step == "upgrade":
                await upgrade(engine)
                assert _layout(url) == "without rowid"
            else:
                async with engine.begin() as connection:
                    await connection.run_sync(_to_rowid_layout)
                assert _layout(url) == "rowid"
            turns = SqlTurns(engine, cipher, SettableClock(NOW + dt.timedelta(seconds=5)))
            try:
                assert not (await turns.begin(_key(1), None)).claimed, step
                assert await turns.answered(_key(1)) == answer, step
                assert not (await turns.begin(_key(2), None)).claimed, step  # its lease still holds
                assert (await turns.begin(_key(3 if step == "upgrade" else 4), None)).claimed, step
            finally:
                await turns.close()
        async with engine.connect() as connection:
            count = (await connection.execute(text("SELECT count(*) FROM inbound_claims"))).scalar_one()
        assert count == 4
    finally:
        await engine.dispose()
