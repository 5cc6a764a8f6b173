"""Outbound sends: retried on 429/5xx as the SDK did (bounded), within Teams' per-tenant and per-conversation budget,
with people's own replies ahead of a broadcast. Over a real loopback server, by order of arrival; or on a virtual
clock that moves only when every task waits; never by the wall clock."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import email.utils
import heapq
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote

import pytest
from aiohttp import ClientSession, web
from botbuilder.schema import Activity, ActivityTypes, ConversationAccount

from adapters.connector_http import BotConnectorClient, ConnectorHTTPError, ConnectorTransport, TokenSource
from adapters.send_budget import BULK_PER_SECOND, BudgetShare, SendBudget, bulk_sends, tenant_of
from tests.support.harness import Harness
from tests.support.throttled_connector import ThrottledConnector


@dataclass
class Arrival:
    conversation: str
    text: str
    status: int


@dataclass
class ScriptedConnector:
    """Answers each request with the next scripted (status, headers), then 200; records every attempt in order."""

    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    forever: tuple[int, dict[str, str]] | None = None  # answer every request so
    arrivals: list[Arrival] = field(default_factory=list)
    url: str = ""
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        status, headers = self.forever or (self.script.pop(0) if self.script else (200, {}))
        async with self._changed:
            self.arrivals.append(Arrival(request.match_info["cid"], body.get("text") or "", status))
            self._changed.notify_all()
        if status != 200:
            return web.json_response(
                {"error": {"code": "Throttled", "message": "slow down"}}, status=status, headers=headers
            )
        return web.json_response({"id": f"act-{next(self._ids)}"})

    def delivered(self, conversation: str | None = None) -> list[str]:
        return [a.text for a in self.arrivals if a.status == 200 and conversation in (None, a.conversation)]

    async def arrived(self, text: str, within: float = 20.0) -> int:
        """Wait until `text` is delivered; its index among all deliveries."""

        async def _wait() -> int:
            async with self._changed:
                await self._changed.wait_for(lambda: text in self.delivered())
                return self.delivered().index(text)

        try:
            return await asyncio.wait_for(_wait(), within)
        except TimeoutError:
            raise AssertionError(f"{text!r} never arrived; arrivals: {self.arrivals}") from None


@contextlib.asynccontextmanager
async def connector_client(**transport: Any) -> AsyncIterator[tuple[ScriptedConnector, BotConnectorClient]]:
    server = ScriptedConnector()
    app = web.Application()
    app.router.add_post("/v3/conversations/{cid}/activities", server.handle)
    app.router.add_post("/v3/conversations/{cid}/activities/{aid}", server.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/"  # noqa: SLF001
    options: dict[str, Any] = {"connect_timeout": 5.0, "timeout": 10.0, "connections_per_host": 16}
    options.update(transport)
    pool = ConnectorTransport(**options)
    tokens = TokenSource(SimpleNamespace(microsoft_app_id=""), pool)  # dev mode: no token, as the SDK sends none
    try:
        yield server, BotConnectorClient(pool, server.url, tokens)
    finally:
        await pool.close()
        await runner.cleanup()


def message(text: str, conversation: str = "a:leah", tenant: str | None = "tenant-1") -> Activity:
    return Activity(
        type=ActivityTypes.message, text=text, conversation=ConversationAccount(id=conversation, tenant_id=tenant)
    )


async def reply(client: BotConnectorClient, text: str, conversation: str = "a:leah") -> Any:
    return await client.conversations.reply_to_activity(conversation, "1701", message(text, conversation))


async def send(client: BotConnectorClient, text: str, conversation: str) -> Any:
    return await client.conversations.send_to_conversation(conversation, message(text, conversation))


# Retries


async def test_a_429_with_retry_after_is_retried_and_the_reply_arrives_once() -> None:
    async with connector_client() as (server, client):
        server.script = [(429, {"Retry-After": "0"})]
        answer = await reply(client, "Thanks, Leah.")
        assert answer.id == "act-1"
        assert server.delivered() == ["Thanks, Leah."]
        assert [a.status for a in server.arrivals] == [429, 200]


async def test_retry_after_as_an_http_date_is_honoured() -> None:
    async with connector_client() as (server, client):
        now = email.utils.formatdate(usegmt=True)  # already due: retry at once
        server.script = [(503, {"Retry-After": now})]
        await reply(client, "Dated.")
        assert [a.status for a in server.arrivals] == [503, 200]
        assert server.delivered() == ["Dated."]


async def test_503_twice_then_success_backs_off_and_delivers_once() -> None:
    async with connector_client(retry_backoff=0.001) as (server, client):
        server.script = [(503, {}), (503, {})]  # no Retry-After: jittered exponential backoff
        await reply(client, "Third time lucky.")
        assert [a.status for a in server.arrivals] == [503, 503, 200]
        assert server.delivered() == ["Third time lucky."]


@pytest.mark.parametrize("status", [408, 500, 502, 504])
async def test_every_transient_status_is_retried(status: int) -> None:
    async with connector_client(retry_backoff=0.001) as (server, client):
        server.script = [(status, {})]
        await reply(client, "Again.")
        assert [a.status for a in server.arrivals] == [status, 200]


async def test_429_for_ever_gives_a_clear_error_after_the_last_retry() -> None:
    async with connector_client(retries=3) as (server, client):
        server.forever = (429, {"Retry-After": "0"})
        with pytest.raises(ConnectorHTTPError) as raised:
            await reply(client, "Never lands.")
        assert raised.value.status == 429
        assert str(raised.value) == "Bot Connector answered 429 (Throttled)"
        assert raised.value.headers["Retry-After"] == "0"
        assert len(server.arrivals) == 4, "one try and three retries"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 412])
async def test_other_client_errors_are_not_retried(status: int) -> None:
    async with connector_client(retry_backoff=0.001) as (server, client):
        server.script = [(status, {})]
        with pytest.raises(ConnectorHTTPError) as raised:
            await reply(client, "Refused.")
        assert raised.value.status == status
        assert len(server.arrivals) == 1


async def test_a_retry_after_longer_than_the_cap_is_left_to_the_caller() -> None:
    async with connector_client(retry_after_cap=5.0) as (server, client):
        server.script = [(429, {"Retry-After": "3600"})]
        with pytest.raises(ConnectorHTTPError) as raised:
            await reply(client, "Later.")
        assert raised.value.headers["Retry-After"] == "3600"
        assert len(server.arrivals) == 1


async def test_no_retry_starts_after_the_total_time_allowed() -> None:
    async with connector_client(retry_total=0.0) as (server, client):
        server.script = [(503, {"Retry-After": "0"})]
        with pytest.raises(ConnectorHTTPError):
            await reply(client, "Out of time.")
        assert len(server.arrivals) == 1


async def test_bulk_sends_are_not_retried_here_the_outbox_retries_them_durably() -> None:
    async with connector_client() as (server, client):
        server.script = [(429, {"Retry-After": "0"})]
        with bulk_sends(), pytest.raises(ConnectorHTTPError) as raised:
            await send(client, "Broadcast.", "a:tom")
        assert raised.value.status == 429 and len(server.arrivals) == 1
        await reply(client, "A reply still retries.")
        assert server.delivered() == ["A reply still retries."]


# The budget


async def test_a_reply_goes_ahead_of_a_queued_broadcast() -> None:
    budget = SendBudget(tenant_rate=5, bulk_rate=3, conversation_rate=100)
    async with connector_client(budget=budget) as (server, client):
        with bulk_sends():  # tasks copy the context: all eight are bulk
            broadcast = [asyncio.create_task(send(client, f"card {n}", f"a:staff-{n}")) for n in range(8)]
        await server.arrived("card 0")  # the broadcast is under way; the rest wait for the bulk share
        await reply(client, "Thanks, Leah.")
        cards_before = server.delivered().index("Thanks, Leah.")
        assert cards_before <= 3, f"the reply waited behind {cards_before} of 8 queued broadcast cards"
        await asyncio.gather(*broadcast)
        assert sorted(server.delivered()) == sorted(["Thanks, Leah.", *(f"card {n}" for n in range(8))])
        assert server.delivered()[-1].startswith("card"), "the broadcast was still queued when the reply went"


async def test_without_the_bulk_mark_the_same_burst_would_have_held_the_reply_back() -> None:
    """The control for the test above: the budget, not luck, lets the reply through."""
    budget = SendBudget(tenant_rate=5, bulk_rate=3, conversation_rate=100)
    async with connector_client(budget=budget) as (server, client):
        burst = [asyncio.create_task(send(client, f"card {n}", f"a:staff-{n}")) for n in range(8)]
        await server.arrived("card 0")
        await reply(client, "Thanks, Leah.")
        cards_before = server.delivered().index("Thanks, Leah.")
        assert cards_before >= 5, "an unmarked burst is served first come, first served"
        await asyncio.gather(*burst)


async def test_a_waiting_reply_goes_first_even_where_bulk_sends_may_use_the_whole_tenant_budget() -> None:
    """Priority, not only the bulk share: with bulk allowed all of the tenant's rate, the reply still goes first."""
    time = VirtualTime()
    # Two a second: every moment here is a whole number of half seconds, so cards and the reply wake together.
    budget = SendBudget(tenant_rate=2, bulk_rate=2, conversation_rate=100, clock=time.clock, sleep=time.sleep)
    started: list[str] = []

    async def card(n: int) -> None:
        (await budget.acquire("tenant:t", f"a:staff-{n}", bulk=True)).answered()
        started.append(f"card {n}")

    async def leahs_reply() -> None:
        await time.sleep(0.25)  # asked after the cards: they have been waiting longer
        await budget.acquire("tenant:t", "a:leah", bulk=False)

    broadcast = [asyncio.create_task(card(n)) for n in range(6)]
    await time.run_until(lambda: len(started) == 2)  # two cards fill this second; four wait for the next
    leah = asyncio.create_task(leahs_reply())
    await time.run_until(leah.done)
    started.append("Thanks, Leah.")
    assert started.index("Thanks, Leah.") == 2, f"cards waiting longer went first: {started}"
    assert time.clock() == 1.0, "the window was full: the reply waited for its first free place"
    await time.run_until(lambda: all(task.done() for task in broadcast))


