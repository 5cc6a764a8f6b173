"""Teams' send budget: requests per second per tenant and per conversation, with people's own replies first.

Teams allows a bot about 50 requests a second per tenant and 7 a second per conversation, and answers 429 past
that. A broadcast (the outbox) is bulk: it may use only part of the tenant's budget, so a reply to someone's own
turn finds headroom at once instead of queueing behind a thousand cards. The per-conversation limit applies to both.
Buckets are aiolimiter's leaky buckets (first come, first served within a bucket); each is given about half a
second of burst, so a turn's two or three replies go together and a burst after a quiet spell stays small.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlsplit

from aiolimiter import AsyncLimiter

log = logging.getLogger(__name__)

TENANT_PER_SECOND = 50.0
BULK_PER_SECOND = 46.0  # leaves 4/s of the tenant's 50 to replies alone while a broadcast runs
CONVERSATION_PER_SECOND = 7.0
BURST_SECONDS = 0.5
MAX_KEYS = 10_000  # conversations (and tenants) with a bucket; the least recently used is forgotten first

_bulk: ContextVar[bool] = ContextVar("connector_bulk_send", default=False)


@contextlib.contextmanager
def bulk_sends() -> Iterator[None]:
    """Mark the Bot Connector calls made inside as bulk (proactive, not a reply to someone's own turn)."""
    token = _bulk.set(True)
    try:
        yield
    finally:
        _bulk.reset(token)


def is_bulk() -> bool:
    return _bulk.get()


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
    return f"host:{(urlsplit(service_url).hostname or '').lower()}"


def _bucket(rate: float, burst_seconds: float) -> AsyncLimiter:
    capacity = max(1.0, rate * burst_seconds)
    return AsyncLimiter(capacity, capacity / rate)


class _Buckets:
    """Leaky buckets by key, at most `limit` of them (least recently used dropped: an idle bucket is empty anyway)."""

    def __init__(self, rate: float, burst_seconds: float, limit: int) -> None:
        self.rate = rate
        self._burst = burst_seconds
        self._limit = limit
        self._buckets: OrderedDict[str, AsyncLimiter] = OrderedDict()

    def rerate(self, rate: float) -> None:
        """A new rate for every key; buckets start afresh (a waiter in an old bucket finishes its wait there)."""
        if rate != self.rate:
            self.rate = rate
            self._buckets.clear()

    def __len__(self) -> int:
        return len(self._buckets)

    def get(self, key: str) -> AsyncLimiter:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _bucket(self.rate, self._burst)
            while len(self._buckets) > self._limit:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket


class SendBudget:
    """Waits until a request fits Teams' limits. Bulk requests pass their own, smaller bucket before the tenant's,
    so they never take more than `bulk_rate` of it and never stand in front of a reply for long."""

    def __init__(
        self,
        *,
        tenant_rate: float = TENANT_PER_SECOND,
        bulk_rate: float = BULK_PER_SECOND,
        conversation_rate: float = CONVERSATION_PER_SECOND,
        burst_seconds: float = BURST_SECONDS,
        max_keys: int = MAX_KEYS,
    ) -> None:
        if min(tenant_rate, bulk_rate, conversation_rate, burst_seconds) <= 0:
            raise ValueError("send rates and burst must be positive")
        self._tenant_rate, self._bulk_rate = tenant_rate, min(bulk_rate, tenant_rate)
        self.tenants = _Buckets(tenant_rate, burst_seconds, max_keys)
        self.bulk = _Buckets(self._bulk_rate, burst_seconds, max_keys)
        self.conversations = _Buckets(conversation_rate, burst_seconds, max_keys)
        self.replicas = 1

    def share(self, replicas: int) -> None:
        """Teams counts a tenant's requests across every replica of the bot: each takes its part of the tenant's
        budget while `replicas` of them are sending. (A conversation's sends come from one replica at a time.)"""
        replicas = max(1, replicas)
        if replicas != self.replicas:
            self.replicas = replicas
            self.tenants.rerate(self._tenant_rate / replicas)
            self.bulk.rerate(self._bulk_rate / replicas)

    async def acquire(self, tenant: str, conversation: str | None, *, bulk: bool) -> None:
        # The narrowest bucket first: a send waiting for its conversation holds no share of the tenant's budget.
        if conversation:
            await self.conversations.get(f"{tenant}|{conversation}").acquire()
        if bulk:
            await self.bulk.get(tenant).acquire()
        await self.tenants.get(tenant).acquire()


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
