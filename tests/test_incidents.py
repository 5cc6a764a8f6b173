"""Reporting a concern and handling it as a DSL, end to end over HTTP on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from sqlalchemy import text

from bot.policy import load_policy
from tests.support.harness import ROOT, Harness
from tests.support.teams import TeamsUser

POLICY = load_policy(ROOT / "config" / "policy_defaults.yaml")
DSL_CHANNEL = "19:oakfield-safeguarding@thread.tacv2"


def _choice(group: str, category: str | None) -> tuple[str, str | None]:
    groups = [g.key for g in POLICY.category_groups]
    group_answer = str(groups.index(group) + 1)
    if category is None:
        return group_answer, None
    return group_answer, str([c.key for c in POLICY.in_group(group)].index(category) + 1)


async def answer(
    user: TeamsUser,
    *,
    subject: str = "A pupil",
    group: str = "conduct",
    category: str | None = "cyberbullying",
    danger: str = "No",
    where: str = "Online",
    when: str = "Today at lunch",
    who: str = "JS, Year 8",
    what: str = "Mean messages in the class group chat",
    evidence: str = "Screenshots on JS's phone",
    done: str = "Nothing yet",
):  # noqa: ANN201
    """Walk the report dialog up to its summary; returns the last reply."""
    group_answer, category_answer = _choice(group, category)
    await user.says("report")
    await user.says(subject)
    if subject.startswith("A member of staff"):
        await user.says("rather not say")  # who it is: the reporter may decline to name them
    await user.says(group_answer)
    if category_answer:
        await user.says(category_answer)
    await user.says(danger)
    await user.says(where)
    for reply in (when, who, what, evidence):
        await user.says(reply)
    return await user.says(done)


async def up_to_the_danger_question(
    user: TeamsUser, group: str = "contact", category: str = "stranger_contact"
) -> None:
    """Start a report about a pupil and answer up to "Is anyone in immediate danger right now?"."""
    group_answer, category_answer = _choice(group, category)
    for text_ in ("report", "A pupil", group_answer, category_answer):
        await user.says(text_)


async def submit_report(user: TeamsUser, **answers: str) -> str:
    await answer(user, **answers)
    reply = await user.says("submit")
    title = confirmation(reply)["body"][0]["text"]
    return title.rsplit(" ", 1)[-1]


def confirmation(reply) -> dict:  # noqa: ANN001
    """The reporter's confirmation card (other features may add their own cards to the same reply)."""
    found = [c for c in reply.cards if c["body"][0].get("text", "").startswith("Thank you. Your report is ES-")]
    assert found, f"no confirmation card in {reply.everything[:500]}"
    return found[0]


def card_titled(reply, start: str) -> dict:  # noqa: ANN001
    """The card with this title that the turn itself answered with; failing that, any sent while it ran (an alert
    the worker was delivering meanwhile also carries the case's title, so the turn's own answer comes first)."""

    def titled(cards: list[dict]) -> list[dict]:
        return [c for c in cards if json.dumps(c["body"][:2]).find(start) >= 0]

    found = titled([c for s in reply.replies for c in s.cards]) or titled(reply.cards)
    assert found, f"no card starting {start!r} in {reply.everything[:500]}"
    return found[0]


async def everyone_says_hello(harness: Harness, *names: str) -> dict[str, TeamsUser]:
    """People must have opened the app once for 1:1 alerts to reach them."""
    users = {name: harness.user(name) for name in names}
    for user in users.values():
        await user.says("help")
    return users


def cards_to(harness: Harness, conversation_id: str) -> list[dict]:
    return [c for s in harness.connector.to(conversation_id) for c in s.cards]


