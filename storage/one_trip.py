"""A short write transaction in one trip: the per-turn bookkeeping (storage.turns) without a hop per statement.

Through SQLAlchemy's async layer on SQLite, every statement, BEGIN and COMMIT is its own trip to aiosqlite's thread
(a queue put, a thread wake-up, a callback back onto the event loop): a turn's claim and finish took about eleven,
and handing work to that thread was 40% of the event loop's busy time. Here the whole transaction is one function
run on that thread, through a synchronous engine over the same sqlite3 connection, so the SQL is still SQLAlchemy's
(the same statements, types and dialect) and the writer is still the one pooled connection everyone queues for.

PostgreSQL has no such thread: the same function runs in the async connection's greenlet, one round trip per
statement as before.

A turn's own bookkeeping (`steps(..., brief=True)`) is cheaper still: on SQLite, while the writer is idle, it skips
even that one trip and is written on the event loop's thread, on a connection that never waits there (_OnTheLoop);
on PostgreSQL it runs on a connection kept between turns instead of one borrowed from the pool (_HeldConnection).

`steps` is the same trip for work written as prepared statements (storage.prepared): the per-turn bookkeeping,
where even SQLAlchemy's execution of a compiled statement cost as much as the database's own work. `OneRead` is its
counterpart for reads (the caseload's), on a reader connection and outside any unit of work.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from asyncpg import PostgresError
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.pool import PoolProxiedConnection, QueuePool, StaticPool
from sqlalchemy.util import await_only, greenlet_spawn

from storage.db import BEGIN_DUE, BOOKKEEPING, DURABLE, SYNCHRONOUS, create_bookkeeping_engine
from storage.prepared import Work, run_on_asyncpg, run_on_sqlite
from storage.writer_queue import background

log = logging.getLogger(__name__)
T = TypeVar("T")
_ENGINE = "esafety_one_trip_engine"
_UNKNOWN = "unknown"


class OneTrip:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sqlite = engine.dialect.name == "sqlite"
        self._waiting: list[_Waiting] = []  # SQLite: work for the writer's next group commit (steps)
        self._writing: asyncio.Task[None] | None = None
        self._on_loop = _OnTheLoop.over(engine) if self._sqlite else None
        # PostgreSQL: brief work runs on connections of its own, which commit without waiting for the disk
        # (storage.db.create_bookkeeping_engine); they connect only when first used.
        self._bookkeeping = None if self._sqlite else create_bookkeeping_engine(engine.url)
        self._held = None if self._bookkeeping is None else _HeldConnection(self._bookkeeping)

    async def close(self) -> None:
        """Close what this holds of its own (SQLite: the loop's connection; PostgreSQL: the connections for brief
        work), before the engine is disposed; the engine's pool is its owner's."""
        if self._on_loop is not None:
            self._on_loop.close()
        if self._held is not None:
            await self._held.close()
        if self._bookkeeping is not None:
            await self._bookkeeping.dispose()

    async def run(self, work: Callable[[Connection], T], *, synchronous: str = DURABLE, atomic: bool = True) -> T:
        """`work` in one write transaction: committed when it returns, rolled back when it raises.

        `synchronous` is SQLite's flush level for this transaction (storage.db); PostgreSQL ignores it. Work that is
        one statement, or statements each whole on its own, may say `atomic=False`: PostgreSQL then commits each as
        it runs, without the two round trips of BEGIN and COMMIT.
        """
        async with self._engine.connect() as connection:
            if not self._sqlite:
                if not atomic:
                    autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
                    return await autocommit.run_sync(work)
                async with connection.begin():
                    return await connection.run_sync(work)
            pooled = await connection.get_raw_connection()  # the pool's one writer, held until this block ends
            driver: Any = pooled.driver_connection  # aiosqlite.Connection
            info = pooled.info
            engine = info.get(_ENGINE)
            if engine is None:
                engine = info[_ENGINE] = _engine_over(driver)
            pragma = None if info.get(SYNCHRONOUS, DURABLE) == synchronous else f"PRAGMA synchronous={synchronous}"

            def transaction() -> T:
                if pragma is not None:  # outside a transaction: SQLite refuses to change it inside one
                    driver._conn.execute(pragma)  # noqa: SLF001 - on the driver's own thread, as aiosqlite runs it
                with engine.connect() as sync:
                    sync.exec_driver_sql("BEGIN IMMEDIATE")
                    try:
                        result = work(sync)
                    except BaseException:
                        sync.rollback()
                        raise
                    sync.commit()
                    return result

            try:
                # aiosqlite's queue for its thread; the only way to run several statements in one trip there.
                # In the caller's context, so what the turn's context carries (its log record) is there too.
                result: T = await driver._execute(contextvars.copy_context().run, transaction)  # noqa: SLF001
            except BaseException:
                info[SYNCHRONOUS] = _UNKNOWN  # whatever it is now, the next transaction sets the level it needs
                raise
            info[SYNCHRONOUS] = synchronous
            return result

    async def steps(
        self,
        work: Callable[[], Work[T]],
        *,
        synchronous: str = DURABLE,
        atomic: bool = True,
        brief: bool = False,
    ) -> T:
        """As run(), for work written as prepared statements (storage.prepared), executed by the driver itself.

        `brief` work is a few fixed statements at BOOKKEEPING (a turn's claim and finish): on SQLite, while the
        writer is idle, it is written on the event loop's own thread (_OnTheLoop), with no trip to another; on
        PostgreSQL, when it is not `atomic`, it runs on a connection kept between turns (_HeldConnection), or
        another of the bookkeeping's own, and commits without waiting for the disk.

        On SQLite, work that arrives while the writer is busy waits and then goes with everything else waiting, in
        one transaction and one trip (a group commit), each piece in its own savepoint: one that fails is undone
        alone and its caller hears why; it is flushed as durably as its most demanding piece asks. Handing the single
        writer from turn to turn had cost more than the writes, and at ten turns at once left the writer idle between
        them while turns queued for it.
        """
        if self._sqlite:
            if brief and self._on_loop is not None and synchronous == BOOKKEEPING and not self._waiting:
                written, value = self._on_loop.write(work, atomic=atomic)
                if written:
                    return value  # type: ignore[return-value]  # written is True only with work's own value
            waiting = _Waiting(
                work, synchronous, contextvars.copy_context(), asyncio.get_running_loop().create_future()
            )
            self._waiting.append(waiting)
            if self._writing is None or self._writing.done():
                self._writing = asyncio.create_task(self._write_waiting())
            result: T = await waiting.done
            return result
        if brief and not atomic and self._held is not None and self._bookkeeping is not None:
            ran, value = await self._held.run(work)
            if ran:
                return value  # type: ignore[return-value]  # ran is True only with work's own value
            return await _on_asyncpg(self._bookkeeping, work, atomic=False)
        return await _on_asyncpg(self._engine, work, atomic=atomic)

    async def _write_waiting(self) -> None:
        # Its pieces are brief (turns' claims and finishes, read-audit entries) and people wait on them: they wait for
        # the writer as a turn does, whichever call started this task (storage.writer_queue).
        with background(False):
            while self._waiting:
                taken: list[_Waiting] = []
                try:
                    done = await greenlet_spawn(self._group_commit_in_greenlet, taken)
                except Exception as exc:  # the writer could not be had (the pool's timeout): everyone waiting hears
                    done = [(waiting, False, exc) for waiting in (*taken, *self._waiting)]
                    self._waiting = []
                except BaseException:  # stopped (the app is shutting down): nobody may be left waiting for ever
                    for waiting in (*taken, *self._waiting):
                        waiting.done.cancel()
                    self._waiting = []
                    raise
                for waiting, ok, value in done:
                    if not waiting.done.done():  # its caller may have gone (a cancelled request)
                        waiting.done.set_result(value) if ok else waiting.done.set_exception(value)

    def _group_commit_in_greenlet(self, taken: list[_Waiting]) -> list[tuple[_Waiting, bool, Any]]:
        # Borrowing the writer, running the batch and giving it back in one greenlet: through SQLAlchemy's async
        # connection each of the three was a greenlet of its own, about 35 µs of CPU apiece.
        pooled = self._engine.sync_engine.raw_connection()  # the pool's one writer, held until the finally below
        try:
            # Everything waiting once the writer is in hand goes together, what arrived while this waited for it too.
            batch, self._waiting = [w for w in self._waiting if not w.done.done()], []
            taken.extend(batch)  # for the caller to answer, should anything below fail outright
            if not batch:
                return []
            # One commit at the strongest level any piece asked for: the others' flush comes free with it, where two
            # transactions would pay for a second commit and for switching the level between them.
            level = DURABLE if any(w.synchronous == DURABLE for w in batch) else batch[0].synchronous
            try:
                outcomes = self._commit_together(pooled, batch, level)
            except Exception as exc:  # the transaction itself failed (BEGIN, COMMIT, the connection): all of it
                outcomes = [(False, exc)] * len(batch)
            return [(waiting, ok, value) for waiting, (ok, value) in zip(batch, outcomes, strict=True)]
        finally:
            pooled.close()  # back to the pool, which hands it to whoever should write next

    def _commit_together(
        self, pooled: PoolProxiedConnection, batch: list[_Waiting], synchronous: str
    ) -> list[tuple[bool, Any]]:
        driver: Any = pooled.driver_connection  # aiosqlite.Connection
        dialect = self._engine.dialect
        info = pooled.info
        pragma = None if info.get(SYNCHRONOUS, DURABLE) == synchronous else f"PRAGMA synchronous={synchronous}"
        raw = driver._conn  # noqa: SLF001 - the sqlite3 connection, used only on aiosqlite's thread, below

        def transaction() -> list[tuple[bool, Any]]:
            if pragma is not None:  # outside a transaction: SQLite refuses to change it inside one
                raw.execute(pragma)
            raw.execute("BEGIN IMMEDIATE")
            outcomes: list[tuple[bool, Any]] = []
            try:
                for waiting in batch:
                    raw.execute("SAVEPOINT piece")
                    try:
                        # In its caller's context, so what the turn's context carries (its log record) is there.
                        value = waiting.context.run(run_on_sqlite, raw, dialect, waiting.work())
                    except Exception as exc:  # noqa: BLE001 - handed to its own caller, with its piece undone
                        raw.execute("ROLLBACK TO piece")
                        outcomes.append((False, exc))
                    else:
                        outcomes.append((True, value))
                    raw.execute("RELEASE piece")
            except BaseException:
                if raw.in_transaction:
                    raw.execute("ROLLBACK")
                raise
            raw.execute("COMMIT")
            return outcomes

        try:
            # aiosqlite's queue for its thread; the only way to run several statements in one trip there.
            done: list[tuple[bool, Any]] = await_only(driver._execute(transaction))  # noqa: SLF001
        except BaseException:
            info[SYNCHRONOUS] = _UNKNOWN  # whatever it is now, the next transaction sets the level it needs
            raise
        info[SYNCHRONOUS] = synchronous
        return done


class OneRead:
    """Reads in one trip, outside any unit of work: for a read on every look at a card (the caseload).

    On SQLite the reads run on a reader connection (never the writer) in one trip to its thread, BEGIN and its end
    included, so they read one snapshot. Through a unit of work the same reads took a trip a statement, one for the
    COMMIT and five greenlets, and the session's own bookkeeping cost about as much again. On PostgreSQL each
    statement runs on its own, without BEGIN and COMMIT: at READ COMMITTED, which a unit of work uses there, each
    statement reads its own snapshot anyway, so this saves two round trips and changes nothing seen.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine  # on SQLite a reads engine (storage.db.create_engine(reads_only=True))

    async def run(self, work: Callable[[], Work[T]]) -> T:
        if self._engine.dialect.name != "sqlite":
            return await _on_asyncpg(self._engine, work, atomic=False)
        # Borrowing a reader, reading and giving it back in one greenlet.
        result: T = await greenlet_spawn(self._on_sqlite, work, contextvars.copy_context())
        return result

    def _on_sqlite(self, work: Callable[[], Work[T]], context: contextvars.Context) -> T:
        pooled = self._engine.sync_engine.raw_connection()
        try:
            driver: Any = pooled.driver_connection  # aiosqlite.Connection
            raw = driver._conn  # noqa: SLF001 - the sqlite3 connection, used only on aiosqlite's thread, below
            dialect = self._engine.dialect

            def snapshot() -> T:
                raw.execute("BEGIN")  # deferred: a snapshot at the first read, and no lock that writers wait for
                try:
                    return context.run(run_on_sqlite, raw, dialect, work())
                finally:
                    raw.execute("ROLLBACK")  # nothing was written: ending the snapshot is all either would do

            result: T = await_only(driver._execute(snapshot))  # noqa: SLF001 - aiosqlite's queue for its thread
            return result
        finally:
            pooled.close()


async def _on_asyncpg(engine: AsyncEngine, work: Callable[[], Work[T]], *, atomic: bool) -> T:
    # Straight from the pool, in one greenlet each way: through an async connection it was three (about 40 µs).
    pooled = await greenlet_spawn(engine.sync_engine.raw_connection)
    driver: Any = pooled.driver_connection  # asyncpg.Connection
    try:
        if not atomic:  # each statement commits on its own, with no BEGIN and COMMIT round trips
            return await run_on_asyncpg(driver, engine.dialect, work())
        async with driver.transaction():
            return await run_on_asyncpg(driver, engine.dialect, work())
    except BaseException:
        # SQLAlchemy never saw this error, so it cannot know the connection died: the pool must not lend it again.
        if driver.is_closed():
            await greenlet_spawn(pooled.invalidate)
        raise
    finally:
        await greenlet_spawn(pooled.close)


async def run_in_session(session: AsyncSession, work: Work[T]) -> T:
    """`work` in `session`'s transaction, executed by the driver itself: on SQLite in one trip to its thread (where
    each statement through the session is a trip of its own), on PostgreSQL a round trip a statement as before."""
    # One greenlet for what through the async session is two (its connection, then the driver's).
    connection, pooled = await greenlet_spawn(_borrowed, session.sync_session)
    driver: Any = pooled.driver_connection
    dialect = connection.dialect
    if dialect.name == "sqlite":
        raw = driver._conn  # noqa: SLF001 - the sqlite3 connection, used only on aiosqlite's thread
        begin = pooled.info.pop(BEGIN_DUE, None)  # a reader's BEGIN, sent with its first statement (storage.db)

        def run() -> T:
            if begin is not None:
                raw.execute(begin)
            return run_on_sqlite(raw, dialect, work)

        # aiosqlite's queue for its thread, in the caller's context (what the turn's context carries is there too)
        result: T = await driver._execute(contextvars.copy_context().run, run)  # noqa: SLF001
        return result
    # SQLAlchemy's asyncpg adapter sends BEGIN only before its own first statement; these must be inside it.
    adapter: Any = pooled.dbapi_connection
    if adapter._transaction is None:  # noqa: SLF001
        await adapter._start_transaction()  # noqa: SLF001 - in autocommit it does nothing, as SQLAlchemy would
    try:
        return await run_on_asyncpg(driver, dialect, work)
    except BaseException:
        if driver.is_closed():  # SQLAlchemy never saw this error: the pool must not lend a dead connection again
            await greenlet_spawn(connection.invalidate)
        raise


def _borrowed(session: Session) -> tuple[Connection, PoolProxiedConnection]:
    connection = session.connection()  # begins the session's transaction if nothing has yet
    return connection, connection.connection


class _OnTheLoop:
    """SQLite: brief bookkeeping written on the event loop's own thread while the single writer is idle.

    Handing a transaction to aiosqlite's thread and back costs far more than SQLite takes to write a claim: about
    0.1 ms of CPU a trip in wake-ups, locks and callbacks, against some 20 µs for the statements, and on two cores
    the two threads took turns pre-empting each other. Here the same prepared statements run on a connection of the
    loop's own, and the loop never waits on it:
    - no lock wait: it writes only while the pool's writer is idle, which nothing on this loop can take until it
      returns (so within this process it never meets another writer), and its busy timeout is zero, so another
      process's writer (a second replica, a command-line tool) makes it step aside to the queue at once;
    - no flush: its commits are at BOOKKEEPING (NORMAL), which in WAL mode writes the log and never syncs it, and it
      never checkpoints (storage.checkpoint does, on a connection of its own);
    - nothing long: only work its callers mark brief, a handful of statements on a few pages.
    """

    def __init__(self, pool: QueuePool, dialect: Any, path: str) -> None:  # noqa: ANN401 - SQLAlchemy's dialect
        self._pool = pool
        self._dialect = dialect
        self._path = path
        self._connection: sqlite3.Connection | None = None
        self._usable = True

    @classmethod
    def over(cls, engine: AsyncEngine) -> _OnTheLoop | None:
        url, pool = engine.url, engine.sync_engine.pool
        if not url.database or url.database == ":memory:" or url.query or not isinstance(pool, QueuePool):
            return None  # a database only this engine's connections can see, or one opened by URI: the queue only
        return cls(pool, engine.dialect, url.database)

    def write(self, work: Callable[[], Work[T]], *, atomic: bool = True) -> tuple[bool, T | None]:
        """(True, what the work returned), or (False, None) when the writer is busy: the work must then queue and
        run again from the start (`work` makes a new generator each call). Nothing of `atomic` work was written
        then; work that is not atomic is statements each whole on its own, each committed as it runs (no BEGIN or
        COMMIT of its own), so those before the busy one stand, and running it again must be safe, as it is for a
        turn's claim (an insert that does nothing on conflict, then a conditional takeover) and its finish."""
        if not self._usable or self._pool.checkedout():  # lent out: a transaction may be under way on its thread
            return False, None
        connection = self._connection or self._open()
        if connection is None:
            return False, None
        try:
            if atomic:
                connection.execute("BEGIN IMMEDIATE")
                value = run_on_sqlite(connection, self._dialect, work())
                connection.execute("COMMIT")
            else:
                value = run_on_sqlite(connection, self._dialect, work(), each_whole=True)
        except sqlite3.OperationalError as exc:
            _undo(connection)
            if _busy(exc):  # another process is writing: wait for it in the queue, off this thread
                return False, None
            raise
        except BaseException:
            _undo(connection)
            raise
        return True, value

    def _open(self) -> sqlite3.Connection | None:
        connection = None
        try:
            connection = sqlite3.connect(self._path, timeout=0, isolation_level=None)
            mode = str(connection.execute("PRAGMA journal_mode").fetchone()[0]).lower()
            if mode != "wal":  # outside WAL a commit syncs and a writer blocks readers: not on the loop
                raise sqlite3.NotSupportedError(f"the database is in {mode} mode, not WAL")
            for pragma in ("foreign_keys=ON", f"synchronous={BOOKKEEPING}", "wal_autocheckpoint=0"):
                connection.execute(f"PRAGMA {pragma}")
        except sqlite3.Error as exc:
            if connection is not None:
                connection.close()
            if not (isinstance(exc, sqlite3.OperationalError) and _busy(exc)):  # busy: try again next time
                self._usable = False
                log.warning("turn bookkeeping goes through the SQLite writer's thread: %s", exc)
            return None
        self._connection = connection
        return connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


HOLD_SECONDS = 300.0  # well inside the pool's recycle time (storage.db), which a kept connection would escape


class _HeldConnection:
    """PostgreSQL: one of the bookkeeping's pooled connections, kept between turns for their brief bookkeeping.

    Borrowing a connection from SQLAlchemy's pool and giving it back, twice a turn, cost about as much CPU as the
    statements themselves: timed in one process, a claim and its finish took 0.19–0.22 ms of CPU that way and
    0.09–0.11 ms on a kept connection. One turn at a time uses it; any other borrows from that pool. It
    runs only statements that are whole on their own (no transaction is ever left open on it), it is given back
    and a fresh one borrowed every HOLD_SECONDS, and after any error but the database's own answer (a cancelled
    turn, a lost connection) it is closed, never used again.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._pooled: PoolProxiedConnection | None = None
        self._since = 0.0
        self._busy = False

    async def run(self, work: Callable[[], Work[T]]) -> tuple[bool, T | None]:
        """(True, what the work returned), or (False, None) when another turn is using the connection."""
        if self._busy:
            return False, None
        self._busy = True
        try:
            pooled = await self._connection()
            driver: Any = pooled.driver_connection  # asyncpg.Connection
            try:
                return True, await run_on_asyncpg(driver, self._engine.dialect, work())
            except PostgresError:
                if not driver.is_closed():
                    raise  # the database's answer to a statement: the connection is as good as before
                self._pooled = None  # the server ended the session (shutdown, a terminated backend)
                await greenlet_spawn(pooled.invalidate)
                raise
            except BaseException:
                self._pooled = None  # it may be mid-statement or gone: SQLAlchemy must not lend it again either
                await greenlet_spawn(pooled.invalidate)
                raise
        finally:
            self._busy = False

    async def _connection(self) -> PoolProxiedConnection:
        pooled = self._pooled
        if pooled is not None and time.monotonic() - self._since < HOLD_SECONDS:
            return pooled
        if pooled is not None:
            self._pooled = None
            await greenlet_spawn(pooled.close)  # back to the pool, which recycles it when due
        pooled = await greenlet_spawn(self._engine.sync_engine.raw_connection)
        self._pooled, self._since = pooled, time.monotonic()
        return pooled

    async def close(self) -> None:
        pooled, self._pooled = self._pooled, None
        if pooled is not None:
            await greenlet_spawn(pooled.close)


def _busy(error: sqlite3.OperationalError) -> bool:
    return error.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)  # any extended code of them


def _undo(connection: sqlite3.Connection) -> None:
    if connection.in_transaction:
        connection.execute("ROLLBACK")


@dataclass
class _Waiting:
    """A piece of work for SQLite's writer, waiting for the next group commit."""

    work: Callable[[], Work[Any]]
    synchronous: str
    context: contextvars.Context
    done: asyncio.Future[Any]


def _engine_over(driver: Any) -> Engine:
    """A synchronous engine whose only connection is the aiosqlite connection's own sqlite3 connection.

    It is only ever used on that connection's thread, and only while the async pool has lent the connection out;
    it never closes the connection (the async pool owns it) and lives as long as it does (the pool record's info).
    """
    return create_engine(
        "sqlite://",
        creator=lambda: driver._conn,  # noqa: SLF001
        poolclass=StaticPool,
        pool_reset_on_return=None,
    )
