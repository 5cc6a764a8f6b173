"""The report as two cards, then the summary: over HTTP on SQLite and PostgreSQL, as Teams sends card submits.

`report` sends card 1 (who, danger, what), its submit raises the urgent alert at once when it must and sends card 2
(that category's guidance and the details), whose submit sends the summary; Submit files it. A reporter who types
instead of submitting a card gets the typed questions, one at a time.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import text

from tests.support.harness import Harness
from tests.support.teams import Reply, TeamsUser
from tests.test_effect_idempotency import together
from tests.test_incidents import confirmation, everyone_says_hello

URGENT = ("Priya Shah", "Tom Reed", "Chris Doyle", "Grace Okafor")
DETAILS = {
    "location": "online",
    "occurred": "Yesterday evening",
    "subjects": "JS, Year 6",
    "narrative": "Unkind messages in the class group chat",
    "evidence": "Screenshots on the class laptop",
    "actions_taken": "Told the class teacher",
}


def inputs(card: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {b["id"]: b for b in card["body"] if b.get("type", "").startswith("Input.")}


def card_with(reply: Reply, input_id: str) -> dict[str, Any]:
    found = [c for c in reply.cards if input_id in inputs(c)]
    assert found, f"no card with the input {input_id!r} in {reply.everything[:600]}"
    return found[-1]


async def submit_card(user: TeamsUser, card: dict[str, Any], **answers: str) -> Reply:
    """What Teams sends on the card's Submit: its action's data and every input's value."""
    data = dict(card["actions"][0]["data"])
    data.update({k: v["value"] for k, v in inputs(card).items() if "value" in v})
    data.update(answers)
    return await user.submits(data)


async def first_card(user: TeamsUser, **answers: str) -> Reply:
    card = card_with(await user.says("report"), "category")
    return await submit_card(user, card, **answers)


async def count(harness: Harness, sql: str) -> int:
    async with harness.parts.engine.connect() as connection:
        return (await connection.execute(text(sql))).scalar_one()


async def test_a_full_report_is_card_one_card_two_and_submit(harness: Harness) -> None:
    leah = harness.user("Leah Brooks")
    opened = await leah.says("report")
    # One message: how long it takes, how to stop and to call 999 first, with card 1 beneath.
    [first] = opened.replies
    assert first.text is not None and first.text.startswith("Two short cards") and "call 999 first" in first.text
    about = card_with(opened, "category")
    assert first.cards == [about]
    titles = [c["title"] for c in inputs(about)["category"]["choices"]]
    assert (
        "Contact: Grooming concern. Early signs that someone is building trust with a child for sexual or other "
        "abuse, before any offence is clear." in titles
    )  # every title whole: group, label and description
    for required in ("subject_kind", "immediate_danger", "category"):
        assert inputs(about)[required]["isRequired"] and inputs(about)[required]["errorMessage"]

    second = await submit_card(leah, about, subject_kind="pupil", immediate_danger="no", category="cyberbullying")
    details = card_with(second, "narrative")
    assert "Cyberbullying" in json.dumps(details["body"][:3])  # that category's guidance comes first
    assert "Urgent alert" not in second.everything

    summary = await submit_card(leah, details, **DETAILS)
    shown = json.dumps(summary.cards)
    assert "Please check your report" in shown and "Unkind messages in the class group chat" in shown
    buttons = {a["title"]: a["data"] for a in summary.card["actions"]}
    assert buttons == {"Submit report": {"answer": "submit"}, "Change an answer": {"answer": "change"}}

    done = await leah.submits({"answer": "submit"})
    assert "ES-2026-0001" in confirmation(done)["body"][0]["text"]
    assert await count(harness, "SELECT count(*) FROM incidents WHERE complete") == 1
    assert "ES-2026-0001" in (await leah.says("my reports")).everything


async def test_danger_on_card_one_raises_the_alert_at_once_and_a_double_click_raises_it_once(harness: Harness) -> None:
    users = await everyone_says_hello(harness, *URGENT)
    leah = harness.user("Leah Brooks")
    about = card_with(await leah.says("report"), "category")
    alerted = harness.connector.hang_when(lambda s: "Urgent alert raised:" in s.text)
    answers = {
        **about["actions"][0]["data"],
        "subject_kind": "pupil",
        "immediate_danger": "yes",
        "category": "stranger_contact",
    }

    replies = await together(leah.submits(answers), leah.submits(answers), hang=alerted)

    assert [s.text.split(".")[0] for s in alerted.held] == ["Urgent alert raised: ES-2026-0001"] * 2
    assert all("999" in r.everything for r in replies)
    await harness.run_due_work()
    for name in URGENT:
        alerts = [
            s for s in harness.connector.to(users[name].conversation_id) if "Urgent online-safety concern" in s.text
        ]
        assert len(alerts) == 1, (name, [s.text for s in alerts])
    # The details complete the same case, and the same card sent again later raises nothing new.
    again = await leah.submits(answers)
    assert "already sent that part" in again.everything and "Urgent alert raised" not in again.everything
    summary = await submit_card(leah, card_with(again, "narrative"), **DETAILS)
    done = await leah.submits({"answer": "submit"})
    assert "ES-2026-0001" in confirmation(done)["body"][0]["text"], summary.everything[:300]
    assert await count(harness, "SELECT count(*) FROM incidents") == 1


