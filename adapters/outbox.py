"""Delivers queued proactive messages through the Bot Connector, within Teams' rate limits.

Its sends are bulk (adapters.send_budget): they use only part of the tenant's budget, so people's replies go first,
and a 429 or 5xx comes straight back here to be retried durably at the time Retry-After gives.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

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
from adapters.connector_http import ConnectorHTTPError, ConnectorUnavailable, ServiceUrlRefused
from adapters.send_budget import bulk_sends
from bot.config import AppConfig
from bot.delivery import confirm_after, fallback_sends
from bot.protocols import Clock, UnitOfWorkFactory
from bot.quiet import ConversationActivity, wait_before_sending
from bot.work import MAX_ATTEMPTS, Done, GiveUp, NotYet, RetryLater, Then, WorkItem, parse_retry_after
from storage.repos import ConversationRefs, SavedReference

log = logging.getLogger(__name__)

ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"
RETRYABLE = {408, 412, 429, 500, 502, 503, 504}
# A claimed send is retaken by another replica after this long. It covers the connector's total timeout (15 s),
# a rate-limit wait and a Graph install; the worker stops a send at 80% of it, so two never run at once.
SEND_LEASE = dt.timedelta(seconds=60)


def retry_after(headers: Any, now: dt.datetime) -> dt.timedelta | None:
    """Retry-After from the connector's response headers (case-insensitive)."""
    return parse_retry_after(headers.get("Retry-After") if headers is not None else None, now)


def message_activity(text: str | None, card: dict[str, Any] | None, plain: bool = False) -> Activity:
    activity = Activity(type=ActivityTypes.message, text=text, text_format="plain" if plain else None)
    if card is not None:
        activity.attachments = [Attachment(content_type=ADAPTIVE_CARD, content=card)]
    return activity


def raw_attachment(value: dict[str, Any]) -> Attachment:
    """A queued attachment that is not an Adaptive Card (Teams' file consent and file info cards)."""
    return Attachment(
        content_type=value.get("contentType"),
        content=value.get("content"),
        name=value.get("name"),
        content_url=value.get("contentUrl"),
    )


