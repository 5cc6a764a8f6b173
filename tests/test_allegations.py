"""Allegations about adults (KCSIE Part 4) end to end over HTTP on SQLite and PostgreSQL: outcomes, the case
manager's decisions, low-level concerns and their register, the Vice-Chair standing in for the Chair, and an
urgent allegation about a deputy DSL reaching every other DSL but never him."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapters.clock import SettableClock
from bot.cards.incident import NOT_ALLOWED_TEXT
from tests.support.harness import DEMO_CONFIG, Harness, start_harness
from tests.support.teams import Reply, TeamsUser
from tests.test_case_access import _assert_nothing_about, _forge_everything
from tests.test_incidents import _choice, card_titled, confirmation, everyone_says_hello

KCSIE = ["substantiated", "malicious", "false", "unsubstantiated", "unfounded"]


def features() -> list[Any]:
    """The app's features, with this one (and referrals, for the UKCIS tests) whether or not the lead has added
    them to app._features yet."""
    from app import _features
    from dialogs import allegations

    found = _features()
    extra = [allegations.install]
    try:
        from dialogs import referrals

        extra.append(referrals.install)
    except ImportError:  # pragma: no cover - the referrals feature is built alongside this one
        pass
    return found + [f for f in extra if f not in found]


@pytest.fixture
async def harness(database_url: str, clock: SettableClock, tmp_path: Path) -> AsyncIterator[Harness]:
    async with start_harness(
        database_url=database_url, clock=clock, var_dir=tmp_path / "var", features=features()
    ) as running:
        yield running


def without_a_chair(tmp_path: Path) -> Path:
    """The demo school with nobody holding the Chair of Governors role (Ruth Evans stays a governor)."""
    raw = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))
    for person in raw["schools"][0]["people"]:
        person["roles"] = [r for r in person["roles"] if r != "chair_of_governors"]
    path = tmp_path / "no_chair.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


async def report(
    user: TeamsUser,
    *,
    subject: str,
    person: tuple[str, ...] = (),
    group: str = "contact",
    category: str | None = "staff_personal_channels",
    danger: str = "No",
    what: str = "Messaging a pupil on a personal account",
) -> tuple[str, list[Reply]]:
    """Walk the report dialog to the end, naming the person with `person` (what the reporter types and picks).
    Returns the reference and every reply, so what the reporter read can be checked."""
    group_answer, category_answer = _choice(group, category)
    replies = [await user.says("report"), await user.says(subject)]
    for answer in person:
        replies.append(await user.says(answer))
    replies.append(await user.says(group_answer))
    if category_answer:
        replies.append(await user.says(category_answer))
    for answer in (danger, "In school", "This morning", "Not known", what, "None", "Nothing yet", "submit"):
        replies.append(await user.says(answer))
    assert [c for c in replies[-1].cards if c["body"][0].get("text", "").startswith("Thank you. Your report")], [
        r.everything[-300:] for r in replies
    ]
    title = confirmation(replies[-1])["body"][0]["text"]
    return title.rsplit(" ", 1)[-1], replies


async def case_card(user: TeamsUser, reference: str) -> dict[str, Any]:
    return card_titled(await user.says(f"case {reference}"), reference)


async def alerted_card(harness: Harness, user: TeamsUser, reference: str) -> dict[str, Any]:
    """The case card the alert brought (the way a Vice-Chair, who has no desk, reaches the case)."""
    found = await harness.connector.wait_for(
        lambda sent: [
            c
            for s in sent
            if s.conversation_id == user.conversation_id
            for c in s.cards
            if reference in json.dumps(c) and c.get("refresh")
        ]
    )
    return found[-1]


def outcome_keys(card: dict[str, Any]) -> list[str]:
    close = next(a for a in card["actions"] if a["title"] == "Close")
    choices = next(b for b in close["card"]["body"] if b.get("id") == "outcome")["choices"]
    return [c["value"] for c in choices]


def token_of(card: dict[str, Any]) -> str:
    return card["refresh"]["action"]["data"]["token"]


def version_of(card: dict[str, Any]) -> int:
    """The case version the card's buttons carry."""
    found = re.search(r'"version": (\d+)', json.dumps(card.get("actions", [])))
    assert found, "no case buttons on the card"
    return int(found.group(1))


def sent_about(harness: Harness, user: TeamsUser, reference: str) -> list[Any]:
    return [s for s in harness.connector.to(user.conversation_id) if reference in json.dumps(s.activity)]


