"""`make bench`, trust row (issue 18): an AUP publish across a generated trust, on two replicas and one PostgreSQL.

The trust is tests/support/trust_gen.py's: BENCH_TRUST_SCHOOLS schools (default 50) and BENCH_TRUST_STAFF staff
(default 12,000) over BENCH_TRUST_TENANTS tenants (default 5). Two app processes (tests/bench_server.py, a clock
running from a school-day morning) share one database and one AUP folder, empty at start; every member of staff
has opened the app (their 1:1 chat is in the database). Then the staff AUP appears in the folder and every school's
online-safety lead publishes it at once from their own chat (`aup publish staff`, then Publish on the preview), the
publishes shared between the replicas as a load balancer would. A publish is per school: a trust-wide publish is
each school's lead publishing. Ten seconds after the first card, the first school's lead reports a concern about a
pupil (that school's team has the bot), and the row times `submit` to the alert's arrival in its DSL channel.

The local Bot Connector enforces Teams' limits per tenant (50 requests/s) and per conversation (7/s) and answers the
rest 429; the tenant of a call is the tenant of the person or channel its conversation belongs to, so no call can
slip into a budget of its own. The row reports messages/s overall and per tenant (first to last card, and the most
accepted in any one second), the 429s, staff left without a card (lost) or with more than one (duplicated), and how
long the publish invokes took to answer. The leads' own cards wait for their chat to go quiet (the quiet rule, three
minutes), so they count for lost and duplicated but not for the rates. It measures; it never fails.

Alone: `python -m tests.bench_trust`; quick: BENCH_TRUST_SCHOOLS=5 BENCH_TRUST_STAFF=500 python -m tests.bench_trust.
BENCH_TRUST_TIMEOUT (default 900) bounds the wait for delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web
from sqlalchemy import insert

from tests.bench_broadcast import ACK_VERB, AUP_FILES, PUBLISH_VERB, AlertTiming, report_meanwhile, settle
from tests.bench_procs import ServerProcess, server_process
from tests.bench_school import dsl_channel_of
from tests.support import pgserver
from tests.support.connector import RecordingConnector, Sent
from tests.support.teams import BOT_ID, TeamsChannel, TeamsUser
from tests.support.throttled_connector import ThrottledConnector
from tests.support.trust_gen import TrustSchool, write_trust

STALL_SECONDS = 240.0  # longer than the quiet rule's three minutes, so the leads' own cards are waited for
TENANT_LIMIT = 50
AUDIT_KEY = "bench-trust-audit-key-shared-by-both-replicas"


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


class TenantConnector(ThrottledConnector):
    """Teams' limits per tenant, each call's tenant looked up from who (or which channel) its conversation is."""

    def __init__(self, tenant_of: dict[str, str]) -> None:
        super().__init__()
        self.tenant_of = tenant_of  # conversation id -> tenant id
        self.throttled_by_tenant: Counter[str] = Counter()

    def tenant(self, conversation_id: str) -> str:
        return self.tenant_of.get(conversation_id, "unknown")  # one shared budget for anything unrecognised

    async def _record(self, sent: Sent) -> web.Response:
        now = time.perf_counter()
        tenant = self.tenant(sent.conversation_id)
        wait = max(self._tenant.wait(tenant, now), self._conversation.wait(sent.conversation_id, now))
        if wait > 0:
            self.throttled += 1
            self.throttled_by_tenant[tenant] += 1
            return web.json_response(
                {"error": {"code": "Throttled", "message": "Too many requests"}},
                status=429,
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        self._tenant.note(tenant, now)
        self._conversation.note(sent.conversation_id, now)
        response = await RecordingConnector._record(self, sent)  # noqa: SLF001 - the recording, without the parent's single tenant
        if response.status < 300:
            self.arrivals.append((time.perf_counter(), sent))
        return response


@dataclass
class TenantFigures:
    cards: int = 0
    rate: float = 0.0  # cards/s, first to last
    peak: int = 0  # most calls accepted in any one second
    throttled: int = 0


@dataclass
class TrustRun:
    schools: int = 0
    staff: int = 0
    tenants: int = 0
    replicas: int = 2
    cards: int = 0
    rate: float = 0.0
    first_to_last: float = 0.0
    throttled: int = 0
    lost: int = 0
    duplicated: int = 0
    published: int = 0
    publish_failures: list[str] = field(default_factory=list)
    invoke_seconds: list[float] = field(default_factory=list)
    per_tenant: dict[str, TenantFigures] = field(default_factory=dict)
    ended: str = ""
    setup_seconds: float = 0.0
    alert: AlertTiming = field(default_factory=AlertTiming)  # the first school's lead reports a concern meanwhile


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    """Environment variables for the server processes started inside (they inherit this process's)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _chat(person_id: str) -> str:
    return f"a:personal-{person_id}"


async def seed_chats(url: str, trust: list[TrustSchool], service_url: str) -> None:
    """Migrate, and store everyone's 1:1 chat with the bot as the app saves it when they first open the app."""
    from storage.db import create_engine
    from storage.migrate import upgrade
    from storage.models import ConversationRefRow

    engine = create_engine(url)
    now = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    try:
        await upgrade(engine)
        rows = [
            dict(
                school_id=school.id,
                kind="person",
                key=person.id,
                name=None,
                team_id=None,
                updated_at=now,
                reference={
                    "bot": {"id": BOT_ID},
                    "user": {"id": f"29:{person.id}", "aadObjectId": person.id},
                    "conversation": {
                        "id": _chat(person.id),
                        "conversationType": "personal",
                        "tenantId": school.tenant_id,
                    },
                    "channelId": "msteams",
                    "serviceUrl": service_url,
                },
            )
            for school in trust
            for person in school.people
        ]
        async with engine.begin() as connection:
            for start in range(0, len(rows), 2_000):
                await connection.execute(insert(ConversationRefRow), rows[start : start + 2_000])
    finally:
        await engine.dispose()


async def _publish(
    http: aiohttp.ClientSession, server: ServerProcess, lead: TeamsUser, connector: TenantConnector, run: TrustRun
) -> None:
    """`aup publish staff` from the lead's chat, then Publish on the preview it answers with."""
    school = lead.name
    try:
        async with http.post(server.url, json=lead.message("aup publish staff")) as response:
            await response.read()
        action = next(
            (
                a
                for s in connector.sent
                if s.conversation_id == lead.conversation_id
                for card in s.cards
                for a in card.get("actions") or []
                if a.get("verb") == PUBLISH_VERB
            ),
            None,
        )
        if action is None:
            said = [s.text for s in connector.sent if s.conversation_id == lead.conversation_id]
            run.publish_failures.append(f"{school}: no preview with a Publish button ({said[-1:]!r})")
            return
        started = time.perf_counter()
        activity = lead.card_execute(action["verb"], action.get("data") or {})
        async with http.post(server.url, json=activity, timeout=aiohttp.ClientTimeout(total=300)) as response:
            body = await response.json(content_type=None)
        run.invoke_seconds.append(time.perf_counter() - started)
        answer = str((body or {}).get("value") or "")
        if "published" in answer.lower() and "already" not in answer.lower():
            run.published += 1
        else:
            run.publish_failures.append(f"{school}: {answer[:100]!r}")
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        run.publish_failures.append(f"{school}: no answer ({exc.__class__.__name__})")


def _cards(connector: TenantConnector) -> dict[str, list[float]]:
    """Conversation id -> when each AUP card to it was accepted."""
    out: dict[str, list[float]] = defaultdict(list)
    for at, sent in connector.arrivals:
        if sent.op == "send" and ACK_VERB in json.dumps(sent.activity):
            out[sent.conversation_id].append(at)
    return out


async def _await_delivery(connector: TenantConnector, chats: set[str], within: float) -> str:
    deadline = time.perf_counter() + within
    last_count, last_change = 0, time.perf_counter()
    while True:
        cards = _cards(connector)
        count = sum(len(v) for v in cards.values())
        now = time.perf_counter()
        if count != last_count:
            last_count, last_change = count, now
        if chats <= set(cards):
            return "every member of staff had a card"
        if count and now - last_change > STALL_SECONDS:
            return f"no new card for {STALL_SECONDS:.0f} s"
        if now > deadline:
            return f"overall timeout ({within:.0f} s)"
        await asyncio.sleep(1.0)


def _peak(times: list[float]) -> int:
    """The most events in any one-second window."""
    times = sorted(times)
    best, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


def _tally(run: TrustRun, connector: TenantConnector, trust: list[TrustSchool], leads: set[str]) -> None:
    cards = _cards(connector)
    everyone = [_chat(p.id) for school in trust for p in school.people]
    run.cards = sum(len(v) for v in cards.values())
    run.lost = sum(1 for chat in everyone if not cards.get(chat))
    run.duplicated = sum(1 for chat in everyone if len(cards.get(chat, [])) > 1)
    run.throttled = connector.throttled
    # Rates over the staff who were not chatting: the leads' cards wait for the quiet rule by design.
    timed = sorted(at for chat, ats in cards.items() if chat not in leads for at in ats)
    run.first_to_last = timed[-1] - timed[0] if len(timed) > 1 else 0.0
    run.rate = (len(timed) - 1) / run.first_to_last if run.first_to_last else 0.0
    calls: dict[str, list[float]] = defaultdict(list)
    for at, sent in connector.arrivals:
        calls[connector.tenant(sent.conversation_id)].append(at)
    for tenant in sorted({school.tenant_id for school in trust}):
        ats = sorted(
            at for chat, times in cards.items() if chat not in leads for at in times if connector.tenant(chat) == tenant
        )
        span = ats[-1] - ats[0] if len(ats) > 1 else 0.0
        run.per_tenant[tenant] = TenantFigures(
            cards=len(ats),
            rate=(len(ats) - 1) / span if span else 0.0,
            peak=_peak(calls.get(tenant, [])),
            throttled=connector.throttled_by_tenant.get(tenant, 0),
        )


async def run_trust(root: Path, http: aiohttp.ClientSession, pg: pgserver.PgServer, within: float) -> TrustRun:
    began = time.perf_counter()
    schools, staff = _int("BENCH_TRUST_SCHOOLS", 50), _int("BENCH_TRUST_STAFF", 12_000)
    tenants = min(_int("BENCH_TRUST_TENANTS", 5), schools)
    config = root / f"trust-{schools}-{staff}.yaml"
    trust = write_trust(config, schools, staff, tenants)
    run = TrustRun(schools=schools, staff=staff, tenants=tenants)
    tenant_of = {_chat(p.id): school.tenant_id for school in trust for p in school.people}
    first = trust[0]
    _team, dsl_channel = dsl_channel_of(config)  # the first school's
    connector = TenantConnector({**tenant_of, dsl_channel: first.tenant_id})  # the alert counts in its tenant
    await connector.start()
    database = "bench_trust"
    pg.psql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    pg.psql(f'CREATE DATABASE "{database}"')
    try:
        url = pg.url(database)
        await seed_chats(url, trust, connector.url)
        aup_dir = root / "aup-trust"
        aup_dir.mkdir(exist_ok=True)
        args = (
            "app",
            "--database",
            url,
            "--config",
            str(config),
            "--connector",
            connector.url,
            "--aup-dir",
            str(aup_dir),
        )
        async with contextlib.AsyncExitStack() as stack:
            # One audit key for both, as a deployment's replicas share theirs (in dev mode each var folder makes its
            # own, and each replica would take the other's entries for a broken trail).
            stack.enter_context(_environment(ESAFETY_AUDIT_KEY=AUDIT_KEY))
            replicas = await asyncio.gather(
                *(
                    stack.enter_async_context(
                        server_process(f"app trust {n}", root, *args, "--var", str(root / f"var-trust-{n}"))
                    )
                    for n in ("a", "b")
                )
            )
            shutil.copy(AUP_FILES / "staff.md", aup_dir / "staff.md")
            run.setup_seconds = time.perf_counter() - began
            leads = [school.holder("online_safety_lead") for school in trust]
            users = [
                TeamsUser(
                    http,
                    replicas[n % 2].url.removesuffix("/api/messages"),  # a TeamsUser posts to its /api/messages
                    connector,
                    aad_id=lead.id,
                    name=lead.school_id,
                    tenant_id=lead.tenant_id,
                )
                for n, lead in enumerate(leads)
            ]
            # The first school's team has the bot, so a concern's alert has its DSL channel; its lead, whose own card
            # waits for a quiet moment anyway, reports one ten seconds after the first card.
            reporter = users[0]
            channel = TeamsChannel(
                http,
                reporter.app_url,
                connector,
                team_id=first.team_id,
                channel_id=dsl_channel,
                tenant_id=first.tenant_id,
            )
            await channel.bot_added(by=reporter)
            await asyncio.gather(
                *(_publish(http, replicas[n % 2], user, connector, run) for n, user in enumerate(users))
            )
            concern = asyncio.create_task(report_meanwhile(reporter, connector, dsl_channel, run.alert))
            everyone = set(tenant_of)
            run.ended = await _await_delivery(connector, everyone, within)
            await settle(concern)
        _tally(run, connector, trust, {_chat(lead.id) for lead in leads})
    finally:
        await connector.stop()
        with contextlib.suppress(Exception):
            pg.psql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    return run


def lines(run: TrustRun) -> str:
    invokes = sorted(run.invoke_seconds)
    p50 = f"{statistics.median(invokes):.2f} s" if invokes else "-"
    worst = f"{invokes[-1]:.2f} s" if invokes else "-"
    out = [
        f"AUP publish across a trust of {run.schools} schools and {run.staff:,} staff in {run.tenants} tenants, "
        f"{run.replicas} replicas on one PostgreSQL, connector at {TENANT_LIMIT} requests/s per tenant "
        "and 7/s per conversation:",
        f"  delivery ended: {run.ended} (set-up {run.setup_seconds:.0f} s)",
        f"  {run.published} of {run.schools} schools published; publish invokes answered p50 {p50}, slowest {worst}",
        f"  {run.cards:,} cards, {run.rate:.1f} msg/s first to last ({run.first_to_last:.1f} s), "
        f"{run.throttled:,} 429s answered",
        f"  lost (no card) {run.lost:,}; duplicated (more than one card) {run.duplicated:,}",
        f"  a concern reported in the first school 10 s after the first card: {run.alert.line()}",
    ]
    for tenant, figures in run.per_tenant.items():
        out.append(
            f"  tenant {tenant[-4:]}: {figures.cards:,} cards, {figures.rate:.1f} msg/s, busiest second "
            f"{figures.peak} calls, {figures.throttled:,} 429s"
        )
    for failure in run.publish_failures[:5]:
        out.append(f"  publish failed: {failure}")
    if len(run.publish_failures) > 5:
        out.append(f"  ... and {len(run.publish_failures) - 5} more publishes failed")
    return "\n".join(out)


def targets(run: TrustRun | None) -> list[tuple[str, str, bool | None]]:
    """(what, measured, PASS/MISS or None when not measured), for tests/bench.py's targets."""
    if run is None:
        return [("trust publish", "not measured", None)]
    peak = max((f.peak for f in run.per_tenant.values()), default=0)
    return [
        ("trust publish: every school published", f"{run.published} of {run.schools}", run.published == run.schools),
        ("trust publish 0 lost", str(run.lost), run.lost == 0),
        ("trust publish 0 duplicated", str(run.duplicated), run.duplicated == 0),
        (f"trust publish <= {TENANT_LIMIT} msg/s in every tenant", f"busiest second {peak}", peak <= TENANT_LIMIT),
        ("trust publish: no 429s (replicas keep to the budget)", f"{run.throttled:,}", run.throttled == 0),
    ]


async def main() -> None:
    within = float(os.environ.get("BENCH_TRUST_TIMEOUT", 900))
    with tempfile.TemporaryDirectory(prefix="esafety-bench-trust-") as tmp:
        pg = pgserver.start(durable=True)  # as make bench runs it
        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as http:
                run = await run_trust(Path(tmp), http, pg, within)
        finally:
            pg.stop()
    print(lines(run))
    for what, measured, ok in targets(run):
        verdict = "-" if ok is None else ("PASS" if ok else "MISS")
        print(f"  {verdict:<5} {what:<52} {measured}")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
