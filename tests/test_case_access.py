"""One access rule for every way of reaching a case, forged over HTTP by the people who must learn nothing.

The Headteacher (a concern about the Headteacher), an accused member of staff (an allegation about them), a stranger
in the tenant and a DSL of another school each try the card refresh (`incident.view`) with the real token, a guess
and an old integer id, `case REF`, every case-card button (Action.Execute and its Action.Submit fallback) and
`my reports`. Each gets the same refusal, naming nothing about the case, and each refusal is in the audit trail.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapters.clock import SettableClock
from bot.audit import verify_chain
from bot.cards.incident import NOT_ALLOWED_TEXT
from dialogs.incidents import ACT_VERBS
from tests.support.harness import DEMO_CONFIG, Harness, start_harness
from tests.support.teams import Reply, TeamsUser
from tests.test_incidents import POLICY, everyone_says_hello, submit_report

OTHER_TENANT = "00000000-0000-4000-8000-00000000e000"
OTHER_DSL = "00000000-0000-4000-8000-000000000201"
VISITOR = "00000000-0000-4000-8000-0000000000ff"
STATUS_WORDS = ("Acknowledged", "In progress", "Escalated", "Closed")


def _two_schools(tmp_path: Path) -> Path:
    """The demo config plus Riverside, another school in another tenant, with its own DSL."""
    raw = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))
    other = json.loads(json.dumps(raw["schools"][0], default=str))
    other.update(
        id="riverside",
        name="Riverside Academy",
        reference_prefix="RA",
        tenant_id=OTHER_TENANT,
        team_id="19:riverside-staff@thread.tacv2",
        channels={
            "dsl": "19:riverside-safeguarding@thread.tacv2",
            "slt": "19:riverside-slt@thread.tacv2",
            "technicians": "19:riverside-it@thread.tacv2",
        },
    )
    people = []
    for number, person in enumerate(other["people"], start=1):
        person = dict(
            person,
            id=f"00000000-0000-4000-8000-{200 + number:012d}",
            email=person["email"].replace("oakfield", "riverside"),
        )
        person.pop("line_manager", None)
        people.append(person)
    people[0]["name"] = "Olu Adebayo"  # a DSL of Riverside
    other["people"] = people
    raw["schools"].append(other)
    path = tmp_path / "two_schools.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


@pytest.fixture
async def harness(database_url: str, clock: SettableClock, tmp_path: Path):  # noqa: ANN201
    async with start_harness(
        database_url=database_url, clock=clock, var_dir=tmp_path / "var", config_path=_two_schools(tmp_path)
    ) as running:
        yield running


def _other_school_dsl(harness: Harness) -> TeamsUser:
    return TeamsUser(
        harness.http,
        harness.url,
        harness.connector,
        aad_id=OTHER_DSL,
        name="Olu Adebayo",
        tenant_id=OTHER_TENANT,
        token=harness.token,
    )


async def _case_card_to(harness: Harness, user: TeamsUser, reference: str) -> dict[str, Any]:
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


async def _forge_everything(user: TeamsUser, token: str, reference: str) -> list[Reply]:
    """Every read and act path of a case, as this person, with what they might hold or guess."""
    replies = []
    for data in ({"token": token}, {"token": secrets.token_urlsafe(24)}, {"incident_id": 1}, {"incident_id": 2}, {}):
        replies.append(await user.executes("incident.view", data))
        replies.append(await user.submits({"verb": "incident.view", **data}))
    replies.append(await user.says(f"case {reference}"))
    inputs = {
        "note": "Forged note",
        "action_key": POLICY.actions[0].key,
        "target": "police",
        "reason": "Forged",
        "outcome": POLICY.outcomes[0].key,
        "close_note": "Forged close",
    }
    for verb in ACT_VERBS:
        for version in (1, 2):
            replies.append(await user.executes(verb, {"token": token, "version": version, **inputs}))
            replies.append(await user.submits({"verb": verb, "token": token, "version": version, **inputs}))
        replies.append(await user.executes(verb, {"incident_id": 1, "version": 1, **inputs}))
    replies.append(await user.says("my reports"))
    return replies


def _assert_nothing_about(replies: list[Reply], reference: str, secrets_: list[str]) -> None:
    for reply in replies:
        assert reply.status < 500
        seen = json.dumps(reply.body) + reply.everything
        for secret in [reference, *secrets_, *STATUS_WORDS]:
            assert secret not in seen, f"{secret!r} leaked in {seen[:600]}"
        for card in reply.cards + ([reply.invoke_card] if reply.invoke_card else []):
            assert "refresh" not in card


async def _refusals(harness: Harness, school_id: str, person_id: str) -> list[Any]:
    async with harness.parts.uow() as uow:
        entries = await uow.audit.entries(school_id)
    return [e for e in entries if e.actor_id == person_id and e.action in ("incident.access_refused", "refused")]


async def test_concern_about_the_headteacher_and_allegation_about_staff_refuse_everyone_outside_the_team(
    harness: Harness,
) -> None:
    users = await everyone_says_hello(harness, "Ruth Evans", "Grace Okafor", "Tom Reed", "Priya Shah")
    leah = harness.user("Leah Brooks")
    about_head = await submit_report(
        leah, subject="The Headteacher", who="Grace Okafor", what="Shared pupil photos on a personal phone"
    )
    about_tom = await submit_report(
        leah, subject="A member of staff", who="Tom Reed, deputy DSL", what="Messaged a pupil on a personal account"
    )
    head_card = await _case_card_to(harness, users["Ruth Evans"], about_head)
    tom_card = await _case_card_to(harness, users["Grace Okafor"], about_tom)
    head_token = head_card["refresh"]["action"]["data"]["token"]
    tom_token = tom_card["refresh"]["action"]["data"]["token"]
    assert len(head_token) >= 22 and not head_token.isdigit() and head_token != tom_token
    assert harness.person_id("Ruth Evans") in head_card["refresh"]["userIds"]
    category = POLICY.category("cyberbullying").label
    group = POLICY.group("conduct").label
    ruth, grace = harness.person_id("Ruth Evans"), harness.person_id("Grace Okafor")

    # (a) the Headteacher, for the concern about the Headteacher
    replies = await _forge_everything(users["Grace Okafor"], head_token, about_head)
    _assert_nothing_about(replies, about_head, [category, group, ruth, "23 Nov 2026, 10:"])
    # (b) the accused deputy DSL, for the allegation about him
    replies = await _forge_everything(users["Tom Reed"], tom_token, about_tom)
    _assert_nothing_about(replies, about_tom, [category, group, grace, "23 Nov 2026, 10:"])
    # (c) a stranger in the tenant, and (d) a DSL of another school, for both
    for forger in (harness.user("Visitor", aad_id=VISITOR), _other_school_dsl(harness)):
        for token, reference, team in ((head_token, about_head, ruth), (tom_token, about_tom, grace)):
            replies = await _forge_everything(forger, token, reference)
            _assert_nothing_about(replies, reference, [category, group, team, "23 Nov 2026, 10:"])

    for school_id, person_id in (
        ("oakfield", grace),
        ("oakfield", harness.person_id("Tom Reed")),
        ("oakfield", VISITOR),
        ("riverside", OTHER_DSL),
    ):
        refusals = await _refusals(harness, school_id, person_id)
        # every refresh, button and `case` above (a stranger's `case` and `my reports` are refused by role)
        assert len(refusals) >= 5 * 2 + len(ACT_VERBS) * 5, (person_id, len(refusals))
    grace_tried = [e.detail.get("tried") for e in await _refusals(harness, "oakfield", grace)]
    assert head_token in grace_tried and about_head in grace_tried
    other_tried = [e.detail.get("tried") for e in await _refusals(harness, "riverside", OTHER_DSL)]
    assert tom_token in other_tried

    # Nothing forged changed either case: the team still sees them new and unowned, with no forged entries.
    fresh = await users["Ruth Evans"].executes("incident.view", {"token": head_token})
    assert about_head in json.dumps(fresh.invoke_card) and "Forged" not in json.dumps(fresh.invoke_card)
    fresh = await users["Grace Okafor"].executes("incident.view", {"token": tom_token})
    assert about_tom in json.dumps(fresh.invoke_card) and "Forged" not in json.dumps(fresh.invoke_card)


async def _channel_alert(harness: Harness, reference: str) -> list[dict[str, Any]]:
    """The DSL channel's alert card(s) for the case, once posted."""
    return await harness.connector.wait_for(
        lambda sent: [
            c
            for s in sent
            if s.conversation_id == harness.school.channels.dsl
            for c in s.cards
            if reference in json.dumps(c)
        ]
    )


