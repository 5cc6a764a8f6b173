"""The DSL's desk over HTTP: the caseload with its filters and paging, moving a misfiled case (access moves with it),
changing the type, reopening, and a chronology that records when things happened, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy import text

from tests.support.harness import Harness
from tests.support.teams import Reply, TeamsUser
from tests.test_incidents import DSL_CHANNEL, POLICY, card_titled, everyone_says_hello, submit_report


def caseload(reply: Reply) -> dict[str, Any]:
    return card_titled(reply, "Cases:")


def listed(card: dict[str, Any]) -> list[str]:
    """The references on a caseload card, in the order shown."""
    found = []
    for block in card["body"]:
        if block.get("type") == "ColumnSet" and block.get("separator"):
            first = block["columns"][0]["items"][0]["text"]
            found.append(first.split("**")[1])
    return found


def open_token(card: dict[str, Any], reference: str) -> str:
    for block in card["body"]:
        if block.get("type") == "ColumnSet" and block.get("separator") and reference in json.dumps(block):
            return block["columns"][1]["items"][0]["actions"][0]["data"]["token"]
    raise AssertionError(f"{reference} is not on the caseload")


async def filtered(user: TeamsUser, **data: Any) -> dict[str, Any]:
    reply = await user.executes("desk.cases", data)
    assert reply.invoke_card is not None, reply.everything[:400]
    return reply.invoke_card


async def test_the_caseload_lists_filters_and_pages_with_undelivered_alerts_first(harness: Harness) -> None:
    leah = harness.user("Leah Brooks")
    users = await everyone_says_hello(
        harness, "Priya Shah", "Tom Reed", "Chris Doyle", "Grace Okafor", "Leah Brooks", "Sam Patel"
    )
    # Teams refuses the first case's post to the safeguarding channel, so that alert never arrives there.
    harness.connector.fail_next(403, times=1, conversation_id=DSL_CHANNEL)
    stranded = await submit_report(leah, what="Unkind messages")
    harness.clock.advance(minutes=1)
    await harness.run_due_work()
    urgent = await submit_report(
        leah, group="illegal", category="indecent_images", what="An image was shared", evidence="Not seen"
    )
    contact = await submit_report(leah, group="contact", category="stranger_contact", what="A stranger messaged")
    await harness.run_due_work()
    priya = users["Priya Shah"]

    everything = caseload(await priya.says("cases"))
    assert listed(everything)[:3] == [stranded, urgent, contact]  # undelivered first, then most severe
    assert "Alert not delivered" in json.dumps(everything["body"][2])

    await priya.executes("incident.own", {"token": open_token(everything, contact), "version": 1})
    mine = await filtered(priya, view="mine", group="all", page=1)
    assert listed(mine) == [contact]
    assert set(listed(await filtered(priya, view="unowned", group="all", page=1))) == {stranded, urgent}
    assert listed(await filtered(priya, view="urgent", group="all", page=1)) == [urgent]
    assert listed(await filtered(priya, view="open", group="contact", page=1)) == [contact]
    assert listed(await filtered(priya, view="overdue", group="all", page=1)) == []
    harness.clock.advance(minutes=61)
    assert set(listed(await filtered(priya, view="overdue", group="all", page=1))) == {stranded, urgent}

    # Tom has a colleague's view of the same cases; Leah, who reported them, has no caseload at all.
    assert set(listed(caseload(await users["Tom Reed"].says("open cases")))) >= {stranded, urgent, contact}
    refused = await leah.says("cases")
    assert "not available to you" in refused.everything and stranded not in refused.everything

    # Paging: 8 to a page, the rest on the next, and nothing twice.
    more = [await submit_report(leah, what=f"Concern {n}") for n in range(7)]
    first = await filtered(priya, view="open", group="all", page=1)
    second = await filtered(priya, view="open", group="all", page=2)
    assert len(listed(first)) == 8 and len(listed(second)) == 2
    assert set(listed(first)) | set(listed(second)) == {stranded, urgent, contact, *more}
    assert "page 2 of 2" in json.dumps(second)
    assert [a["title"] for a in second["actions"]] == ["Apply filter", "Previous page"]


async def test_opening_a_case_from_the_caseload_uses_the_one_access_rule(harness: Harness) -> None:
    users = await everyone_says_hello(harness, "Priya Shah", "Grace Okafor")
    reference = await submit_report(harness.user("Leah Brooks"), what="Threats in a group chat")
    token = open_token(caseload(await users["Priya Shah"].says("cases")), reference)
    opened = await users["Priya Shah"].submits({"verb": "incident.view", "token": token})
    assert "Threats in a group chat" in json.dumps(opened.cards)
    # The Headteacher holds no case role on a pupil concern: the same button gives the one refusal.
    refused = await users["Grace Okafor"].submits({"verb": "incident.view", "token": token})
    assert "can't open that case" in refused.everything and reference not in refused.everything
    help_card = await users["Priya Shah"].says("help")
    assert "`cases`" in help_card.everything and "`case`" in help_card.everything
    assert "`cases`" not in (await harness.user("Leah Brooks").says("help")).everything


async def test_a_concern_about_the_headteacher_filed_as_staff_moves_to_the_chair(harness: Harness) -> None:
    users = await everyone_says_hello(harness, "Grace Okafor", "Ruth Evans", "Priya Shah", "Tom Reed")
    grace, ruth, priya = users["Grace Okafor"], users["Ruth Evans"], users["Priya Shah"]
    reference = await submit_report(
        harness.user("Leah Brooks"),
        subject="A member of staff",
        group="contact",
        category="staff_personal_channels",
        who="The head",
        what="Messaging a pupil",
    )
    sent = await harness.connector.wait_for(
        lambda sent: [s for s in sent if s.conversation_id == grace.conversation_id and reference in s.text]
    )
    token = sent[0].card["refresh"]["action"]["data"]["token"]
    assert "Messaging a pupil" in json.dumps(sent[0].card)

    # Nobody outside the case can move it, not even the DSL team: a form for a guessed reference would tell an
    # accused deputy DSL that an allegation exists.
    for outsider in (priya, users["Tom Reed"]):
        tried = await outsider.executes(
            "incident.move", {"token": token, "version": 1, "subject_kind": "headteacher", "move_reason": "Guess"}
        )
        assert "can't open that case" in json.dumps(tried.invoke_card)
        assert reference not in json.dumps(tried.invoke_card)

    # The Headteacher, its case manager, sees it is about her and passes it on (a reason is required).
    missing = await grace.executes("incident.move", {"token": token, "version": 1, "subject_kind": "headteacher"})
    assert "Please give a reason" in json.dumps(missing.invoke_card)
    moved = await grace.executes(
        "incident.move",
        {"token": token, "version": 1, "subject_kind": "headteacher", "move_reason": "This is about me"},
    )
    assert f"{reference} has moved" in json.dumps(moved.invoke_card)
    assert "Messaging a pupil" not in json.dumps(moved.invoke_card)

    # The Chair now has it; the Headteacher's alert card is replaced at once and every path refuses her.
    alert = await harness.connector.wait_for(
        lambda sent: [s for s in sent if s.conversation_id == ruth.conversation_id and reference in s.text]
    )
    assert "Messaging a pupil" in json.dumps(alert[-1].card)
    replaced = await harness.connector.wait_for(
        lambda sent: [
            s
            for s in sent
            if s.op == "update"
            and s.conversation_id == grace.conversation_id
            and s.activity_id == sent_id(sent, grace, reference)
        ]
    )
    assert "Messaging a pupil" not in json.dumps(replaced[-1].activity)
    assert "has moved" in json.dumps(replaced[-1].activity)
    refreshed = json.dumps((await grace.executes("incident.view", {"token": token})).invoke_card)
    typed = (await grace.says(f"case {reference}")).everything
    for answer in (refreshed, typed):
        assert "can't open that case" in answer and "Messaging a pupil" not in answer
    chair_card = (await ruth.executes("incident.view", {"token": token})).invoke_card
    assert "Moved to other case managers by Grace Okafor" in json.dumps(chair_card)
    assert "This is about me" in json.dumps(chair_card) and "LADO" in json.dumps(chair_card)
    assert grace.aad_id not in chair_card["refresh"]["userIds"]
    async with harness.parts.engine.connect() as connection:
        detail = (
            await connection.execute(text("SELECT detail FROM audit_events WHERE action = 'incident.moved'"))
        ).scalar_one()
    detail = json.loads(detail) if isinstance(detail, str) else detail
    assert grace.aad_id in detail["revoked"] and ruth.aad_id in detail["granted"]


async def test_a_dsl_moves_a_pupil_concern_that_is_about_staff_and_the_dsl_team_loses_it(harness: Harness) -> None:
    users = await everyone_says_hello(harness, "Grace Okafor", "Priya Shah", "Tom Reed", "Sam Patel")
    priya, tom, grace = users["Priya Shah"], users["Tom Reed"], users["Grace Okafor"]
    reference = await submit_report(harness.user("Leah Brooks"), what="A teacher messaged a pupil on Snapchat")
    channel_post = await harness.connector.wait_for(
        lambda sent: [
            s for s in sent if s.conversation_id == DSL_CHANNEL and s.op == "send" and reference in json.dumps(s.card)
        ]
    )
    card = card_titled(await priya.says(f"case {reference}"), reference)
    token = card["refresh"]["action"]["data"]["token"]
    moved = await priya.executes(
        "incident.move", {"token": token, "version": 1, "subject_kind": "staff", "move_reason": "It is about a teacher"}
    )
    assert f"{reference} has moved" in json.dumps(moved.invoke_card)
    await harness.connector.wait_for(
        lambda sent: [s for s in sent if s.conversation_id == grace.conversation_id and reference in s.text]
    )
    # The channel post loses its refresh for the DSL team: it becomes the "moved" card, with no details.
    updated = await harness.connector.wait_for(
        lambda sent: [
            s
            for s in sent
            if s.op == "update" and s.conversation_id == DSL_CHANNEL and s.activity_id == channel_post[0].activity_id
        ]
    )
    assert "refresh" not in updated[-1].card and "has moved" in json.dumps(updated[-1].card)
    for person in (priya, tom):
        refused = await person.executes("incident.view", {"token": token})
        assert "can't open that case" in json.dumps(refused.invoke_card)
    assert "teacher messaged" in json.dumps((await grace.executes("incident.view", {"token": token})).invoke_card)
    assert reference not in json.dumps(caseload(await priya.says("cases")))


def sent_id(sent: list[Any], user: TeamsUser, reference: str) -> str | None:
    first = [s for s in sent if s.op == "send" and s.conversation_id == user.conversation_id and reference in s.text]
    return first[0].activity_id if first else None


async def test_change_type_reopen_and_when_it_happened_go_on_the_chronology(harness: Harness) -> None:
    users = await everyone_says_hello(harness, "Priya Shah")
    priya = users["Priya Shah"]
    reference = await submit_report(harness.user("Leah Brooks"), what="Threats in a group chat")
    card = card_titled(await priya.says(f"case {reference}"), reference)
    token = card["refresh"]["action"]["data"]["token"]
    local = harness.clock.now().astimezone(harness.school.tz)
    yesterday = (local - dt.timedelta(days=1)).strftime("%Y-%m-%d")

    future = (
        await priya.executes(
            "incident.note",
            {
                "token": token,
                "version": 1,
                "note": "Called home",
                "note_on": (local + dt.timedelta(days=2)).strftime("%Y-%m-%d"),
                "note_time": "09:00",
            },
        )
    ).invoke_card
    assert "in the future" in json.dumps(future) and "Called home" not in json.dumps(future)
    noted = (
        await priya.executes(
            "incident.note",
            {"token": token, "version": 1, "note": "Phoned parent", "note_on": yesterday, "note_time": "16:30"},
        )
    ).invoke_card
    lines = [json.dumps(b) for b in noted["body"] if "Phoned parent" in json.dumps(b)]
    assert lines and "16:30" in lines[0] and "(recorded" in lines[0]
    # The chronology is in the order things happened: yesterday's call comes before today's report.
    chronology = [json.dumps(b) for b in noted["body"] if b.get("type") == "RichTextBlock"]
    reported = next(i for i, b in enumerate(chronology) if "Reported by Leah Brooks" in b)
    assert chronology.index(lines[0]) < reported

    retyped = (
        await priya.executes(
            "incident.recategorise",
            {
                "token": token,
                "version": 2,
                "category": "hate_discrimination",
                "category_reason": "The messages target a pupil's religion",
            },
        )
    ).invoke_card
    assert retyped["body"][0]["text"] == f"{reference}: {POLICY.category('hate_discrimination').label}"
    assert "Type changed by Priya Shah" in json.dumps(retyped)

    closed = (
        await priya.executes(
            "incident.close", {"token": token, "version": 3, "outcome": "resolved_in_school", "close_note": "Sorted"}
        )
    ).invoke_card
    assert [a["title"] for a in closed["actions"]] == ["Reopen", "More"]
    refused = (await priya.executes("incident.note", {"token": token, "version": 4, "note": "Late"})).invoke_card
    assert "Reopen it first" in json.dumps(refused)
    no_reason = (await priya.executes("incident.reopen", {"token": token, "version": 4})).invoke_card
    assert "reason for reopening" in json.dumps(no_reason)
    reopened = (
        await priya.executes(
            "incident.reopen", {"token": token, "version": 4, "reopen_reason": "A second screenshot came in"}
        )
    ).invoke_card
    assert "Reopened by Priya Shah: A second screenshot came in" in json.dumps(reopened)
    assert "In progress" in json.dumps(reopened)
    assert "Take ownership" not in json.dumps(reopened) and "Add note" in json.dumps(reopened)


async def test_a_case_past_a_statutory_referral_deadline_is_overdue_even_when_taken_on(harness: Harness) -> None:
    users = await everyone_says_hello(harness, "Priya Shah", "Tom Reed", "Chris Doyle", "Grace Okafor")
    priya = users["Priya Shah"]
    reference = await submit_report(
        harness.user("Leah Brooks"),
        group="illegal",
        category="indecent_images",
        what="An image was shared",
        evidence="Not seen",
    )
    token = open_token(caseload(await priya.says("cases")), reference)
    await priya.executes("incident.own", {"token": token, "version": 1})
    harness.clock.advance(minutes=30)
    assert listed(await filtered(priya, view="overdue", group="all", page=1)) == []
    harness.clock.advance(minutes=45)  # the police should have had it within the hour
    assert listed(await filtered(priya, view="overdue", group="all", page=1)) == [reference]
    await priya.executes(
        "referral.record", {"token": token, "version": 2, "referral_agency": "police", "referral_reference": "CAD 77"}
    )
    assert listed(await filtered(priya, view="overdue", group="all", page=1)) == []
