"""Benchmark: build the weekly digest over 100,000 synthetic incidents, on SQLite and on PostgreSQL.

Printed next to one plain GROUP BY count over the same table, so the digest's cost reads as "so many plain
queries". `make bench` (tests/bench.py) runs `bench()` on both databases and prints it with the other figures and
the issue's target; `python -m tests.bench_digest` runs it alone.

The two are timed in alternation, not one block after the other: on a shared machine the speed of the same query
moves by half within seconds, and a ratio of two separate blocks measured that drift instead of the digest. Before
timing, PostgreSQL's table is vacuumed and analysed (autovacuum would have done both on any real database, and
otherwise may do it halfway through; the load's own commit is made durable first, or VACUUM could not mark its rows
visible to all), and dirty pages left by the set-up or earlier phases are written out, because the digest's audit
entry is a durable commit and the plain query has none. SQLite is left without statistics, as the app leaves it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import insert, text

from adapters.clock import SettableClock
from adapters.directory_static import StaticDirectory
from bot.audit import AuditKeys
from bot.cards import digest as digest_cards
from bot.config import load_config
from bot.digest import DigestService
from bot.policy import load_policy
from bot.reviews import ReviewService
from storage.crypto import FieldCipher, parse_key
from storage.db import create_engine, session_factory
from storage.digest import plain_group_by
from storage.incidents import IncidentRow
from storage.migrate import upgrade
from storage.uow import unit_of_work_factory
from tests.support.harness import DEMO_CONFIG, ROOT, TEST_DATA_KEY

ROWS = 100_000
RUNS = 9
NOW = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC)
STATUSES = ("new", "acknowledged", "in_progress", "escalated", "closed", "closed", "closed", "closed")
SEVERITIES = ("low", "low", "medium", "medium", "high", "critical")


def synthetic(school_id: str, categories: list[tuple[str, str]], count: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        category, group = rng.choice(categories)
        status = rng.choice(STATUSES)
        rows.append(
            dict(
                school_id=school_id,
                reference=f"ES-B-{i:06d}",
                reporter_id="bench",
                reporter_name="Bench",
                reported_at=NOW - dt.timedelta(minutes=rng.randrange(0, 60 * 24 * 7 * 52)),
                subject_kind="pupil",
                category=category,
                category_group=group,
                illegal=False,
                urgent=False,
                immediate_danger=False,
                severity=rng.choice(SEVERITIES),
                status=status,
                outcome="resolved_in_school" if status == "closed" else None,
                recorded_actions=[],
                case_roles=[],
                viewer_ids=[],
                excluded_ids=[],
                sla_breached=rng.random() < 0.05,
                version=1,
                complete=True,
            )
        )
    return rows


async def _interleaved(first, second) -> tuple[float, float]:  # noqa: ANN001 - async callables
    """Median milliseconds of each over RUNS rounds, after one warm-up each; every round runs both, in turn first."""
    await first()
    await second()
    times: tuple[list[float], list[float]] = ([], [])
    for round_ in range(RUNS):
        for which in (0, 1) if round_ % 2 == 0 else (1, 0):
            started = time.perf_counter()
            await (first, second)[which]()
            times[which].append((time.perf_counter() - started) * 1000)
    return statistics.median(times[0]), statistics.median(times[1])


async def bench(url: str, label: str) -> tuple[str, float, float, int]:
    config = load_config(DEMO_CONFIG)
    school = config.schools[0]
    policy = load_policy(ROOT / "config" / "policy_defaults.yaml")
    clock = SettableClock(NOW)
    engine = create_engine(url)
    try:
        await upgrade(engine)
        sessions = session_factory(engine)
        categories = [(c.key, c.group) for c in policy.categories]
        rows = synthetic(school.id, categories, ROWS)
        async with engine.begin() as connection:
            if engine.dialect.name == "postgresql":
                # The throwaway server commits asynchronously, and until this commit's WAL is flushed VACUUM may not
                # mark the rows visible to all (it cannot set their hint bits), which a real database's autovacuum
                # would have done long ago. Durable, like any commit on a real server.
                await connection.execute(text("SET LOCAL synchronous_commit = on"))
            for start in range(0, len(rows), 5000):
                await connection.execute(insert(IncidentRow), rows[start : start + 5000])
        del rows
        if engine.dialect.name == "postgresql":
            async with engine.connect() as connection:
                await connection.execution_options(isolation_level="AUTOCOMMIT")
                await connection.execute(text("VACUUM ANALYZE incidents"))
        uow = unit_of_work_factory(
            sessions, FieldCipher(parse_key(TEST_DATA_KEY)), clock, audit_keys=AuditKeys(secrets.token_bytes(32))
        )
        directory = StaticDirectory(config)
        reviews = ReviewService(uow, directory, clock, policy, config.school, None)
        digest = DigestService(uow, directory, clock, policy, config.school, reviews, digest_cards)

        async def plain() -> None:
            async with sessions() as session:
                await plain_group_by(session, school.id)

        async def build() -> None:
            digest_cards.build_digest_card(await digest.weekly(school))

        figures = await digest.weekly(school)
        await asyncio.to_thread(os.sync)  # the set-up's writes, and earlier phases', are not the digest's
        plain_ms, digest_ms = await _interleaved(plain, build)
        return label, plain_ms, digest_ms, sum(n for _, n in figures.trend or [])
    finally:
        await engine.dispose()


async def main() -> int:
    from tests.support import pgserver

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        results.append(await bench(f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}", "SQLite"))
    try:
        server = pgserver.start(durable=True)  # as make bench runs it
    except RuntimeError as exc:
        print(f"PostgreSQL skipped: {exc}", file=sys.stderr)
    else:
        try:
            server.psql('CREATE DATABASE "bench_digest"')
            results.append(await bench(server.url("bench_digest"), "PostgreSQL"))
        finally:
            server.stop()
    print(f"Weekly digest over {ROWS:,} synthetic incidents (median of {RUNS} runs)")
    print(f"{'database':<12}{'plain GROUP BY':>16}{'whole digest':>16}{'ratio':>8}   incidents in 12-week trend")
    for label, plain_ms, digest_ms, trend in results:
        print(f"{label:<12}{plain_ms:>13.1f} ms{digest_ms:>13.1f} ms{digest_ms / plain_ms:>7.1f}x   {trend:,}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
