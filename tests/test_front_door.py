"""The front door over HTTP: greetings, help, and the server's answers to bad requests."""

from __future__ import annotations

import json

from tests.support.harness import Harness
from tests.support.teams import Reply


def card_starting(reply: Reply, text: str) -> dict:
    """The card whose first line starts with `text` (other features may send their own cards alongside)."""
    found = [c for c in reply.cards if c["body"] and c["body"][0].get("text", "").startswith(text)]
    assert found, f"no card starting {text!r} in {reply.everything[:400]}"
    return found[0]


async def test_personal_install_greets_with_what_the_bot_can_do(harness: Harness) -> None:
    reply = await harness.user("Leah Brooks").installs()
    assert reply.status == 200
    card = card_starting(reply, "Welcome, Leah")
    assert card["version"] == "1.5"


async def test_team_install_says_what_the_channel_will_receive_and_no_names(harness: Harness) -> None:
    reply = await harness.channel("dsl").bot_added(by=harness.user("Sam Patel"))
    assert reply.status == 200
    # The welcome is posted to the channel (a send), not a reply to the install.
    body = json.dumps([card for sent in reply.sent for card in sent.cards])
    assert "new online-safety concerns" in body
    assert "Sam" not in body


async def test_help_lists_commands_for_this_persons_roles(harness: Harness) -> None:
    reply = await harness.user("Leah Brooks").says("help")
    assert reply.status == 200
    help_card = card_starting(reply, "Hello Leah")
    titles = [a["title"] for a in help_card["actions"]]
    assert titles[0] == "Report a concern"
    dsl_help = card_starting(await harness.user("Priya Shah").says("help"), "Hello Priya")
    dsl_titles = [a["title"] for a in dsl_help["actions"]]
    assert "Report a concern" in dsl_titles


async def test_unknown_text_gets_help_with_a_gentle_note(harness: Harness) -> None:
    reply = await harness.user("Leah Brooks").says("what's the wifi password")
    assert card_starting(reply, "Sorry, I didn't understand")


async def test_person_unknown_to_the_directory_gets_no_commands(harness: Harness) -> None:
    reply = await harness.user("Visitor", aad_id="11111111-2222-4333-8444-555555555555").says("help")
    assert reply.status == 200
    assert not reply.card.get("actions")


async def test_malformed_json_is_400_with_a_reason(harness: Harness) -> None:
    async with harness.http.post(
        f"{harness.url}/api/messages", data=b"{not json", headers={"Content-Type": "application/json"}
    ) as response:
        assert response.status == 400
        assert "not valid JSON" in (await response.json())["error"]


async def test_json_that_is_not_an_activity_is_400(harness: Harness) -> None:
    for body in ([1, 2], {"text": "hi"}, {"type": "message"}):
        async with harness.http.post(f"{harness.url}/api/messages", json=body) as response:
            assert response.status == 400, body


async def test_oversized_body_is_413(harness: Harness) -> None:
    big = {"type": "message", "text": "x" * (300 * 1024)}
    async with harness.http.post(f"{harness.url}/api/messages", json=big) as response:
        assert response.status == 413


async def test_unknown_activity_type_is_ignored_with_200(harness: Harness) -> None:
    async with harness.http.post(f"{harness.url}/api/messages", json={"type": "somethingNew"}) as response:
        assert response.status == 200
    assert harness.connector.sent == []


async def test_health_and_readiness(harness: Harness) -> None:
    async with harness.http.get(f"{harness.url}/healthz") as response:
        assert response.status == 200
    async with harness.http.get(f"{harness.url}/readyz") as response:
        assert response.status == 200
        assert (await response.json())["status"] == "ready"
