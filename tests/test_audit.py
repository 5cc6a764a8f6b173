"""The audit trail: append-only, hash-chained, one unbroken chain per school even under concurrent writers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from adapters.clock import SettableClock
from bot.audit import AuditKeys, entry_hash, verify_chain
from tests.support.harness import Harness, start_harness

OTHER_SCHOOL = "riverside-primary"


@pytest.fixture
async def app(database_url: str, clock: SettableClock, tmp_path: Path) -> AsyncIterator[Harness]:
    async with start_harness(
        database_url=database_url, clock=clock, var_dir=tmp_path / "var", features=[], worker_enabled=False
    ) as running:
        yield running


async def _append(harness: Harness, school_id: str, n: int) -> None:
    async with harness.parts.uow() as uow:
        await uow.audit.record(
            school_id,
            f"person-{n % 5}",
            "viewed",
            "incident",
            f"ES-2026-{n:04d}",
            {"n": n, "why": "triage", "fields": ["narrative"]},
        )


def _keys(harness: Harness) -> AuditKeys:
    return harness.parts.features.audit_watch.keys


async def _entries(harness: Harness, school_id: str):  # noqa: ANN202
    async with harness.parts.uow() as uow:
        return await uow.audit.entries(school_id)


async def test_many_concurrent_appends_make_one_unbroken_chain(app: Harness, clock: SettableClock) -> None:
    school = app.school.id
    await asyncio.gather(
        *(_append(app, school, n) for n in range(40)), *(_append(app, OTHER_SCHOOL, n) for n in range(15))
    )
    clock.advance(minutes=5)
    await asyncio.gather(*(_append(app, school, n) for n in range(40, 60)))

    entries = await _entries(app, school)
    assert [e.seq for e in entries] == list(range(1, 61))
    assert sorted(e.detail["n"] for e in entries) == list(range(60))
    assert verify_chain(entries, _keys(app)) is None
    other = await _entries(app, OTHER_SCHOOL)
    assert [e.seq for e in other] == list(range(1, 16))
    assert verify_chain(other, _keys(app)) is None


async def test_reads_audited_on_their_own_join_the_same_unbroken_chain(app: Harness) -> None:
    """A caseload or a case read is audited outside any unit of work; those entries arriving together share one
    append, and interleave with units of work's entries without forking the chain."""
    school = app.school.id
    reads = app.parts.read_audit
    assert reads is not None

    async def read(n: int):  # noqa: ANN202
        return await reads.record(school, f"person-{n % 3}", "caseload.viewed", "caseload", "open", {"n": n})

    recorded = await asyncio.gather(*(read(n) for n in range(30)), *(_append(app, school, n) for n in range(30, 50)))

    entries = await _entries(app, school)
    assert [e.seq for e in entries] == list(range(1, 51))
    assert sorted(e.detail["n"] for e in entries) == list(range(50))
    assert verify_chain(entries, _keys(app)) is None
    # Each reader was told of its own entry, as committed.
    by_seq = {e.seq: e for e in entries}
    for n, entry in enumerate(recorded[:30]):
        assert entry.detail == {"n": n} and by_seq[entry.seq].hash == entry.hash


async def test_a_reader_who_goes_away_leaves_the_others_entries_written(app: Harness) -> None:
    school = app.school.id
    reads = app.parts.read_audit
    assert reads is not None
    tasks = [
        asyncio.create_task(reads.record(school, "person-1", "case.viewed", "incident", f"ES-2026-{n:04d}"))
        for n in range(5)
    ]
    await asyncio.sleep(0)  # every reader has queued its entry
    tasks[2].cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(done[2], asyncio.CancelledError)
    entries = await _entries(app, school)
    # Nobody else's entry went with the one who left; theirs is written too (an access is never under-recorded).
    assert sorted(e.record_id for e in entries) == [f"ES-2026-{n:04d}" for n in range(5)]
    assert verify_chain(entries, _keys(app)) is None


async def test_a_rolled_back_change_leaves_no_audit_entry(app: Harness) -> None:
    school = app.school.id
    await _append(app, school, 1)
    with pytest.raises(RuntimeError):
        async with app.parts.uow() as uow:
            await uow.audit.record(school, "person-1", "changed", "incident", "ES-2026-0002", {})
            raise RuntimeError("the change itself failed")
    await _append(app, school, 3)
    entries = await _entries(app, school)
    assert [e.record_id for e in entries] == ["ES-2026-0001", "ES-2026-0003"]
    assert verify_chain(entries, _keys(app)) is None


async def _tamper(harness: Harness, sql: str, **params: object) -> None:
    async with harness.parts.engine.begin() as connection:
        await connection.execute(text(sql), params)


async def test_editing_a_rows_detail_is_detected(app: Harness) -> None:
    school = app.school.id
    for n in range(6):
        await _append(app, school, n)
    await _tamper(
        app,
        "UPDATE audit_events SET detail = :detail WHERE school_id = :school AND seq = 4",
        detail='{"n": 3, "why": "nothing to see", "fields": []}',
        school=school,
    )
    assert verify_chain(await _entries(app, school), _keys(app)) == 4


async def test_editing_who_did_it_is_detected(app: Harness) -> None:
    school = app.school.id
    for n in range(3):
        await _append(app, school, n)
    await _tamper(
        app, "UPDATE audit_events SET actor_id = 'someone-else' WHERE school_id = :school AND seq = 2", school=school
    )
    assert verify_chain(await _entries(app, school), _keys(app)) == 2


async def test_deleting_a_row_is_detected(app: Harness) -> None:
    school = app.school.id
    for n in range(5):
        await _append(app, school, n)
    await _tamper(app, "DELETE FROM audit_events WHERE school_id = :school AND seq = 3", school=school)
    assert verify_chain(await _entries(app, school), _keys(app)) == 3  # the missing entry itself


async def test_rewriting_a_row_and_its_own_plain_hash_is_detected_at_that_row(app: Harness) -> None:
    school = app.school.id
    for n in range(4):
        await _append(app, school, n)
    entries = await _entries(app, school)
    forged = entries[1]
    new_detail = {"n": 99}
    new_hash = entry_hash(
        forged.prev_hash,
        forged.school_id,
        forged.seq,
        forged.at,
        forged.actor_id,
        forged.action,
        forged.record_type,
        forged.record_id,
        new_detail,
    )
    await _tamper(
        app,
        "UPDATE audit_events SET detail = :detail, hash = :hash WHERE school_id = :school AND seq = 2",
        detail='{"n": 99}',
        hash=new_hash,
        school=school,
    )
    assert verify_chain(await _entries(app, school), _keys(app)) == 2  # an HMAC cannot be recomputed without the key
