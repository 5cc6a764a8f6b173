"""The audit trail is checked for real: tamper with the app's own database in SQL, then run `python app.py
verify-audit` as an operator would; the start-up check shows on /readyz; the daily check alerts the school."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy import text

from adapters.clock import SettableClock
from bot.audit import (
    GENESIS_HASH,
    AuditEntry,
    AuditKeys,
    entry_hash,
    entry_mac,
    key_id_of,
    parse_checkpoint,
    verify,
)
from storage.audit_trail import CHECKPOINT_FILE
from tests.support.harness import DEMO_CONFIG, ROOT, TEST_DATA_KEY, Harness, start_harness

AUDIT_KEY = "audit-key-for-tests-0123456789abcdefghijklmnop"
WRONG_KEY = b"an-attackers-guess-at-the-audit-key-0123456789"
ALERTED = ("Sam Patel", "Grace Okafor", "Ruth Evans")  # online-safety lead, Headteacher, Chair of Governors


@pytest.fixture
async def trail(database_url: str, clock: SettableClock, tmp_path: Path) -> AsyncIterator[Harness]:
    """The app with six audit entries for Oakfield and a checkpoint taken after them (as start-up would)."""
    async with start_harness(
        database_url=database_url,
        clock=clock,
        var_dir=tmp_path / "var",
        features=[],
        worker_enabled=False,
        audit_key=AUDIT_KEY,
    ) as running:
        for n in range(6):
            await _append(running, n)
        await running.parts.features.audit_watch.check_all(checkpoint=True)
        yield running


async def _append(harness: Harness, n: int) -> None:
    async with harness.parts.uow() as uow:
        await uow.audit.record(
            harness.school.id,
            f"person-{n}",
            "viewed",
            "incident",
            f"ES-2026-{n:04d}",
            {"n": n, "fields": ["narrative"]},
        )


async def _entries(harness: Harness) -> list[AuditEntry]:
    async with harness.parts.uow() as uow:
        return await uow.audit.entries(harness.school.id)


async def _sql(harness: Harness, sql: str, **params: object) -> None:
    async with harness.parts.engine.begin() as connection:
        await connection.execute(text(sql), params)


async def verify_audit(harness: Harness) -> tuple[int, str]:
    """The real command, in its own process, with the environment the app runs with."""
    settings = harness.settings
    env = {
        **os.environ,
        "ESAFETY_DEV": "1",
        "DATABASE_URL": settings.database_url,
        "ESAFETY_DATA_KEY": TEST_DATA_KEY,
        "ESAFETY_AUDIT_KEY": AUDIT_KEY,
        "ESAFETY_VAR_DIR": str(settings.var_dir),
        "ESAFETY_CONFIG": str(DEMO_CONFIG),
        "ESAFETY_LOG_LEVEL": "WARNING",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "app.py",
        "verify-audit",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    return process.returncode, out.decode() + err.decode()


async def _rewrite(
    harness: Harness, seal: Callable[[AuditEntry, str, dict], tuple[str | None, str]], *, edit_seq: int = 3
) -> None:
    """Edit one entry's detail and re-seal the whole chain from the start with `seal`, head row included."""
    prev = GENESIS_HASH
    for entry in await _entries(harness):
        detail = {"n": 0, "fields": []} if entry.seq == edit_seq else entry.detail
        key_id, digest = seal(entry, prev, detail)
        await _sql(
            harness,
            "UPDATE audit_events SET detail = :detail, prev_hash = :prev, hash = :hash, "
            "key_id = :key_id WHERE school_id = :school AND seq = :seq",
            detail=json.dumps(detail),
            prev=prev,
            hash=digest,
            key_id=key_id,
            school=entry.school_id,
            seq=entry.seq,
        )
        prev = digest
    await _sql(
        harness, "UPDATE audit_heads SET hash = :hash WHERE school_id = :school", hash=prev, school=harness.school.id
    )


def _plain(keep_key_id: bool) -> Callable[[AuditEntry, str, dict], tuple[str | None, str]]:
    def seal(e: AuditEntry, prev: str, detail: dict) -> tuple[str | None, str]:
        return (
            e.key_id if keep_key_id else None,
            entry_hash(prev, e.school_id, e.seq, e.at, e.actor_id, e.action, e.record_type, e.record_id, detail),
        )

    return seal


def _wrong_key(claim_real_id: bool) -> Callable[[AuditEntry, str, dict], tuple[str | None, str]]:
    def seal(e: AuditEntry, prev: str, detail: dict) -> tuple[str | None, str]:
        key_id = e.key_id if claim_real_id else key_id_of(WRONG_KEY)
        return key_id, entry_mac(
            WRONG_KEY, key_id, prev, e.school_id, e.seq, e.at, e.actor_id, e.action, e.record_type, e.record_id, detail
        )

    return seal


async def edit_a_row(harness: Harness) -> None:
    await _sql(
        harness,
        "UPDATE audit_events SET actor_id = 'someone-else' WHERE school_id = :school AND seq = 3",
        school=harness.school.id,
    )


