"""The per-turn bookkeeping's trips to the database (storage/one_trip.py, storage/prepared.py): on SQLite, work that
waits for the single writer goes together in one group commit, and each caller still gets its own outcome."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import threading
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import Boolean, Float, bindparam, event, func, insert, literal_column, select, text
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool

from storage.db import BOOKKEEPING, BOOKKEEPING_APPLICATION, create_engine, session_factory
from storage.inbound import InboundClaimRow
from storage.migrate import upgrade
from storage.models import AuditRow, UtcDateTime
from storage.one_trip import OneRead, OneTrip, run_in_session
from storage.prepared import Prepared, Work, together

NOW = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC)
CLAIMS = InboundClaimRow.__table__
AUDIT = AuditRow.__table__
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


async def test_rows_read_by_the_driver_come_back_as_sqlalchemy_reads_them(database_url: str) -> None:
    """A datetime (with its zone), JSON and a boolean, read by the driver itself in a session's transaction, equal
    what SQLAlchemy's own execution of the same statement returns, on both databases."""
    engine = create_engine(database_url)
    await upgrade(engine)
    sessions = session_factory(engine)
    statement = (
        select(AUDIT.c.seq, AUDIT.c.at, AUDIT.c.detail, bindparam("flag", type_=Boolean).label("flag"))
        .where(AUDIT.c.school_id == bindparam("school"))
        .order_by(AUDIT.c.seq)
    )
    prepared = Prepared(statement)

    def read() -> Work[list[Any]]:
        return list((yield prepared, {"school": "oakfield", "flag": True}).rows)

    rows = [
        {"school_id": "oakfield", "seq": n, "at": NOW + dt.timedelta(minutes=n), "action": "viewed",
         "record_type": "incident", "detail": {"n": n, "listed": ["ES-2026-0001"]}, "prev_hash": "0", "hash": "0"}
        for n in (1, 2)
    ]  # fmt: skip
    try:
        async with sessions() as session, session.begin():
            await session.execute(insert(AuditRow), rows)
            ours = await run_in_session(session, read())
            theirs = (await session.execute(statement, {"school": "oakfield", "flag": True})).all()
        assert [tuple(row) for row in ours] == [tuple(row) for row in theirs]
        assert ours[1].at == NOW + dt.timedelta(minutes=2) and ours[1].at.tzinfo is not None
        assert ours[0].detail == {"n": 1, "listed": ["ES-2026-0001"]} and ours[0].flag is True
    finally:
        await engine.dispose()


