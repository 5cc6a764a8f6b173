"""The UKCIS initial review of a nudes and semi-nudes concern, on the case card, end to end over HTTP on SQLite and
PostgreSQL: a "yes" records an immediate referral, all "no" does not, and the review is kept once."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.clock import SettableClock
from bot.cards.incident import NOT_ALLOWED_TEXT
from tests.support.harness import Harness, start_harness
from tests.test_allegations import case_card, features, report, token_of
from tests.test_incidents import everyone_says_hello

NO_TO_ALL = {f"ukcis_q{i}": "no" for i in range(1, 6)}


@pytest.fixture
async def harness(database_url: str, clock: SettableClock, tmp_path: Path) -> AsyncIterator[Harness]:
    async with start_harness(
        database_url=database_url, clock=clock, var_dir=tmp_path / "var", features=features()
    ) as running:
        yield running


async def nudes_case(harness: Harness) -> str:
    reference, _ = await report(
        harness.user("Leah Brooks"),
        subject="A pupil",
        group="conduct",
        category="nudes_sharing",
        what="A Year 9 pupil says a picture was shared",
    )
    return reference


def review(**answers: str) -> dict[str, Any]:
    return {
        **NO_TO_ALL,
        "ukcis_parents": "yes",
        "ukcis_parents_reason": "No risk to the young person from telling them",
        "ukcis_no_image_viewed": "true",
        **answers,
    }


async def audit_actions(harness: Harness) -> list[str]:
    async with harness.parts.uow() as uow:
        return [e.action for e in await uow.audit.entries("oakfield")]


async def test_a_yes_records_an_immediate_referral_and_the_card_then_shows_the_outcome(harness: Harness) -> None:
    users = await everyone_says_hello(harness, "Priya Shah", "Grace Okafor")
    priya = users["Priya Shah"]
    reference = await nudes_case(harness)
    card = await case_card(priya, reference)
    words = json.dumps(card)
    assert "UKCIS initial review" in words and "Record the initial review" in words
    assert "An adult is involved" in words and "Will parents or carers be told?" in words
    token = token_of(card)

    for missing, notice in (
        ({"ukcis_q3": ""}, "Please answer question 3"),
        ({"ukcis_parents_reason": " "}, "Please give the reason"),
        ({"ukcis_no_image_viewed": "false"}, "Please confirm that nobody viewed"),
        ({"ukcis_q2": "yes"}, "Please choose the police or children"),
    ):
        refused = await priya.executes("incident.ukcis", {"token": token, "version": 1, **review(**missing)})
        assert notice in json.dumps(refused.invoke_card), notice
    assert "incident.ukcis_review" not in await audit_actions(harness)

    saved = await priya.executes(
        "incident.ukcis", {"token": token, "version": 1, **review(ukcis_q2="yes", ukcis_agency="police")}
    )
    words = json.dumps(saved.invoke_card)
    assert "the referral to the police is recorded on the case" in words
    assert "Immediate referral to the police (yes to question 2)." in words
    assert "Referred to the police by Priya Shah" in words  # the referral, on the chronology
    assert "UKCIS initial review by Priya Shah: Yes to question 2" in words
    assert "Record the initial review" not in words  # done: the outcome replaces the form
    assert "Recorded by Priya Shah" in words

    # The same form pressed again (an old copy of the card) records nothing twice.
    again = await priya.executes(
        "incident.ukcis", {"token": token, "version": 1, **review(ukcis_q2="yes", ukcis_agency="police")}
    )
    assert "Someone else updated this case" in json.dumps(again.invoke_card)
    actions = await audit_actions(harness)
    assert actions.count("incident.ukcis_review") == 1 and actions.count("referral.recorded") == 1


async def test_no_to_all_five_records_the_review_and_no_referral(harness: Harness) -> None:
    users = await everyone_says_hello(harness, "Priya Shah")
    priya = users["Priya Shah"]
    reference = await nudes_case(harness)
    token = token_of(await case_card(priya, reference))
    saved = await priya.executes(
        "incident.ukcis",
        {
            "token": token,
            "version": 1,
            **review(
                ukcis_parents="no",
                ukcis_parents_reason="Telling them would put the young person at risk",
                ukcis_agency="police",
            ),
        },
    )
    words = json.dumps(saved.invoke_card)
    assert "No immediate referral is needed" in words
    assert "No immediate referral: no to all five questions." in words
    assert "Parents or carers will not be told" in words
    assert "Telling them would put the young person at risk" in words  # the reason, on the chronology
    assert "Referred to the police" not in words and "Referred to children" not in words
    actions = await audit_actions(harness)
    assert "incident.ukcis_review" in actions and "referral.recorded" not in actions


async def test_only_the_case_managers_see_the_form_and_anyone_else_is_refused(harness: Harness) -> None:
    users = await everyone_says_hello(harness, "Priya Shah", "Grace Okafor", "Sam Patel")
    reference = await nudes_case(harness)
    token = token_of(await case_card(users["Priya Shah"], reference))
    # The review is the DSL team's: the Headteacher and the online-safety lead do not handle this case.
    for name in ("Grace Okafor", "Sam Patel"):
        forged = await users[name].executes(
            "incident.ukcis", {"token": token, "version": 1, **review(ukcis_q1="yes", ukcis_agency="social_care")}
        )
        assert NOT_ALLOWED_TEXT in json.dumps(forged.invoke_card)
    actions = await audit_actions(harness)
    assert "incident.ukcis_review" not in actions and "referral.recorded" not in actions

    # A case of another type has no review at all.
    other, _ = await report(
        harness.user("Leah Brooks"), subject="A pupil", group="conduct", category="cyberbullying", what="Cruel messages"
    )
    other_card = await case_card(users["Priya Shah"], other)
    assert "UKCIS" not in json.dumps(other_card)
    stopped = await users["Priya Shah"].executes(
        "incident.ukcis", {"token": token_of(other_card), "version": 1, **review()}
    )
    assert "has no UKCIS review" in json.dumps(stopped.invoke_card)