async def recompute_with_plain_sha256(harness: Harness) -> None:
    await _rewrite(harness, _plain(keep_key_id=True))


async def downgrade_whole_chain_to_plain_sha256(harness: Harness) -> None:
    await _rewrite(harness, _plain(keep_key_id=False))  # a valid pre-HMAC chain: only the checkpoint knows better


async def recompute_with_a_wrong_key(harness: Harness) -> None:
    await _rewrite(harness, _wrong_key(claim_real_id=True))


async def recompute_with_a_wrong_key_and_its_own_id(harness: Harness) -> None:
    await _rewrite(harness, _wrong_key(claim_real_id=False))


async def delete_the_newest_rows(harness: Harness) -> None:
    entries = await _entries(harness)
    await _sql(harness, "DELETE FROM audit_events WHERE school_id = :school AND seq > 4", school=harness.school.id)
    # A careful intruder also winds the head row back, so the database is consistent with itself.
    await _sql(
        harness,
        "UPDATE audit_heads SET seq = 4, hash = :hash WHERE school_id = :school",
        hash=entries[3].hash,
        school=harness.school.id,
    )


async def delete_a_middle_row_and_relink(harness: Harness) -> None:
    entries = await _entries(harness)
    await _sql(harness, "DELETE FROM audit_events WHERE school_id = :school AND seq = 3", school=harness.school.id)
    await _sql(
        harness,
        "UPDATE audit_events SET prev_hash = :prev WHERE school_id = :school AND seq = 4",
        prev=entries[1].hash,
        school=harness.school.id,
    )


async def delete_a_middle_row_renumber_and_rehash(harness: Harness) -> None:
    entries = await _entries(harness)
    school = harness.school.id
    await _sql(harness, "DELETE FROM audit_events WHERE school_id = :school AND seq = 3", school=school)
    prev = entries[1].hash
    for e in entries[3:]:
        seq = e.seq - 1
        digest = entry_hash(prev, school, seq, e.at, e.actor_id, e.action, e.record_type, e.record_id, e.detail)
        await _sql(
            harness,
            "UPDATE audit_events SET seq = :seq, prev_hash = :prev, hash = :hash "
            "WHERE school_id = :school AND seq = :old",
            seq=seq,
            prev=prev,
            hash=digest,
            school=school,
            old=e.seq,
        )
        prev = digest
    await _sql(
        harness, "UPDATE audit_heads SET seq = 5, hash = :hash WHERE school_id = :school", hash=prev, school=school
    )


TAMPERING: dict[str, tuple[Callable[[Harness], Awaitable[None]], int, str]] = {
    "edited row": (edit_a_row, 3, "changed"),
    "edited, hashes recomputed with plain SHA-256": (recompute_with_plain_sha256, 1, "changed"),
    "whole chain rewritten as plain SHA-256": (downgrade_whole_chain_to_plain_sha256, 6, "checkpoint"),
    "edited, HMAC recomputed under a wrong key": (recompute_with_a_wrong_key, 1, "changed"),
    "edited, HMAC under a wrong key and its id": (recompute_with_a_wrong_key_and_its_own_id, 1, "does not hold"),
    "newest rows deleted": (delete_the_newest_rows, 5, "gone"),
    "middle row deleted and re-linked": (delete_a_middle_row_and_relink, 3, "missing"),
    "middle row deleted, renumbered and re-hashed": (delete_a_middle_row_renumber_and_rehash, 3, "changed"),
}


async def test_an_intact_chain_verifies(trail: Harness) -> None:
    code, output = await verify_audit(trail)
    assert code == 0, output
    assert "intact: school oakfield, 6 entries" in output


@pytest.mark.parametrize("kind", list(TAMPERING))
async def test_each_kind_of_tampering_is_caught_and_named(trail: Harness, kind: str) -> None:
    tamper, seq, why = TAMPERING[kind]
    await tamper(trail)
    code, output = await verify_audit(trail)
    assert code == 1, output
    assert f"broken: school oakfield at seq {seq}" in output, output
    assert why in output, output


async def test_a_broken_chain_shows_on_readyz_after_restart_and_the_app_still_serves(trail: Harness) -> None:
    ready = await (await trail.http.get(f"{trail.url}/readyz")).json()
    assert ready["audit"] == "intact"
    await delete_a_middle_row_and_relink(trail)
    await trail.restart()
    response = await trail.http.get(f"{trail.url}/readyz")
    body = await response.json()
    # Still ready: reports and alerts must go on; the break is loud, not an outage.
    assert response.status == 200 and body["status"] == "ready"
    assert body["audit"] == "broken: school oakfield at seq 3"
    assert "undelivered_last_7_days" in body


async def test_a_restart_on_a_broken_chain_does_not_bless_it_with_a_checkpoint(trail: Harness) -> None:
    checkpoints = trail.settings.var_dir / CHECKPOINT_FILE
    before = checkpoints.read_text()
    await delete_the_newest_rows(trail)
    await trail.restart()
    assert checkpoints.read_text() == before
    code, output = await verify_audit(trail)
    assert code == 1 and "at seq 5" in output


