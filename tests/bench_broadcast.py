"""The broadcast row of `make bench`: an AUP publish to a school of 2,000 staff through Teams' rate limits.

The app runs in its own process (SQLite) against tests/support/throttled_connector.py, which answers 429 with
Retry-After beyond 50 requests a second per tenant and 7 per conversation. Every member of staff has opened the app
before (their conversation reference is saved through storage.repos.ConversationRefs, as the app saves it), and the
AUP directory starts empty, so nothing is owed until the benchmark publishes. Then, as an online-safety lead would:
`aup publish staff` (the preview card), and its Publish button (an Action.Execute invoke) is pressed. Meanwhile other
people (governors, who owe no staff AUP) type `help` every couple of seconds, and ten seconds after the first card,
with hundreds still queued, one more reports a concern about a pupil (the school's team has the bot, so the DSL
channel has its alert).

It reports messages/s from the first AUP card to the last, the 429s answered, staff left without a card (lost) or
with more than one (duplicated), how long the publish invoke took to answer, the other people's reply latency
(POST until their reply reached the connector) and how many never got one, and how long after `submit` the
concern's alert reached the DSL channel. Delivery is awaited by polling what the connector recorded, until every
member of staff has a card, nothing new has come for STALL_SECONDS since the last card, or the overall timeout
(BENCH_BROADCAST_TIMEOUT) passes: it measures, it never fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bot.policy import load_policy
from tests.bench_procs import ServerProcess, server_process, steady_instrument
from tests.bench_school import dsl_channel_of, people_of, staff_of, tenant_of, write_school
from tests.bench_server import RunningClock
from tests.support.harness import ROOT
from tests.support.teams import BOT_ID, TeamsChannel, TeamsUser
from tests.support.throttled_connector import ThrottledConnector

STAFF = 2_000
# The one role that may publish an AUP, held by someone who is not staff: the publisher's own card would wait for
# their chat to go quiet (the quiet rule), which is by design and not a lost card.
PUBLISHER = {"Bench Publisher": ["online_safety_lead"]}
ACK_VERB = "aup.acknowledge"
PUBLISH_VERB = "aup.publish"
# People typing `help` during the broadcast: governors, who owe no staff AUP, so their chats' own AUP cards (held
# back while they chat, as the quiet rule says) cannot be mistaken for lost or duplicated broadcast cards.
OTHERS = {f"Bench Governor {n:02d}": ["governor"] for n in range(1, 9)}
OTHERS_EVERY = 2.0  # seconds between one person's `help`s
# Someone who reports a concern once the broadcast is well under way (a governor, who owes no staff AUP, as above).
REPORTER = {"Bench Reporter": ["governor"]}
REPORT_AFTER = 10.0  # seconds after the first card: by then the publish's sweep keeps hundreds of cards queued


def _report_answers() -> tuple[str, ...]:
    """The typed answers to the report's questions, for cyberbullying of a pupil (numbered as the policy lists them)."""
    policy = load_policy(ROOT / "config" / "policy_defaults.yaml")
    group = [g.key for g in policy.category_groups].index("conduct") + 1
    category = [c.key for c in policy.in_group("conduct")].index("cyberbullying") + 1
    return (
        "report",
        "A pupil",
        str(group),
        str(category),
        "No",
        "Online",
        "Today at lunch",
        "JS, Year 8",
        "Unkind messages in the class group chat",
        "Screenshots on JS's phone",
        "Nothing yet",
    )


REPORT_ANSWERS = _report_answers()
REPLY_GRACE = 30.0  # how long after the broadcast a `help` may still be answered before it counts as lost
STALL_SECONDS = 60.0
AUP_FILES = Path(__file__).resolve().parents[1] / "config" / "aup"