async def test_an_illegal_category_on_card_one_raises_the_alert_and_card_two_keeps_images_out(harness: Harness) -> None:
    users = await everyone_says_hello(harness, *URGENT)
    leah = harness.user("Leah Brooks")
    second = await first_card(leah, subject_kind="pupil", immediate_danger="no", category="indecent_images")
    assert any("Urgent alert raised: ES-2026-0001" in t for t in second.texts)
    assert not any("999" in t for t in second.texts)  # no danger now: the alert, not the emergency call
    await harness.run_due_work()
    for name in URGENT:
        assert [
            s
            for s in harness.connector.to(users[name].conversation_id)
            if "Urgent online-safety concern ES-2026-0001" in s.text
        ], name
    details = card_with(second, "narrative")
    assert "never view, copy, forward, print, screenshot or save" in json.dumps(details["body"][:4])
    assert inputs(details)["evidence"]["label"].startswith("Which device are the images on")

    refused = await submit_card(leah, details, **{**DETAILS, "evidence": "https://example.com/picture"})
    assert "Please do not add links to the images" in refused.everything
    again = card_with(refused, "narrative")
    assert inputs(again)["narrative"]["value"] == DETAILS["narrative"]  # what was right is kept
    summary = await submit_card(leah, again, evidence="The phone is locked in the head's office safe")
    assert "Please check your report" in summary.everything
    done = await leah.submits({"answer": "submit"})
    assert "ES-2026-0001" in confirmation(done)["body"][0]["text"]
    assert await count(harness, "SELECT count(*) FROM incidents") == 1


async def test_card_two_problems_are_said_and_the_card_comes_back_with_the_answers_kept(harness: Harness) -> None:
    leah = harness.user("Leah Brooks")
    second = await first_card(leah, subject_kind="pupil", immediate_danger="no", category="cyberbullying")
    details = card_with(second, "narrative")
    for required in ("location", "occurred", "subjects", "narrative", "actions_taken"):
        assert inputs(details)[required]["isRequired"] and inputs(details)[required]["errorMessage"]

    problems = await submit_card(
        leah, details, **{**DETAILS, "narrative": "   ", "occurred": "x" * 500, "location": "the moon"}
    )
    # One message: what needs changing, with the card beneath it, the answers kept.
    [said] = problems.replies
    for expected in ("Please say what happened.", "When is a little long", "Please choose where it happened."):
        assert expected in (said.text or ""), said.text
    shown = card_with(problems, "narrative")
    assert said.cards == [shown]
    assert inputs(shown)["subjects"]["value"] == DETAILS["subjects"]
    assert "Please check your report" not in problems.everything
    assert await count(harness, "SELECT count(*) FROM incidents") == 0

    summary = await submit_card(leah, shown, **DETAILS)
    assert "Please check your report" in summary.everything


async def test_change_on_the_summary_brings_both_cards_back_filled_in(harness: Harness) -> None:
    leah = harness.user("Leah Brooks")
    second = await first_card(leah, subject_kind="pupil", immediate_danger="no", category="cyberbullying")
    await submit_card(leah, card_with(second, "narrative"), **DETAILS)

    changing = await leah.submits({"answer": "change"})
    about = card_with(changing, "category")
    assert inputs(about)["category"]["value"] == "cyberbullying" and inputs(about)["subject_kind"]["value"] == "pupil"
    details_again = card_with(await submit_card(leah, about, category="scams"), "narrative")
    assert inputs(details_again)["narrative"]["value"] == DETAILS["narrative"]
    summary = await submit_card(leah, details_again)
    assert "Scams" in json.dumps(summary.cards)
    done = await leah.submits({"answer": "submit"})
    confirmation(done)
    async with harness.parts.engine.connect() as connection:
        categories = (await connection.execute(text("SELECT category FROM incidents"))).scalars().all()
    assert categories == ["scams"]


async def test_typing_instead_of_submitting_a_card_carries_on_with_typed_questions(harness: Harness) -> None:
    leah = harness.user("Leah Brooks")
    await leah.says("report")
    typed = await leah.says("pupil")  # a client that cannot submit cards: the reply answers "who is it about"
    assert "What kind of concern is it?" in typed.everything and "1. Illegal" in typed.everything
    for reply in ("conduct", "cyberbullying", "No", "Online", "Yesterday", "JS, Year 6", "Unkind messages", "none"):
        await leah.says(reply)
    summary = await leah.says("nothing yet")
    assert "Shall I submit it?" in summary.everything
    done = await leah.says("submit")
    assert "ES-2026-0001" in confirmation(done)["body"][0]["text"]


async def test_a_member_of_staff_is_named_between_the_cards_and_cancel_works_at_every_step(harness: Harness) -> None:
    leah = harness.user("Leah Brooks")
    named = await first_card(leah, subject_kind="staff", immediate_danger="no", category="staff_personal_channels")
    assert "Who is the member of staff?" in named.everything and "This will go only to" in named.everything
    picked = await leah.says("alex")
    pick = card_with(picked, "answer")
    assert "Alex Morgan" in json.dumps(pick)
    details = await submit_card(leah, pick, answer="1")
    assert "Alex Morgan will not be told" in details.everything
    card_with(details, "narrative")
    stopped = await leah.says("cancel")
    assert "Nothing was saved" in stopped.everything
    assert await count(harness, "SELECT count(*) FROM incidents") == 0


async def test_danger_in_an_allegation_waits_only_for_who_it_is_so_they_are_kept_out_of_the_alert(
    harness: Harness,
) -> None:
    leah = harness.user("Leah Brooks")
    named = await first_card(leah, subject_kind="staff", immediate_danger="yes", category="staff_personal_channels")
    assert "Call 999 now" in named.everything and "Urgent alert raised" not in named.everything
    raised = await leah.says("rather not say")
    assert any("Urgent alert raised: ES-2026-0001" in t for t in raised.texts), raised.texts
    card_with(raised, "narrative")
    stopped = await leah.says("my reports")
    assert "already has your urgent alert ES-2026-0001" in stopped.texts[0]