async def test_pupil_concern_reaches_the_dsl_channel_with_no_names_and_the_reporter_gets_a_reference(
    harness: Harness,
) -> None:
    await harness.channel("dsl").bot_added(by=harness.user("Sam Patel"))
    users = await everyone_says_hello(harness, "Sam Patel", "Priya Shah")
    reference = await submit_report(
        harness.user("Leah Brooks"), who="Jamie Smith, Year 8", what="Jamie was sent cruel messages"
    )
    assert reference == "ES-2026-0001"

    alert = await harness.connector.wait_for(
        lambda sent: [
            c for s in sent if s.conversation_id == DSL_CHANNEL for c in s.cards if "New online" in json.dumps(c)
        ]
    )
    channel_card = json.dumps(alert[0])
    assert reference in channel_card and "Conduct" in channel_card and "Medium" in channel_card
    for secret in ("Jamie", "Leah", "cruel", "Brooks"):
        assert secret not in channel_card
    assert set(alert[0]["refresh"]["userIds"]) >= {harness.person_id("Priya Shah"), harness.person_id("Tom Reed")}

    notice = await harness.connector.wait_for(
        lambda sent: [
            c
            for s in sent
            if s.conversation_id == users["Sam Patel"].conversation_id
            for c in s.cards
            if reference in json.dumps(c)
        ]
    )
    assert "Jamie" not in json.dumps(notice)
    assert reference not in json.dumps(cards_to(harness, users["Priya Shah"].conversation_id))  # channel only


async def test_immediate_danger_alerts_dsls_deputies_and_head_before_the_remaining_questions(harness: Harness) -> None:
    users = await everyone_says_hello(harness, "Priya Shah", "Tom Reed", "Chris Doyle", "Grace Okafor")
    leah = harness.user("Leah Brooks")
    await up_to_the_danger_question(leah)
    reply = await leah.says("Yes, someone is in danger now")
    assert any("999" in t for t in reply.texts)
    assert any("Urgent alert raised: ES-2026-0001" in t for t in reply.texts)
    for name in ("Priya Shah", "Tom Reed", "Chris Doyle", "Grace Okafor"):
        conversation = users[name].conversation_id
        await harness.connector.wait_for(
            lambda sent, c=conversation: [
                s for s in sent if s.conversation_id == c and "Urgent online-safety concern ES-2026-0001" in s.text
            ]
        )
    # the reporter carries on, and the same case is completed rather than duplicated
    for answer_text in (
        "Online",
        "Just now",
        "AB, Year 5",
        "A stranger asked to meet",
        "On the class iPad",
        "Told the class teacher",
    ):
        await leah.says(answer_text)
    final = await leah.says("submit")
    assert "ES-2026-0001" in confirmation(final)["body"][0]["text"]
    assert "ES-2026-0002" not in final.everything


async def test_indecent_images_path_warns_never_to_view_and_refuses_links_and_files(harness: Harness) -> None:
    leah = harness.user("Leah Brooks")
    await leah.says("report")
    await leah.says("A pupil")
    group, category = _choice("illegal", "indecent_images")
    await leah.says(group)
    reply = await leah.says(category)
    assert any("never view, copy, forward, print, screenshot or save" in t for t in reply.texts)
    for answer_text in ("No", "In school", "This morning", "CD, Year 10", "A pupil showed me a photo on a phone"):
        reply = await leah.says(answer_text)
    assert any("Do not send, link to or describe the images" in t for t in reply.texts)
    refused = await leah.says("it is at https://example.com/picture")
    assert any("do not send links" in t for t in refused.texts)
    with_file = await leah.submits_with_attachment("here it is")
    assert any("do not send files or pictures" in t for t in with_file.texts)
    accepted = await leah.says("The phone is locked in the head's office safe")
    assert any("What have you done so far" in t for t in accepted.texts)