@pytest.mark.parametrize("first", ["driver", "sqlalchemy"])
async def test_a_reader_on_sqlite_sees_one_snapshot_from_its_first_statement(tmp_path: Path, first: str) -> None:
    """A reader's BEGIN is sent with its first statement, whichever way that statement runs (by the driver in one
    trip, or through SQLAlchemy): everything it reads after that is as of then, while the writer goes on."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'reads.db'}"
    engine, reads = create_engine(url), create_engine(url, reads_only=True)
    await upgrade(engine)
    count = select(func.count()).select_from(CLAIMS)
    prepared = Prepared(count)

    def counted() -> Work[int]:
        return int((yield prepared, {}).rows[0][0])

    async def write(key: str) -> None:
        async with engine.begin() as connection:
            await connection.execute(insert(CLAIMS).values(key=key, claimed_at=NOW, lease_until=NOW))

    try:
        await write("before")
        async with session_factory(reads)() as session, session.begin():
            seen = [await run_in_session(session, counted()) if first == "driver" else await session.scalar(count)]
            await write("during")  # the writer is not held up by the reader, and the reader does not see it
            seen.append(await session.scalar(count))
            seen.append(await run_in_session(session, counted()))
        assert seen == [1, 1, 1]
        async with session_factory(reads)() as session, session.begin():
            assert await run_in_session(session, counted()) == 2  # a new reader sees what was written
        async with session_factory(reads)() as session, session.begin():
            pass  # read nothing: nothing began, and the connection goes back to the pool as it came
        async with session_factory(reads)() as session, session.begin():
            assert await session.scalar(count) == 2
    finally:
        await engine.dispose()
        await reads.dispose()


@pytest.mark.parametrize(
    "moment",
    [
        NOW,
        NOW.replace(microsecond=0),
        NOW.replace(microsecond=7),
        dt.datetime(2026, 3, 29, 1, 30, 0, 999_999, tzinfo=dt.timezone(dt.timedelta(hours=1))),  # BST, in London
        dt.datetime(2026, 10, 25, 0, 59, 59, tzinfo=dt.timezone(dt.timedelta(hours=-9, minutes=-30))),
        dt.datetime(1, 1, 1, 12, 0, tzinfo=dt.UTC),
        dt.datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=dt.UTC),
    ],
    ids=str,
)
async def test_a_moment_is_stored_on_sqlite_as_sqlalchemys_own_datetime_stores_it(
    tmp_path: Path, moment: dt.datetime
) -> None:
    """UtcDateTime writes SQLite's text in one step (storage.models); rows written before it, and every comparison
    between stored moments, depend on that text being exactly what SQLAlchemy's DATETIME wrote, which reads it back
    as the same moment."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'moments.db'}")
    await upgrade(engine)
    dialect = engine.dialect
    theirs = sqlite_dialect.DATETIME().bind_processor(dialect)
    assert theirs is not None
    ours = UtcDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert ours(moment) == theirs(moment.astimezone(dt.UTC).replace(tzinfo=None))
    assert ours(None) is None
    with pytest.raises(ValueError, match="naive"):
        ours(moment.replace(tzinfo=None))
    try:
        async with engine.begin() as connection:
            await connection.execute(insert(CLAIMS).values(key="k", claimed_at=moment, lease_until=moment))
            stored, read = (await connection.execute(select(text("claimed_at"), CLAIMS.c.lease_until))).one()
        assert stored == theirs(moment.astimezone(dt.UTC).replace(tzinfo=None)) and read == moment
    finally:
        await engine.dispose()


FINISH = Prepared(CLAIMS.update().where(CLAIMS.c.key == bindparam("key")).values(finished_at=bindparam("at")))


@pytest.mark.parametrize("brief", [False, True], ids=["queued", "brief"])
async def test_statements_run_together_count_each_ones_rows_and_are_undone_together(
    database_url: str, brief: bool
) -> None:
    engine = create_engine(database_url)
    await upgrade(engine)
    trip = OneTrip(engine)

    def close(key: str, other: str) -> Work[tuple[int, ...]]:
        # A turn's closing writes: its own claim finished, and a second write (here another claim) with it, run as
        # storage.turns runs them: with no transaction around them, as on PostgreSQL they are one statement.
        outcome = yield together(FINISH, PLAIN_INSERT), [{"key": key, "at": NOW}, {"key": other, "at": NOW}]
        return outcome.counts

    try:
        await trip.steps(lambda: _piece("turn"), synchronous=BOOKKEEPING)
        await trip.steps(lambda: _piece("taken"), synchronous=BOOKKEEPING)
        closing = {"synchronous": BOOKKEEPING, "atomic": False, "brief": brief}
        assert await trip.steps(lambda: close("nobody", "fresh"), **closing) == (0, 1)
        # The second write fails in the database (that claim exists), so the finish with it is undone too.
        with pytest.raises(Exception, match="(?i)unique|duplicate"):
            await trip.steps(lambda: close("turn", "taken"), **closing)
        async with engine.connect() as connection:
            finished = (await connection.execute(select(CLAIMS.c.finished_at).where(CLAIMS.c.key == "turn"))).scalar()
        assert finished is None
        assert await trip.steps(lambda: close("turn", "later"), **closing) == (1, 1)
    finally:
        await trip.close()
        await engine.dispose()


