"""'Report a concern' on a Teams message: the compose extension's invokes over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.clock import SettableClock
from app import _features
from dialogs import message_action
from tests.support.harness import Harness, start_harness
from tests.support.teams import TeamsUser

DSL_CHANNEL = "19:oakfield-safeguarding@thread.tacv2"
GROUP_CHAT = "19:year6-staff-chat@thread.v2"
LINK = "https://teams.microsoft.com/l/message/19:year6-staff-chat@thread.v2/1763891892345?context=%7B%7D"
PICTURE = "https://graph.microsoft.com/beta/chats/19:year6/messages/1763891892345/hostedContents/aWQ9/$value"


@pytest.fixture
async def harness(database_url: str, clock: SettableClock, tmp_path: Path) -> AsyncIterator[Harness]:
    features = _features()
    if message_action.install not in features:  # until the app lists it itself
        features.append(message_action.install)
    async with start_harness(
        database_url=database_url, clock=clock, var_dir=tmp_path / "var", features=features
    ) as running:
        yield running


def message_payload(
    author_name: str = "Jo Hughes", author_id: str = "00000000-0000-4000-8000-000000000010"
) -> dict[str, Any]:
    """A Teams message as the messagePayload of a message action: with an inline image and a file attached."""
    return {
        "id": "1763891892345",
        "replyToId": None,
        "messageType": "message",
        "createdDateTime": "2026-11-23T09:58:12.345Z",
        "lastModifiedDateTime": None,
        "deleted": False,
        "subject": None,
        "summary": None,
        "importance": "normal",
        "locale": "en-us",
        "linkToMessage": LINK,
        "from": {
            "device": None,
            "conversation": None,
            "application": None,
            "user": {"userIdentityType": "aadUser", "id": author_id, "displayName": author_name},
        },
        "body": {
            "contentType": "html",
            "content": f'<p>see this</p><img src="{PICTURE}"><attachment id="5ec0d5b2"></attachment>',
        },
        "attachmentLayout": "list",
        "attachments": [
            {
                "id": "5ec0d5b2",
                "contentType": "reference",
                "name": "screenshot.png",
                "contentUrl": "https://oakfield.sharepoint.com/sites/y6/Shared%20Documents/screenshot.png",
            }
        ],
        "mentions": [],
        "reactions": [],
    }


def in_group_chat(user: TeamsUser, activity: dict[str, Any]) -> dict[str, Any]:
    """Message actions are invoked where the message is: here a staff group chat, not the bot's 1:1 chat."""
    activity["conversation"] = {"id": GROUP_CHAT, "conversationType": "groupChat", "tenantId": user.tenant_id}
    activity["channelData"] = {"tenant": {"id": user.tenant_id}, "source": {"name": "message"}}
    return activity


