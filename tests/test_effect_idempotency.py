"""Every effect happens once: double clicks, concurrent turns and a crash before the dialog state is saved.

Teams sends a double click as two activities with different ids, and a process can die after it committed a case
but before it saved where the conversation was; the person then presses Submit again. Each effect carries a key
fixed in the conversation state before it is committed, so the repeat finds the first effect instead of making
a second one.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import text

from app import data_cipher
from bot.config import load_config
from storage.bot_storage import document_context
from storage.db import create_engine
from tests.support.connector import RecordingConnector, Sent
from tests.support.harness import DEMO_CONFIG, ROOT, TEST_DATA_KEY, Harness
from tests.support.teams import Reply, TeamsUser
from tests.test_incidents import (
    DSL_CHANNEL,
    answer,
    confirmation,
    everyone_says_hello,
    up_to_the_danger_question,
)

SCHOOL = load_config(DEMO_CONFIG).schools[0]
DANGER = "Yes, someone is in danger now"
START = dt.datetime(2026, 11, 23, 10, tzinfo=dt.UTC)
APPROVERS = ("Sam Patel", "Grace Okafor")
KEY_FIELDS = {"submit_key", "alert_key", "request_key"}


def report_reference(sent: Sent) -> str | None:
    """The reference on a reporter's confirmation card, if this call carries one."""
    for card in sent.cards:
        title = card["body"][0].get("text", "")
        if title.startswith("Thank you. Your report is ES-"):
            return title.rsplit(" ", 1)[-1]
    return None


def replies_to_turns(sent: list[Sent], read: Any) -> dict[str, str]:
    """What each inbound activity was answered with: replyToId -> read(sent), for the replies `read` recognises.

    Only replies: a proactive message that names the same reference (the word that a request has reached the
    approvers, which the worker sends on its own) may land while the turns run, and answers no turn."""
    return {s.activity["replyToId"]: read(s) for s in sent if s.activity.get("replyToId") and read(s)}


async def together(*turns: Awaitable[Reply], hang: Any) -> list[Reply]:
    """Post the turns at once; hold each one's answer until all have reached it, so they truly overlap."""
    tasks = [asyncio.ensure_future(turn) for turn in turns]
    try:
        await hang.arrived(len(tasks))
    finally:
        hang.release()
        replies = await asyncio.gather(*tasks, return_exceptions=True)
    for reply in replies:
        if isinstance(reply, BaseException):
            raise reply
    return replies


def mentions(harness: Harness, words: str) -> dict[str, int]:
    """How many messages each conversation received that mention `words`, from proactive sends and replies."""
    counts: dict[str, int] = {}
    for s in harness.connector.sent:
        if s.op in ("send", "reply") and words in json.dumps(s.activity):
            counts[s.conversation_id] = counts.get(s.conversation_id, 0) + 1
    return counts


async def count_rows(harness: Harness, sql: str) -> int:
    async with harness.parts.engine.connect() as connection:
        return (await connection.execute(text(sql))).scalar_one()


# --- double clicks: two activities, processed at the same time -------------------------------------------------


async def test_a_double_submitted_report_makes_one_case_and_one_round_of_notifications(harness: Harness) -> None:
    await harness.channel("dsl").bot_added(by=harness.user("Sam Patel"))
    users = await everyone_says_hello(harness, "Sam Patel", "Priya Shah", "Tom Reed", "Grace Okafor")
    leah = harness.user("Leah Brooks")
    await answer(leah)
    hang = harness.connector.hang_when(lambda s: report_reference(s) is not None)

    await together(leah.says("submit"), leah.says("submit"), hang=hang)

    answered = replies_to_turns(harness.connector.to(leah.conversation_id), report_reference)
    assert len(answered) == 2, "each click is answered"
    assert set(answered.values()) == {"ES-2026-0001"}, answered
    assert await count_rows(harness, "SELECT count(*) FROM incidents") == 1
    assert await count_rows(harness, "SELECT count(*) FROM work_items WHERE kind = 'incident.sla'") == 1
    await harness.run_due_work()
    told = mentions(harness, "ES-2026-0001")
    told.pop(leah.conversation_id)
    assert told.get(DSL_CHANNEL) == 1, told
    assert told and set(told.values()) == {1}, f"someone was told twice: {told}"
    assert set(told) <= {DSL_CHANNEL, *(u.conversation_id for u in users.values())}
    assert not mentions(harness, "ES-2026-0002")