async def test_reads_in_one_trip_see_only_what_is_committed_and_end_their_snapshot_even_when_they_fail(
    database_url: str,
) -> None:
    """The caseload's reads (storage.caseload) run outside any unit of work: on SQLite on a reader connection while
    a writer holds the one writer, and each read's snapshot ends with it, so the next read on that connection (and
    the pool lends the same one again) sees what was written since."""
    sqlite = database_url.startswith("sqlite")
    engine = create_engine(database_url)
    reads = create_engine(database_url, reads_only=True) if sqlite else engine
    await upgrade(engine)
    one_read = OneRead(reads)
    prepared = Prepared(select(func.count()).select_from(CLAIMS))

    def counted(*, then_fail: bool = False) -> Work[int]:
        seen = int((yield prepared, {}).rows[0][0])
        if then_fail:
            raise LookupError("a read that fails part way")
        return seen

    async def write(key: str) -> None:
        async with engine.begin() as connection:
            await connection.execute(insert(CLAIMS).values(key=key, claimed_at=NOW, lease_until=NOW))

    try:
        await write("before")
        async with engine.begin() as writer:  # holds SQLite's one writer, with a row not yet committed
            await writer.execute(insert(CLAIMS).values(key="uncommitted", claimed_at=NOW, lease_until=NOW))
            assert await one_read.run(counted) == 1
        for written in range(2, 5):
            with pytest.raises(LookupError):
                await one_read.run(lambda: counted(then_fail=True))
            await write(f"after {written}")
            assert await one_read.run(counted) == written + 1
    finally:
        await engine.dispose()
        if sqlite:
            await reads.dispose()


async def test_ten_readers_at_once_on_sqlite_reuse_their_connections(tmp_path: Path) -> None:
    """Readers past the pool's size were each opened and closed for one read (a thread, a connection, its pragmas):
    ten card actions at once paid for that on every read. Ten at once, over and over, open ten connections."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'reads.db'}"
    engine, reads = create_engine(url), create_engine(url, reads_only=True)
    await upgrade(engine)
    opened: list[object] = []
    event.listen(reads.sync_engine, "connect", lambda connection, _record: opened.append(connection))
    prepared = Prepared(select(func.count()).select_from(CLAIMS))

    def counted() -> Work[int]:
        return int((yield prepared, {}).rows[0][0])

    try:
        for _ in range(5):
            assert await asyncio.gather(*(OneRead(reads).run(counted) for _ in range(10))) == [0] * 10
        assert len(opened) == 10
    finally:
        await engine.dispose()
        await reads.dispose()


def _noting_thread(key: str, threads: list[int]) -> Work[str]:
    threads.append(threading.get_ident())  # the thread the statements run on
    return (yield from _piece(key))


async def _stored_claims(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as connection:
        return set((await connection.execute(select(CLAIMS.c.key))).scalars())


async def test_on_sqlite_brief_bookkeeping_is_written_on_the_loop_while_the_writer_is_idle(tmp_path: Path) -> None:
    """A turn's claim and finish need no trip to the writer's thread when nobody holds the writer: committed there
    and then, for every other connection to read, and a piece that fails is undone whole and the next one still
    goes."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'trips.db'}")
    await upgrade(engine)
    trip, threads = OneTrip(engine), []
    brief = {"synchronous": BOOKKEEPING, "brief": True}
    try:
        assert await trip.steps(lambda: _noting_thread("first", threads), **brief) == "first:1"
        assert threads == [threading.get_ident()]
        with pytest.raises(ValueError, match="failed after its write"):
            await trip.steps(lambda: _piece("broken", fail=True), **brief)
        assert await trip.steps(lambda: _noting_thread("second", threads), **brief) == "second:1"
        assert threads[-1] == threading.get_ident()
        assert await _stored_claims(engine) == {"first", "second"}
        # Work not marked brief goes to the writer's thread as before.
        await trip.steps(lambda: _noting_thread("queued", threads), synchronous=BOOKKEEPING)
        assert threads[-1] != threading.get_ident()
    finally:
        await trip.close()
        await engine.dispose()