@dataclass
class AlertTiming:
    """From the reporter's `submit` to the concern's alert reaching the DSL channel."""

    seconds: float | None = None  # None: it never did
    problem: str = ""

    def line(self) -> str:
        if self.seconds is not None:
            return f"its alert reached the DSL channel {self.seconds:.2f} s after `submit`"
        return f"its alert never reached the DSL channel ({self.problem or 'not seen by the end'})"


@dataclass
class Broadcast:
    staff: int = 0
    cards: int = 0
    first_to_last: float = 0.0
    throttled: int = 0
    lost: int = 0
    duplicated: int = 0
    invoke_seconds: float | None = None
    invoke_answer: str = ""
    help_latencies: list[float] = field(default_factory=list)
    help_sent: int = 0
    help_unanswered: int = 0
    alert: AlertTiming = field(default_factory=AlertTiming)
    ended: str = ""

    @property
    def rate(self) -> float:
        return (self.cards - 1) / self.first_to_last if self.first_to_last > 0 else 0.0


async def seed_references(database_url: str, people: list[dict[str, Any]], tenant: str, service_url: str) -> None:
    """Each person's 1:1 chat with the bot, saved as the app saves it when they first open the app."""
    from storage.db import create_engine, session_factory
    from storage.migrate import upgrade
    from storage.repos import ConversationRefs

    engine = create_engine(database_url)
    try:
        await upgrade(engine)
        refs = ConversationRefs(session_factory(engine), RunningClock())
        school_id = "oakfield"
        for person in people:
            reference = {
                "bot": {"id": BOT_ID},
                "user": {"id": f"29:{person['id']}", "aadObjectId": person["id"]},
                "conversation": {
                    "id": f"a:personal-{person['id']}",
                    "conversationType": "personal",
                    "tenantId": tenant,
                },
                "channelId": "msteams",
                "serviceUrl": service_url,
            }
            await refs.save(school_id, "person", person["id"], reference)
    finally:
        await engine.dispose()


class Deliveries:
    """AUP cards per conversation, read incrementally from what the connector accepted."""

    def __init__(self, connector: ThrottledConnector, since: int) -> None:
        self.connector = connector
        self.seen = since
        self.per_conversation: dict[str, int] = {}
        self.first: float | None = None
        self.last: float | None = None

    def update(self) -> int:
        arrivals = self.connector.arrivals
        for at, sent in arrivals[self.seen :]:
            if sent.op == "send" and ACK_VERB in json.dumps(sent.activity):
                self.per_conversation[sent.conversation_id] = self.per_conversation.get(sent.conversation_id, 0) + 1
                self.first = at if self.first is None else self.first
                self.last = at
        self.seen = len(arrivals)
        return sum(self.per_conversation.values())


class Others:
    """Members of staff typing `help` while the broadcast runs; each reply is looked for at the connector."""

    def __init__(self, http: aiohttp.ClientSession, url: str, connector: ThrottledConnector) -> None:
        self.http = http
        self.url = url
        self.connector = connector
        self.posted: dict[str, float] = {}  # inbound activity id -> when it was posted
        self._stop = asyncio.Event()

    async def person(self, user: TeamsUser, start_after: float = 0.0) -> None:
        # People's messages come at their own moments, not all in the same instant: each starts at its own offset.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), start_after)
        while not self._stop.is_set():
            activity = user.message("help")
            self.posted[activity["id"]] = time.perf_counter()
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with self.http.post(self.url, json=activity, timeout=aiohttp.ClientTimeout(total=60)) as r:
                    await r.read()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), OTHERS_EVERY)

    def stop(self) -> None:
        self._stop.set()

    def replies(self) -> dict[str, float]:
        """Inbound activity id -> seconds until its reply reached the connector."""
        answered: dict[str, float] = {}
        for at, sent in self.connector.arrivals:
            replied_to = sent.activity.get("replyToId") or (sent.activity_id if sent.op == "reply" else None)
            if replied_to in self.posted and replied_to not in answered:
                answered[replied_to] = at - self.posted[replied_to]
        return answered