async def test_a_double_answered_danger_question_raises_one_alert_and_the_case_is_completed_once(
    harness: Harness,
) -> None:
    urgent = ("Priya Shah", "Tom Reed", "Chris Doyle", "Grace Okafor")
    users = await everyone_says_hello(harness, *urgent)
    leah = harness.user("Leah Brooks")
    await up_to_the_danger_question(leah)
    alerted = harness.connector.hang_when(lambda s: "Urgent alert raised:" in s.text)

    await together(leah.says(DANGER), leah.says(DANGER), hang=alerted)

    assert [s.text.split(".")[0] for s in alerted.held] == ["Urgent alert raised: ES-2026-0001"] * 2
    await harness.run_due_work()
    for name in urgent:
        alerts = [
            s for s in harness.connector.to(users[name].conversation_id) if "Urgent online-safety concern" in s.text
        ]
        assert len(alerts) == 1, (name, [s.text for s in alerts])

    # The rest of the report, then Submit pressed twice: the same case, its details added (and told) once.
    for answer_text in (
        "Online",
        "Just now",
        "AB, Year 5",
        "A stranger asked to meet",
        "On the class iPad",
        "Told the class teacher",
    ):
        await leah.says(answer_text)
    confirmed = harness.connector.hang_when(lambda s: report_reference(s) is not None)
    await together(leah.says("submit"), leah.says("submit"), hang=confirmed)
    assert {report_reference(s) for s in confirmed.held} == {"ES-2026-0001"}
    assert await count_rows(harness, "SELECT count(*) FROM incidents") == 1
    await harness.run_due_work()
    for name in urgent:
        details = [
            s for s in harness.connector.to(users[name].conversation_id) if "Details added to ES-2026-0001" in s.text
        ]
        assert len(details) == 1, (name, len(details))


async def walk_filter_request(user: TeamsUser) -> None:
    """The `filter` conversation up to its summary card, as a teacher presses the buttons."""
    await user.says("filter")
    await user.submits({"answer": "unblock"})
    await user.says("https://www.bbc.co.uk/bitesize/topics/water")
    await user.submits({"answer": "all_pupils"})
    await user.says("Year 6 science lesson on the water cycle")
    await user.says("tomorrow")
    await user.submits({"answer": "temporary"})
    await user.says("Tuesday 15:30")
    summary = await user.submits({"answer": "yes"})
    assert "Send request" in summary.everything


def filter_reference(sent: Sent) -> str | None:
    if "Your request FR-" in sent.text:
        return sent.text.split("Your request ", 1)[1].split(" ", 1)[0]
    return None


async def test_a_double_submitted_filter_request_is_sent_to_the_approvers_once(harness: Harness) -> None:
    approvers = await everyone_says_hello(harness, *APPROVERS)
    leah = harness.user("Leah Brooks")
    await walk_filter_request(leah)
    hang = harness.connector.hang_when(lambda s: filter_reference(s) is not None)

    await together(leah.submits({"answer": "submit"}), leah.submits({"answer": "submit"}), hang=hang)

    answered = replies_to_turns(harness.connector.to(leah.conversation_id), filter_reference)
    assert len(answered) == 2 and set(answered.values()) == {"FR-0001"}, answered
    assert len({s.text for s in hang.held}) == 1, "both clicks get the same answer"
    assert await count_rows(harness, "SELECT count(*) FROM filter_requests") == 1
    await harness.run_due_work()
    for name in APPROVERS:
        cards = [
            c
            for s in harness.connector.to(approvers[name].conversation_id)
            for c in s.cards
            if "Filter request FR-0001" in json.dumps(c)
        ]
        assert len(cards) == 1, (name, len(cards))


async def test_something_that_got_through_sent_twice_files_one_concern(harness: Harness) -> None:
    leah = harness.user("Leah Brooks")
    await leah.says("filter")
    await leah.submits({"answer": "missed"})
    await leah.says("https://www.example-games.com/play")
    hang = harness.connector.hang_when(lambda s: "recorded this as a filter failure" in s.text)

    await together(leah.says("A shooting game in Year 4"), leah.says("A shooting game in Year 4"), hang=hang)

    assert {s.text.split("(")[1].split(")")[0] for s in hang.held} == {"ES-2026-0001"}
    assert await count_rows(harness, "SELECT count(*) FROM incidents") == 1


