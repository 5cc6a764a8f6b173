"""Field encryption: values are bound to their row, carry a key id, survive a key rotation; no display names kept."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select, text, update

from adapters.clock import SettableClock
from storage.crypto import SealBroken, key_id, new_key_text, parse_key
from storage.incidents import IncidentRow
from storage.models import WorkRow
from storage.rotation import SEALED
from tests.support.harness import DEMO_CONFIG, ROOT, TEST_DATA_KEY, Harness, start_harness
from tests.support.teams import TeamsUser
from tests.test_incidents import _database_text, card_titled, everyone_says_hello, submit_report

KIND_ERROR = "Sorry, something went wrong on my side"


async def _sealed_values(harness: Harness) -> list[tuple[str, str]]:
    """Every non-NULL sealed value in the database, with the column it is in."""
    found = []
    async with harness.parts.engine.connect() as connection:
        for sealed in SEALED:
            table = sealed.model.__tablename__
            rows = await connection.execute(
                text(f'SELECT "{sealed.column}" FROM "{table}" WHERE "{sealed.column}" IS NOT NULL')
            )
            found.extend((f"{table}.{sealed.column}", value) for (value,) in rows)
    return found


async def _rotate_key(harness: Harness, data_key: str, old_keys: str = "") -> str:
    """`python app.py rotate-key` as an operator runs it: a separate process on the same database."""
    env = {
        **os.environ,
        "DATABASE_URL": harness.settings.database_url,
        "ESAFETY_DATA_KEY": data_key,
        "ESAFETY_DATA_KEYS_OLD": old_keys,
        "ESAFETY_DEV": "1",
        "ESAFETY_CONFIG": str(DEMO_CONFIG),
        "ESAFETY_VAR_DIR": str(harness.settings.var_dir),
        "ESAFETY_LOG_LEVEL": "WARNING",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "app.py"),
        "rotate-key",
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode()


async def test_a_ciphertext_moved_to_another_incident_does_not_open_and_the_person_gets_the_kind_error(
    harness: Harness,
) -> None:
    await everyone_says_hello(harness, "Priya Shah", "Leah Brooks", "Ben Carter")
    first = await submit_report(harness.user("Leah Brooks"), what="first-narrative-4411")
    second = await submit_report(harness.user("Ben Carter"), what="second-narrative-7720")
    assert "first-narrative-4411" in json.dumps(
        card_titled(await harness.user("Priya Shah").says(f"case {first}"), first)
    )

    async with harness.parts.engine.begin() as connection:  # someone with database access swaps the two narratives
        rows = dict((await connection.execute(select(IncidentRow.reference, IncidentRow.narrative))).all())
        for mine, theirs in ((first, second), (second, first)):
            await connection.execute(
                update(IncidentRow).where(IncidentRow.reference == mine).values(narrative=rows[theirs])
            )

    reply = await harness.user("Priya Shah").says(f"case {first}")
    assert reply.status < 500
    shown = json.dumps([reply.texts, reply.cards])
    assert KIND_ERROR in shown
    assert "second-narrative-7720" not in shown and "first-narrative-4411" not in shown
    async with harness.parts.uow() as uow:
        with pytest.raises(SealBroken, match="incidents.narrative"):
            await uow.incidents.by_reference(harness.school.id, first)


async def test_rows_sealed_before_a_rotation_read_back_and_rotate_key_moves_them_to_the_new_key(
    database_url: str, clock: SettableClock, tmp_path: Path
) -> None:
    key_b = new_key_text()
    var_dir = tmp_path / "var"
    async with start_harness(database_url=database_url, clock=clock, var_dir=var_dir) as harness:
        await everyone_says_hello(harness, "Priya Shah", "Leah Brooks")
        reference = await submit_report(harness.user("Leah Brooks"), what="sealed-under-key-a-5150")
        await harness.user("Leah Brooks").says("report")  # a half-written report: dialog state in bot_state
        sealed_before = await _sealed_values(harness)
    assert {column for column, _ in sealed_before} >= {
        "incidents.narrative",
        "bot_state.document",
        "work_items.payload",
    }
    assert all(value.startswith(f"v2:{key_id(parse_key(TEST_DATA_KEY))}:") for _, value in sealed_before)

    # Key B is current, A is only for reading: everything written under A still reads back.
    async with start_harness(
        database_url=database_url, clock=clock, var_dir=var_dir, data_key=key_b, data_keys_old=TEST_DATA_KEY
    ) as harness:
        assert "sealed-under-key-a-5150" in json.dumps(
            card_titled(await harness.user("Priya Shah").says(f"case {reference}"), reference)
        )
        output = await _rotate_key(harness, key_b, TEST_DATA_KEY)  # while the app runs
        assert "incidents.narrative: 1 of 1 re-sealed" in output
        sealed_after = await _sealed_values(harness)
        assert sealed_after and all(value.startswith(f"v2:{key_id(parse_key(key_b))}:") for _, value in sealed_after)
        again = await _rotate_key(harness, key_b, TEST_DATA_KEY)  # a re-run finds nothing left to do
        assert "incidents.narrative: 0 of 1 re-sealed" in again

    # Key A removed altogether: still readable, so nothing was left under it.
    async with start_harness(database_url=database_url, clock=clock, var_dir=var_dir, data_key=key_b) as harness:
        assert "sealed-under-key-a-5150" in json.dumps(
            card_titled(await harness.user("Priya Shah").says(f"case {reference}"), reference)
        )
        async with harness.parts.uow() as uow:
            assert await harness.parts.claims.list()  # every queued payload opens
            assert (await uow.incidents.by_reference(harness.school.id, reference)).narrative
        await harness.run_due_work()  # queued work written under key A still opens and runs


def _legacy(plaintext: str, table_column: str) -> str:
    """The format written before key ids: "v1:" and AES-GCM bound to table.column only."""
    nonce = os.urandom(12)
    sealed = AESGCM(parse_key(TEST_DATA_KEY)).encrypt(nonce, plaintext.encode(), table_column.encode())
    return "v1:" + base64.b64encode(nonce + sealed).decode()


async def test_values_in_the_old_format_still_read_and_rotate_key_upgrades_them(harness: Harness) -> None:
    await everyone_says_hello(harness, "Priya Shah", "Leah Brooks")
    reference = await submit_report(harness.user("Leah Brooks"), what="placeholder")
    async with harness.parts.engine.begin() as connection:  # as a database from before this change holds them
        await connection.execute(
            update(IncidentRow)
            .where(IncidentRow.reference == reference)
            .values(narrative=_legacy("written-in-the-old-format-3344", "incidents.narrative"))
        )
        work_id = (await connection.execute(select(WorkRow.id).order_by(WorkRow.id).limit(1))).scalar_one()
        await connection.execute(
            update(WorkRow)
            .where(WorkRow.id == work_id)
            .values(row_key=None, payload=_legacy(json.dumps({"old": "work-payload"}), "work_items.payload"))
        )

    assert "written-in-the-old-format-3344" in json.dumps(
        card_titled(await harness.user("Priya Shah").says(f"case {reference}"), reference)
    )
    await _rotate_key(harness, TEST_DATA_KEY)

    current = f"v2:{key_id(parse_key(TEST_DATA_KEY))}:"
    assert all(value.startswith(current) for _, value in await _sealed_values(harness))
    async with harness.parts.engine.connect() as connection:
        assert (await connection.execute(select(WorkRow.row_key).where(WorkRow.id == work_id))).scalar_one()
    assert "written-in-the-old-format-3344" in json.dumps(
        card_titled(await harness.user("Priya Shah").says(f"case {reference}"), reference)
    )
    assert {"old": "work-payload"} in [s.payload for s in await harness.parts.claims.list()]


async def test_teams_display_names_are_not_kept_in_clear(harness: Harness) -> None:
    # Teams sends the display name on every activity; the bot keeps where to reach the person, not what they are called.
    display = "Leah Teams-Display-Name-8126"
    leah = TeamsUser(
        harness.http,
        harness.url,
        harness.connector,
        aad_id=harness.person_id("Leah Brooks"),
        name=display,
        tenant_id=harness.school.tenant_id,
        token=harness.token,
    )
    assert (await leah.says("hello")).status < 500
    await harness.channel("dsl").bot_added(harness.user("Priya Shah"))
    saved = await harness.parts.refs.get(harness.school.id, "person", leah.aad_id)
    assert saved is not None and saved.name is None
    assert all("name" not in (saved.reference.get(a) or {}) for a in ("user", "bot", "conversation"))
    assert display not in await _database_text(harness)


async def test_rotate_key_removes_names_from_references_saved_before(harness: Harness) -> None:
    await harness.parts.refs.save(harness.school.id, "person", "someone", {})  # a row to overwrite in place
    async with harness.parts.engine.begin() as connection:
        await connection.execute(
            text("UPDATE conversation_refs SET name = :n, reference = :r WHERE key = 'someone'"),
            {
                "n": "Old Stored Name-6614",
                "r": json.dumps({"user": {"id": "29:x", "name": "Old Stored Name-6614"}, "serviceUrl": "u"}),
            },
        )
    await _rotate_key(harness, TEST_DATA_KEY)
    saved = await harness.parts.refs.get(harness.school.id, "person", "someone")
    assert saved.name is None and saved.reference == {"user": {"id": "29:x"}, "serviceUrl": "u"}