async def fetch_task(user: TeamsUser, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    activity = in_group_chat(
        user,
        user.invoke(
            "composeExtension/fetchTask",
            {
                "commandId": "reportConcern",
                "commandContext": "message",
                "context": {"theme": "default"},
                "messagePayload": payload or message_payload(),
            },
        ),
    )
    reply = await user.post(activity, GROUP_CHAT)
    assert reply.status == 200, reply.body
    return reply.body


def form_card(body: dict[str, Any]) -> dict[str, Any]:
    task = body["task"]
    assert task["type"] == "continue", body
    assert task["value"]["card"]["contentType"] == "application/vnd.microsoft.card.adaptive"
    return task["value"]["card"]["content"]


def inputs(card: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {b["id"]: b for b in card["body"] if b.get("type", "").startswith("Input.")}


def answers(card: dict[str, Any], **changes: str) -> dict[str, Any]:
    """What Teams sends on Submit: the action's data and every input's value, as a reporter filled them in."""
    data = dict(card["actions"][0]["data"])
    data.update({k: v["value"] for k, v in inputs(card).items() if "value" in v})
    data.update(
        subject_kind="pupil",
        immediate_danger="no",
        category="cyberbullying",
        subjects="JS, Year 6",
        narrative="Unkind comments about a pupil in the class chat",
        actions_taken="Told the class teacher",
    )
    data.update(changes)
    return data


def submit_action(user: TeamsUser, data: dict[str, Any]) -> dict[str, Any]:
    return in_group_chat(
        user,
        user.invoke(
            "composeExtension/submitAction",
            {
                "commandId": "reportConcern",
                "commandContext": "message",
                "context": {"theme": "default"},
                "botMessagePreviewAction": None,
                "data": data,
                "messagePayload": message_payload(),
            },
        ),
    )


def confirmed_reference(body: dict[str, Any]) -> str:
    card = form_card(body)
    title = card["body"][0]["text"]
    assert title.startswith("Thank you. Your report is ES-"), body
    return title.rsplit(" ", 1)[-1]


async def say_hello(harness: Harness, *names: str) -> dict[str, TeamsUser]:
    users = {name: harness.user(name) for name in names}
    for user in users.values():
        await user.says("help")  # people must have opened the app once for 1:1 alerts to reach them
    return users


def channel_alerts(harness: Harness) -> list[str]:
    return [
        s.activity["attachments"][0]["content"]["body"][0]["text"]
        for s in harness.connector.to(DSL_CHANNEL)
        if s.cards and "New online-safety concern" in json.dumps(s.cards[0])
    ]


async def test_the_form_opens_with_the_messages_link_author_and_time_and_never_its_pictures_or_files(
    harness: Harness,
) -> None:
    card = form_card(await fetch_task(harness.user("Leah Brooks")))
    shown = json.dumps(card)
    assert "Jo Hughes" in shown and "Monday 23 November 2026 at 09:58" in shown  # school time (GMT in November)
    assert card["actions"][0]["data"]["message_link"] == LINK
    for never in ("see this", PICTURE, "screenshot.png", "sharepoint", "hostedContents"):
        assert never not in shown
    assert "call 999" in shown
    fields = inputs(card)
    assert fields["occurred"]["value"] == "Monday 23 November 2026 at 09:58"
    titles = [c["title"] for c in fields["category"]["choices"]]
    assert (
        "Contact: Grooming concern. Early signs that someone is building trust with a child for sexual or other "
        "abuse, before any offence is clear." in titles
    )  # the whole label, never cut short
    for required in ("subject_kind", "immediate_danger", "category", "location", "narrative", "actions_taken"):
        assert fields[required]["isRequired"] and fields[required]["errorMessage"]
    assert fields["about_author"]["title"] == "It is about Jo Hughes, who wrote this message"


async def test_submitting_files_one_report_routed_like_the_chat_and_a_second_submit_files_nothing_more(
    harness: Harness,
) -> None:
    await harness.channel("dsl").bot_added(by=harness.user("Sam Patel"))
    await say_hello(harness, "Sam Patel", "Priya Shah", "Leah Brooks")
    leah = harness.user("Leah Brooks")
    card = form_card(await fetch_task(leah))
    first = await leah.post(submit_action(leah, answers(card)), GROUP_CHAT)
    reference = confirmed_reference(first.body)
    assert reference == "ES-2026-0001"
    assert "I will tell you in your chat with me" in json.dumps(first.body)
    await harness.connector.wait_for(
        lambda sent: [s for s in sent if s.conversation_id == DSL_CHANNEL and reference in json.dumps(s.activity)]
    )
    # The same form submitted again (a double click, or Teams sending it twice): the same case, and no new alert.
    again = await leah.post(submit_action(leah, answers(card)), GROUP_CHAT)
    assert confirmed_reference(again.body) == reference
    await harness.run_due_work()
    assert channel_alerts(harness) == [f"New online-safety concern {reference}"]
    mine = await leah.says("my reports")
    assert reference in mine.everything and "ES-2026-0002" not in mine.everything
    # The DSL sees the message's link, author and time with the report.
    case = await harness.user("Priya Shah").says(f"case {reference}")
    assert LINK in case.everything and "Jo Hughes" in case.everything
    assert "Monday 23 November 2026 at 09:58" in case.everything


async def test_a_submit_teams_redelivers_files_one_report_and_gets_the_same_confirmation(harness: Harness) -> None:
    await harness.channel("dsl").bot_added(by=harness.user("Sam Patel"))
    leah = harness.user("Leah Brooks")
    card = form_card(await fetch_task(leah))
    activity = submit_action(leah, answers(card))
    first = await leah.post(activity, GROUP_CHAT)
    again = await leah.redelivers(activity)  # the same activity id: Teams did not see the first answer
    assert confirmed_reference(first.body) == confirmed_reference(again.body) == "ES-2026-0001"
    await harness.run_due_work()
    assert channel_alerts(harness) == ["New online-safety concern ES-2026-0001"]


async def test_invalid_answers_bring_the_form_back_with_a_kind_message_and_file_nothing(harness: Harness) -> None:
    await harness.channel("dsl").bot_added(by=harness.user("Sam Patel"))
    leah = harness.user("Leah Brooks")
    card = form_card(await fetch_task(leah))
    data = answers(card, narrative="   ", category="not_a_category")
    reply = await leah.post(submit_action(leah, data), GROUP_CHAT)
    again = form_card(reply.body)
    shown = json.dumps(again)
    assert "Please say what happened." in shown and "Please choose the kind of concern from the list." in shown
    assert inputs(again)["subjects"]["value"] == "JS, Year 6"  # what they typed is kept
    assert again["actions"][0]["data"]["form"] == card["actions"][0]["data"]["form"]
    await harness.run_due_work()
    assert channel_alerts(harness) == []
    assert "ES-2026-0001" not in (await leah.says("my reports")).everything
    # Corrected, the same form files its one report.
    fixed = await leah.post(submit_action(leah, answers(card)), GROUP_CHAT)
    assert confirmed_reference(fixed.body) == "ES-2026-0001"


async def test_an_illegal_category_raises_the_urgent_alerts(harness: Harness) -> None:
    users = await say_hello(harness, "Priya Shah", "Tom Reed", "Chris Doyle", "Grace Okafor")
    leah = harness.user("Leah Brooks")
    card = form_card(await fetch_task(leah))
    reply = await leah.post(submit_action(leah, answers(card, category="grooming_sexual_contact")), GROUP_CHAT)
    reference = confirmed_reference(reply.body)
    for name in ("Priya Shah", "Tom Reed", "Chris Doyle", "Grace Okafor"):
        conversation = users[name].conversation_id
        await harness.connector.wait_for(
            lambda sent, c=conversation: [
                s for s in sent if s.conversation_id == c and f"Urgent online-safety concern {reference}" in s.text
            ]
        )


async def test_images_categories_keep_the_link_out_of_the_report(harness: Harness) -> None:
    leah = harness.user("Leah Brooks")
    card = form_card(await fetch_task(leah))
    refused = await leah.post(
        submit_action(leah, answers(card, category="nudes_sharing", evidence=f"It is here {LINK}")), GROUP_CHAT
    )
    assert "Please do not add links to the images" in json.dumps(form_card(refused.body))
    reply = await leah.post(
        submit_action(leah, answers(card, category="nudes_sharing", evidence="On JS's phone, with the head")),
        GROUP_CHAT,
    )
    reference = confirmed_reference(reply.body)
    case = await harness.user("Priya Shah").says(f"case {reference}")
    assert "Jo Hughes" in case.everything and LINK not in case.everything


async def test_a_report_about_the_author_keeps_them_out_of_the_case(harness: Harness) -> None:
    await say_hello(harness, "Grace Okafor", "Tom Reed")
    leah = harness.user("Leah Brooks")
    payload = message_payload("Tom Reed", harness.person_id("Tom Reed"))
    card = form_card(await fetch_task(leah, payload))
    data = answers(card, subject_kind="staff", category="staff_personal_channels", about_author="true")
    reference = confirmed_reference((await leah.post(submit_action(leah, data), GROUP_CHAT)).body)
    refused = await harness.user("Tom Reed").says(f"case {reference}")
    assert "can't open that case" in refused.everything and reference not in refused.everything
    opened = await harness.user("Grace Okafor").says(f"case {reference}")
    assert "Tom Reed" in opened.everything


async def test_strangers_are_refused_kindly_and_nothing_is_filed(harness: Harness) -> None:
    stranger = harness.user("Visitor", aad_id="99999999-0000-4000-8000-000000000099")
    body = await fetch_task(stranger)
    assert body["task"]["type"] == "message" and "staff directory" in body["task"]["value"]
    leah_card = form_card(await fetch_task(harness.user("Leah Brooks")))
    reply = await stranger.post(submit_action(stranger, answers(leah_card)), GROUP_CHAT)
    assert reply.status == 200 and reply.body["task"]["type"] == "message"
    await harness.run_due_work()
    assert "ES-2026-0001" not in (await harness.user("Leah Brooks").says("my reports")).everything