async def test_a_double_acknowledgement_of_the_aup_is_recorded_once_and_both_get_the_receipt(harness: Harness) -> None:
    leah = harness.user("Leah Brooks")
    card = next(c for c in (await leah.says("aup")).cards if "aup.acknowledge" in json.dumps(c))
    data = {**card["actions"][0]["data"], "read_kcsie": "true", "agree": "true"}

    first, second = await asyncio.gather(leah.executes("aup.acknowledge", data), leah.executes("aup.acknowledge", data))

    assert first.status == second.status == 200
    assert first.invoke_card is not None and first.invoke_card == second.invoke_card
    assert "Your acknowledgement is recorded" in json.dumps(first.invoke_card)
    assert await count_rows(harness, "SELECT count(*) FROM aup_acknowledgements") == 1


# --- two transactions that both found no earlier effect (PostgreSQL: SQLite serialises its writers) ------------


@contextlib.asynccontextmanager
async def everyone_waits_at(harness: Harness, table: str, where: str, create: str | None = None) -> AsyncIterator[Any]:
    """Hold a row lock that an effect's transaction needs after it looked for an earlier effect. Yields a function
    that waits until `n` of the app's transactions are blocked; leaving the block lets them all go on."""
    assert harness.parts.engine.url.get_backend_name() == "postgresql", "SQLite serialises writers: use pg_harness"
    engine = create_engine(harness.settings.database_url)
    try:
        if create:
            async with engine.begin() as connection:
                await connection.execute(text(create))
        async with engine.connect() as holder, engine.connect() as watcher:
            await holder.execute(text(f"SELECT 1 FROM {table} WHERE {where} FOR UPDATE"))

            async def blocked(n: int) -> None:
                # Polls the database's own lock table: a state to reach, not a length of time to wait.
                async with asyncio.timeout(30):
                    while (
                        await watcher.execute(
                            text(
                                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                "AND cardinality(pg_blocking_pids(pid)) > 0"
                            )
                        )
                    ).scalar_one() < n:
                        await watcher.rollback()  # statistics are a per-transaction snapshot
                        await asyncio.sleep(0.01)

            try:
                yield blocked
            finally:
                await holder.rollback()
    finally:
        await engine.dispose()


INCIDENT_COUNTER = (
    "counters",
    "school_id = 'oakfield' AND name = 'incident-2026'",
    "INSERT INTO counters (school_id, name, value) VALUES ('oakfield', 'incident-2026', 0) ON CONFLICT DO NOTHING",
)


async def test_two_transactions_that_both_miss_the_key_still_make_one_case(pg_harness: Harness) -> None:
    harness = pg_harness
    leah = harness.user("Leah Brooks")
    await answer(leah)
    async with everyone_waits_at(harness, *INCIDENT_COUNTER) as blocked:
        turns = [asyncio.ensure_future(leah.says("submit")) for _ in range(2)]
        await blocked(2)  # both looked for the key, found nothing, and now wait to number a new case
    await asyncio.gather(*turns)
    answered = replies_to_turns(harness.connector.to(leah.conversation_id), report_reference)
    assert len(answered) == 2 and set(answered.values()) == {"ES-2026-0001"}, answered
    assert await count_rows(harness, "SELECT count(*) FROM incidents") == 1
    assert await count_rows(harness, "SELECT count(*) FROM work_items WHERE kind = 'incident.sla'") == 1


async def test_two_transactions_that_both_miss_the_key_still_raise_one_alert(pg_harness: Harness) -> None:
    harness = pg_harness
    leah = harness.user("Leah Brooks")
    await up_to_the_danger_question(leah)
    async with everyone_waits_at(harness, *INCIDENT_COUNTER) as blocked:
        turns = [asyncio.ensure_future(leah.says(DANGER)) for _ in range(2)]
        await blocked(2)
    await asyncio.gather(*turns)
    sent = [s.text for s in harness.connector.to(leah.conversation_id) if "Urgent alert raised:" in s.text]
    assert [t.split(".")[0] for t in sent] == ["Urgent alert raised: ES-2026-0001"] * 2
    assert await count_rows(harness, "SELECT count(*) FROM incidents") == 1


