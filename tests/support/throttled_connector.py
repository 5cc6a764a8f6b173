"""A local Bot Connector that enforces Teams' rate limits, for the broadcast benchmark.

Teams allows a bot about 50 requests a second per tenant and 7 a second per conversation, and answers the rest
429 with Retry-After. This connector does the same with sliding one-second windows over the requests it accepted,
and stamps every accepted call with the time it arrived, so a benchmark can say when each message really landed.
It serves one tenant (the benchmark's school), so every call counts against the one tenant window: an activity that
leaves out its tenant id cannot slip into a second budget.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict, deque

from aiohttp import web

from tests.support.connector import RecordingConnector, Sent

TENANT_PER_SECOND = 50
CONVERSATION_PER_SECOND = 7
TENANT = "the benchmark's tenant"


class SlidingWindow:
    """At most `limit` events in any one second, per key."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._events: dict[str, deque[float]] = defaultdict(deque)

    def wait(self, key: str, now: float) -> float:
        """Seconds until `key` may have another event (0.0: now)."""
        events = self._events[key]
        while events and now - events[0] >= 1.0:
            events.popleft()
        return 0.0 if len(events) < self.limit else 1.0 - (now - events[0])

    def note(self, key: str, now: float) -> None:
        self._events[key].append(now)


class ThrottledConnector(RecordingConnector):
    """RecordingConnector plus 429s beyond the tenant and conversation rates, and an arrival time per call."""

    def __init__(self, tenant_rate: int = TENANT_PER_SECOND, conversation_rate: int = CONVERSATION_PER_SECOND) -> None:
        super().__init__()
        self._tenant = SlidingWindow(tenant_rate)
        self._conversation = SlidingWindow(conversation_rate)
        self.throttled = 0  # 429s answered
        self.arrivals: list[tuple[float, Sent]] = []  # (time.perf_counter(), call) for every accepted call

    async def _record(self, sent: Sent) -> web.Response:
        now = time.perf_counter()
        wait = max(self._tenant.wait(TENANT, now), self._conversation.wait(sent.conversation_id, now))
        if wait > 0:
            self.throttled += 1
            return web.json_response(
                {"error": {"code": "Throttled", "message": "Too many requests"}},
                status=429,
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        self._tenant.note(TENANT, now)
        self._conversation.note(sent.conversation_id, now)
        response = await super()._record(sent)
        if response.status < 300:
            self.arrivals.append((time.perf_counter(), sent))
        return response

    async def _create_conversation(self, request: web.Request) -> web.Response:
        """A 1:1 chat's id follows from its member, so every call for one person lands in one conversation."""
        body = await request.json()
        self.created.append(body)
        members = body.get("members") or [{}]
        member = members[0].get("aadObjectId") or members[0].get("id") or "unknown"
        return web.json_response({"id": f"a:personal-{member.removeprefix('29:')}", "activityId": None})
