"""An activity Teams delivers twice (it redelivers when a turn is slow) takes effect once, over HTTP on both databases.

The first delivery's answer to the connector is held until its duplicate has been answered, so the two truly overlap:
the duplicate's 200 arrives while the first is still in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import signal
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import text

from bot.inbound import CLAIM_LEASE
from tests.support.auth import IdentityProvider
from tests.support.connector import RecordingConnector, Sent
from tests.support.harness import Harness
from tests.support.teams import Reply, TeamsUser
from tests.test_auth import APP_ID, idp, secured  # noqa: F401 - fixtures: the app with authentication on
from tests.test_effect_idempotency import SCHOOL, START, app_process
from tests.test_incidents import card_titled, everyone_says_hello, submit_report, up_to_the_danger_question

WENT_WRONG = "something went wrong"
DANGER = "Yes, someone is in danger now"


def to(harness: Harness, user: TeamsUser, since: int = 0) -> list[Sent]:
    return [s for s in harness.connector.sent[since:] if s.conversation_id == user.conversation_id]


async def settled(harness: Harness) -> int:
    """Let what earlier turns queued (the AUP card a first contact owes) go out, so counts after it are this turn's."""
    harness.clock.advance(minutes=1)
    await harness.run_due_work()
    return len(harness.connector.sent)


def help_cards(sent: list[Sent], first_name: str) -> list[dict[str, Any]]:
    return [
        c for s in sent for c in s.cards if c["body"] and c["body"][0].get("text", "").startswith(f"Hello {first_name}")
    ]


async def while_the_first_is_held(
    harness: Harness, user: TeamsUser, activity: dict[str, Any], first_answer: Any
) -> tuple[Reply, Reply]:
    """Deliver `activity`; while the first delivery's answer (matching `first_answer`) is held at the connector,
    deliver it again and take that duplicate's reply; then let the first finish."""
    held: list[Sent] = []

    def first_only(sent: Sent) -> bool:  # a duplicate that did take effect must not be held as well
        if held or sent.conversation_id != user.conversation_id or not first_answer(sent):
            return False
        held.append(sent)
        return True

    hang = harness.connector.hang_when(first_only)
    first = asyncio.ensure_future(user.post(activity, user.conversation_id))
    try:
        await hang.arrived()
        duplicate = await user.redelivers(activity)
        assert not first.done(), "the duplicate must be answered while the first delivery is still in flight"
    finally:
        hang.release()
    return await first, duplicate


async def test_help_delivered_twice_at_once_is_answered_once(harness: Harness) -> None:
    leah = harness.user("Leah Brooks")
    await leah.says("hello")
    since = await settled(harness)
    activity = leah.message("help")
    first, duplicate = await while_the_first_is_held(harness, leah, activity, lambda s: bool(s.cards))
    assert first.status == 200 and duplicate.status == 200
    assert len(help_cards(to(harness, leah, since), "Leah")) == 1
    assert WENT_WRONG not in json.dumps([s.activity for s in to(harness, leah, since)])


async def test_help_delivered_again_after_it_was_answered_has_no_effect(harness: Harness) -> None:
    leah = harness.user("Leah Brooks")
    activity = leah.message("help")
    assert help_cards((await leah.redelivers(activity)).sent, "Leah")
    since = await settled(harness)
    again = await leah.redelivers(activity)
    assert again.status == 200
    assert to(harness, leah, since) == []
    # a new activity (a new id) with the same words is, of course, answered
    assert help_cards((await leah.says("help")).sent, "Leah")


async def test_an_activity_without_an_id_is_processed_every_time(harness: Harness) -> None:
    leah = harness.user("Leah Brooks")
    activity = leah.message("help")
    del activity["id"]
    since = len(harness.connector.sent)
    for _ in range(2):
        assert (await leah.redelivers(activity)).status == 200
    assert len(help_cards(to(harness, leah, since), "Leah")) == 2


async def _case_for_priya(harness: Harness) -> tuple[TeamsUser, str, int]:
    reference = await submit_report(harness.user("Leah Brooks"), what="Threats in a group chat")
    priya = harness.user("Priya Shah")
    card = card_titled(await priya.says(f"case {reference}"), reference)
    return priya, reference, card["refresh"]["action"]["data"]["token"]


async def _notes_on_the_case(priya: TeamsUser, reference: str, note: str) -> int:
    card = card_titled(await priya.says(f"case {reference}"), reference)
    return json.dumps(card).count(note)


async def test_a_card_submit_delivered_twice_at_once_records_once_and_answers_once(harness: Harness) -> None:
    priya, reference, token = await _case_for_priya(harness)
    since = await settled(harness)
    activity = priya.card_submit(
        {"verb": "incident.note", "token": token, "version": 1, "note": "Spoke to the pupil at break"}
    )
    first, duplicate = await while_the_first_is_held(harness, priya, activity, lambda s: bool(s.cards))
    assert first.status == 200 and duplicate.status == 200
    answers = to(harness, priya, since)
    assert len(answers) == 1, [s.text or s.cards for s in answers]
    assert "Someone else updated this case" not in json.dumps(answers[0].activity)
    later = await priya.redelivers(activity)
    assert later.status == 200 and len(to(harness, priya, since)) == 1
    assert await _notes_on_the_case(priya, reference, "Spoke to the pupil at break") == 1


