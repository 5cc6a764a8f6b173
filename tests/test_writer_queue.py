"""SQLite's one writer goes to people's turns before background work (storage/writer_queue.py).

A wave of background work (two hundred AUP deliveries falling due together) used to queue for the writer ahead of
every turn's claim and finish, so people's replies slowed for as long as the wave lasted. PostgreSQL has a pool of
connections and no single writer, so these run on SQLite only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Column, MetaData, Table, Text, bindparam, insert, text
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.clock import SettableClock
from bot.work import WorkItem
from storage.db import create_engine
from storage.one_trip import OneTrip
from storage.prepared import Prepared, Work
from storage.writer_queue import TurnsFirstQueue, background, writer_queue
from tests.support.harness import start_harness

WRITTEN = Table("written", MetaData(), Column("name", Text, nullable=False))
WRITE = Prepared(insert(WRITTEN).values(name=bindparam("name")))


def _piece(name: str) -> Work[None]:
    yield WRITE, {"name": name}


async def _until(ready: Callable[[], bool]) -> None:
    """Let the loop run until `ready()`; fails the test rather than hanging. (Who waits for the writer changes inside
    SQLAlchemy's pool, which has no event to wait on; a bare yield is the loop going round, not a timed pause.)"""
    async with asyncio.timeout(30):
        while not ready():  # noqa: ASYNC110
            await asyncio.sleep(0)


def _queue(engine: AsyncEngine) -> TurnsFirstQueue:
    queue = writer_queue(engine.sync_engine.pool)
    assert queue is not None, "SQLite's writer pool hands its connection over turns first"
    return queue


async def _writes(engine: AsyncEngine, name: str) -> None:
    async with engine.begin() as connection:
        await connection.execute(text("INSERT INTO written (name) VALUES (:name)"), {"name": name})


async def _background_writes(engine: AsyncEngine, name: str) -> None:
    with background():
        await _writes(engine, name)


async def _order(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as connection:
        return list((await connection.execute(text("SELECT name FROM written ORDER BY rowid"))).scalars())


async def _engine(tmp_path: Path) -> AsyncEngine:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'writer.db'}")
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE written (name TEXT NOT NULL)"))
    return engine


async def test_a_turn_waiting_for_the_writer_goes_before_background_work_that_was_waiting_already(
    tmp_path: Path,
) -> None:
    engine = await _engine(tmp_path)
    queue, trip = _queue(engine), OneTrip(engine)
    try:
        async with engine.begin() as holding:  # background work has the writer
            await holding.execute(text("INSERT INTO written (name) VALUES ('first background')"))
            later = [asyncio.create_task(_background_writes(engine, f"background {n}")) for n in (2, 3)]
            await _until(lambda: sum(queue.waiting()) == 2)
            # A turn's write through the app's own one-trip path comes after both.
            turn = asyncio.create_task(
                trip.run(lambda sync: sync.exec_driver_sql("INSERT INTO written (name) VALUES ('turn')"))
            )
            await _until(lambda: sum(queue.waiting()) == 3)
        await asyncio.gather(turn, *later)
        assert await _order(engine) == ["first background", "turn", "background 2", "background 3"]
    finally:
        await trip.close()
        await engine.dispose()


async def test_a_group_commit_waits_as_a_turn_even_when_background_work_started_it(tmp_path: Path) -> None:
    """Turns' claims and finishes wait for the writer together (storage.one_trip); a brief piece of background work
    may be the one that starts them waiting, and a turn arriving just after must not then wait behind the rest."""
    engine = await _engine(tmp_path)
    queue, trip = _queue(engine), OneTrip(engine)
    try:
        async with engine.begin() as holding:
            await holding.execute(text("INSERT INTO written (name) VALUES ('holder')"))
            other = asyncio.create_task(_background_writes(engine, "background"))
            await _until(lambda: sum(queue.waiting()) == 1)
            with background():
                brief = asyncio.create_task(trip.steps(lambda: _piece("brief background")))
            await _until(lambda: sum(queue.waiting()) == 2)
            turn = asyncio.create_task(trip.steps(lambda: _piece("turn")))  # waits for the next group commit
            await asyncio.sleep(0)
        await asyncio.gather(other, brief, turn)
        assert await _order(engine) == ["holder", "brief background", "turn", "background"]
    finally:
        await trip.close()
        await engine.dispose()


async def test_background_work_gives_way_only_while_it_is_younger_than_its_patience(tmp_path: Path) -> None:
    """Under steady turns background work still goes on: once it has waited its patience, it goes in its place."""
    engine = await _engine(tmp_path)
    queue = _queue(engine)
    moment = [0.0]
    queue.clock = lambda: moment[0]  # type: ignore[method-assign]
    try:
        async with engine.begin() as holding:
            await holding.execute(text("INSERT INTO written (name) VALUES ('holder')"))
            old = asyncio.create_task(_background_writes(engine, "waited its patience"))
            await _until(lambda: sum(queue.waiting()) == 1)
            moment[0] += queue.patience * 0.8
            young = asyncio.create_task(_background_writes(engine, "still young"))
            await _until(lambda: sum(queue.waiting()) == 2)
            turn = asyncio.create_task(_writes(engine, "turn"))
            await _until(lambda: sum(queue.waiting()) == 3)
            moment[0] += queue.patience * 0.4  # the first has now waited 1.2 patiences, the second 0.4
        await asyncio.gather(old, young, turn)
        assert await _order(engine) == ["holder", "waited its patience", "turn", "still young"]
    finally:
        await engine.dispose()


async def test_a_waiter_that_gives_up_passes_the_writer_on_and_is_never_handed_it(tmp_path: Path) -> None:
    """A turn whose request was cancelled while it waited leaves the writer to the next, not to nobody."""
    engine = await _engine(tmp_path)
    queue = _queue(engine)
    try:
        async with engine.begin() as holding:
            await holding.execute(text("INSERT INTO written (name) VALUES ('holder')"))
            cancelled = asyncio.create_task(_writes(engine, "cancelled"))
            after = asyncio.create_task(_background_writes(engine, "background"))
            await _until(lambda: sum(queue.waiting()) == 2)
            cancelled.cancel()
            await asyncio.gather(cancelled, return_exceptions=True)
            assert sum(queue.waiting()) == 1
        await after
        assert await _order(engine) == ["holder", "background"]
        await _writes(engine, "afterwards")  # and the writer is back in the pool, idle
        assert queue.qsize() == 1
    finally:
        await engine.dispose()


async def test_a_persons_turn_takes_the_writer_before_the_work_runners_items_waiting_for_it(
    tmp_path: Path, clock: SettableClock
) -> None:
    """The app as deployed on SQLite: Leah's message arrives while the work runner's items wait for the writer; the
    turn's claim is written first, so each item, when it writes, already sees it."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'esafety.db'}"
    async with start_harness(database_url=url, clock=clock, var_dir=tmp_path / "var") as harness:
        leah = harness.user("Leah Brooks")
        await leah.says("hello")
        await harness.run_due_work()
        engine, runner = harness.parts.engine, harness.parts.runner
        queue = _queue(engine)
        holding, release = asyncio.Event(), asyncio.Event()
        claims_seen: list[int] = []

        async def claims(connection) -> int:  # noqa: ANN001
            return int((await connection.execute(text("SELECT count(*) FROM inbound_claims"))).scalar_one())

        async def hold(item: WorkItem) -> str:
            async with engine.begin() as connection:
                await claims(connection)
                holding.set()
                await release.wait()
            return "held"

        async def write(item: WorkItem) -> str:
            await holding.wait()
            async with engine.begin() as connection:
                claims_seen.append(await claims(connection))
            return "wrote"

        runner.register("test.hold", hold)
        runner.register("test.write", write)
        async with engine.connect() as connection:
            before = await claims(connection)
        async with harness.parts.uow() as uow:
            await uow.work.schedule(harness.school.id, "test.hold", clock.now(), {})
            for n in range(2):
                await uow.work.schedule(harness.school.id, "test.write", clock.now(), {"n": n})
        running = asyncio.create_task(harness.run_due_work())
        await holding.wait()
        await _until(lambda: sum(queue.waiting()) == 2)
        turn = asyncio.create_task(leah.says("help"))
        await _until(lambda: sum(queue.waiting()) == 3)
        release.set()
        reply = await turn
        await running
        assert reply.status == 200 and reply.own, "Leah is answered"
        assert claims_seen == [before + 1, before + 1], "each item wrote after Leah's turn had claimed its message"