async def _preview_action(http: aiohttp.ClientSession, server: ServerProcess, publisher: TeamsUser) -> dict[str, Any]:
    """`aup publish staff`, and the Publish button of the preview card it answers with."""
    connector = publisher.connector
    before = len(connector.sent)
    async with http.post(server.url, json=publisher.message("aup publish staff")) as response:
        await response.read()
    for sent in connector.sent[before:]:
        for card in sent.cards:
            for action in card.get("actions") or []:
                if action.get("verb") == PUBLISH_VERB:
                    return action
    raise RuntimeError("`aup publish staff` did not answer with a preview card that has a Publish button")


async def _publish(http: aiohttp.ClientSession, server: ServerProcess, publisher: TeamsUser, result: Broadcast) -> None:
    try:
        action = await _preview_action(http, server, publisher)
    except (RuntimeError, aiohttp.ClientError, TimeoutError) as exc:
        result.invoke_answer = f"no preview to publish from: {exc}"
        return
    started = time.perf_counter()
    try:
        activity = publisher.card_execute(action["verb"], action.get("data") or {})
        async with http.post(server.url, json=activity, timeout=aiohttp.ClientTimeout(total=300)) as response:
            body = await response.json(content_type=None)
        result.invoke_answer = str((body or {}).get("value") or "")[:100]
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        result.invoke_answer = f"no answer ({exc.__class__.__name__})"
    result.invoke_seconds = time.perf_counter() - started


async def _await_delivery(deliveries: Deliveries, staff: int, within: float) -> str:
    """Poll the connector's records until every member of staff has a card; says why it stopped."""
    deadline = time.perf_counter() + within
    last_count, last_change = 0, time.perf_counter()
    while True:
        count = deliveries.update()
        now = time.perf_counter()
        if count != last_count:
            last_count, last_change = count, now
        if len(deliveries.per_conversation) >= staff:
            return "every member of staff had a card"
        if count and now - last_change > STALL_SECONDS:  # before the first card, only the overall timeout
            return f"no new card for {STALL_SECONDS:.0f} s"
        if now > deadline:
            return f"overall timeout ({within:.0f} s)"
        await asyncio.sleep(0.5)


async def run_broadcast(root: Path, http: aiohttp.ClientSession, within: float) -> Broadcast:
    connector = ThrottledConnector()
    await connector.start()
    try:
        return await _run(root, http, connector, within)
    finally:
        await connector.stop()


async def _run(root: Path, http: aiohttp.ClientSession, connector: ThrottledConnector, within: float) -> Broadcast:
    config = write_school(root / "school-2000.yaml", STAFF, extra_roles=PUBLISHER | OTHERS | REPORTER)
    staff, tenant = staff_of(config), tenant_of(config)
    governors = [p for p in people_of(config) if p["name"] in OTHERS]
    publisher = next(p for p in people_of(config) if p["name"] in PUBLISHER)
    reporter = next(p for p in people_of(config) if p["name"] in REPORTER)
    database = f"sqlite+aiosqlite:///{root / 'broadcast.db'}"
    await seed_references(database, [*staff, *governors, publisher, reporter], tenant, connector.url)
    aup_dir = root / "aup-broadcast"
    aup_dir.mkdir()
    args = ("app", "--database", database, "--config", str(config), "--connector", connector.url)
    async with server_process(
        "app broadcast", root, *args, "--var", str(root / "var-broadcast"), "--aup-dir", str(aup_dir)
    ) as server:
        shutil.copy(AUP_FILES / "staff.md", aup_dir / "staff.md")

        app_url = server.url.removesuffix("/api/messages")  # where a TeamsUser posts to /api/messages

        def user(person: dict[str, Any]) -> TeamsUser:
            return TeamsUser(http, app_url, connector, aad_id=person["id"], name=person["name"], tenant_id=tenant)

        publisher_chat = user(publisher)
        team_id, dsl_channel = dsl_channel_of(config)
        channel = TeamsChannel(http, app_url, connector, team_id=team_id, channel_id=dsl_channel, tenant_id=tenant)
        await channel.bot_added(by=publisher_chat)  # the team is set up, so alerts have their channel
        steady_instrument()
        result = Broadcast(staff=len(staff))
        deliveries = Deliveries(connector, len(connector.arrivals))
        throttled_before = connector.throttled
        others = Others(http, server.url, connector)
        people = [
            asyncio.create_task(others.person(user(p), OTHERS_EVERY * n / len(governors)))
            for n, p in enumerate(governors)
        ]
        publish = asyncio.create_task(_publish(http, server, publisher_chat, result))
        concern = asyncio.create_task(report_meanwhile(user(reporter), connector, dsl_channel, result.alert))
        result.ended = await _await_delivery(deliveries, len(staff), within)
        await settle(concern)
        others.stop()
        await asyncio.gather(*people)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(publish), 10)
        await _await_replies(others)
        publish.cancel()
        _tally(result, deliveries, staff, others, connector.throttled - throttled_before)
    return result


