"""Referrals and their clocks, end to end over HTTP on SQLite and PostgreSQL with the fake clock.

The police at once for an illegal category, the LADO within one school working day for an allegation about staff,
the ICO within 72 hours for a data breach: reminders before the deadline, escalation after it, and no close until
the referral is recorded or someone says why it was not made.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.clock import SettableClock
from app import _features
from bot.config import load_config
from bot.policy import load_policy
from bot.referrals import due_at
from dialogs import referrals
from tests.support.harness import DEMO_CONFIG, ROOT, Harness, start_harness
from tests.test_incidents import card_titled, everyone_says_hello, submit_report

# The referrals feature, whether or not the app's feature list has it yet.
FEATURES = [f for f in _features() if f is not referrals.install] + [referrals.install]
LONDON = dt.UTC  # the demo school is in Europe/London, which is GMT (UTC+0) in November and December


@pytest.fixture
async def harness(database_url: str, clock: SettableClock, tmp_path: Path) -> AsyncIterator[Harness]:
    async with start_harness(
        database_url=database_url, clock=clock, var_dir=tmp_path / "var", features=FEATURES
    ) as running:
        yield running


def at(day: int, hour: int, minute: int = 0, month: int = 11) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, minute, tzinfo=LONDON)


async def open_case(harness: Harness, name: str, reference: str) -> tuple[dict, str]:
    card = card_titled(await harness.user(name).says(f"case {reference}"), reference)
    return card, card["refresh"]["action"]["data"]["token"]


def texts_to(harness: Harness, name: str, reference: str) -> list[str]:
    return [s.text for s in harness.connector.to(harness.user(name).conversation_id) if s.text and reference in s.text]


def reminders(harness: Harness, name: str, reference: str) -> list[str]:
    return [t for t in texts_to(harness, name, reference) if t.startswith("Reminder:")]


def overdue(harness: Harness, name: str, reference: str) -> list[str]:
    return [t for t in texts_to(harness, name, reference) if "needed a referral" in t]


def close_form(card: dict) -> list[str]:
    form = next(a for a in card["actions"] if a.get("title") == "Close")
    return [block.get("id") for block in form["card"]["body"]]


async def test_an_illegal_case_cannot_close_without_a_police_referral_or_a_reason(harness: Harness) -> None:
    users = await everyone_says_hello(harness, "Priya Shah", "Leah Brooks")
    priya = users["Priya Shah"]
    first = await submit_report(
        harness.user("Leah Brooks"),
        group="illegal",
        category="other_criminal",
        what="An adult online threatened a pupil",
    )
    card, token = await open_case(harness, "Priya Shah", first)
    shown = json.dumps(card)
    assert "Referral to the police needed now (by Mon 23 Nov, 11:00)" in shown
    assert "no_referral_reason" in close_form(card)

    refused = (
        await priya.executes(
            "incident.close",
            {"token": token, "version": 1, "outcome": "resolved_in_school", "close_note": "Spoke to the family"},
        )
    ).invoke_card
    assert refused["body"][0]["text"].startswith("This case needs a referral to the police before it can close")
    assert "Closed by" not in json.dumps(refused)

    # One way through: the referral is made and recorded, which stops the clock and lets the case close.
    harness.clock.set(at(23, 10, 30))
    recorded = (
        await priya.executes(
            "referral.record",
            {
                "token": token,
                "version": 1,
                "referral_agency": "police",
                "referral_on": "2026-11-23",
                "referral_time": "10:20",
                "referral_reference": "CAD 4471 23/11",
            },
        )
    ).invoke_card
    recorded_text = json.dumps(recorded)
    assert "Referred to the police by Priya Shah. Their reference: CAD 4471 23/11" in recorded_text
    assert "needed now" not in recorded_text and "no_referral_reason" not in close_form(recorded)
    # What the police decided goes on the referral, named on the card by a random handle, never a database id.
    outcome_form = next(
        a
        for block in recorded["body"]
        if block.get("type") == "ActionSet"
        for a in block["actions"]
        if a["title"] == "Record an outcome"
    )
    handle = outcome_form["card"]["body"][0]["choices"][0]["value"]
    assert len(handle) >= 16 and not handle.isdigit()
    blank = (
        await priya.executes("referral.outcome", {"token": token, "referral_handle": handle, "referral_outcome": " "})
    ).invoke_card
    assert "Please write what the agency decided." in json.dumps(blank)
    forged = (
        await priya.executes("referral.outcome", {"token": token, "referral_handle": "1", "referral_outcome": "Forged"})
    ).invoke_card
    assert "Please choose the referral from the list." in json.dumps(forged) and "Forged" not in json.dumps(forged)
    decided = json.dumps(
        (
            await priya.executes(
                "referral.outcome",
                {"token": token, "referral_handle": handle, "referral_outcome": "Police will visit the family"},
            )
        ).invoke_card
    )
    assert "Their reference: CAD 4471 23/11. Outcome: Police will visit the family" in decided
    assert "Outcome of the referral to the police, recorded by Priya Shah: Police will visit the family" in decided
    assert "Record an outcome" not in decided
    closed = (
        await priya.executes(
            "incident.close", {"token": token, "version": 1, "outcome": "referred_on", "close_note": "With the police"}
        )
    ).invoke_card
    assert "Closed by Priya Shah" in json.dumps(closed)

    # The other: no referral, and the reason why is kept on the chronology.
    second = await submit_report(
        harness.user("Leah Brooks"),
        group="illegal",
        category="other_criminal",
        what="A pupil said a stranger sent threats",
    )
    _, token = await open_case(harness, "Priya Shah", second)
    closed = (
        await priya.executes(
            "incident.close",
            {
                "token": token,
                "version": 1,
                "outcome": "no_further_action",
                "close_note": "Checked with the pupil",
                "no_referral_reason": "The pupil made it up; confirmed with parents and the class teacher",
            },
        )
    ).invoke_card
    chronology = json.dumps(closed)
    assert "Closed by Priya Shah" in chronology
    assert (
        "Not referred to the police. Reason given by Priya Shah when closing: The pupil made it up; confirmed "
        "with parents "
        "and the class teacher"
    ) in chronology
    # Closed, so its clock is over: nobody is chased about it later.
    harness.clock.set(at(24, 12))
    await harness.run_due_work()
    assert not overdue(harness, "Priya Shah", second) and not reminders(harness, "Priya Shah", second)


async def test_the_lado_clock_counts_school_days_reminds_then_escalates_and_a_recorded_referral_stops_it(
    harness: Harness,
) -> None:
    harness.clock.set(at(27, 14))  # Friday 27 November, 14:00: the weekend is not a working day
    users = await everyone_says_hello(harness, "Priya Shah", "Grace Okafor", "Ruth Evans", "Leah Brooks")
    priya, grace, ruth = users["Priya Shah"], users["Grace Okafor"], users["Ruth Evans"]

    async def allegation(what: str) -> tuple[str, str]:
        reference = await submit_report(harness.user("Leah Brooks"), what=what)
        _, token = await open_case(harness, "Priya Shah", reference)
        # The DSL sees it is about a teacher: the case moves to the Headteacher, and the LADO clock starts.
        await priya.executes(
            "incident.move",
            {"token": token, "version": 1, "subject_kind": "staff", "move_reason": "It is about a teacher"},
        )
        owned = (await grace.executes("incident.own", {"token": token, "version": 2})).invoke_card
        assert "Taken on by Grace Okafor" in json.dumps(owned)
        return reference, token

    first, token = await allegation("A teacher messaged a pupil on Snapchat")
    card = (await grace.executes("incident.view", {"token": token})).invoke_card
    assert "Referral to the LADO due by Mon 30 Nov, 17:30" in json.dumps(card)

    harness.clock.set(at(28, 18))  # Saturday: a calendar day has passed, a working day has not
    await harness.run_due_work()
    assert not reminders(harness, "Grace Okafor", first) and not overdue(harness, "Grace Okafor", first)
    harness.clock.set(at(30, 15, 29))
    await harness.run_due_work()
    assert not reminders(harness, "Grace Okafor", first)

    harness.clock.set(at(30, 15, 31))  # two hours before the end of Monday, the working day it is due
    await harness.run_due_work()
    assert reminders(harness, "Grace Okafor", first) == [
        f"Reminder: {first} needs a referral to the LADO by Mon 30 Nov, 17:30. Once it is made, record it on "
        "the case card."
    ]
    assert not overdue(harness, "Grace Okafor", first)

    harness.clock.set(at(30, 17, 31))
    await harness.run_due_work()
    assert len(overdue(harness, "Grace Okafor", first)) == 1
    assert not texts_to(harness, "Ruth Evans", first)  # the Chair only once the case manager has had the hour
    refused = (await ruth.executes("incident.view", {"token": token})).invoke_card
    assert "can't open that case" in json.dumps(refused)

    harness.clock.set(at(30, 18, 31))
    await harness.run_due_work()
    assert len(overdue(harness, "Ruth Evans", first)) == 1
    chair_view = json.dumps((await ruth.executes("incident.view", {"token": token})).invoke_card)
    assert "Referral to the LADO is overdue: it was due by Mon 30 Nov, 17:30." in chair_view

    recorded = json.dumps(
        (
            await grace.executes(
                "referral.record",
                {
                    "token": token,
                    "referral_agency": "lado",
                    "referral_on": "2026-11-30",
                    "referral_time": "18:30",
                    "referral_reference": "LADO-7781",
                },
            )
        ).invoke_card
    )
    assert "Referred to the LADO by Grace Okafor. Their reference: LADO-7781" in recorded
    assert "overdue" not in recorded.split("Chronology")[0]

    # Recorded before the reminder: neither the reminder nor any escalation follows.
    second, token = await allegation("A teacher added pupils on a personal account")
    await grace.executes(
        "referral.record", {"token": token, "referral_agency": "lado", "referral_reference": "LADO-7790"}
    )
    harness.clock.set(at(3, 12, month=12))
    await harness.run_due_work()
    for name in ("Grace Okafor", "Ruth Evans"):
        assert not reminders(harness, name, second) and not overdue(harness, name, second)
    assert len(overdue(harness, "Ruth Evans", first)) == 1  # and the first case's escalation was not repeated


async def test_a_data_breach_has_72_hours_for_the_ico_then_the_headteacher_hears(harness: Harness) -> None:
    users = await everyone_says_hello(harness, "Dana Lewis", "Sam Patel", "Grace Okafor", "Leah Brooks")
    dana = users["Dana Lewis"]
    reference = await submit_report(
        harness.user("Leah Brooks"),
        group="technical",
        category="data_protection_breach",
        what="A class list went to the wrong parent",
    )
    card, token = await open_case(harness, "Dana Lewis", reference)
    assert "Referral to the ICO due by Thu 26 Nov, 10:00" in json.dumps(card)
    await dana.executes("incident.own", {"token": token, "version": 1})

    harness.clock.set(at(25, 9, 59))
    await harness.run_due_work()
    assert not reminders(harness, "Dana Lewis", reference)
    harness.clock.set(at(25, 10, 1))  # a day before the deadline
    await harness.run_due_work()
    assert len(reminders(harness, "Dana Lewis", reference)) == 1
    assert not overdue(harness, "Dana Lewis", reference)

    harness.clock.set(at(26, 10, 1))  # 72 hours after it was reported
    await harness.run_due_work()
    for name in ("Dana Lewis", "Sam Patel"):
        assert len(overdue(harness, name, reference)) == 1, name
    assert not overdue(harness, "Grace Okafor", reference)
    harness.clock.set(at(26, 11, 1))
    await harness.run_due_work()
    assert len(overdue(harness, "Grace Okafor", reference)) == 1

    card = (await dana.executes("incident.view", {"token": token})).invoke_card
    version = next(a for a in card["actions"] if a.get("title") == "Close")["card"]["actions"][0]["data"]["version"]
    refused = (
        await dana.executes(
            "incident.close",
            {"token": token, "version": version, "outcome": "resolved_in_school", "close_note": "Parent deleted it"},
        )
    ).invoke_card
    assert "needs a referral to the ICO before it can close" in refused["body"][0]["text"]
    closed = json.dumps(
        (
            await dana.executes(
                "incident.close",
                {
                    "token": token,
                    "version": version,
                    "outcome": "resolved_in_school",
                    "close_note": "Parent deleted it",
                    "no_referral_reason": "Not reportable: one list of names, deleted within the hour, low risk",
                },
            )
        ).invoke_card
    )
    assert "Not referred to the ICO. Reason given by Dana Lewis when closing: Not reportable" in closed


async def test_a_referral_typed_wrongly_gets_a_kind_message_and_nothing_is_recorded(harness: Harness) -> None:
    users = await everyone_says_hello(harness, "Priya Shah", "Leah Brooks")
    priya = users["Priya Shah"]
    reference = await submit_report(harness.user("Leah Brooks"), group="illegal", category="other_criminal")
    _, token = await open_case(harness, "Priya Shah", reference)
    cases = [
        ({"referral_agency": "the bin"}, "Please choose who the referral was made to from the list."),
        (
            {"referral_agency": "police", "referral_reference": "X" * 65},
            "Their reference is 65 characters long. Please keep it to 64 or fewer",
        ),
        (
            {"referral_agency": "police", "referral_on": "2026-11-25", "referral_time": "09:00"},
            "That date and time is in the future. Please give when the referral was made.",
        ),
        ({"referral_agency": "police", "referral_on": "23/11/2026"}, "Please give the date as a day, month and year"),
    ]
    for data, message in cases:
        reply = await priya.executes("referral.record", {"token": token, **data})
        assert reply.status == 200
        assert reply.invoke_card["body"][0]["text"].startswith(message), reply.invoke_card["body"][0]
        assert "Referred to the police" not in json.dumps(reply.invoke_card)
    # Someone who does not handle the case gets the one refusal, which names nothing.
    leah = await harness.user("Leah Brooks").executes("referral.record", {"token": token, "referral_agency": "police"})
    assert "can't open that case" in json.dumps(leah.invoke_card) and reference not in json.dumps(leah.body)


@pytest.mark.parametrize(
    ("start", "due"),
    [
        (at(23, 10), at(24, 17, 30)),  # Monday in school hours: the next school day is the working day
        (at(23, 7), at(23, 17, 30)),  # before school opens, that day counts
        (at(27, 14), at(30, 17, 30)),  # Friday afternoon: the weekend is skipped
        (at(18, 10, month=12), dt.datetime(2027, 1, 5, 17, 30, tzinfo=LONDON)),  # last day of term: the holiday too
    ],
)
def test_working_days_are_school_days_from_the_demo_terms(start: dt.datetime, due: dt.datetime) -> None:
    school = load_config(DEMO_CONFIG).schools[0]
    lado = load_policy(ROOT / "config" / "policy_defaults.yaml").referrals.agency("lado")
    assert due_at(school, lado.clock, start) == due