async def test_allegation_about_staff_goes_only_to_the_headteacher(harness: Harness) -> None:
    await harness.channel("dsl").bot_added(by=harness.user("Sam Patel"))
    users = await everyone_says_hello(harness, "Grace Okafor", "Priya Shah", "Sam Patel")
    reference = await submit_report(
        harness.user("Leah Brooks"),
        subject="A member of staff",
        group="contact",
        category="staff_personal_channels",
        who="Mr X",
        what="Messaging a pupil",
    )
    await harness.connector.wait_for(
        lambda sent: [
            s for s in sent if s.conversation_id == users["Grace Okafor"].conversation_id and reference in s.text
        ]
    )
    await harness.run_due_work()
    assert not [s for s in harness.connector.to(DSL_CHANNEL) if "New online" in json.dumps(s.activity)]
    for name in ("Priya Shah", "Sam Patel"):
        assert reference not in json.dumps([s.activity for s in harness.connector.to(users[name].conversation_id)])
    refused = await harness.user("Priya Shah").says(f"case {reference}")
    assert "can't open that case" in refused.everything and reference not in refused.everything


async def test_concern_about_the_headteacher_goes_to_the_chair_never_the_head(harness: Harness) -> None:
    users = await everyone_says_hello(harness, "Grace Okafor", "Ruth Evans", "Priya Shah")
    reference = await submit_report(
        harness.user("Leah Brooks"),
        subject="The Headteacher",
        group="conduct",
        category="disrepute",
        who="The head",
        what="Posted about pupils",
    )
    alert = await harness.connector.wait_for(
        lambda sent: [
            s for s in sent if s.conversation_id == users["Ruth Evans"].conversation_id and reference in s.text
        ]
    )
    assert "LADO" in json.dumps(alert[0].card)
    await harness.run_due_work()
    head = harness.connector.to(users["Grace Okafor"].conversation_id)
    assert reference not in json.dumps([s.activity for s in head])
    refused = await harness.user("Grace Okafor").says(f"case {reference}")
    assert "can't open that case" in refused.everything and reference not in refused.everything


async def test_technical_and_data_protection_reports_reach_their_people(harness: Harness) -> None:
    users = await everyone_says_hello(harness, "Alex Morgan", "Sam Patel", "Dana Lewis", "Priya Shah")
    filter_ref = await submit_report(
        harness.user("Leah Brooks"),
        subject="Not sure",
        group="technical",
        category="filter_failure",
        what="A game site loaded in Year 4",
    )
    breach_ref = await submit_report(
        harness.user("Leah Brooks"),
        subject="Not sure",
        group="technical",
        category="data_protection_breach",
        what="A class list was emailed out",
    )
    for name, reference in (
        ("Alex Morgan", filter_ref),
        ("Sam Patel", filter_ref),
        ("Dana Lewis", breach_ref),
        ("Sam Patel", breach_ref),
    ):
        conversation = users[name].conversation_id
        await harness.connector.wait_for(
            lambda sent, c=conversation, r=reference: [s for s in sent if s.conversation_id == c and r in s.text]
        )
    priya = json.dumps([s.activity for s in harness.connector.to(users["Priya Shah"].conversation_id)])
    assert filter_ref not in priya and breach_ref not in priya


async def test_cancel_stops_and_saves_nothing(harness: Harness) -> None:
    leah = harness.user("Leah Brooks")
    await leah.says("report")
    await leah.says("A pupil")
    reply = await leah.says("cancel")
    assert any("Nothing was saved" in t for t in reply.texts)
    mine = await leah.says("my reports")
    assert "not reported any concerns" in mine.everything


async def test_a_report_interrupted_by_a_restart_resumes_where_it_was(harness: Harness) -> None:
    leah = harness.user("Leah Brooks")
    await leah.says("report")
    await leah.says("A pupil")
    group, category = _choice("conduct", "cyberbullying")
    await leah.says(group)
    await harness.restart()
    reply = await leah.says(category)
    assert "immediate danger" in reply.everything
    for answer_text in ("No", "Online", "Yesterday", "EF, Year 7", "Name-calling online", "none", "Nothing yet"):
        await leah.says(answer_text)
    final = await leah.says("submit")
    assert "ES-2026-0001" in confirmation(final)["body"][0]["text"]