async def test_sends_stay_within_a_strict_one_second_window_and_draw_no_429() -> None:
    """Against Teams' way of counting (any one second, on arrival), a burst from many tasks at the budget's full
    rate is never refused: a 429 would cost the sender a whole Retry-After."""
    delivered, refused = await _burst_through_strict_window(budget_rate=10, connector_rate=10, sends=30)
    assert (delivered, refused) == (30, 0)


async def test_the_strict_window_does_refuse_a_sender_that_overruns_it() -> None:
    """The control for the test above: the same connector answers 429 to a budget set above its limit."""
    delivered, refused = await _burst_through_strict_window(budget_rate=12, connector_rate=10, sends=30)
    assert refused > 0 and delivered == 30


async def _burst_through_strict_window(*, budget_rate: int, connector_rate: int, sends: int) -> tuple[int, int]:
    connector = ThrottledConnector(tenant_rate=connector_rate, conversation_rate=100)
    await connector.start()
    pool = ConnectorTransport(
        connect_timeout=5.0,
        timeout=10.0,
        connections_per_host=16,
        budget=SendBudget(tenant_rate=budget_rate, bulk_rate=budget_rate, conversation_rate=100),
    )
    client = BotConnectorClient(pool, connector.url, TokenSource(SimpleNamespace(microsoft_app_id=""), pool))
    try:
        await asyncio.gather(*(reply(client, f"reply {n}", f"a:person-{n}") for n in range(sends)))
    finally:
        await pool.close()
        await connector.stop()
    return len(connector.arrivals), connector.throttled