async def test_the_daily_check_writes_a_checkpoint_and_alerts_the_school_when_broken(
    database_url: str, clock: SettableClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="esafety.audit")
    async with start_harness(
        database_url=database_url, clock=clock, var_dir=tmp_path / "var", audit_key=AUDIT_KEY
    ) as harness:
        for name in (*ALERTED, "Priya Shah"):
            await harness.user(name).installs()
        for n in range(4):
            await _append(harness, n)
        checkpoints = harness.settings.var_dir / CHECKPOINT_FILE

        def alerts(name: str) -> list[str]:
            return [s.text for s in harness.connector.to(harness.user(name).conversation_id) if "audit trail" in s.text]

        clock.advance(days=1)  # past 06:00 on Tuesday: the first daily check is due
        await harness.run_due_work()
        assert not any(alerts(name) for name in (*ALERTED, "Priya Shah"))
        # Other daily work (the retention sweep) may write entries after the check: the checkpoint names the head
        # as the check saw it, which is one of the entries.
        written = checkpoints.read_text().splitlines()[-1]
        seq = int(written.split("seq=")[1].split()[0])
        head = next(e for e in await _entries(harness) if e.seq == seq)
        assert seq >= 4
        line = f"audit checkpoint school=oakfield seq={head.seq} head={head.hash}"
        assert checkpoints.read_text().splitlines()[-1].startswith(line)
        assert any(r.levelno == logging.INFO and r.getMessage().startswith(line) for r in caplog.records)

        await edit_a_row(harness)
        clock.advance(days=1)
        await harness.run_due_work()
        await harness.connector.wait_for(lambda _sent: all(alerts(name) for name in ALERTED))
        for name in ALERTED:
            [message] = alerts(name)
            assert "failed today's integrity check at entry 3" in message
            assert "python app.py verify-audit" in message
        assert alerts("Priya Shah") == []  # the DSL is not on the list: the alert is about the system, not a case
        assert any(
            r.levelno == logging.ERROR and "broken: school oakfield at seq 3" in r.getMessage() for r in caplog.records
        )


def test_entries_from_before_hmac_are_sealed_in_by_the_first_hmac_entry() -> None:
    """Rows written with plain SHA-256 before the upgrade stay valid, but cannot be rewritten afterwards."""
    keys = AuditKeys(AUDIT_KEY.encode())
    at = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)

    def chain(first_detail: dict) -> list[AuditEntry]:
        entries, prev = [], GENESIS_HASH
        for seq in (1, 2, 3):
            detail = first_detail if seq == 1 else {"n": seq}
            if seq < 3:
                key_id, digest = None, entry_hash(prev, "oakfield", seq, at, "p", "viewed", "incident", None, detail)
            else:
                key_id, digest = keys.seal(prev, "oakfield", seq, at, "p", "viewed", "incident", None, detail)
            entries.append(
                AuditEntry("oakfield", seq, at, "p", "viewed", "incident", None, detail, prev, digest, key_id)
            )
            prev = digest
        return entries

    original = chain({"n": 1})
    assert verify("oakfield", original, keys) is None
    rewritten = chain({"n": 99})  # the legacy prefix recomputed: its head no longer matches what entry 3 sealed
    forged = [*rewritten[:2], original[2]]
    assert verify("oakfield", forged, keys).seq == 3
    rotated = AuditKeys(b"the-next-audit-key-after-rotation-0123456789", old=(AUDIT_KEY.encode(),))
    assert verify("oakfield", original, rotated) is None  # old entries still verify after a rotation
    assert verify("oakfield", original, AuditKeys(b"a-new-key-without-the-old-one-kept-012345")).seq == 3


async def test_refuses_to_start_without_an_audit_key_outside_dev_mode(tmp_path: Path) -> None:
    from tests.test_startup import _env, _one_line, _run

    code, _, stderr = await _run(
        _env(
            tmp_path,
            MicrosoftAppId="6f1c2d3e-4a5b-4c6d-8e7f-901234567890",
            MicrosoftAppPassword="x",
            MicrosoftAppTenantId="t",
            ESAFETY_DATA_KEY=TEST_DATA_KEY,
        ),
        "verify-audit",
    )
    assert code == 2
    assert "ESAFETY_AUDIT_KEY" in _one_line(stderr)


async def test_the_digest_and_governors_report_carry_a_checkpoint_of_the_chain(harness: Harness) -> None:
    reply = await harness.user("Priya Shah").says("digest now")
    [card] = [c for c in reply.cards if c["body"][0].get("text") == "Weekly online-safety digest"]
    footer = parse_checkpoint(card["body"][-1]["text"])
    markdown = parse_checkpoint((await harness.user("Ruth Evans").says("governors report markdown")).everything)
    entries = await _entries(harness)
    for checkpoint in (footer, markdown):  # each names the entry that recorded the report being read
        assert checkpoint is not None and checkpoint.school_id == "oakfield"
        entry = entries[checkpoint.seq - 1]
        assert (entry.seq, entry.hash, entry.record_type) == (checkpoint.seq, checkpoint.head, "aggregate_report")
    assert markdown.seq > footer.seq
