"""Delivers queued proactive messages through the Bot Connector, within Teams' rate limits."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from botbuilder.schema import (
    Activity,
    ActivityTypes,
    Attachment,
    ChannelAccount,
    ConversationAccount,
    ErrorResponseException,
)
from msrest.exceptions import ClientRequestError

from adapters.connector import ProactiveSender
from bot.config import AppConfig
from bot.protocols import Clock
from bot.work import GiveUp, RetryLater, WorkItem, parse_retry_after
from storage.repos import ConversationRefs, SavedReference

log = logging.getLogger(__name__)

ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"
RETRYABLE = {408, 412, 429, 500, 502, 503, 504}
TENANT_PER_SECOND = 50
CONVERSATION_PER_SECOND = 7


class RateLimiter:
    """Sliding one-second windows per tenant and per conversation (Teams: 50/s per tenant, 7/s per chat)."""

    def __init__(self, tenant_rate: int = TENANT_PER_SECOND, conversation_rate: int = CONVERSATION_PER_SECOND) -> None:
        self._limits = {"tenant": tenant_rate, "conversation": conversation_rate}
        self._sent: dict[tuple[str, str], deque[float]] = defaultdict(deque)
        self._lock = asyncio.Lock()

    async def acquire(self, tenant: str, conversation: str) -> None:
        while True:
            async with self._lock:
                now = time.monotonic()
                wait = 0.0
                for key in (("tenant", tenant), ("conversation", conversation)):
                    window = self._sent[key]
                    while window and now - window[0] >= 1.0:
                        window.popleft()
                    if len(window) >= self._limits[key[0]]:
                        wait = max(wait, 1.0 - (now - window[0]))
                if wait == 0.0:
                    self._sent[("tenant", tenant)].append(now)
                    self._sent[("conversation", conversation)].append(now)
                    return
            await asyncio.sleep(wait)


def retry_after(headers: Any, now: dt.datetime) -> dt.timedelta | None:
    """Retry-After from the connector's response headers (case-insensitive)."""
    return parse_retry_after(headers.get("Retry-After") if headers is not None else None, now)


def message_activity(text: str | None, card: dict[str, Any] | None) -> Activity:
    activity = Activity(type=ActivityTypes.message, text=text)
    if card is not None:
        activity.attachments = [Attachment(content_type=ADAPTIVE_CARD, content=card)]
    return activity


class OutboxSender:
    """The work handler for kind 'send'."""

    def __init__(self, config: AppConfig, refs: ConversationRefs, sender: ProactiveSender, clock: Clock,
                 limiter: RateLimiter | None = None,
                 reach: Callable[[str, str], Awaitable[SavedReference]] | None = None) -> None:
        self._config = config
        self._reach = reach  # installs the app and starts a 1:1 chat for someone never seen (adapters.graph_install)
        self._refs = refs
        self._sender = sender
        self._clock = clock
        self._limiter = limiter or RateLimiter()

    async def __call__(self, item: WorkItem) -> str:
        target = item.payload["target"]
        reference = await self._reference(item.school_id, target)
        conversation = reference.reference.get("conversation") or {}
        service_url = reference.reference.get("serviceUrl") or reference.reference.get("service_url")
        activity = message_activity(item.payload.get("text"), item.payload.get("card"))
        activity.conversation = ConversationAccount(id=conversation.get("id"), tenant_id=conversation.get("tenantId"))
        bot = reference.reference.get("bot") or {}
        activity.from_property = ChannelAccount(id=bot.get("id"), name=bot.get("name"))
        activity.channel_id = reference.reference.get("channelId", "msteams")
        activity.service_url = service_url
        await self._limiter.acquire(conversation.get("tenantId") or item.school_id, conversation["id"])
        try:
            client = await self._sender.connector_for(service_url)
            response = await client.conversations.send_to_conversation(conversation["id"], activity)
        except ErrorResponseException as exc:
            raise self._classify(exc) from exc
        except (ClientRequestError, aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            raise RetryLater(f"connector unreachable: {exc.__class__.__name__}") from exc
        return f"sent:{getattr(response, 'id', '') or ''}"

    def _classify(self, exc: ErrorResponseException) -> Exception:
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None) or getattr(response, "status", None)
        if status == 403:
            return GiveUp("undeliverable (403): the person has blocked the bot or the app is not installed there")
        if status == 404:
            return GiveUp("undeliverable (404): the conversation no longer exists")
        if status in RETRYABLE:
            headers = getattr(response, "headers", None)
            return RetryLater(f"connector answered {status}", retry_after(headers, self._clock.now()))
        return GiveUp(f"connector refused the message ({status})")

    async def _reference(self, school_id: str, target: dict[str, str]) -> SavedReference:
        if target["kind"] == "person":
            saved = await self._refs.get(school_id, "person", target["id"])
            if saved is None and self._reach is not None:
                return await self._reach(school_id, target["id"])
            if saved is None:
                raise GiveUp("no conversation with this person yet: they have not opened the app")
            return saved
        school = self._config.school(school_id)
        channel_id = getattr(school.channels, target["purpose"], None) if school else None
        if not channel_id:
            raise GiveUp(f"no {target['purpose']} channel is configured for this school")
        saved = await self._refs.get(school_id, "channel", channel_id)
        if saved is not None:
            return saved
        # The bot is installed in the team but has not seen this channel yet: reuse the team's reference.
        team_refs = [r for r in await self._refs.all(school_id, "channel") if r.team_id and r.team_id == school.team_id]
        if not team_refs:
            raise GiveUp("the app is not installed in the school's team yet")
        reference = dict(team_refs[0].reference)
        reference["conversation"] = {**reference.get("conversation", {}), "id": channel_id}
        return SavedReference(school_id, "channel", channel_id, None, school.team_id, reference)