async def test_a_send_keeps_its_place_until_a_second_after_its_answer() -> None:
    """Teams counts a send when it arrives, which may be as late as its answer: a slow answer holds the place."""
    now = [0.0]
    budget = SendBudget(tenant_rate=2, bulk_rate=2, conversation_rate=100, clock=lambda: now[0])
    slow = await budget.acquire("tenant:t", "a:1", bulk=False)
    quick = await budget.acquire("tenant:t", "a:2", bulk=False)
    now[0] = 0.1
    quick.answered()
    now[0] = 0.9
    slow.answered()
    now[0] = 1.5  # a second after both started, and after the quick one's answer; not after the slow one's
    await budget.acquire("tenant:t", "a:3", bulk=False)  # the quick one's place: admitted at once
    fourth = asyncio.create_task(budget.acquire("tenant:t", "a:4", bulk=False))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not fourth.done(), "counted from its start, the slow send would have left room already"
    now[0] = 1.95  # a second after the slow one's answer
    await asyncio.wait_for(fourth, 5)


class VirtualTime:
    """A clock and a sleep for SendBudget that only move when everything else is waiting: minutes of sends at
    Teams' real rates in a moment, the same every run."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Never less than a microsecond, as on a real clock: a wait that rounds to nothing must still see time pass.
        heapq.heappush(self._sleepers, (self.now + max(seconds, 1e-6), next(self._order), woken))
        await woken

    async def run_until(self, done: Callable[[], bool]) -> None:
        """Let every task run as far as it can, then wake the next sleeper, until `done()`."""
        while True:
            for _ in range(50):  # more than any chain of hand-offs between the tasks here takes
                await asyncio.sleep(0)
            if done():
                return
            assert self._sleepers, "nothing is waiting for time, and it is not done"
            self.now, _, woken = heapq.heappop(self._sleepers)
            woken.set_result(None)


async def test_a_broadcast_at_teams_rates_leaves_each_reply_a_place_within_a_moment() -> None:
    """A thousand cards at Teams' own rates, sent by the work runner's eight at a time, while people ask for something
    four times a second: each reply starts within about one card's interval, the broadcast keeps what the tenant's
    budget leaves it, and no second holds more sends than Teams allows. Cards admitted as soon as the window had room
    went a second's worth at a time, and a reply that came just after them waited until they all left, up to a
    second (0.62 s here)."""
    time = VirtualTime()
    budget = SendBudget(clock=time.clock, sleep=time.sleep)  # Teams' rates, as deployed
    cards = iter(range(1_000))
    starts: list[float] = []
    card_starts: list[float] = []
    reply_waits: list[float] = []

    async def answered_after_a_round_trip(send: Any) -> None:
        await time.sleep(0.02)
        send.answered()

    async def outbox_sender() -> None:
        with bulk_sends():
            for n in cards:
                send = await budget.acquire("tenant:t", f"a:staff-{n}", bulk=True)
                starts.append(time.clock())
                card_starts.append(time.clock())
                await answered_after_a_round_trip(send)

    async def people_asking() -> None:
        for n in itertools.count():
            await time.sleep(0.35 if n % 3 else 0.05)  # four a second, sometimes close together
            asked = time.clock()
            send = await budget.acquire("tenant:t", f"a:person-{n % 40}", bulk=False)
            starts.append(time.clock())
            reply_waits.append(time.clock() - asked)
            asyncio.create_task(answered_after_a_round_trip(send))  # noqa: RUF006 - the test's time runs it

    senders = [asyncio.create_task(outbox_sender()) for _ in range(8)]
    people = asyncio.create_task(people_asking())
    await time.run_until(lambda: all(task.done() for task in senders))
    people.cancel()

    assert len(card_starts) == 1_000
    assert max(reply_waits) <= 0.05, f"a reply waited {max(reply_waits):.3f} s behind the broadcast"
    assert len(reply_waits) > 80, "people asked four times a second throughout"
    rate = (len(card_starts) - 1) / (card_starts[-1] - card_starts[0])
    assert rate >= 45, f"the broadcast slowed to {rate:.1f} cards a second"
    starts.sort()
    busiest = max(bisect.bisect_left(starts, at + 1.0) - i for i, at in enumerate(starts))
    assert busiest <= 50, f"{busiest} sends started within one second"


async def test_an_urgent_send_during_a_broadcast_takes_the_next_place_before_the_cards_waiting() -> None:
    """A concern's alert, sent while the work runner's eight senders push a broadcast's quiet cards at Teams' rates,
    starts within one card's interval, each time. Among bulk sends waiting for the same place, whichever woke first
    took it, so an alert came after most of the cards waiting with it, again and again."""
    time = VirtualTime()
    budget = SendBudget(clock=time.clock, sleep=time.sleep)  # Teams' rates, as deployed
    step = 1.0 / BULK_PER_SECOND
    cards = iter(range(600))
    alert_waits: list[float] = []

    async def outbox_sender() -> None:
        with bulk_sends(quiet=True):
            for n in cards:
                send = await budget.acquire("tenant:t", f"a:staff-{n}", bulk=True, quiet=True)
                await time.sleep(0.02)  # the connector's answer
                send.answered()

    async def alerts() -> None:
        for n in range(8):
            await time.sleep(1.0 + 0.13 * n)  # at different moments in the cards' pace
            asked = time.clock()
            send = await budget.acquire("tenant:t", f"19:dsl-{n}", bulk=True)
            alert_waits.append(time.clock() - asked)
            send.answered()

    senders = [asyncio.create_task(outbox_sender()) for _ in range(8)]
    alerting = asyncio.create_task(alerts())
    await time.run_until(lambda: alerting.done() and all(task.done() for task in senders))
    assert len(alert_waits) == 8
    assert max(alert_waits) <= step * 1.01, f"an alert waited {max(alert_waits) / step:.1f} cards' intervals"


async def test_one_conversation_is_held_to_its_rate_and_others_pass_it() -> None:
    budget = SendBudget(tenant_rate=100, bulk_rate=100, conversation_rate=2)
    async with connector_client(budget=budget) as (server, client):
        leahs = [asyncio.create_task(reply(client, f"to Leah {n}", "a:leah")) for n in range(4)]
        await server.arrived("to Leah 0")
        await reply(client, "to Tom", "a:tom")
        leah_before_tom = [t for t in server.delivered()[: server.delivered().index("to Tom")] if "Leah" in t]
        assert len(leah_before_tom) <= 2, "Leah's conversation was not held back, or Tom waited behind it"
        await asyncio.gather(*leahs)
        assert server.delivered("a:leah") == [f"to Leah {n}" for n in range(4)], (
            "a conversation's replies stay in order"
        )
        assert server.delivered()[-1].startswith("to Leah"), "Leah's four replies were spread out, not sent at once"


async def test_a_reply_that_draws_429_within_the_budget_is_retried_once_and_arrives_once() -> None:
    budget = SendBudget(tenant_rate=5, bulk_rate=3, conversation_rate=7)
    async with connector_client(budget=budget) as (server, client):
        server.script = [(429, {"Retry-After": "0"})]
        await reply(client, "Only once.")
        assert server.delivered() == ["Only once."]
        assert [a.status for a in server.arrivals] == [429, 200]


def test_the_tenant_comes_from_the_activity_or_else_the_service_host() -> None:
    url = "https://smba.trafficmanager.net/uk/"
    assert tenant_of({"conversation": {"tenantId": "t1"}}, url) == "tenant:t1"
    assert tenant_of({"channelData": {"tenant": {"id": "t2"}}}, url) == "tenant:t2"
    assert tenant_of({"tenantId": "t3", "isGroup": False}, url) == "tenant:t3"  # new conversation parameters
    assert tenant_of({"conversation": {"id": "a:1"}}, url) == "host:smba.trafficmanager.net"
    assert tenant_of(None, url) == "host:smba.trafficmanager.net"


async def test_the_budget_remembers_a_bounded_number_of_conversations() -> None:
    budget = SendBudget(max_keys=3, conversation_rate=1000, tenant_rate=1000)
    for n in range(10):
        await budget.acquire("tenant:t", f"a:{n}", bulk=False)
    assert len(budget.conversations) == 3 and len(budget.tenants) == 1


# Through the app


async def test_a_429_on_a_reply_in_the_app_is_retried_and_the_person_gets_one_reply(harness: Harness) -> None:
    tom = harness.user("Tom Reed")
    harness.connector.fail_next(429, headers={"Retry-After": "0"}, conversation_id=tom.conversation_id)
    answer = await tom.says("help")
    assert answer.status == 200
    assert harness.connector.failed == [(429, tom.conversation_id)]
    help_cards = [s for s in harness.connector.to(tom.conversation_id) if _is_help_card_for("Tom", s.activity)]
    assert len(help_cards) == 1, "the help card drew a 429, was retried and arrived exactly once"
    assert not any(text.startswith("Sorry, something went wrong") for text in answer.texts)


def _is_help_card_for(first_name: str, activity: dict[str, Any]) -> bool:
    return any(
        a.get("contentType") == "application/vnd.microsoft.card.adaptive"
        and str(((a.get("content") or {}).get("body") or [{}])[0].get("text")).startswith(f"Hello {first_name}")
        for a in activity.get("attachments") or []
    )


def test_two_replicas_sending_each_take_half_of_the_tenants_budget() -> None:
    budget = SendBudget(tenant_rate=50, bulk_rate=46)
    budget.share(2)
    assert (budget.tenants.rate, budget.bulk.rate) == (25, 23)
    assert budget.conversations.rate == 7  # a conversation's sends come from one replica at a time
    budget.share(1)
    assert (budget.tenants.rate, budget.bulk.rate) == (50, 46)
    budget.share(0)  # nobody holds a lease yet (this replica is about to): the whole budget
    assert budget.tenants.rate == 50


async def test_the_share_asks_the_database_at_most_once_a_second_and_keeps_the_last_on_failure() -> None:
    budget = SendBudget(tenant_rate=50, bulk_rate=46)
    now = [100.0]
    answers: list[Any] = [3, 1, RuntimeError("database away"), 2]
    asked: list[Any] = []

    async def count() -> int:
        answer = answers.pop(0)
        asked.append(answer)
        if isinstance(answer, Exception):
            raise answer
        return int(answer)

    share = BudgetShare(budget, count, every=1.0, clock=lambda: now[0])
    await share.refresh()
    assert budget.replicas == 3 and budget.bulk.rate == pytest.approx(46 / 3)
    now[0] += 0.5
    await share.refresh()
    assert len(asked) == 1, "within the second: no second look"
    now[0] += 0.6
    await share.refresh()
    assert budget.replicas == 1
    now[0] += 1.0
    await share.refresh()  # the look fails: the share stands, and the next send looks again at once
    assert budget.replicas == 1
    await share.refresh()
    assert budget.replicas == 2 and len(asked) == 4


# Proxies: read from the environment once, as the SDK's `requests` honoured them


@contextlib.asynccontextmanager
async def forward_proxy() -> AsyncIterator[tuple[str, list[str]]]:
    """A plain HTTP forward proxy on loopback that records each absolute URL it is asked for and passes it on."""
    seen: list[str] = []

    async def forward(request: web.Request) -> web.Response:
        seen.append(str(request.url))
        async with (
            ClientSession() as http,
            http.request(
                request.method, request.url, data=await request.read(), headers={"Content-Type": "application/json"}
            ) as answer,
        ):
            return web.Response(status=answer.status, body=await answer.read(), content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}", seen  # noqa: SLF001
    finally:
        await runner.cleanup()


async def test_a_proxy_in_the_environment_carries_every_send_unless_no_proxy_names_the_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with forward_proxy() as (proxy, seen):
        monkeypatch.setenv("HTTP_PROXY", proxy)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        async with connector_client() as (server, client):
            await reply(client, "through the proxy")
            await send(client, "and this", "a:tom")
        assert server.delivered() == ["through the proxy", "and this"]
        assert [unquote(url.rsplit("/v3/", 1)[1]) for url in seen] == [
            "conversations/a:leah/activities/1701",
            "conversations/a:tom/activities",
        ]

        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        async with connector_client() as (server, client):
            await reply(client, "straight there")
        assert server.delivered() == ["straight there"]
        assert len(seen) == 2
