"""Teams' send budget: requests per second per tenant and per conversation, with people's own replies first.

Teams allows a bot about 50 requests a second per tenant and 7 a second per conversation, counted over a sliding
second, and answers 429 past that. A 429 costs the sender a whole Retry-After, so the budget counts the same way: at
most `rate` sends in any second. Teams counts a send when it arrives, which is after it starts here and, when the
event loop is busy, not always in the order started; so a send counts from its start until its answer comes back,
and from then for a second (the answer is the latest it can have arrived). A leaky bucket's burst overran the window
after a pause and drew 429s; a bucket without burst never caught up after one.

A broadcast (the outbox) is bulk: it may use only part of the tenant's window, and a reply to someone's own turn
waiting for the tenant's window always goes before a bulk send waiting for it, so replies never queue behind a
thousand cards. Among bulk sends, an urgent one (a concern's alert: any send not marked quiet) goes before quiet ones
(a broadcast's cards) waiting for the same place. The per-conversation limit applies to all.

Bulk sends are also spaced out, one every 1/rate seconds. Admitted as soon as the window had room, a broadcast went
in bursts: a second's worth of cards in the first few hundred milliseconds, then nothing until they left the window
together. A reply that found the window full then waited for the whole burst to leave, up to a second. Spaced out,
some send leaves the window every 1/rate seconds, so a waiting reply has the next place within about that.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

TENANT_PER_SECOND = 50.0
BULK_PER_SECOND = 48.0  # leaves 2 of the tenant's 50 a second to replies alone while a broadcast runs
CONVERSATION_PER_SECOND = 7.0
WINDOW_SECONDS = 1.0
MAX_KEYS = 10_000  # conversations (and tenants) with a window; the least recently used is forgotten first

_URGENT, _QUIET = "urgent", "quiet"
_bulk: ContextVar[str | None] = ContextVar("connector_bulk_send", default=None)  # None: a reply


@contextlib.contextmanager
def bulk_sends(*, quiet: bool = False) -> Iterator[None]:
    """Mark the Bot Connector calls made inside as bulk (proactive, not a reply to someone's own turn); `quiet`: one
    that may wait (bot.quiet), which gives way to urgent ones."""
    token = _bulk.set(_QUIET if quiet else _URGENT)
    try:
        yield
    finally:
        _bulk.reset(token)


def is_bulk() -> bool:
    return _bulk.get() is not None


def is_quiet() -> bool:
    return _bulk.get() == _QUIET


def tenant_of(payload: Mapping[str, Any] | None, service_url: str) -> str:
    """The tenant an outgoing activity or conversation is for: conversation.tenantId, tenantId (new conversations),
    channelData.tenant.id; else the service URL's host, which Teams serves per region, not per tenant."""
    if payload:
        conversation = payload.get("conversation")
        channel_data = payload.get("channelData")
        tenant = channel_data.get("tenant") if isinstance(channel_data, Mapping) else None
        for candidate in (
            conversation.get("tenantId") if isinstance(conversation, Mapping) else None,
            payload.get("tenantId"),
            tenant.get("id") if isinstance(tenant, Mapping) else None,
        ):
            if isinstance(candidate, str) and candidate:
                return f"tenant:{candidate}"
    return _host_key(service_url)


@functools.lru_cache(maxsize=256)  # a deployment's service URLs are few (adapters.connector_http.ServiceUrlPolicy)
def _host_key(service_url: str) -> str:
    return f"host:{(urlsplit(service_url).hostname or '').lower()}"


class Send:
    """One admitted send, in each of its windows: counted from `at`, its start until `answered()` moves it on."""

    __slots__ = ("at", "_clock")

    def __init__(self, at: float, clock: Callable[[], float]) -> None:
        self.at = at
        self._clock = clock

    def answered(self) -> None:
        """The answer came back: Teams counted the send by now, so its second runs from here."""
        self.at = self._clock()


class _Window:
    """One key's sends within the last second, and how many replies (or urgent bulk sends) are waiting for it."""

    __slots__ = ("sends", "replies_waiting", "urgent_waiting", "turn", "next_at")

    def __init__(self) -> None:
        # In order of start; one answered late may outlast later ones (see wait).
        self.sends: deque[Send] = deque()
        self.replies_waiting = 0  # for a tenant's window
        self.urgent_waiting = 0  # for a tenant's bulk share: urgent bulk sends, which quiet ones give way to
        self.next_at = 0.0  # the bulk share's pace: the earliest the next bulk send may start
        # A conversation's sends are admitted one at a time in the order they asked (asyncio.Lock is first come,
        # first served), so its messages keep their order.
        self.turn = asyncio.Lock()

    def wait(self, rate: float, now: float) -> float:
        """Seconds until one more send fits (0.0: now)."""
        sends = self.sends
        while sends and now - sends[0].at >= WINDOW_SECONDS:
            sends.popleft()
        if len(sends) + 1 <= rate:  # `rate` may be a replica's share: 11.5 allows 11 sends a second, never 12
            return 0.0
        # Sends are in order of start, but one answered late may leave after later ones: look at each.
        leaving = sorted(WINDOW_SECONDS - (now - send.at) for send in sends)
        counted = [left for left in leaving if left > 0]
        must_leave = len(counted) + 1 - int(rate)
        return 0.0 if must_leave <= 0 else counted[must_leave - 1]

    def paced(self, now: float) -> float:
        """Seconds until the next send is due at the pace keep_pace set (0.0: now)."""
        return max(self.next_at - now, 0.0)

    def keep_pace(self, rate: float, now: float) -> None:
        # A step after this send was due, so that the event loop's usual lateness (a millisecond or so a send) does
        # not slow the broadcast; but never less than three quarters of a step after it started: making up a longer
        # delay (the window was full) would put two sends together and leave a gap a waiting reply falls into.
        step = 1.0 / rate
        self.next_at = max(self.next_at, now - step / 4) + step

    def next_free(self, now: float) -> float:
        """Seconds until the next send leaves the window (a moment, when none is there)."""
        leaving = [WINDOW_SECONDS - (now - send.at) for send in self.sends]
        return max(min(leaving), 0.001) if leaving else 0.001


class _Windows:
    """Sliding windows by key at one rate, at most `limit` keys (least recently used dropped: an idle key's window
    is empty anyway)."""

    def __init__(self, rate: float, limit: int) -> None:
        self.rate = rate
        self._limit = limit
        self._windows: OrderedDict[str, _Window] = OrderedDict()

    def rerate(self, rate: float) -> None:
        """A new rate for every key; sends already in a window still count."""
        self.rate = rate

    def __len__(self) -> int:
        return len(self._windows)

    def get(self, key: str) -> _Window:
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window()
            while len(self._windows) > self._limit:
                self._windows.popitem(last=False)
        else:
            self._windows.move_to_end(key)
        return window


class SendBudget:
    """Waits until a request fits Teams' limits. A send is admitted to all its windows at once (its conversation's,
    the bulk share's for a bulk send, the tenant's), so each counts it from the same moment; within the tenant's
    window, replies that are waiting go first and a bulk send takes what they leave."""

    def __init__(
        self,
        *,
        tenant_rate: float = TENANT_PER_SECOND,
        bulk_rate: float = BULK_PER_SECOND,
        conversation_rate: float = CONVERSATION_PER_SECOND,
        max_keys: int = MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if min(tenant_rate, bulk_rate, conversation_rate) < 1:
            raise ValueError("send rates must allow at least one request a second")
        self._tenant_rate, self._bulk_rate = tenant_rate, min(bulk_rate, tenant_rate)
        self.tenants = _Windows(tenant_rate, max_keys)
        self.bulk = _Windows(self._bulk_rate, max_keys)
        self.conversations = _Windows(conversation_rate, max_keys)
        self.replicas = 1
        self._clock = clock
        self._sleep = sleep

    def share(self, replicas: int) -> None:
        """Teams counts a tenant's requests across every replica of the bot: each takes its part of the tenant's
        budget while `replicas` of them are sending. (A conversation's sends come from one replica at a time.)"""
        replicas = max(1, replicas)
        if replicas != self.replicas:
            self.replicas = replicas
            self.tenants.rerate(max(1.0, self._tenant_rate / replicas))
            self.bulk.rerate(max(1.0, self._bulk_rate / replicas))

    async def acquire(self, tenant: str, conversation: str | None, *, bulk: bool, quiet: bool = False) -> Send:
        """Wait for room; the caller says `answered()` on what this returns when the connector answers. A `quiet`
        send is bulk, and gives way to urgent bulk sends."""
        bulk = bulk or quiet
        if not conversation:
            return await self._admit(tenant, None, bulk, quiet)
        async with self.conversations.get(f"{tenant}|{conversation}").turn:
            return await self._admit(tenant, conversation, bulk, quiet)

    async def _admit(self, tenant: str, conversation: str | None, bulk: bool, quiet: bool) -> Send:
        tenant_window = self.tenants.get(tenant)
        queued = False  # a reply counted among those waiting for the tenant's window
        urgent_in: _Window | None = None  # an urgent bulk send: the bulk share it is counted as waiting for
        try:
            while True:
                now = self._clock()
                tenant_wait = tenant_window.wait(self.tenants.rate, now)
                # Looked up each time round: a window forgotten meanwhile (least recently used) is simply new.
                conversation_window = self.conversations.get(f"{tenant}|{conversation}") if conversation else None
                conversation_wait = (
                    0.0 if conversation_window is None else conversation_window.wait(self.conversations.rate, now)
                )
                bulk_window = self.bulk.get(tenant) if bulk else None
                shared_wait = tenant_wait
                if bulk_window is not None:
                    shared_wait = max(shared_wait, bulk_window.wait(self.bulk.rate, now), bulk_window.paced(now))
                wait = max(shared_wait, conversation_wait)
                if bulk and wait <= 0 and tenant_window.replies_waiting:
                    # Replies waiting for this tenant's window take the next places; try again as the next one frees.
                    wait = shared_wait = tenant_window.next_free(now)
                elif quiet and wait <= 0 and bulk_window is not None and bulk_window.urgent_waiting:
                    # So does an urgent send waiting for the bulk share; the place after it is a step later.
                    wait = 1.0 / self.bulk.rate
                if not bulk and queued != (0 < tenant_wait >= conversation_wait):
                    queued = not queued
                    tenant_window.replies_waiting += 1 if queued else -1
                if bulk_window is not None and not quiet:
                    waiting = 0 < shared_wait >= conversation_wait
                    if urgent_in is not None and (not waiting or urgent_in is not bulk_window):
                        urgent_in.urgent_waiting -= 1
                        urgent_in = None
                    if waiting and urgent_in is None:
                        urgent_in = bulk_window
                        urgent_in.urgent_waiting += 1
                if wait <= 0:
                    send = Send(now, self._clock)
                    tenant_window.sends.append(send)
                    if conversation_window is not None:
                        conversation_window.sends.append(send)
                    if bulk_window is not None:
                        bulk_window.sends.append(send)
                        bulk_window.keep_pace(self.bulk.rate, now)
                    return send
                await self._sleep(wait)
        finally:
            if queued:
                tenant_window.replies_waiting -= 1
            if urgent_in is not None:
                urgent_in.urgent_waiting -= 1


class BudgetShare:
    """Keeps a replica's share of Teams' budget in step with how many replicas are sending now, asking the database
    (`count_senders`: replicas holding a send's lease) at most once every `every` seconds."""

    def __init__(
        self,
        budget: SendBudget,
        count_senders: Callable[[], Awaitable[int]],
        *,
        every: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._budget = budget
        self._count = count_senders
        self._every = every
        self._clock = clock
        self._checked: float | None = None

    async def refresh(self) -> None:
        now = self._clock()
        if self._checked is not None and now - self._checked < self._every:
            return
        self._checked = now
        try:
            senders = await self._count()
        except Exception:  # noqa: BLE001 - a failed look keeps the last share; the next send asks again
            log.warning("could not count the replicas sending; keeping this replica's share of the send budget")
            self._checked = None
            return
        self._budget.share(senders)