async def test_my_reports_shows_only_my_own(harness: Harness) -> None:
    mine = await submit_report(harness.user("Leah Brooks"))
    theirs = await submit_report(harness.user("Tom Reed"))
    listing = card_titled(await harness.user("Leah Brooks").says("my reports"), "Your reports")
    listing = json.dumps(listing)
    assert mine in listing and theirs not in listing


async def test_a_dsl_owns_notes_records_escalates_and_closes_with_a_chronology(harness: Harness) -> None:
    users = await everyone_says_hello(harness, "Priya Shah", "Grace Okafor", "Leah Brooks")
    reference = await submit_report(harness.user("Leah Brooks"), what="Threats in a group chat")
    priya = users["Priya Shah"]
    card = card_titled(await priya.says(f"case {reference}"), reference)
    assert "Threats in a group chat" in json.dumps(card)
    token = card["refresh"]["action"]["data"]["token"]

    owned = (await priya.executes("incident.own", {"token": token, "version": 1})).invoke_card
    assert "Priya Shah" in json.dumps(owned)
    noted = (
        await priya.executes("incident.note", {"token": token, "version": 2, "note": "Spoke to the pupil"})
    ).invoke_card
    recorded = (
        await priya.executes("incident.action", {"token": token, "version": 3, "action_key": "inform_parents"})
    ).invoke_card
    assert "Inform parents" in json.dumps(recorded)
    escalated = await priya.executes(
        "incident.escalate", {"token": token, "version": 4, "target": "headteacher", "reason": "Repeated"}
    )
    assert "Escalated" in json.dumps(escalated.invoke_card)
    await harness.connector.wait_for(
        lambda sent: [
            s for s in sent if s.conversation_id == users["Grace Okafor"].conversation_id and reference in s.text
        ]
    )
    closed = (
        await priya.executes(
            "incident.close",
            {"token": token, "version": 5, "outcome": "resolved_in_school", "close_note": "Sorted with parents"},
        )
    ).invoke_card
    chronology = json.dumps(closed)
    # Plain events, as a person reads them: never log codes such as "owned".
    assert ", owned" not in chronology
    for step in (
        "Taken on by Priya Shah",
        "Note from Priya Shah: Spoke to the pupil",
        "Inform parents",
        "Escalated by Priya Shah to",
        "Closed by Priya Shah. Outcome: Resolved in school",
    ):
        assert step in chronology, step
    # A closed case can only be reopened (with a reason) or exported.
    assert [a["title"] for a in closed["actions"]] == ["Reopen", "More"]
    await harness.connector.wait_for(
        lambda sent: [
            s for s in sent if s.conversation_id == users["Leah Brooks"].conversation_id and "closed" in s.text
        ]
    )
    assert "Noted" not in json.dumps(noted)


async def test_someone_without_the_role_is_refused_and_it_is_audited(harness: Harness) -> None:
    reference = await submit_report(harness.user("Leah Brooks"))
    card = card_titled(await harness.user("Priya Shah").says(f"case {reference}"), reference)
    token = card["refresh"]["action"]["data"]["token"]
    refused = await harness.user("Leah Brooks").executes("incident.own", {"token": token, "version": 1})
    assert "can't open that case" in json.dumps(refused.invoke_card) and reference not in json.dumps(refused.body)
    listing = await harness.user("Leah Brooks").executes("incident.view", {"token": token})
    assert "Mean messages" not in json.dumps(listing.invoke_card)
    async with harness.parts.uow() as uow:
        entries = await uow.audit.entries("oakfield")
    assert any(
        e.action == "incident.access_refused" and e.actor_id == harness.person_id("Leah Brooks") for e in entries
    )
    assert any(e.action == "incident.viewed" and e.actor_id == harness.person_id("Priya Shah") for e in entries)


