"""Engine and session factory for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.util import await_only

from storage.checkpoint import WRITER_CHECKPOINT_PAGES
from storage.writer_queue import TurnsFirstPool

# Every commit on SQLite is flushed to disk before it returns (FULL), so a report a person was told is saved
# survives a power cut. A transaction may ask for NORMAL (execution option SYNCHRONOUS) when losing it in a power cut
# only means doing it again: the per-turn bookkeeping (storage.turns), whose effects are idempotent on their own.
SYNCHRONOUS = "esafety_sqlite_synchronous"
DURABLE, BOOKKEEPING = "FULL", "NORMAL"
# PostgreSQL's counterpart: the bookkeeping's own connections commit without waiting for the server's log to reach
# the disk (create_bookkeeping_engine); every other connection commits at the server's own, durable, level.
BOOKKEEPING_COMMIT = "off"
BOOKKEEPING_APPLICATION = "esafety bookkeeping"  # its connections' name in pg_stat_activity
BOOKKEEPING_CONNECTIONS = 4  # one kept between turns, three for other turns at once; more wait briefly
BEGIN_DUE = "esafety_begin_due"  # a reader's BEGIN, not yet sent: it goes with the first statement
READERS = 16  # SQLite reader connections kept open (each with its own thread in aiosqlite)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def create_engine(url: str, *, reads_only: bool = False) -> AsyncEngine:
    """An engine whose transactions serialise writers on SQLite and pool connections on PostgreSQL.

    On SQLite a `reads_only` engine begins deferred transactions: in WAL mode they read a snapshot without
    taking the write lock, so loading conversation state never queues behind writers.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # One writer connection: units of work queue for it in asyncio instead of in SQLite's sleeping busy
        # handler, which gave long latency tails under concurrent turns; turns ahead of background work
        # (storage.writer_queue). Readers are kept for as many turns as
        # usually read at once: past the pool's size each reader was opened and closed for one read (a thread, a
        # connection and its pragmas): at ten card actions at once, keeping them took 2.44 to 2.30 CPU ms a turn.
        pool = (
            {"pool_size": READERS, "max_overflow": READERS}
            if reads_only
            else {"pool_size": 1, "max_overflow": 0, "pool_timeout": 60, "poolclass": TurnsFirstPool}
        )
        # No rollback when a connection goes back to the pool: every transaction here is ended by its own context
        # (commit, or rollback on error) before that, so the reset would be a second, empty trip to the thread.
        engine = create_async_engine(url, connect_args={"timeout": 30}, pool_reset_on_return=None, **pool)
        _configure_sqlite(engine, "BEGIN" if reads_only else "BEGIN IMMEDIATE", lazy=reads_only, writer=not reads_only)
        return engine
    # No ping before each checkout (a round trip on every transaction): connections are recycled instead, and one
    # the server dropped is invalidated on its first error, with the pool. At most 16 connections, and 4 more for
    # the bookkeeping (create_bookkeeping_engine): 20 a replica, as before it had its own (docs/deploy.md says what
    # a small managed server allows).
    return create_async_engine(url, pool_size=10, max_overflow=6, pool_recycle=1800)


def create_bookkeeping_engine(url: URL) -> AsyncEngine:
    """PostgreSQL connections for a turn's claim and finish only (storage.one_trip), and nothing else.

    Their commits do not wait for the server to flush its log (synchronous_commit off, set when each connects): only
    a crash of the database server itself can lose one, and then a turn runs again or a question is asked again. A
    feature's own writes commit on the main engine's connections, durably, and their flush takes every earlier
    commit (the turn's claim) with it. Being their own pool, these connections can never be lent to work that must
    be durable. Waiting for the flush cost a claim and its finish twice as long (make bench), and a flush on a cloud
    database's disk takes milliseconds.
    """
    settings = {"synchronous_commit": BOOKKEEPING_COMMIT, "application_name": BOOKKEEPING_APPLICATION}
    return create_async_engine(
        url,
        pool_size=BOOKKEEPING_CONNECTIONS,
        max_overflow=0,
        pool_recycle=1800,
        connect_args={"server_settings": settings},
    )


def _configure_sqlite(engine: AsyncEngine, begin: str, *, lazy: bool, writer: bool) -> None:
    # SQLite's default deferred transactions let two readers race to write and one then fails with
    # "database is locked"; BEGIN IMMEDIATE takes the write lock up front so units of work queue instead.
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection, _record):  # noqa: ANN001
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute(f"PRAGMA synchronous={DURABLE}")
        if writer:  # the log is checkpointed in the background (storage.checkpoint); this is only the safety net
            cursor.execute(f"PRAGMA wal_autocheckpoint={WRITER_CHECKPOINT_PAGES}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection):  # noqa: ANN001
        # SQLite refuses to change the level inside a transaction, so it is set (only when it differs) before one.
        wanted = connection.get_execution_options().get(SYNCHRONOUS, DURABLE)
        # Straight to aiosqlite: one trip to its thread, where a statement through a DBAPI cursor takes three.
        driver = connection.connection.driver_connection
        if connection.info.get(SYNCHRONOUS, DURABLE) != wanted:
            await_only(driver.execute(f"PRAGMA synchronous={wanted}"))
            connection.info[SYNCHRONOUS] = wanted
        if lazy:
            # A reader's deferred BEGIN takes no lock and no snapshot until the first statement reads, so it goes
            # with that statement: in the same trip when the driver runs it (storage.one_trip.run_in_session).
            connection.info[BEGIN_DUE] = begin
            return
        await_only(driver.execute(begin))

    if not lazy:
        return

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _begin_first(connection, *_args):  # noqa: ANN001, ANN002
        due = connection.info.pop(BEGIN_DUE, None)
        if due is not None:
            await_only(connection.connection.driver_connection.execute(due))

    @event.listens_for(engine.sync_engine, "commit")
    @event.listens_for(engine.sync_engine, "rollback")
    def _nothing_read(connection):  # noqa: ANN001
        connection.info.pop(BEGIN_DUE, None)  # nothing was read, so nothing began


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