async def test_an_allegation_closes_only_with_a_kcsie_outcome_and_a_pupil_case_never_as_malicious(
    harness: Harness,
) -> None:
    users = await everyone_says_hello(harness, "Grace Okafor", "Priya Shah")
    grace, priya = users["Grace Okafor"], users["Priya Shah"]
    leah = harness.user("Leah Brooks")
    allegation, _ = await report(leah, subject="A member of staff", person=("rather not say",))
    card = await case_card(grace, allegation)
    assert outcome_keys(card) == KCSIE
    token = token_of(card)

    refused = await grace.executes(
        "incident.close",
        {
            "token": token,
            "version": card["refresh"]["action"]["data"].get("version", 1),
            "outcome": "resolved_in_school",
            "close_note": "Spoke to them",
        },
    )
    assert "Please choose an outcome" in json.dumps(refused.invoke_card)
    closed = await grace.executes(
        "incident.close",
        {
            "token": token,
            "version": 1,
            "outcome": "false",
            "close_note": "The account was not theirs",
            # the referrals feature's Close-form reason for no LADO call
            "no_referral_reason": "The LADO was consulted by phone",
        },
    )
    assert "Closed by Grace Okafor. Outcome: False" in json.dumps(closed.invoke_card), closed.invoke_card["body"][:2]

    pupil, _ = await report(
        leah, subject="A pupil", group="conduct", category="cyberbullying", what="Cruel messages in a class chat"
    )
    pupil_card = await case_card(priya, pupil)
    keys = outcome_keys(pupil_card)
    assert "malicious" not in keys and "resolved_in_school" in keys and "substantiated" not in keys
    pupil_token = token_of(pupil_card)
    for outcome in ("malicious", "substantiated"):
        stopped = await priya.executes(
            "incident.close", {"token": pupil_token, "version": 1, "outcome": outcome, "close_note": "Made up"}
        )
        assert "Please choose an outcome" in json.dumps(stopped.invoke_card)
    still_open = await case_card(priya, pupil)
    assert "Closed by" not in json.dumps(still_open)


async def test_the_case_manager_records_suspension_dbs_and_tra_decisions_on_the_case(harness: Harness) -> None:
    users = await everyone_says_hello(harness, "Grace Okafor", "Priya Shah")
    grace = users["Grace Okafor"]
    reference, _ = await report(harness.user("Leah Brooks"), subject="A member of staff", person=("rather not say",))
    card = await case_card(grace, reference)
    assert "Case manager's decisions" in json.dumps(card)
    token = token_of(card)

    no_note = await grace.executes(
        "incident.allegation_decisions", {"token": token, "version": 1, "alleg_suspension": "no"}
    )
    assert "Please add a short note" in json.dumps(no_note.invoke_card)
    saved = await grace.executes(
        "incident.allegation_decisions",
        {
            "token": token,
            "version": 1,
            "alleg_suspension": "no",
            "alleg_suspension_note": "Risk managed by a move",
            "alleg_dbs": "yes",
            "alleg_dbs_note": "Harm threshold may be met",
        },
    )
    words = json.dumps(saved.invoke_card)
    assert "Decisions saved." in words
    assert "Suspension considered: No (Grace Okafor" in words
    assert "Referral to the DBS considered: Yes (Grace Okafor" in words
    assert "Referral to the Teaching Regulation Agency considered: not recorded yet" in words
    assert "Decision recorded by Grace Okafor: Suspension considered: No. Risk managed by a move" in words
    # The same form again (an old copy of the card) changes nothing.
    stale = await grace.executes(
        "incident.allegation_decisions", {"token": token, "version": 1, "alleg_tra": "yes", "alleg_tra_note": "Again"}
    )
    assert "Someone else updated this case" in json.dumps(stale.invoke_card)
    # Someone who does not handle the case gets the one refusal, whatever the card carried.
    forged = await users["Priya Shah"].executes(
        "incident.allegation_decisions", {"token": token, "version": 2, "alleg_tra": "yes", "alleg_tra_note": "Forged"}
    )
    assert NOT_ALLOWED_TEXT in json.dumps(forged.invoke_card) and reference not in json.dumps(forged.invoke_card)
    fresh = json.dumps(await case_card(grace, reference))
    assert "Forged" not in fresh and "Again" not in fresh