async def test_two_dsls_acting_at_once_one_wins_and_the_other_sees_the_latest(harness: Harness) -> None:
    reference = await submit_report(harness.user("Leah Brooks"))
    card = card_titled(await harness.user("Priya Shah").says(f"case {reference}"), reference)
    token = card["refresh"]["action"]["data"]["token"]
    first, second = await asyncio.gather(
        harness.user("Priya Shah").executes("incident.own", {"token": token, "version": 1}),
        harness.user("Tom Reed").executes("incident.own", {"token": token, "version": 1}),
    )
    cards = [json.dumps(first.invoke_card), json.dumps(second.invoke_card)]
    assert sum("Someone else updated this case" in c for c in cards) == 1
    owner_card = next(c for c in cards if "Someone else" not in c)
    loser_card = next(c for c in cards if "Someone else" in c)
    owner = "Priya Shah" if "Priya Shah" in owner_card.split("Reported by")[0] else "Tom Reed"
    assert owner in loser_card


async def test_unacknowledged_concern_re_alerts_deputies_then_the_headteacher(harness: Harness) -> None:
    users = await everyone_says_hello(harness, "Tom Reed", "Chris Doyle", "Grace Okafor")
    reference = await submit_report(harness.user("Leah Brooks"))
    harness.clock.advance(minutes=59)
    await harness.run_due_work()
    assert not [s for s in harness.connector.to(users["Tom Reed"].conversation_id) if "not been acknowledged" in s.text]
    harness.clock.advance(minutes=2)
    await harness.run_due_work()
    for name in ("Tom Reed", "Chris Doyle"):
        assert [s for s in harness.connector.to(users[name].conversation_id) if "not been acknowledged" in s.text]
    assert not [
        s for s in harness.connector.to(users["Grace Okafor"].conversation_id) if "not been acknowledged" in s.text
    ]
    harness.clock.advance(minutes=61)
    await harness.run_due_work()
    head = [s for s in harness.connector.to(users["Grace Okafor"].conversation_id) if reference in s.text]
    assert head and "not been acknowledged" in head[-1].text


async def test_owning_a_case_stops_the_sla_reminders(harness: Harness) -> None:
    users = await everyone_says_hello(harness, "Tom Reed")
    reference = await submit_report(harness.user("Leah Brooks"))
    card = card_titled(await harness.user("Priya Shah").says(f"case {reference}"), reference)
    await harness.user("Priya Shah").executes(
        "incident.own", {"token": card["refresh"]["action"]["data"]["token"], "version": 1}
    )
    harness.clock.advance(minutes=200)
    await harness.run_due_work()
    assert not [s for s in harness.connector.to(users["Tom Reed"].conversation_id) if "not been acknowledged" in s.text]


async def test_subjects_narrative_and_evidence_are_not_stored_in_plaintext(harness: Harness, tmp_path: Path) -> None:
    secrets = ("Zebedee Quartermaine", "unmistakable-narrative-7731", "locker-number-4482")
    leah = harness.user("Leah Brooks")
    await answer(leah, who=secrets[0], what=secrets[1], evidence=secrets[2])  # half-way state lives in bot_state
    await leah.says("submit")
    await harness.run_due_work()
    dump = await _database_text(harness)
    for secret in secrets:
        assert secret not in dump, secret
    assert "ES-2026-0001" in dump  # the dump is real: non-secret fields are there


async def _database_text(harness: Harness) -> str:
    engine = harness.parts.engine
    if engine.url.get_backend_name() == "sqlite":
        await engine.dispose()  # checkpoint the WAL so the file holds everything
        database = Path(engine.url.database)
        return b"".join(p.read_bytes() for p in database.parent.glob(database.name + "*")).decode("latin-1")
    parts = []
    async with engine.connect() as connection:
        tables = (
            (await connection.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")))
            .scalars()
            .all()
        )
        for table in tables:
            rows = (await connection.execute(text(f'SELECT row_to_json(t)::text FROM "{table}" t'))).scalars()
            parts.extend(rows)
    return "\n".join(parts)