async def test_an_action_execute_delivered_three_times_gets_the_first_answer_each_time(harness: Harness) -> None:
    priya, reference, token = await _case_for_priya(harness)
    activity = priya.card_execute("incident.note", {"token": token, "version": 1, "note": "Parents phoned"})
    replies = await priya.delivers(activity, copies=3)
    later = await priya.redelivers(activity)
    assert [r.status for r in replies] + [later.status] == [200] * 4
    cards = [r.invoke_card for r in [*replies, later]]
    assert cards[0] is not None and "Parents phoned" in json.dumps(cards[0])
    assert all(card == cards[0] for card in cards), "every delivery of one invoke gets the same answer"
    assert await _notes_on_the_case(priya, reference, "Parents phoned") == 1


async def test_the_danger_answer_delivered_twice_at_once_makes_one_case_and_one_round_of_urgent_alerts(
    harness: Harness,
) -> None:
    alerted = ("Priya Shah", "Tom Reed", "Chris Doyle", "Grace Okafor")
    users = await everyone_says_hello(harness, *alerted)
    leah = harness.user("Leah Brooks")
    await up_to_the_danger_question(leah)
    activity = leah.message(DANGER)
    first, duplicate = await while_the_first_is_held(harness, leah, activity, lambda s: "999" in s.text)
    assert first.status == 200 and duplicate.status == 200
    await harness.run_due_work()
    for name in alerted:
        urgent = [s for s in to(harness, users[name]) if "Urgent online-safety concern" in s.text]
        assert len(urgent) == 1 and "ES-2026-0001" in urgent[0].text, (name, [s.text for s in urgent])
    everything = json.dumps([s.activity for s in harness.connector.sent])
    assert "ES-2026-0002" not in everything and WENT_WRONG not in everything
    async with harness.parts.engine.connect() as connection:
        assert (await connection.execute(text("SELECT count(*) FROM incidents"))).scalar_one() == 1
    # the reporter carries on where she was: the next question, once
    assert (await leah.says("Online")).status == 200


async def test_two_turns_saving_one_chats_state_at_once_never_say_something_went_wrong(harness: Harness) -> None:
    leah = harness.user("Leah Brooks")
    await leah.says("hello")
    since = await settled(harness)
    # A double click: two activities (two ids), each starting the report, so both save the conversation's state.
    replies = await asyncio.gather(*(leah.says("report") for _ in range(4)))
    assert all(r.status == 200 for r in replies)
    sent = json.dumps([s.activity for s in to(harness, leah, since)])
    assert WENT_WRONG not in sent
    assert "Who is the concern about?" in sent


async def test_claims_expire_after_a_day(harness: Harness) -> None:
    leah = harness.user("Leah Brooks")
    for _ in range(3):
        await leah.says("help")

    async def claims() -> int:
        async with harness.parts.engine.connect() as connection:
            return (await connection.execute(text("SELECT count(*) FROM inbound_claims"))).scalar_one()

    assert await claims() == 3
    harness.clock.advance(hours=25)
    await leah.says("help")
    assert await claims() == 1


async def test_a_forged_activity_cannot_use_up_a_real_ones_id(secured: Harness, idp: IdentityProvider) -> None:  # noqa: F811
    leah = secured.user("Leah Brooks")
    activity = leah.message("help")
    leah.token = "forged"
    assert (await leah.redelivers(activity)).status == 401
    leah.token = idp.token(audience=APP_ID, service_url=secured.connector.url)
    genuine = await leah.redelivers(activity)
    assert genuine.status == 200 and help_cards(genuine.sent, "Leah")


async def test_a_delivery_whose_process_died_mid_turn_is_taken_over_by_the_redelivery(
    database_url: str, tmp_path: Path
) -> None:
    """A claim is a lease, not a tombstone: Teams' retry after a crash runs the turn rather than being dropped."""
    connector = RecordingConnector()
    await connector.start()
    try:
        async with aiohttp.ClientSession() as http:
            leah = TeamsUser(
                http, "", connector, aad_id=SCHOOL.people[8].id, name="Leah Brooks", tenant_id=SCHOOL.tenant_id
            )
            activity = leah.message("help")
            async with app_process("a", database_url, tmp_path) as (process, app_url):
                leah.app_url = app_url
                hang = connector.hang_when(lambda s: s.op == "reply" and not hang.held)
                first = asyncio.ensure_future(leah.redelivers(activity))
                await hang.arrived()  # claimed, and the answer is on its way, when the process dies
                os.kill(process.pid, signal.SIGKILL)
                await process.wait()
                with contextlib.suppress(aiohttp.ClientError):
                    await first
            async with app_process("b", database_url, tmp_path) as (_, app_url):
                leah.app_url = app_url
                early = await leah.redelivers(activity)
                # Only what the turn itself said: this process's first pass of the daily AUP sweep may be sending Leah
                # her card (a proactive send) just as the redelivery is answered.
                assert early.status == 200 and not early.own, "within the lease, the claim still stands"
            async with app_process("c", database_url, tmp_path, now=START + CLAIM_LEASE + dt.timedelta(seconds=1)) as (
                _,
                app_url,
            ):
                leah.app_url = app_url
                retried = await leah.redelivers(activity)
                assert help_cards(retried.sent, "Leah"), "the retry after the lease ran out is answered"
                again = await leah.redelivers(activity)
                assert not again.own, "and once it finished, it is not run again"
    finally:
        await connector.stop()