async def test_two_transactions_that_both_miss_the_key_still_make_one_filter_request(pg_harness: Harness) -> None:
    harness = pg_harness
    leah = harness.user("Leah Brooks")
    await walk_filter_request(leah)
    async with everyone_waits_at(
        harness,
        "counters",
        "school_id = 'oakfield' AND name = 'filter_request'",
        "INSERT INTO counters (school_id, name, value) VALUES ('oakfield', 'filter_request', 0) ON CONFLICT DO NOTHING",
    ) as blocked:
        turns = [asyncio.ensure_future(leah.submits({"answer": "submit"})) for _ in range(2)]
        await blocked(2)
    await asyncio.gather(*turns)
    answered = replies_to_turns(harness.connector.to(leah.conversation_id), filter_reference)
    assert len(answered) == 2 and set(answered.values()) == {"FR-0001"}, answered
    assert await count_rows(harness, "SELECT count(*) FROM filter_requests") == 1


async def test_two_acknowledgements_in_flight_together_record_once(pg_harness: Harness) -> None:
    harness = pg_harness
    leah = harness.user("Leah Brooks")
    card = next(c for c in (await leah.says("aup")).cards if "aup.acknowledge" in json.dumps(c))
    data = {**card["actions"][0]["data"], "read_kcsie": "true", "agree": "true"}
    # The first records the acknowledgement, then waits to write its audit entry; the second, having found no
    # acknowledgement either, waits on the first one's uncommitted row.
    async with everyone_waits_at(harness, "audit_heads", "school_id = 'oakfield'") as blocked:
        turns = [asyncio.ensure_future(leah.executes("aup.acknowledge", data)) for _ in range(2)]
        await blocked(2)
    first, second = await asyncio.gather(*turns)
    assert first.status == second.status == 200
    assert first.invoke_card is not None and first.invoke_card == second.invoke_card
    assert await count_rows(harness, "SELECT count(*) FROM aup_acknowledgements") == 1