async def test_low_level_concerns_go_to_the_headteacher_and_the_register_shows_a_pattern(harness: Harness) -> None:
    users = await everyone_says_hello(harness, "Grace Okafor", "Priya Shah", "Alex Morgan", "Leah Brooks")
    grace = users["Grace Okafor"]
    leah, sam = users["Leah Brooks"], harness.user("Sam Patel")
    first, replies = await report(
        leah,
        subject="A member of staff: a low-level concern",
        person=("alex", "1"),
        group="conduct",
        category="disrepute",
        what="Over-familiar comments online",
    )
    said = " ".join(r.everything for r in replies)
    assert (
        "Alex Morgan will not be told about this report" in said and "low-level concern goes to the Headteacher" in said
    )
    assert "I am sending it to the Headteacher now" in json.dumps(confirmation(replies[-1]))
    second, _ = await report(
        sam,
        subject="A member of staff: a low-level concern",
        person=("morg", "1"),
        group="conduct",
        category="disrepute",
        what="Shared a pupil's work on a personal page",
    )
    third, _ = await report(
        sam,
        subject="A member of staff: a low-level concern",
        person=("leah", "1"),
        group="conduct",
        category="disrepute",
        what="Used a personal phone in class",
    )
    unnamed, _ = await report(
        leah,
        subject="A member of staff: a low-level concern",
        person=("rather not say",),
        group="conduct",
        category="disrepute",
        what="Late to duty, twice",
    )

    for reference in (first, second, third, unnamed):
        await harness.connector.wait_for(
            lambda sent, ref=reference: [
                s for s in sent if s.conversation_id == grace.conversation_id and ref in (s.text or "")
            ]
        )
    card = await case_card(grace, first)
    assert "Contact the LADO" not in json.dumps(card)  # below the harm threshold: no LADO prompt
    # The member of staff hears nothing and cannot open it; nor can the DSL, who does not handle it.
    await harness.run_due_work()
    assert not sent_about(harness, users["Alex Morgan"], first)
    for name in ("Alex Morgan", "Priya Shah"):
        refused = await users[name].says(f"case {first}")
        assert "can't open that case" in refused.everything and first not in refused.everything

    register = await grace.says("low-level")
    words = json.dumps(register.cards)
    assert "Pattern: Alex Morgan: 2 concerns, 2 open" in words
    assert first in words and second in words
    assert "Leah Brooks: 1 concern, 1 open" in words and "Not named by the reporter: 1 concern" in words
    assert words.index("Alex Morgan") < words.index("Leah Brooks")  # the pattern comes first
    # Leah's register entry is never shown to Leah; the register is the Headteacher's alone.
    for name in ("Leah Brooks", "Priya Shah"):
        other = await users[name].says("low-level")
        assert "Alex Morgan" not in json.dumps(other.cards) + other.everything
    async with harness.parts.uow() as uow:
        entries = await uow.audit.entries("oakfield")
    viewed = [e for e in entries if e.action == "allegations.register_viewed"]
    assert [e.actor_id for e in viewed] == [harness.person_id("Grace Okafor")]
    assert viewed[0].detail == {"concerns": 4, "people": 3}


async def test_with_no_chair_in_the_directory_the_vice_chair_has_it_and_the_reporter_is_told_so(
    database_url: str, clock: SettableClock, tmp_path: Path
) -> None:
    async with start_harness(
        database_url=database_url,
        clock=clock,
        var_dir=tmp_path / "var",
        features=features(),
        config_path=without_a_chair(tmp_path),
    ) as harness:
        users = await everyone_says_hello(harness, "Grace Okafor", "Ruth Evans", "Ben Carter")
        leah = harness.user("Leah Brooks")
        reference, replies = await report(
            leah, subject="The Headteacher", group="conduct", category="disrepute", what="Posted about pupils"
        )
        assert "This will go only to the Vice-Chair of Governors" in replies[1].everything
        words = json.dumps(confirmation(replies[-1]))
        assert (
            "I am sending it to the Vice-Chair of Governors now" in words
            and "Chair of Governors now" not in words.replace("Vice-Chair of Governors now", "")
        )
        await harness.run_due_work()
        alert = [s for s in sent_about(harness, users["Ben Carter"], reference) if s.op == "send"]
        assert alert and "LADO" in json.dumps(alert[0].card)
        # The reporter's word follows the alert as its own durable work, which the worker may still be sending.
        assert await harness.connector.wait_for(
            lambda _sent: any(
                f"Your report {reference} has reached the Vice-Chair of Governors" in (s.text or "")
                for s in harness.connector.to(leah.conversation_id)
            )
        )
        # The Vice-Chair handles it: they can take it on; the Headteacher hears nothing and is refused.
        card = await alerted_card(harness, users["Ben Carter"], reference)
        owned = await users["Ben Carter"].executes("incident.own", {"token": token_of(card), "version": 1})
        assert "Taken on by Ben Carter" in json.dumps(owned.invoke_card)
        assert not sent_about(harness, users["Grace Okafor"], reference)
        refused = await users["Grace Okafor"].says(f"case {reference}")
        assert "can't open that case" in refused.everything


