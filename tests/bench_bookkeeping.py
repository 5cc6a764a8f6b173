"""Benchmark: a turn's claim and finish on a PostgreSQL that flushes its log to disk, as a school's server does.

The app commits them without waiting for that flush (storage.db.create_bookkeeping_engine); every unit of work
waits for it. Both are timed here on the same kept connection, with the same statements, alternating in blocks, so
the figure is what the flush costs a turn on this machine's disk and nothing else. `make bench` (tests/bench.py)
runs `bench()` on its own server, which it starts durable.
"""

from __future__ import annotations

import datetime as dt
import statistics
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy import text

from adapters.clock import SettableClock
from storage.bot_storage import STATE_COLUMNS, state_params
from storage.crypto import FieldCipher, parse_key
from storage.db import BOOKKEEPING, BOOKKEEPING_COMMIT, create_engine
from storage.inbound import claim_steps, finish_write
from storage.migrate import upgrade
from storage.one_trip import OneTrip
from storage.prepared import Prepared, Work, Write
from tests.support.harness import TEST_DATA_KEY

TURNS = 2_000
REPEATS = 3
NOW = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC)
_LEVELS = {level: Prepared(text(f"SET synchronous_commit TO {level}")) for level in (BOOKKEEPING_COMMIT, "on")}
_BRIEF: dict[str, Any] = {"synchronous": BOOKKEEPING, "atomic": False, "brief": True}


@dataclass(frozen=True)
class Bookkeeping:
    turns: int
    app_ms: float  # wall ms a turn, committed as the app commits it
    app_cpu_ms: float
    flushed_ms: float  # the same, waiting for each commit's flush
    flushed_cpu_ms: float

    @property
    def ratio(self) -> float:
        return self.flushed_ms / self.app_ms


def _level(level: str) -> Work[None]:
    yield _LEVELS[level], {}


async def bench(url: str, turns: int = TURNS, repeats: int = REPEATS) -> Bookkeeping:
    engine = create_engine(url)
    await upgrade(engine)
    trip = OneTrip(engine)
    cipher = FieldCipher(parse_key(TEST_DATA_KEY))
    clock = SettableClock(NOW)
    state = state_params("bench-conversation")
    samples: dict[str, list[tuple[float, float]]] = {BOOKKEEPING_COMMIT: [], "on": []}
    try:
        serial = 0

        async def block(level: str, count: int) -> tuple[float, float]:
            nonlocal serial
            await trip.steps(partial(_level, level), **_BRIEF)  # the kept connection's level for this block
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(count):
                serial += 1
                key = f"{serial:064d}"
                now = clock.now()
                await trip.steps(partial(claim_steps, key, now, STATE_COLUMNS, state), **_BRIEF)
                await trip.steps(partial(_one, finish_write(cipher, key, None, now)), **_BRIEF)
            return (time.perf_counter() - wall) * 1000 / count, (time.process_time() - cpu) * 1000 / count

        await block("on", turns // 10)  # warm: the statements prepared, the table's first pages written
        for repeat in range(repeats):
            order = (BOOKKEEPING_COMMIT, "on") if repeat % 2 == 0 else ("on", BOOKKEEPING_COMMIT)
            for level in order:
                samples[level].append(await block(level, turns))
    finally:
        await trip.close()
        await engine.dispose()

    def median(level: str, index: int) -> float:
        return statistics.median(sample[index] for sample in samples[level])

    return Bookkeeping(
        turns, median(BOOKKEEPING_COMMIT, 0), median(BOOKKEEPING_COMMIT, 1), median("on", 0), median("on", 1)
    )


def _one(write: Write) -> Work[None]:
    yield write


def lines(result: Bookkeeping) -> str:
    return (
        f"A turn's claim and finish on a PostgreSQL that flushes its log (median of {REPEATS} alternating blocks of "
        f"{result.turns:,}):\n"
        f"  as the app commits them   {result.app_ms:.3f} ms a turn ({result.app_cpu_ms:.3f} CPU ms)\n"
        f"  waiting for the flush     {result.flushed_ms:.3f} ms a turn ({result.flushed_cpu_ms:.3f} CPU ms): "
        f"{result.ratio:.2f}x as long"
    )