# --- a crash after the commit and before the dialog state is saved ---------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.asynccontextmanager
async def app_process(
    name: str, url: str, var_dir: Path, *, now: dt.datetime = START, **extra_env: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """`python app.py` on the database, as deployed; stopped with SIGTERM unless the test killed it."""
    port = _free_port()
    env = {
        **os.environ,
        **extra_env,
        "ESAFETY_DEV": "1",
        "DATABASE_URL": url,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "ESAFETY_REPLICA": name,
        "ESAFETY_FAKE_NOW": now.isoformat(),
        "ESAFETY_DATA_KEY": TEST_DATA_KEY,
        "ESAFETY_VAR_DIR": str(var_dir),
        "ESAFETY_CONFIG": str(DEMO_CONFIG),
        "ESAFETY_LOG_LEVEL": "ERROR",
        "PYTHONUNBUFFERED": "1",
    }
    log = os.open(var_dir / f"app-{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "app.py", cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=log
    )
    try:
        line = await asyncio.wait_for(process.stdout.readline(), 60)
        assert b"listening" in line, f"app {name} did not start: {line!r}"
        yield process, f"http://127.0.0.1:{port}"
    finally:
        if process.returncode is None:
            process.terminate()
            await asyncio.wait_for(process.wait(), 60)
        os.close(log)


async def test_a_process_killed_after_the_case_is_saved_answers_the_resubmit_with_the_same_case(
    database_url: str, tmp_path: Path
) -> None:
    connector = RecordingConnector()
    await connector.start()
    try:
        async with aiohttp.ClientSession() as http:
            leah = TeamsUser(
                http,
                "",
                connector,
                aad_id=next(p.id for p in SCHOOL.people if p.name == "Leah Brooks"),
                name="Leah Brooks",
                tenant_id=SCHOOL.tenant_id,
            )
            async with app_process("a", database_url, tmp_path) as (process, app_url):
                leah.app_url = app_url
                summary = await answer(leah)
                assert "Shall I submit it?" in summary.everything
                hang = connector.hang_when(lambda s: report_reference(s) is not None)
                submitting = asyncio.ensure_future(leah.says("submit"))
                [held] = await hang.arrived()  # the case is committed; the dialog state is not saved yet
                reference = report_reference(held)
                os.kill(process.pid, signal.SIGKILL)
                await process.wait()
                with contextlib.suppress(aiohttp.ClientError):
                    await submitting
            hang.release()  # the dead process's call is answered into a closed socket
            await connector.wait_for(lambda sent: any(s is held for s in sent))

            async with app_process("b", database_url, tmp_path) as (_, app_url):
                leah.app_url = app_url
                again = await leah.says("submit")
                assert reference in confirmation(again)["body"][0]["text"]
                mine = await leah.says("my reports")
                assert reference in mine.everything and "ES-2026-0002" not in mine.everything
        engine = create_engine(database_url)
        try:
            async with engine.connect() as connection:
                cases = (await connection.execute(text("SELECT reference FROM incidents"))).scalars().all()
                sla = (
                    await connection.execute(text("SELECT count(*) FROM work_items WHERE kind = 'incident.sla'"))
                ).scalar_one()
        finally:
            await engine.dispose()
        assert cases == [reference] and sla == 1
    finally:
        await connector.stop()


async def test_an_early_alert_lost_in_a_crash_is_completed_not_duplicated_when_the_answer_changes(
    database_url: str, tmp_path: Path
) -> None:
    connector = RecordingConnector()
    await connector.start()
    try:
        async with aiohttp.ClientSession() as http:
            leah = TeamsUser(
                http,
                "",
                connector,
                aad_id=next(p.id for p in SCHOOL.people if p.name == "Leah Brooks"),
                name="Leah Brooks",
                tenant_id=SCHOOL.tenant_id,
            )
            async with app_process("a", database_url, tmp_path) as (process, app_url):
                leah.app_url = app_url
                await up_to_the_danger_question(leah)
                hang = connector.hang_when(lambda s: "Urgent alert raised:" in s.text)
                answering = asyncio.ensure_future(leah.says(DANGER))
                [held] = await hang.arrived()  # the alert is committed; the conversation does not know it yet
                reference = held.text.split(".")[0].rsplit(" ", 1)[-1]
                os.kill(process.pid, signal.SIGKILL)
                await process.wait()
                with contextlib.suppress(aiohttp.ClientError):
                    await answering

            async with app_process("b", database_url, tmp_path) as (_, app_url):
                leah.app_url = app_url
                # The conversation is back at the danger question; this time the reporter answers "No".
                for text_ in (
                    "No",
                    "Online",
                    "Just now",
                    "AB, Year 5",
                    "A stranger asked to meet",
                    "On the iPad",
                    "Told the class teacher",
                ):
                    await leah.says(text_)
                done = await leah.says("submit")
                assert reference in confirmation(done)["body"][0]["text"]
            hang.release()
        engine = create_engine(database_url)
        try:
            async with engine.connect() as connection:
                cases = (await connection.execute(text("SELECT reference, complete FROM incidents"))).all()
        finally:
            await engine.dispose()
        assert [(r, bool(c)) for r, c in cases] == [(reference, True)]
    finally:
        await connector.stop()


# --- conversations saved before effects had keys ---------------------------------------------------------------


async def test_a_report_saved_before_keys_existed_still_submits(harness: Harness) -> None:
    leah = harness.user("Leah Brooks")
    await answer(leah)
    await _forget_keys(harness)
    reply = await leah.says("submit")
    assert "ES-2026-0001" in confirmation(reply)["body"][0]["text"]
    assert await count_rows(harness, "SELECT count(*) FROM incidents") == 1


async def test_a_filter_request_saved_before_keys_existed_still_sends(harness: Harness) -> None:
    leah = harness.user("Leah Brooks")
    await walk_filter_request(leah)
    await _forget_keys(harness)
    reply = await leah.submits({"answer": "submit"})
    assert any("Your request FR-0001" in t for t in reply.texts), reply.texts
    assert await count_rows(harness, "SELECT count(*) FROM filter_requests") == 1


async def _forget_keys(harness: Harness) -> None:
    """Rewrite the saved dialog state as the previous release wrote it: no idempotency keys."""
    cipher = data_cipher(harness.settings)
    removed = 0

    def strip(value: Any) -> Any:
        nonlocal removed
        if isinstance(value, dict):
            kept = {k: strip(v) for k, v in value.items() if k not in KEY_FIELDS}
            removed += len(value) - len(kept)
            return kept
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    async with harness.parts.engine.begin() as connection:
        rows = (await connection.execute(text("SELECT key_hash, document FROM bot_state"))).all()
        for key_hash, document in rows:
            context = document_context(key_hash)  # sealed to its own row
            plain = strip(json.loads(cipher.decrypt(document, context)))
            await connection.execute(
                text("UPDATE bot_state SET document = :d WHERE key_hash = :k"),
                {"d": cipher.encrypt(json.dumps(plain), context), "k": key_hash},
            )
    assert removed, "the saved state had a key to forget"