async def test_when_the_chair_cannot_be_reached_the_alert_goes_to_the_vice_chair(harness: Harness) -> None:
    users = await everyone_says_hello(harness, "Grace Okafor", "Ruth Evans", "Ben Carter")
    harness.connector.fail_next(403, times=20, conversation_id=users["Ruth Evans"].conversation_id)
    leah = harness.user("Leah Brooks")
    reference, replies = await report(
        leah, subject="The Headteacher", group="conduct", category="disrepute", what="Posted about pupils"
    )
    assert "I am sending it to the Chair of Governors now" in json.dumps(confirmation(replies[-1]))
    await harness.run_due_work()
    assert [s for s in sent_about(harness, users["Ben Carter"], reference) if s.op == "send"]
    # The reporter's word follows the alert as its own durable work, which the worker may still be sending.
    assert await harness.connector.wait_for(
        lambda _sent: any(
            f"Your report {reference} has reached the Chair of Governors: Ben Carter (Vice-Chair of "
            "Governors)" in (s.text or "")
            for s in harness.connector.to(leah.conversation_id)
        )
    )
    card = (
        await users["Ben Carter"].executes(
            "incident.view", {"token": token_of(await alerted_card(harness, users["Ben Carter"], reference))}
        )
    ).invoke_card
    assert "could not be delivered" in json.dumps(card)
    # Standing in for the Chair, the Vice-Chair manages the case, not only reads it.
    version = next(a for a in card["actions"] if a["title"] == "Take ownership")["data"]["version"]
    owned = await users["Ben Carter"].executes("incident.own", {"token": token_of(card), "version": version})
    assert "Taken on by Ben Carter" in json.dumps(owned.invoke_card)
    assert not sent_about(harness, users["Grace Okafor"], reference)


async def test_an_urgent_allegation_about_a_deputy_dsl_alerts_every_other_dsl_and_never_him(
    harness: Harness, clock: SettableClock
) -> None:
    dsls = ("Priya Shah", "Chris Doyle")
    users = await everyone_says_hello(harness, *dsls, "Tom Reed", "Grace Okafor", "Ruth Evans")
    tom = users["Tom Reed"]
    leah = harness.user("Leah Brooks")
    reference, replies = await report(
        leah,
        subject="A member of staff",
        person=("tom", "1"),
        danger="Yes, someone is in danger now",
        what="Arranged to meet a pupil alone tonight",
    )
    assert "Tom Reed will not be told about this report" in " ".join(r.everything for r in replies)
    for name in (*dsls, "Grace Okafor"):
        await harness.connector.wait_for(
            lambda sent, who=users[name]: [
                s
                for s in sent
                if s.conversation_id == who.conversation_id
                and f"Urgent online-safety concern {reference}" in (s.text or "")
            ]
        )
    card = await case_card(users["Priya Shah"], reference)
    token = token_of(card)
    assert harness.person_id("Tom Reed") not in card["refresh"]["userIds"]
    # Missed SLAs and delivery checks run: still nothing reaches him.
    clock.advance(minutes=60)
    await harness.run_due_work()
    assert not sent_about(harness, tom, reference)

    replies = await _forge_everything(tom, token, reference)
    for verb, data in (
        ("incident.allegation_decisions", {"alleg_suspension": "yes", "alleg_suspension_note": "x"}),
        ("incident.ukcis", {"ukcis_q1": "no"}),
    ):
        replies.append(await tom.executes(verb, {"token": token, "version": 1, **data}))
    _assert_nothing_about(replies, reference, ["Arranged to meet", harness.person_id("Grace Okafor")])

    # Changing the case's type re-applies the routing rules: he stays excluded by who he is.
    grace = users["Grace Okafor"]
    current = await case_card(grace, reference)
    changed = await grace.executes(
        "incident.recategorise",
        {
            "token": token,
            "version": version_of(current),
            "category": "disrepute",
            "category_reason": "It is about conduct outside school",
        },
    )
    assert "Type changed by Grace Okafor" in json.dumps(changed.invoke_card)
    replies = [await tom.says(f"case {reference}"), await tom.executes("incident.view", {"token": token})]
    _assert_nothing_about(replies, reference, ["Arranged to meet"])
    assert not sent_about(harness, tom, reference)


async def test_a_low_level_concern_with_a_child_in_danger_becomes_an_allegation(harness: Harness) -> None:
    users = await everyone_says_hello(harness, "Grace Okafor", "Priya Shah", "Alex Morgan")
    reference, replies = await report(
        harness.user("Leah Brooks"),
        subject="A member of staff: a low-level concern",
        person=("alex", "1"),
        group="conduct",
        category="disrepute",
        danger="Yes, someone is in danger now",
        what="Took a pupil home alone",
    )
    assert "more than a low-level concern" in " ".join(r.everything for r in replies)
    await harness.connector.wait_for(
        lambda sent: [
            s
            for s in sent
            if s.conversation_id == users["Priya Shah"].conversation_id
            and f"Urgent online-safety concern {reference}" in (s.text or "")
        ]
    )
    card = await case_card(users["Grace Okafor"], reference)
    assert outcome_keys(card) == KCSIE and "Contact the LADO" in json.dumps(card)
    register = await users["Grace Okafor"].says("low-level")
    assert "No low-level concerns have been recorded." in json.dumps(register.cards)
    await harness.run_due_work()
    assert not sent_about(harness, users["Alex Morgan"], reference)
