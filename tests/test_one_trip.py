"""The per-turn bookkeeping's trips to the database (storage/one_trip.py, storage/prepared.py): on SQLite, work that
waits for the single writer goes together in one group commit, and each caller still gets its own outcome."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

from sqlalchemy import bindparam, insert, select

from storage.db import BOOKKEEPING, create_engine
from storage.inbound import InboundClaimRow
from storage.migrate import upgrade
from storage.one_trip import OneTrip
from storage.prepared import Prepared, Work

NOW = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC)
CLAIMS = InboundClaimRow.__table__
PLAIN_INSERT = Prepared(
    insert(CLAIMS).values(key=bindparam("key"), claimed_at=bindparam("at"), lease_until=bindparam("at"))
)


def _piece(key: str, *, fail: bool = False) -> Work[str]:
    written = (yield PLAIN_INSERT, {"key": key, "at": NOW}).count
    if fail:
        raise ValueError(f"{key} failed after its write")
    return f"{key}:{written}"


async def test_on_sqlite_pieces_waiting_together_each_get_their_own_outcome_and_a_failed_one_is_undone_alone(
    tmp_path: Path,
) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'trips.db'}")
    await upgrade(engine)
    trip = OneTrip(engine)
    try:
        # Already there: inserting it again fails inside the database, not in Python.
        assert await trip.steps(lambda: _piece("taken"), synchronous=BOOKKEEPING) == "taken:1"
        keys = [f"k{n}" for n in range(8)]
        results = await asyncio.gather(
            *(trip.steps(lambda key=key: _piece(key, fail=key == "k3"), synchronous=BOOKKEEPING) for key in keys),
            trip.steps(lambda: _piece("taken"), synchronous=BOOKKEEPING),
            return_exceptions=True,
        )
        *mine, again = results
        assert [r for k, r in zip(keys, mine, strict=True) if k != "k3"] == [f"{k}:1" for k in keys if k != "k3"]
        assert isinstance(mine[3], ValueError)
        assert "UNIQUE" in str(again)  # the database's own refusal reaches its caller
        async with engine.connect() as connection:
            stored = set((await connection.execute(select(CLAIMS.c.key))).scalars())
        # k3 wrote its row and then failed: its write is undone, and nobody else's is.
        assert stored == {"taken", *keys} - {"k3"}
    finally:
        await engine.dispose()