class Undeliverable(Exception):  # noqa: N818 - a signal, not an error
    """This recipient cannot be reached by this route (403, 404, no conversation, app not installed)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


Reach = Callable[..., Awaitable[SavedReference]]


class QuietRule:
    """Holds back a message marked quiet until its conversation is quiet, by putting its send back for later."""

    def __init__(
        self, config: AppConfig, activity: ConversationActivity, clock: Clock, *, idle: dt.timedelta, hold: dt.timedelta
    ) -> None:
        self._config = config
        self._activity = activity
        self._clock = clock
        self._idle = idle
        self._hold = hold

    async def wait_if_busy(self, item: WorkItem) -> None:
        target = item.payload["target"]
        if target["kind"] == "person":
            kind, key = "person", target["id"]
        else:
            school = self._config.school(item.school_id)
            kind, key = "channel", getattr(school.channels, target["purpose"], None) if school else None
            if not key:
                return  # the send itself will say why it cannot go
        wait = wait_before_sending(
            await self._activity.last(item.school_id, kind, key), self._clock.now(), self._idle, self._hold
        )
        if wait is not None:
            raise NotYet("waiting for a quiet moment in the conversation", wait)


class OutboxSender:
    """The work handler for kind 'send'.

    A send that cannot reach its person tries, in order: installing the app for them through Graph (where
    configured), then the next people in its delivery's fallback stages (other holders of the role, then the
    escalation). Its outcome, and any follow-up, is recorded by the worker in one transaction.
    """

    def __init__(
        self,
        config: AppConfig,
        refs: ConversationRefs,
        sender: ProactiveSender,
        clock: Clock,
        uow: UnitOfWorkFactory,
        *,
        route: Callable[[str], Awaitable[tuple[str, dict[str, Any]]]],
        reach: Reach | None = None,
        quiet: QuietRule | None = None,
        before_send: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._before_send = before_send  # e.g. BudgetShare.refresh: this replica's part of Teams' send budget
        self._config = config
        self._quiet = quiet
        self._reach = reach  # installs the app and starts a 1:1 chat for someone never seen (adapters.graph_install)
        self._refs = refs
        self._sender = sender
        self._clock = clock
        self._uow = uow
        self._route = route

    async def __call__(self, item: WorkItem) -> Done:
        if item.payload.get("quiet") and self._quiet is not None:
            await self._quiet.wait_if_busy(item)
        if self._before_send is not None:
            await self._before_send()
        try:
            with bulk_sends(quiet=item.quiet):  # the Graph install and new 1:1 chat of a first send too
                result = await self._deliver(item)
        except Undeliverable as exc:
            raise GiveUp(f"undeliverable: {exc.reason}", then=await self._fallbacks(item, exc.reason)) from exc
        except RetryLater as exc:
            if item.attempts < MAX_ATTEMPTS:
                raise
            reason = f"gave up after {item.attempts} tries: {exc.reason}"
            raise GiveUp(reason, then=await self._fallbacks(item, reason)) from exc
        return Done(result, then=confirm_after(item.payload))

    async def _fallbacks(self, item: WorkItem, reason: str) -> tuple[Then, ...]:
        group = (item.payload.get("delivery") or {}).get("group")
        if not group:
            return ()
        async with self._uow() as uow:
            targeted = {o.target for o in await uow.deliveries.group(item.school_id, group)}
        label = item.payload["delivery"].get("label") or "a recipient"
        then = fallback_sends(item.payload, targeted, item.school_id, label, reason)
        if then:
            log.warning("send %s could not reach %s (%s); re-routed to the next people in line", item.id, label, reason)
        return then

    async def _deliver(self, item: WorkItem) -> str:
        target = item.payload["target"]
        reference = await self._reference(item.school_id, target)
        try:
            return await self._send(item, reference)
        except Undeliverable:
            if target["kind"] != "person" or self._reach is None:
                raise
        # Blocked or not installed for this person: install the app for them through Graph, then try once more.
        return await self._send(item, await self._reach(item.school_id, target["id"], force=True))

    async def _send(self, item: WorkItem, reference: SavedReference) -> str:
        conversation = reference.reference.get("conversation") or {}
        # A saved reference always has its service URL, under one spelling or the other.
        service_url = cast(str, reference.reference.get("serviceUrl") or reference.reference.get("service_url"))
        activity = message_activity(item.payload.get("text"), item.payload.get("card"), bool(item.payload.get("plain")))
        if item.payload.get("attachment"):
            activity.attachments = [*(activity.attachments or []), raw_attachment(item.payload["attachment"])]
        activity.conversation = ConversationAccount(id=conversation.get("id"), tenant_id=conversation.get("tenantId"))
        bot = reference.reference.get("bot") or {}
        activity.from_property = ChannelAccount(id=bot.get("id"), name=bot.get("name"))
        activity.channel_id = reference.reference.get("channelId", "msteams")
        activity.service_url = service_url
        try:
            client = await self._sender.connector_for(service_url)
            if item.payload.get("update_of"):
                activity.id = item.payload["update_of"]
                response = await client.conversations.update_activity(conversation["id"], activity.id, activity)
            else:
                response = await client.conversations.send_to_conversation(conversation["id"], activity)
        except ConnectorHTTPError as exc:
            raise self._classify(exc.status, exc.headers) from exc
        except ErrorResponseException as exc:
            response_ = getattr(exc, "response", None)
            status = getattr(response_, "status_code", None) or getattr(response_, "status", None)
            raise self._classify(status, getattr(response_, "headers", None)) from exc
        except ServiceUrlRefused as exc:
            raise Undeliverable(f"the saved address is not a Microsoft Bot Connector ({exc.reason})") from exc
        except ConnectorUnavailable as exc:
            raise RetryLater(f"connector unreachable: {exc.reason}") from exc
        except (ClientRequestError, aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            raise RetryLater(f"connector unreachable: {exc.__class__.__name__}") from exc
        return f"sent:{item.payload.get('update_of') or getattr(response, 'id', '') or ''}"

    def _classify(self, status: int | None, headers: Any) -> Exception:
        if status == 403:
            return Undeliverable("403: the person has blocked the bot or the app is not installed there")
        if status == 404:
            return Undeliverable("404: the conversation no longer exists")
        if status in RETRYABLE:
            return RetryLater(f"connector answered {status}", retry_after(headers, self._clock.now()))
        return Undeliverable(f"the connector refused the message ({status})")

    async def _reference(self, school_id: str, target: dict[str, str]) -> SavedReference:
        if target["kind"] == "person":
            saved = await self._refs.get(school_id, "person", target["id"])
            if saved is None and self._reach is not None:
                try:
                    return await self._reach(school_id, target["id"])
                except GiveUp as exc:
                    raise Undeliverable(exc.reason) from exc
            if saved is None:
                raise Undeliverable("no conversation with this person yet: they have not opened the app")
            return saved
        school = self._config.school(school_id)
        channel_id = getattr(school.channels, target["purpose"], None) if school else None
        if not channel_id:
            raise Undeliverable(f"no {target['purpose']} channel is configured for this school")
        assert school is not None  # the channel id came from it
        saved = await self._refs.get(school_id, "channel", channel_id)
        if saved is not None:
            return saved
        # Posting to a channel id starts a new thread there, so the bot needs no earlier message in that channel:
        # only the tenant's service URL and the bot's own account.
        service_url, bot = await self._route(school_id)
        reference = {
            "bot": bot,
            "channelId": "msteams",
            "serviceUrl": service_url,
            "conversation": {
                "id": channel_id,
                "tenantId": school.tenant_id,
                "conversationType": "channel",
                "isGroup": True,
            },
        }
        return SavedReference(school_id, "channel", channel_id, None, school.team_id, reference)


def tenant_route(
    refs: ConversationRefs, default_service_url: str, app_id: str
) -> Callable[[str], Awaitable[tuple[str, dict[str, Any]]]]:
    """The service URL and bot account for a school: from a conversation the bot already has, else from settings."""

    async def route(school_id: str) -> tuple[str, dict[str, Any]]:
        for kind in ("channel", "person"):
            for saved in await refs.all(school_id, kind):
                url = saved.reference.get("serviceUrl")
                bot = saved.reference.get("bot") or {}
                if url and bot.get("id"):
                    return url, {"id": bot["id"], "name": bot.get("name")}
        return default_service_url, {"id": f"28:{app_id}", "name": None}

    return route
