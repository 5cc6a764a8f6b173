"""Test people and channels that post genuine Bot Framework Activity JSON to the real app."""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp

from tests.support.connector import RecordingConnector, Sent

BOT_ID = "28:esafety-bot"
PROACTIVE = {"send", "create_conversation"}
_ids = itertools.count(1)


@dataclass
class Reply:
    status: int
    body: Any
    sent: list[Sent]

    @property
    def own(self) -> list[Sent]:
        """What the turn itself said in this conversation (replies and card updates), without the proactive sends
        (an AUP reminder, an alert, a confirmation the worker was delivering) that happened to land while it ran:
        what a turn answered never depends on the worker's timing."""
        return [s for s in self.sent if s.op not in PROACTIVE]

    @property
    def texts(self) -> list[str]:
        return [s.text for s in self.own if s.text]

    @property
    def replies(self) -> list[Sent]:
        """What the turn itself answered, without proactive sends (a confirmation, a card the worker was sending)
        that happened to arrive while it ran."""
        return [s for s in self.sent if s.op == "reply"]

    @property
    def cards(self) -> list[dict[str, Any]]:
        return [c for s in self.own for c in s.cards]

    @property
    def everything(self) -> str:
        """All the bot sent, as text, including prompts rendered as hero cards."""
        return json.dumps([s.activity for s in self.sent])

    @property
    def card(self) -> dict[str, Any]:
        assert self.cards, f"expected a card, got texts {self.texts}"
        return self.cards[-1]

    @property
    def invoke_card(self) -> dict[str, Any] | None:
        if isinstance(self.body, dict) and self.body.get("type") == "application/vnd.microsoft.card.adaptive":
            return self.body["value"]
        return None

    @property
    def invoke_message(self) -> str | None:
        if isinstance(self.body, dict) and self.body.get("type") == "application/vnd.microsoft.activity.message":
            return self.body["value"]
        return None


class Endpoint:
    def __init__(
        self,
        http: aiohttp.ClientSession,
        app_url: str,
        connector: RecordingConnector,
        tenant_id: str,
        token: str | None = None,
    ) -> None:
        self.http = http
        self.app_url = app_url
        self.connector = connector
        self.tenant_id = tenant_id
        self.token = token

    async def post(self, activity: dict[str, Any], conversation_id: str) -> Reply:
        before = len(self.connector.sent)
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with self.http.post(f"{self.app_url}/api/messages", json=activity, headers=headers) as response:
            text = await response.text()
            try:
                body = await response.json(content_type=None) if text else None
            except ValueError:
                body = text
            status = response.status
        sent = [s for s in self.connector.sent[before:] if s.conversation_id == conversation_id]
        return Reply(status, body, sent)

    async def post_together(self, activity: dict[str, Any], conversation_id: str, copies: int = 2) -> list[Reply]:
        """The identical activity (same id) posted `copies` times at once, as Teams redelivers a slow turn.

        Each Reply's `sent` may include what the other deliveries caused; count effects on the connector instead.
        """
        return list(await asyncio.gather(*(self.post(activity, conversation_id) for _ in range(copies))))