async def test_the_channel_alert_still_posts_but_its_refresh_shows_other_members_nothing(harness: Harness) -> None:
    await harness.channel("dsl").bot_added(by=harness.user("Sam Patel"))
    reference = await submit_report(harness.user("Leah Brooks"))
    alert = await _channel_alert(harness, reference)
    token = alert[0]["refresh"]["action"]["data"]["token"]
    assert "incident_id" not in json.dumps(alert[0])

    team = await harness.user("Tom Reed").executes("incident.view", {"token": token})
    assert reference in json.dumps(team.invoke_card) and "What happened" in json.dumps(team.invoke_card)
    other = await harness.user("Leah Brooks").executes("incident.view", {"token": token})
    assert NOT_ALLOWED_TEXT in json.dumps(other.invoke_card)
    assert reference not in json.dumps(other.body) and "refresh" not in other.invoke_card


async def test_what_a_reporter_typed_reaches_the_case_card_as_text(harness: Harness) -> None:
    typed = "See [click](https://evil.example) and **bold** and <at>Priya</at>"
    reference = await submit_report(harness.user("Leah Brooks"), what=typed, who="<at>Priya</at> **JS**")
    reply = await harness.user("Priya Shah").says(f"case {reference}")
    card = next(c for c in reply.cards if reference in json.dumps(c))
    runs = [i["text"] for b in card["body"] if b["type"] == "RichTextBlock" for i in b["inlines"]]
    assert typed in runs and "<at>Priya</at> **JS**" in runs
    text_blocks = [b.get("text", "") for b in card["body"] if b["type"] == "TextBlock"]
    assert not [t for t in text_blocks if "evil.example" in t or "<at>" in t or "**bold**" in t]
    assert "evil.example" not in json.dumps([b for b in card["body"] if b["type"] == "FactSet"])
    assert "msteams" not in card  # no mention entities: `<at>` stays text