async def test_on_sqlite_brief_bookkeeping_waits_its_turn_while_the_writer_is_lent_out(tmp_path: Path) -> None:
    """Lent out, the writer may be about to begin a transaction on its own thread, so brief work queues for it
    like any other instead of racing it for SQLite's lock, and goes once the writer is given back."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'trips.db'}")
    await upgrade(engine)
    trip, threads = OneTrip(engine), []
    try:
        async with engine.connect():  # borrowed, with no transaction begun yet
            waiting = asyncio.create_task(
                trip.steps(lambda: _noting_thread("later", threads), synchronous=BOOKKEEPING, brief=True)
            )
            await asyncio.sleep(0)
            assert not waiting.done()
        assert await waiting == "later:1"
        assert threads == [threads[0]] and threads[0] != threading.get_ident()
        assert await _stored_claims(engine) == {"later"}
    finally:
        await trip.close()
        await engine.dispose()


@pytest.mark.parametrize("atomic", [True, False], ids=["atomic", "each-statement-whole"])
async def test_on_sqlite_brief_bookkeeping_steps_aside_while_another_process_writes(
    tmp_path: Path, atomic: bool
) -> None:
    """Another process holding SQLite's write lock (a second replica, a command-line tool) is never waited for on
    the event loop: the work goes to the queue at once, and is written when that writer commits. Work of statements
    each whole on its own (a turn's claim) has no BEGIN of its own on the loop: its first statement meets the lock."""
    path = tmp_path / "trips.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    await upgrade(engine)
    trip, threads = OneTrip(engine), []
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO inbound_claims (key, claimed_at) VALUES ('theirs', '2026-11-23 10:00:00')")
        waiting = asyncio.create_task(
            trip.steps(lambda: _noting_thread("ours", threads), synchronous=BOOKKEEPING, brief=True, atomic=atomic)
        )
        for _ in range(3):
            await asyncio.sleep(0)  # the loop runs on: the work tried the lock, found it taken and queued
        assert not waiting.done()
        other.execute("COMMIT")
        assert await waiting == "ours:1"
        assert threads[-1] != threading.get_ident()  # written by the writer's thread, after the other's commit
        assert await _stored_claims(engine) == {"theirs", "ours"}
    finally:
        other.close()
        await trip.close()
        await engine.dispose()


BACKEND = Prepared(select(func.pg_backend_pid()))
PAUSE = Prepared(select(func.pg_sleep(bindparam("seconds", type_=Float))))


def _backend(seconds: float = 0) -> Work[int]:
    if seconds:
        yield PAUSE, {"seconds": seconds}
    return int((yield BACKEND, {}).rows[0][0])


async def test_on_postgresql_brief_bookkeeping_keeps_one_connection_and_drops_it_after_a_cancelled_turn(
    postgres_url: str,
) -> None:
    """A turn's claim and finish borrow no connection from the units of work's pool: one of the bookkeeping's own is
    kept for them between turns, while the database's own refusals leave it in use. A turn stopped mid-statement may
    leave it mid-conversation with the server, so it is closed, and the next turn gets a fresh one that works."""
    engine = create_engine(postgres_url)
    await upgrade(engine)
    trip, pool = OneTrip(engine), cast(QueuePool, engine.sync_engine.pool)
    brief = {"synchronous": BOOKKEEPING, "atomic": False, "brief": True}
    try:
        kept = await trip.steps(_backend, **brief)
        assert await trip.steps(_backend, **brief) == kept
        assert pool.checkedout() == 0  # the units of work's pool lends it nothing
        await trip.steps(lambda: _piece("taken"), **brief)
        with pytest.raises(Exception, match="(?i)duplicate"):
            await trip.steps(lambda: _piece("taken"), **brief)
        assert await trip.steps(_backend, **brief) == kept
        # Two at once: the second borrows another of the bookkeeping's own.
        assert len(set(await asyncio.gather(trip.steps(_backend, **brief), trip.steps(_backend, **brief)))) == 2
        stopped = asyncio.create_task(trip.steps(lambda: _backend(60), **brief))
        await asyncio.sleep(0)  # it runs until it waits for the server, mid-statement
        stopped.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stopped
        fresh = await trip.steps(_backend, **brief)
        assert fresh != kept
        assert await trip.steps(_backend, **brief) == fresh
        # The server ends the session mid-statement (a restart, an administrator): the next turn still gets through.
        ended = asyncio.create_task(trip.steps(lambda: _backend(60), **brief))
        await asyncio.sleep(0)
        async with engine.connect() as admin:
            await admin.execute(select(func.pg_terminate_backend(fresh)))
        with pytest.raises(Exception, match="(?i)terminat"):
            await ended
        assert await trip.steps(_backend, **brief) not in (kept, fresh)
        await trip.close()
        assert pool.checkedout() == 0
    finally:
        await engine.dispose()


LEVEL = select(func.pg_backend_pid(), func.current_setting(literal_column("'synchronous_commit'")))
COMMIT_LEVEL = Prepared(LEVEL)
BOOKKEEPING_BACKENDS = (
    select(func.count())
    .select_from(text("pg_stat_activity"))
    .where(literal_column("application_name") == BOOKKEEPING_APPLICATION)
    .where(literal_column("datname") == func.current_database())  # this test's database alone
)


def _commit_level(seconds: float = 0) -> Work[tuple[int, str]]:
    if seconds:
        yield PAUSE, {"seconds": seconds}
    row = (yield COMMIT_LEVEL, {}).rows[0]
    return int(row[0]), str(row[1])


async def _durable_by_default(postgres_url: str) -> None:
    # The throwaway server flushes nothing (it is set up for speed); here its default is a real server's.
    engine = create_engine(postgres_url)
    try:
        async with engine.begin() as connection:
            name = make_url(postgres_url).database
            await connection.execute(text(f'ALTER DATABASE "{name}" SET synchronous_commit = on'))
    finally:
        await engine.dispose()


async def test_on_postgresql_bookkeeping_commits_without_waiting_for_the_flush_and_nothing_else_does(
    postgres_url: str,
) -> None:
    """A turn's claim and finish need not wait for the server's log to reach the disk (losing them in a crash of the
    database only runs a turn again); a report's unit of work must. The bookkeeping has connections of its own, so
    its level can never reach a unit of work; they are closed with the trip."""
    await _durable_by_default(postgres_url)
    engine = create_engine(postgres_url)
    await upgrade(engine)
    trip = OneTrip(engine)
    brief = {"synchronous": BOOKKEEPING, "atomic": False, "brief": True}
    try:
        kept = await trip.steps(_commit_level, **brief)
        busy = asyncio.create_task(trip.steps(lambda: _commit_level(0.2), **brief))
        await asyncio.sleep(0)  # the kept connection is busy: the next turn's bookkeeping takes another of its own
        other = await trip.steps(_commit_level, **brief)
        assert await busy == kept and kept[1] == other[1] == "off" and other != kept
        async with engine.begin() as unit:  # a unit of work, while the bookkeeping's connections are out and back
            level = (await unit.execute(LEVEL)).one()[1]
            assert level == "on"
            assert (await unit.execute(BOOKKEEPING_BACKENDS)).scalar() == 2
        await trip.close()
        async with engine.connect() as connection:
            assert (await connection.execute(BOOKKEEPING_BACKENDS)).scalar() == 0
    finally:
        await trip.close()
        await engine.dispose()