async def report_meanwhile(
    reporter: TeamsUser, connector: ThrottledConnector, channel: str, timing: AlertTiming
) -> None:
    """Once a broadcast is well under way, report a concern about a pupil and time its alert to the DSL channel."""
    try:
        await connector.wait_for(lambda sent: any(ACK_VERB in json.dumps(s.activity) for s in sent), within=120)
    except AssertionError:
        timing.problem = "no card went out to report during"
        return
    await asyncio.sleep(REPORT_AFTER)
    try:
        for text in REPORT_ANSWERS:
            await reporter.says(text)
        seen, before = len(connector.arrivals), len(connector.sent)
        started = time.perf_counter()
        submitted = await reporter.says("submit")
        reference = _reference(submitted)
        if reference is None:
            timing.problem = "the report was not confirmed"
            return

        def alert(sent: Any) -> bool:
            return bool(sent.conversation_id == channel and reference in json.dumps(sent.activity))

        await connector.wait_for(lambda sent: any(alert(s) for s in sent[before:]), within=60)
        # The time the connector stamped on it (it stamps just after recording), not when this task woke to see it.
        stamped = next((at for at, sent in connector.arrivals[seen:] if alert(sent)), time.perf_counter())
        timing.seconds = stamped - started
    except AssertionError:
        timing.problem = "not seen within 60 s"
    except (aiohttp.ClientError, TimeoutError) as exc:
        timing.problem = f"the report failed ({exc.__class__.__name__})"


def _reference(reply: Any) -> str | None:
    """The reference the reporter's confirmation gives (each school has its own prefix)."""
    for card in reply.cards:
        for block in card.get("body") or []:
            text = str(block.get("text") or "")
            if text.startswith("Thank you. Your report is "):
                return text.split()[-1]
    return None


async def settle(task: asyncio.Task[None]) -> None:
    """The report's task, given a moment to see its alert; what it has not seen by then is not waited for."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(task), 30)
    task.cancel()


async def _await_replies(others: Others) -> None:
    for _ in range(int(REPLY_GRACE * 2)):
        if len(others.replies()) >= len(others.posted):
            return
        await asyncio.sleep(0.5)


def _tally(
    result: Broadcast, deliveries: Deliveries, staff: list[dict[str, Any]], others: Others, throttled: int
) -> None:
    deliveries.update()
    counts = [deliveries.per_conversation.get(f"a:personal-{p['id']}", 0) for p in staff]
    result.cards = sum(deliveries.per_conversation.values())
    result.first_to_last = (deliveries.last or 0.0) - (deliveries.first or 0.0)
    result.lost = sum(c == 0 for c in counts)
    result.duplicated = sum(c > 1 for c in counts)
    result.throttled = throttled
    replies = others.replies()
    result.help_sent = len(others.posted)
    result.help_latencies = sorted(replies.values())
    result.help_unanswered = result.help_sent - len(replies)
