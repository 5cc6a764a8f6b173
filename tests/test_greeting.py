"""One greeting per install: Teams announces an install twice (installationUpdate and conversationUpdate)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.support.harness import Harness
from tests.support.teams import BOT_ID, TeamsChannel, TeamsUser


def _install(user: TeamsUser, action: str = "add") -> dict[str, Any]:
    return user._activity("installationUpdate", action=action)  # noqa: SLF001 - genuine activity JSON


def _bot_joined(user: TeamsUser) -> dict[str, Any]:
    """The conversationUpdate Teams sends alongside a personal install: the bot is added to the 1:1 chat."""
    return user._activity("conversationUpdate", membersAdded=[{"id": BOT_ID}])  # noqa: SLF001


def _channel_install(channel: TeamsChannel, by: TeamsUser) -> dict[str, Any]:
    """The installationUpdate Teams sends in the team's channel when the app is added to the team."""
    return {
        "type": "installationUpdate",
        "id": f"inst-{channel.channel_id}",
        "action": "add",
        "serviceUrl": channel.connector.url,
        "channelId": "msteams",
        "from": {"id": f"29:{by.aad_id}", "name": by.name, "aadObjectId": by.aad_id},
        "conversation": {
            "id": channel.channel_id,
            "conversationType": "channel",
            "isGroup": True,
            "tenantId": channel.tenant_id,
        },
        "recipient": {"id": BOT_ID, "name": "eSafety"},
        "channelData": {
            "tenant": {"id": channel.tenant_id},
            "team": {"id": channel.team_id, "name": "Staff"},
            "channel": {"id": channel.channel_id},
            "source": {"name": "message"},
        },
    }


def _welcomes(harness: Harness, user: TeamsUser) -> int:
    return sum(1 for s in harness.connector.to(user.conversation_id) for c in s.cards if "Welcome, " in json.dumps(c))


def _channel_welcomes(harness: Harness, channel: TeamsChannel) -> int:
    return sum(
        1
        for s in harness.connector.to(channel.channel_id)
        for c in s.cards
        if "is set up in this team" in json.dumps(c)
    )


async def test_installation_then_conversation_update_greets_once(harness: Harness) -> None:
    leah = harness.user("Leah Brooks")
    first = await leah.post(_install(leah), leah.conversation_id)
    assert first.status == 200 and "Welcome, Leah" in first.everything
    second = await leah.post(_bot_joined(leah), leah.conversation_id)
    assert second.status == 200 and second.replies == []  # (the AUP card may be on its way meanwhile)
    assert _welcomes(harness, leah) == 1


async def test_conversation_update_then_installation_greets_once_and_a_restart_does_not_forget(
    harness: Harness,
) -> None:
    sam = harness.user("Sam Patel")
    first = await sam.post(_bot_joined(sam), sam.conversation_id)
    assert "Welcome, Sam" in first.everything
    await harness.restart()
    second = await sam.post(_install(sam), sam.conversation_id)
    assert second.status == 200 and second.replies == []
    upgrade = await sam.post(_install(sam, "add-upgrade"), sam.conversation_id)  # a new app version is no install
    assert upgrade.replies == []
    assert _welcomes(harness, sam) == 1


async def test_both_announcements_at_once_greet_once(harness: Harness) -> None:
    people = [harness.user(name) for name in ("Leah Brooks", "Sam Patel", "Priya Shah")]
    await asyncio.gather(
        *(
            call
            for p in people
            for call in (p.post(_install(p), p.conversation_id), p.post(_bot_joined(p), p.conversation_id))
        )
    )
    assert [_welcomes(harness, p) for p in people] == [1, 1, 1]


async def test_reinstalling_after_removing_the_app_greets_again_once(harness: Harness) -> None:
    leah = harness.user("Leah Brooks")
    await leah.post(_install(leah), leah.conversation_id)
    await leah.post(_bot_joined(leah), leah.conversation_id)
    removed = await leah.post(_install(leah, "remove"), leah.conversation_id)
    assert removed.status == 200 and removed.replies == []
    await leah.post(_bot_joined(leah), leah.conversation_id)
    await leah.post(_install(leah), leah.conversation_id)
    assert _welcomes(harness, leah) == 2


async def test_a_team_install_posts_one_welcome_card_in_the_channel(harness: Harness) -> None:
    channel, sam = harness.channel("dsl"), harness.user("Sam Patel")
    install = _channel_install(channel, sam)
    both = await asyncio.gather(channel.post(install, channel.channel_id), channel.bot_added(by=sam))
    assert [r.status for r in both] == [200, 200]
    assert _channel_welcomes(harness, channel) == 1
    card = next(c for s in harness.connector.to(channel.channel_id) for c in s.cards)
    assert "Alerts about new online-safety concerns" in json.dumps(card)
    redelivered = await channel.post(install, channel.channel_id)  # Teams' retry of the same activity
    assert redelivered.replies == []
    assert _channel_welcomes(harness, channel) == 1