class TeamsUser(Endpoint):
    """A member of staff in a 1:1 chat with the bot."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        app_url: str,
        connector: RecordingConnector,
        *,
        aad_id: str,
        name: str,
        tenant_id: str,
        token: str | None = None,
    ) -> None:
        super().__init__(http, app_url, connector, tenant_id, token)
        self.aad_id = aad_id
        self.name = name
        self.conversation_id = f"a:personal-{aad_id}"

    def _activity(self, kind: str, **fields: Any) -> dict[str, Any]:
        return {
            "type": kind,
            "id": f"in-{next(_ids)}",
            "timestamp": "2026-11-23T10:00:00.000Z",
            "serviceUrl": self.connector.url,
            "channelId": "msteams",
            "from": {"id": f"29:{self.aad_id}", "name": self.name, "aadObjectId": self.aad_id},
            "conversation": {"id": self.conversation_id, "conversationType": "personal", "tenantId": self.tenant_id},
            "recipient": {"id": BOT_ID, "name": "eSafety"},
            "channelData": {"tenant": {"id": self.tenant_id}},
            "locale": "en-GB",
            **fields,
        }

    def message(self, text: str) -> dict[str, Any]:
        """The Activity JSON of a typed message, not yet posted (for posting it more than once)."""
        return self._activity("message", text=text)

    def card_submit(self, data: dict[str, Any]) -> dict[str, Any]:
        """The Activity JSON of an Action.Submit, not yet posted."""
        return self._activity("message", value=data)

    def card_execute(self, verb: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        """The Activity JSON of an Action.Execute invoke from this chat, not yet posted."""
        return self._activity(
            "invoke",
            name="adaptiveCard/action",
            value={
                "action": {"type": "Action.Execute", "id": str(uuid.uuid4()), "verb": verb, "data": data or {}},
                "trigger": "manual",
            },
        )

    def invoke(self, name: str, value: Any = None) -> dict[str, Any]:
        """The Activity JSON of any invoke by name (e.g. Teams' healthCheck), not yet posted."""
        return self._activity("invoke", name=name, value=value)

    async def delivers(self, activity: dict[str, Any], copies: int = 2) -> list[Reply]:
        """This chat's activity delivered `copies` times at once with the same id (a Teams redelivery)."""
        return await self.post_together(activity, activity["conversation"]["id"], copies)

    async def redelivers(self, activity: dict[str, Any]) -> Reply:
        """The same activity (same id) once more, after the first delivery was answered."""
        return await self.post(activity, activity["conversation"]["id"])

    async def says(self, text: str) -> Reply:
        return await self.post(self._activity("message", text=text), self.conversation_id)

    async def submits_with_attachment(self, text: str) -> Reply:
        """A message with a picture attached, as Teams sends an inline image."""
        attachment = {"contentType": "image/png", "contentUrl": "https://example.invalid/photo.png", "name": "a.png"}
        return await self.post(self._activity("message", text=text, attachments=[attachment]), self.conversation_id)

    async def submits(self, data: dict[str, Any], reply_to: str | None = None) -> Reply:
        """An Adaptive Card Action.Submit: a message whose value is the card's data and inputs."""
        fields: dict[str, Any] = {"value": data}
        if reply_to:
            fields["replyToId"] = reply_to
        return await self.post(self._activity("message", **fields), self.conversation_id)

    async def executes(
        self, verb: str, data: dict[str, Any] | None = None, conversation_id: str | None = None
    ) -> Reply:
        """An Action.Execute (Universal Actions) invoke, from this chat or from a channel card."""
        activity = self._activity(
            "invoke",
            name="adaptiveCard/action",
            value={
                "action": {"type": "Action.Execute", "id": str(uuid.uuid4()), "verb": verb, "data": data or {}},
                "trigger": "manual",
            },
        )
        if conversation_id and conversation_id != self.conversation_id:
            activity["conversation"] = {
                "id": conversation_id,
                "conversationType": "channel",
                "tenantId": self.tenant_id,
            }
        return await self.post(activity, activity["conversation"]["id"])

    async def installs(self) -> Reply:
        return await self.post(self._activity("installationUpdate", action="add"), self.conversation_id)


class TeamsChannel(Endpoint):
    """A channel in the school's team, where the bot is installed by an admin."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        app_url: str,
        connector: RecordingConnector,
        *,
        team_id: str,
        channel_id: str,
        tenant_id: str,
        token: str | None = None,
    ) -> None:
        super().__init__(http, app_url, connector, tenant_id, token)
        self.team_id = team_id
        self.channel_id = channel_id

    async def bot_added(self, by: TeamsUser) -> Reply:
        activity = {
            "type": "conversationUpdate",
            "id": f"in-{next(_ids)}",
            "serviceUrl": self.connector.url,
            "channelId": "msteams",
            "from": {"id": f"29:{by.aad_id}", "name": by.name, "aadObjectId": by.aad_id},
            "conversation": {
                "id": self.channel_id,
                "conversationType": "channel",
                "isGroup": True,
                "tenantId": self.tenant_id,
            },
            "recipient": {"id": BOT_ID, "name": "eSafety"},
            "membersAdded": [{"id": BOT_ID}],
            "channelData": {
                "tenant": {"id": self.tenant_id},
                "team": {"id": self.team_id, "name": "Staff"},
                "channel": {"id": self.channel_id},
                "eventType": "teamMemberAdded",
            },
        }
        return await self.post(activity, self.channel_id)
