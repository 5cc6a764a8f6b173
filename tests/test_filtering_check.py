"""The termly filtering check (DfE filtering and monitoring standards), over HTTP on SQLite and PostgreSQL.

The technician records a check from one card; a full check completes the termly review and opens the next; a test
that got through reaches the online-safety lead, DSL and technicians at once; the governors' report shows each check
with its date, the role of who ran it and the result, and no names; one card records one check however often it is
pressed.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import text

from bot.filtering_check import RECORD_VERB
from tests.support.harness import Harness
from tests.test_incidents import everyone_says_hello

TECHNICIAN, LEAD, DSL, TEACHER, CHAIR = "Alex Morgan", "Sam Patel", "Priya Shah", "Leah Brooks", "Ruth Evans"
TESTS = ("iwf", "terrorism", "adult", "proxies", "gambling", "self_harm")


def _form_token(card: dict[str, Any]) -> str:
    action = card["actions"][0]
    assert action["verb"] == RECORD_VERB
    return str(action["data"]["form"])


def _answers(token: str, **outcomes: str) -> dict[str, Any]:
    data: dict[str, Any] = {"form": token, "device": "Year 5 laptop 12 on pupil Wi-Fi"}
    data.update({f"test_{key}": outcomes.get(key, "blocked") for key in TESTS})
    return data


async def _open_check(harness: Harness, who: str) -> str:
    reply = await harness.user(who).says("filter check")
    card = next(c for c in reply.cards if "Termly filtering check" in json.dumps(c["body"][:1]))
    assert "testfiltering.com" in json.dumps(card)  # each test says how to run it safely
    return _form_token(card)


async def _review(harness: Harness) -> list[tuple[str, bool]]:
    async with harness.parts.engine.connect() as connection:
        return [
            (str(due)[:10], bool(done))
            for due, done in (
                await connection.execute(
                    text(
                        "SELECT due_on, completed_at IS NOT NULL FROM review_items WHERE kind = 'filtering_check' "
                        "ORDER BY id"
                    )
                )
            ).all()
        ]


async def test_a_full_check_is_recorded_and_completes_the_termly_review(harness: Harness) -> None:
    before = await _review(harness)
    assert len(before) == 1 and before[0][1] is False  # seeded at start-up, due at the end of term
    token = await _open_check(harness, TECHNICIAN)
    reply = await harness.user(TECHNICIAN).executes(RECORD_VERB, _answers(token))
    recorded = json.dumps(reply.invoke_card)
    assert "All 6 tests blocked" in recorded and "Alex Morgan" in recorded
    assert "the next one is in the review calendar" in recorded
    after = await _review(harness)
    assert [done for _, done in after] == [True, False] and after[1][0] > after[0][0]


async def test_a_test_that_got_through_reaches_the_lead_dsl_and_technicians_at_once(harness: Harness) -> None:
    users = await everyone_says_hello(harness, TECHNICIAN, LEAD, DSL, TEACHER)
    token = await _open_check(harness, LEAD)
    reply = await users[LEAD].executes(RECORD_VERB, _answers(token, gambling="not_blocked", proxies="not_blocked"))
    recorded = json.dumps(reply.invoke_card)
    assert "2 of 6 not blocked: Proxies and VPNs, Gambling" in recorded
    assert "The online-safety lead, DSL and technicians are being sent this now." in recorded
    await harness.run_due_work()
    for name in (TECHNICIAN, LEAD, DSL):
        alerts = [
            c
            for c in (c for s in harness.connector.to(users[name].conversation_id) for c in s.cards)
            if "The filter let something through" in json.dumps(c)
        ]
        assert len(alerts) == 1, name
    assert not any(
        "let something through" in json.dumps(s.cards) for s in harness.connector.to(users[TEACHER].conversation_id)
    )
    # Something got through: the check does not count as the termly check being done.
    assert [done for _, done in await _review(harness)] == [False]


async def test_one_card_records_one_check_and_sends_one_round_of_alerts(harness: Harness) -> None:
    users = await everyone_says_hello(harness, TECHNICIAN, LEAD, DSL)
    token = await _open_check(harness, TECHNICIAN)
    answers = _answers(token, adult="not_blocked")
    first = await users[TECHNICIAN].executes(RECORD_VERB, answers)
    again = await users[TECHNICIAN].executes(RECORD_VERB, answers)
    assert json.dumps(first.invoke_card) == json.dumps(again.invoke_card)
    await harness.run_due_work()
    async with harness.parts.engine.connect() as connection:
        assert (await connection.execute(text("SELECT count(*) FROM filtering_checks"))).scalar_one() == 1
    alerts = [
        s for s in harness.connector.to(users[DSL].conversation_id) if "let something through" in json.dumps(s.cards)
    ]
    assert len(alerts) == 1


async def test_a_card_with_a_missing_result_comes_back_with_what_to_fix(harness: Harness) -> None:
    token = await _open_check(harness, TECHNICIAN)
    answers = _answers(token)
    del answers["test_iwf"]
    answers["device"] = " "
    reply = await harness.user(TECHNICIAN).executes(RECORD_VERB, answers)
    shown = json.dumps(reply.invoke_card)
    assert "Please choose a result for" in shown and "Child sexual abuse content (IWF list)" in shown
    assert "Please say which device and network you tested on." in shown
    async with harness.parts.engine.connect() as connection:
        assert (await connection.execute(text("SELECT count(*) FROM filtering_checks"))).scalar_one() == 0


async def test_only_those_who_run_checks_may_record_one(harness: Harness) -> None:
    reply = await harness.user(TEACHER).says("filter check")
    assert "not available to you" in reply.everything
    refused = await harness.user(TEACHER).executes(RECORD_VERB, _answers("0" * 32))
    assert "not allowed" in (refused.invoke_message or "") and refused.invoke_card is None
    async with harness.parts.engine.connect() as connection:
        assert (await connection.execute(text("SELECT count(*) FROM filtering_checks"))).scalar_one() == 0


async def test_the_governors_report_shows_each_check_by_role_and_result_with_no_names(harness: Harness) -> None:
    token = await _open_check(harness, TECHNICIAN)
    await harness.user(TECHNICIAN).executes(RECORD_VERB, _answers(token, self_harm="not_tried"))
    report = await harness.user(CHAIR).says("governors report")
    card = json.dumps(report.cards)
    assert "Filtering checks" in card and "by the IT technician" in card
    assert "5 of 6 tried, all blocked" in card
    assert "Alex Morgan" not in card
    markdown = " ".join((await harness.user(CHAIR).says("governors report markdown")).texts)
    assert "## Filtering checks" in markdown and "5 of 6 tried, all blocked" in markdown