async def test_my_reports_shows_the_reporter_their_own_and_nothing_else(harness: Harness) -> None:
    leah = harness.user("Leah Brooks")
    mine = await submit_report(leah)
    tom = harness.user("Tom Reed")
    reply = await tom.says("my reports")
    assert mine not in reply.everything
    reply = await leah.says("my reports")
    assert mine in reply.everything


async def test_a_channel_of_refreshes_at_once_each_sees_what_it_may_and_each_is_audited(harness: Harness) -> None:
    """Teams refreshes a channel card for everyone looking at it at the same moment: every member is answered, the
    case team with the case and everyone else with the refusal, and every one of those reads is in one unbroken
    audit chain."""
    await harness.channel("dsl").bot_added(by=harness.user("Sam Patel"))
    reference = await submit_report(harness.user("Leah Brooks"))
    alert = await _channel_alert(harness, reference)
    token = alert[0]["refresh"]["action"]["data"]["token"]
    team_ids = set(alert[0]["refresh"]["userIds"])
    people = [p for p in harness.school.people if p.id]
    replies = await asyncio.gather(*(harness.user(p.name).executes("incident.view", {"token": token}) for p in people))

    for person, reply in zip(people, replies, strict=True):
        shown = json.dumps(reply.invoke_card)
        if person.id in team_ids:
            assert reference in shown and "What happened" in shown, person.name
        else:
            assert NOT_ALLOWED_TEXT in shown and reference not in json.dumps(reply.body), person.name
    async with harness.parts.uow() as uow:
        entries = await uow.audit.entries(harness.school.id)
    viewed = [e.actor_id for e in entries if e.action == "incident.viewed" and e.record_id == reference]
    refused = [e.actor_id for e in entries if e.action == "incident.access_refused" and e.detail["found"]]
    assert sorted(viewed) == sorted(p.id for p in people if p.id in team_ids)
    assert sorted(refused) == sorted(p.id for p in people if p.id not in team_ids)
    assert verify_chain(entries, harness.parts.features.audit_watch.keys) is None
