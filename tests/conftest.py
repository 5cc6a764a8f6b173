"""Fixtures: a throwaway PostgreSQL server, both databases, a settable clock, the real app on loopback."""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from adapters.clock import SettableClock
from tests.support import pgserver
from tests.support.harness import Harness, start_harness

ROOT = Path(__file__).resolve().parent.parent
# Monday 23 November 2026, 10:00 in London (GMT, so also 10:00 UTC): a school day in the autumn term.
START = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="session")
def pg() -> Iterator[pgserver.PgServer]:
    server = pgserver.start()
    try:
        yield server
    finally:
        server.stop()


def _database_name(request: pytest.FixtureRequest) -> str:
    name = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:40]
    return f"t_{name}_{os.getpid()}_{id(request) % 100000}"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Every test that takes this runs twice: on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'esafety.db'}"
        return
    yield from _fresh_postgres(request)


def _fresh_postgres(request: pytest.FixtureRequest) -> Iterator[str]:
    server: pgserver.PgServer = request.getfixturevalue("pg")
    name = _database_name(request)
    server.psql(f'CREATE DATABASE "{name}"')
    try:
        yield server.url(name)
    finally:
        server.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database on the throwaway PostgreSQL server, for tests about PostgreSQL's own behaviour."""
    yield from _fresh_postgres(request)


@pytest.fixture
async def pg_harness(postgres_url: str, clock: SettableClock, tmp_path: Path) -> AsyncIterator[Harness]:
    async with start_harness(database_url=postgres_url, clock=clock, var_dir=tmp_path / "var") as running:
        yield running


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock(START)


@pytest.fixture
async def harness(database_url: str, clock: SettableClock, tmp_path: Path) -> AsyncIterator[Harness]:
    async with start_harness(database_url=database_url, clock=clock, var_dir=tmp_path / "var") as running:
        yield running
