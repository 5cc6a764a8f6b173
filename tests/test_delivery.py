"""Never silently: the reporter hears exactly who an alert reached, what cannot arrive is re-routed, and what never
arrives is put in front of a person. End to end over HTTP on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from adapters.clock import SettableClock
from adapters.outbox import SEND_LEASE
from bot.work import Then, WorkItem
from storage.repos import SEND_KIND
from tests.support.connector import RecordingConnector
from tests.support.harness import Harness, start_harness
from tests.support.teams import TeamsUser
from tests.test_effect_idempotency import SCHOOL, START, app_process
from tests.test_filtering import ask
from tests.test_incidents import DSL_CHANNEL, answer, confirmation, everyone_says_hello, submit_report

DSLS = ("Priya Shah", "Tom Reed", "Chris Doyle")


def proactive_texts(harness: Harness, conversation_id: str) -> list[str]:
    """Messages the bot sent of its own accord about a concern (not the AUP reminders it also sends)."""
    return [s.text for s in harness.connector.to(conversation_id) if s.op == "send" and "ES-" in (s.text or "")]


def mentions(harness: Harness, conversation_id: str, reference: str) -> bool:
    return any(reference in json.dumps(s.activity) for s in harness.connector.to(conversation_id) if s.op == "send")


async def test_the_reporter_is_told_it_is_on_its_way_then_exactly_who_has_it(harness: Harness) -> None:
    await everyone_says_hello(harness, "Priya Shah")
    leah = harness.user("Leah Brooks")
    await answer(leah)
    card = confirmation(await leah.says("submit"))
    reference = card["body"][0]["text"].rsplit(" ", 1)[-1]
    words = json.dumps(card)
    assert "It is saved." in words
    assert "have been told" not in words and "has been told" not in words
    assert "I am sending it to the safeguarding team now" in words

    await harness.run_due_work()
    assert proactive_texts(harness, leah.conversation_id) == [
        f"Your report {reference} has reached the safeguarding team: the safeguarding channel. They will pick it up "
        "from here."
    ]


async def test_the_dsl_channel_card_reaches_a_channel_the_bot_has_never_spoken_in(harness: Harness) -> None:
    # Nobody has added the bot to the channel or spoken there: only a 1:1 chat with the reporter exists.
    reference = await submit_report(harness.user("Leah Brooks"))
    await harness.run_due_work()
    posted = [s for s in harness.connector.to(DSL_CHANNEL) if s.op == "send"]
    assert len(posted) == 1 and reference in json.dumps(posted[0].card)
    assert posted[0].activity["conversation"]["id"] == DSL_CHANNEL


async def test_when_the_channel_and_every_dsl_refuse_the_headteacher_gets_it_and_the_reporter_hears_that(
    harness: Harness,
) -> None:
    users = await everyone_says_hello(harness, *DSLS, "Grace Okafor", "Sam Patel")
    harness.connector.fail_next(403, times=20, conversation_id=DSL_CHANNEL)
    for name in DSLS:
        harness.connector.fail_next(403, times=20, conversation_id=users[name].conversation_id)
    leah = harness.user("Leah Brooks")
    reference = await submit_report(leah)
    await harness.run_due_work()

    assert mentions(harness, users["Grace Okafor"].conversation_id, reference)
    assert proactive_texts(harness, leah.conversation_id) == [
        f"Your report {reference} has reached the safeguarding team: Grace Okafor (Headteacher). They will pick it "
        "up from here."
    ]
    # The Headteacher was not on this case before; the re-route lets her open it, and the chronology says why.
    case = await harness.user("Grace Okafor").says(f"case {reference}")
    assert "can't open that case" not in case.everything
    assert "could not be delivered" in case.everything
    nothing_to_tell = await harness.user("Sam Patel").says("undelivered")
    assert "not delivered" in nothing_to_tell.everything and "Priya Shah (DSL)" in nothing_to_tell.everything


async def test_when_nothing_arrives_the_reporter_is_sent_to_the_dsl_in_person_and_the_team_is_told(
    harness: Harness, clock: SettableClock
) -> None:
    users = await everyone_says_hello(harness, *DSLS, "Grace Okafor", "Sam Patel")
    harness.connector.fail_next(403, times=50, conversation_id=DSL_CHANNEL)
    for name in (*DSLS, "Grace Okafor"):
        harness.connector.fail_next(403, times=50, conversation_id=users[name].conversation_id)
    leah = harness.user("Leah Brooks")
    reference = await submit_report(leah)
    await harness.run_due_work()
    assert proactive_texts(harness, leah.conversation_id) == [], "nothing has arrived, so nothing is claimed"

    clock.advance(seconds=300)
    await harness.run_due_work()
    [told] = proactive_texts(harness, leah.conversation_id)
    assert told.startswith(f"I could not reach the safeguarding team about {reference} yet. Please tell ")
    for label in ("Priya Shah (DSL)", "Tom Reed (deputy DSL)", "Chris Doyle (deputy DSL)", "01632 960 123"):
        assert label in told
    # The online-safety lead's incident-log notice arrived, but it does not count as reaching the team.
    [notice] = [t for t in proactive_texts(harness, users["Sam Patel"].conversation_id) if "has not reached" in t]
    assert reference in notice and "Type `undelivered`" in notice
    listed = await harness.user("Sam Patel").says("undelivered")
    for label in ("the safeguarding channel", "Priya Shah (DSL)", "Grace Okafor (Headteacher)"):
        assert label in listed.everything
    async with harness.http.get(f"{harness.url}/readyz") as response:
        assert (await response.json())["undelivered_last_7_days"] >= 5


async def test_an_urgent_alert_that_reaches_nobody_sends_the_reporter_in_person_after_30_seconds(
    harness: Harness, clock: SettableClock
) -> None:
    users = await everyone_says_hello(harness, *DSLS, "Grace Okafor")
    harness.connector.fail_next(403, times=50, conversation_id=DSL_CHANNEL)
    for name in (*DSLS, "Grace Okafor"):
        harness.connector.fail_next(403, times=50, conversation_id=users[name].conversation_id)
    leah = harness.user("Leah Brooks")
    reference = await submit_report(
        leah, group="contact", category="stranger_contact", danger="Yes, someone is in danger now"
    )
    await harness.run_due_work()
    clock.advance(seconds=29)
    await harness.run_due_work()
    assert proactive_texts(harness, leah.conversation_id) == []
    clock.advance(seconds=1)
    await harness.run_due_work()
    assert any(
        t.startswith(f"I could not reach the safeguarding team about {reference}")
        for t in proactive_texts(harness, leah.conversation_id)
    )


async def test_the_reporter_is_told_once_however_many_alerts_arrive(harness: Harness) -> None:
    users = await everyone_says_hello(harness, *DSLS, "Grace Okafor")
    leah = harness.user("Leah Brooks")
    reference = await submit_report(
        leah, group="contact", category="stranger_contact", danger="Yes, someone is in danger now"
    )
    await harness.run_due_work()
    for name in (*DSLS, "Grace Okafor"):
        assert mentions(harness, users[name].conversation_id, reference)
    [told] = [t for t in proactive_texts(harness, leah.conversation_id) if "has reached" in t]
    # She is told as soon as the first alert lands, naming whoever it had reached by then (the worker sends the
    # alerts side by side, so which land first varies); every name it gives is one that was alerted.
    alerted = (
        "the safeguarding channel",
        "Priya Shah (DSL)",
        "Tom Reed (deputy DSL)",
        "Chris Doyle (deputy DSL)",
        "Grace Okafor (Headteacher)",
    )
    named = [label for label in alerted if label in told]
    assert named and told.count("(") == sum(1 for label in named if "(" in label), told


@pytest.fixture
async def quiet(database_url: str, clock: SettableClock, tmp_path: Path) -> AsyncIterator[Harness]:
    """The foundation alone with its worker off, so only the test claims work."""
    async with start_harness(
        database_url=database_url, clock=clock, var_dir=tmp_path / "var", features=[], worker_enabled=False
    ) as running:
        yield running


async def test_an_outcome_recorded_after_the_lease_was_lost_changes_nothing(
    quiet: Harness, clock: SettableClock
) -> None:
    harness = quiet
    claims = harness.parts.claims
    async with harness.parts.uow() as uow:
        await uow.notify.to_person(harness.school.id, harness.person_id("Leah Brooks"), text="Hello")
    [first] = await claims.claim("replica-a", [SEND_KIND], 10, dt.timedelta(seconds=60))
    clock.advance(seconds=61)
    [again] = await claims.claim("replica-b", [SEND_KIND], 10, dt.timedelta(seconds=60))
    assert again.id == first.id
    follow = WorkItem(first.id, first.school_id, first.kind, first.payload, first.run_at, first.attempts, None)
    lost = await claims.finish(follow, "replica-a", "done", then=(Then("send", {"target": {}}, dedupe_key="x"),))
    assert lost is False
    assert await claims.finish(again, "replica-b", "done") is True
    statuses = await claims.list(kind=SEND_KIND)
    assert [s.status for s in statuses] == ["done"], "the stale outcome queued no follow-up"


async def test_a_send_cut_off_by_kill_9_is_delivered_by_the_next_process(database_url: str, tmp_path: Path) -> None:
    """A claimed send whose process dies mid-call stays claimed until its lease ends, then another process sends it."""
    connector = RecordingConnector()
    await connector.start()
    try:
        async with aiohttp.ClientSession() as http:
            leah = TeamsUser(
                http, "", connector, aad_id=SCHOOL.people[8].id, name="Leah Brooks", tenant_id=SCHOOL.tenant_id
            )
            assert SCHOOL.people[8].name == "Leah Brooks"
            async with app_process("a", database_url, tmp_path) as (process, app_url):
                leah.app_url = app_url
                # Only the first attempt hangs: it never completes, as if the process died mid-call.
                hang = connector.hang_when(
                    lambda s: s.op == "send" and s.conversation_id == DSL_CHANNEL and not hang.held
                )
                await answer(leah)
                await leah.says("submit")
                [held] = await hang.arrived()  # the channel card is on the wire; its outcome is not recorded
                os.kill(process.pid, signal.SIGKILL)
                await process.wait()
            assert not [s for s in connector.sent if s.conversation_id == DSL_CHANNEL]

            # A minute later (past the send's lease), another process takes the claim over and sends the card.
            async with app_process("b", database_url, tmp_path, now=START + SEND_LEASE + dt.timedelta(seconds=1)):
                posted = await connector.wait_for(lambda sent: [s for s in sent if s.conversation_id == DSL_CHANNEL])
                await connector.wait_for(
                    lambda sent: [
                        s
                        for s in sent
                        if s.conversation_id == leah.conversation_id and "has reached the safeguarding team" in s.text
                    ]
                )
            assert len(posted) == 1 and held.activity["attachments"] == posted[0].activity["attachments"]
    finally:
        await connector.stop()


async def test_a_filter_request_is_confirmed_when_an_approver_has_it_or_the_requester_asks_in_person(
    harness: Harness, clock: SettableClock
) -> None:
    approvers = await everyone_says_hello(harness, "Sam Patel", "Grace Okafor")
    leah = harness.user("Leah Brooks")
    first = await ask(leah)
    assert "I am sending it to the filtering approvers now" in first.everything
    assert "has gone to" not in first.everything
    await harness.run_due_work()
    [reached] = [
        s.text
        for s in harness.connector.to(leah.conversation_id)
        if s.op == "send" and "FR-0001 has reached" in (s.text or "")
    ]
    # As with a concern, Leah hears as soon as the first approver has it, naming whoever had it by then: the two
    # sends go side by side, so one or both may be named, but never anyone who was not sent it.
    approver_labels = ("Sam Patel (filtering approver)", "Grace Okafor (filtering approver)")
    named = [label for label in approver_labels if label in reached]
    assert named and reached.count("(") == len(named), reached
    for user in approvers.values():
        assert any(
            s.op == "send" and "FR-0001" in json.dumps(s.activity) for s in harness.connector.to(user.conversation_id)
        ), "each approver was sent the request"

    for user in approvers.values():
        harness.connector.fail_next(403, times=20, conversation_id=user.conversation_id)
    await ask(leah, site="https://www.tes.com/teaching-resources")
    await harness.run_due_work()
    clock.advance(seconds=300)
    await harness.run_due_work()
    [in_person] = [
        s.text for s in harness.connector.to(leah.conversation_id) if s.op == "send" and "FR-0002" in (s.text or "")
    ]
    assert in_person.startswith("I could not reach the filtering approvers about FR-0002 yet. Please tell ")
    for words in (
        "Sam Patel (filtering approver)",
        "Grace Okafor (filtering approver)",
        "in person now",
        "Your request FR-0002 is saved",
    ):
        assert words in in_person
