"""`make bench`: message turns per second through POST /api/messages, against a recording Bot Connector.

Four servers, measured in one process at concurrency 1 and 10:

- app:          this bot (dev mode, SQLite in a temporary directory), answering `help` with the help card;
- pooled echo:  an echo bot on our adapter (adapters.connector.build_adapter: connector clients reused);
- stock echo:   the same echo bot on CloudAdapter + ConfigurationBotFrameworkAuthentication as shipped;
- floor:        a bare aiohttp handler that answers each activity with one POST to the connector.

It only prints. BENCH_TURNS sets the number of measured turns per row (default 300).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
from aiohttp import web
from botbuilder.core import ActivityHandler, TurnContext
from botbuilder.integration.aiohttp import CloudAdapter, ConfigurationBotFrameworkAuthentication

from adapters.clock import SettableClock
from adapters.connector import ClientPool, build_adapter
from bot.settings import Settings
from tests.support.connector import RecordingConnector
from tests.support.harness import start_harness

WARMUP = 10
CONCURRENCY = (1, 10)


class EchoBot(ActivityHandler):
    async def on_message_activity(self, turn_context: TurnContext) -> None:
        await turn_context.send_activity(f"You said: {turn_context.activity.text}")


@dataclass
class Result:
    name: str
    concurrency: int
    turns: int
    seconds: float
    latencies: list[float]
    failures: int

    @property
    def rate(self) -> float:
        return self.turns / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return 0.0
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] * 1000


# --- the servers under test -------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _serve(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001
    try:
        yield f"http://127.0.0.1:{port}/api/messages"
    finally:
        await runner.cleanup()


def _echo_app(adapter: CloudAdapter) -> web.Application:
    bot = EchoBot()

    async def messages(request: web.Request) -> web.StreamResponse:
        return await adapter.process(request, bot)

    app = web.Application()
    app.router.add_post("/api/messages", messages)
    return app


@contextlib.asynccontextmanager
async def stock_echo() -> AsyncIterator[str]:
    """The echo bot exactly as the samples build it (auth off: no app id)."""
    configuration = SimpleNamespace(APP_ID="", APP_PASSWORD="", APP_TYPE="MultiTenant", APP_TENANTID="")
    adapter = CloudAdapter(ConfigurationBotFrameworkAuthentication(configuration))
    async with _serve(_echo_app(adapter)) as url:
        yield url


@contextlib.asynccontextmanager
async def pooled_echo(var_dir: Path) -> AsyncIterator[str]:
    """The same echo bot on our adapter, so the pooling gain shows apart from the app's own work."""
    pool = ClientPool()
    adapter = build_adapter(Settings(dev=True, var_dir=var_dir), pool)
    try:
        async with _serve(_echo_app(adapter)) as url:
            yield url
    finally:
        await pool.close()


@contextlib.asynccontextmanager
async def floor() -> AsyncIterator[str]:
    """The least any bot can do: read the activity, POST one reply to the connector, answer 200."""
    session = aiohttp.ClientSession()

    async def messages(request: web.Request) -> web.Response:
        activity = await request.json()
        reply = {
            "type": "message",
            "text": f"You said: {activity.get('text')}",
            "replyToId": activity.get("id"),
            "conversation": activity["conversation"],
            "from": activity["recipient"],
            "recipient": activity["from"],
        }
        url = (
            f"{activity['serviceUrl'].rstrip('/')}/v3/conversations/{activity['conversation']['id']}/activities/"
            f"{activity['id']}"
        )
        async with session.post(url, json=reply) as response:
            await response.read()
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/api/messages", messages)
    try:
        async with _serve(app) as url:
            yield url
    finally:
        await session.close()


@contextlib.asynccontextmanager
async def our_app(database_dir: Path) -> AsyncIterator[tuple[str, RecordingConnector, Any]]:
    clock = SettableClock(dt.datetime.now(dt.UTC))
    async with start_harness(
        database_url=f"sqlite+aiosqlite:///{database_dir / 'bench.db'}", clock=clock, var_dir=database_dir / "var"
    ) as harness:
        yield f"{harness.url}/api/messages", harness.connector, harness


# --- the driver -------------------------------------------------------------------------------------------------


def _activity(connector_url: str, sender: dict[str, str], tenant_id: str, text: str) -> dict[str, Any]:
    return {
        "type": "message",
        "id": f"in-{uuid.uuid4().hex[:12]}",
        "timestamp": "2026-11-23T10:00:00.000Z",
        "serviceUrl": connector_url,
        "channelId": "msteams",
        "from": {"id": f"29:{sender['id']}", "name": sender["name"], "aadObjectId": sender["id"]},
        "conversation": {"id": f"a:bench-{sender['id']}", "conversationType": "personal", "tenantId": tenant_id},
        "recipient": {"id": "28:esafety-bot", "name": "eSafety"},
        "channelData": {"tenant": {"id": tenant_id}},
        "locale": "en-GB",
        "text": text,
    }


async def drive(
    name: str,
    url: str,
    connector: RecordingConnector,
    senders: list[dict[str, str]],
    tenant_id: str,
    turns: int,
    concurrency: int,
    http: aiohttp.ClientSession,
) -> Result:
    """Send `turns` messages, `concurrency` at a time (each worker in its own conversation)."""
    latencies: list[float] = []
    failures = 0
    remaining = iter(range(turns))

    async def one(sender: dict[str, str]) -> None:
        nonlocal failures
        activity = _activity(connector.url, sender, tenant_id, "help")
        started = time.perf_counter()
        async with http.post(url, json=activity) as response:
            await response.read()
            ok = response.status < 300
        latencies.append(time.perf_counter() - started)
        failures += 0 if ok else 1

    async def worker(n: int) -> None:
        for _ in remaining:
            await one(senders[n % len(senders)])

    for n in range(WARMUP):
        await one(senders[n % len(senders)])
    latencies.clear()
    failures = 0
    sent_before = len(connector.sent)
    started = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    seconds = time.perf_counter() - started
    replies = len(connector.sent) - sent_before
    if replies < turns:
        failures = max(failures, turns - replies)
    return Result(name, concurrency, turns, seconds, latencies, failures)


def report(results: list[Result]) -> str:
    by_key = {(r.name, r.concurrency): r for r in results}
    lines = [
        f"{'server':<14}{'conc':>5}{'turns/s':>10}{'p50 ms':>9}{'p95 ms':>9}{'vs stock':>10}{'vs floor':>10}"
        f"{'failed':>8}"
    ]
    for result in results:
        stock = by_key.get(("stock echo", result.concurrency))
        base = by_key.get(("floor", result.concurrency))
        vs_stock = f"{result.rate / stock.rate:.2f}x" if stock and stock.rate else "-"
        vs_floor = f"{result.rate / base.rate:.2f}x" if base and base.rate else "-"
        lines.append(
            f"{result.name:<14}{result.concurrency:>5}{result.rate:>10.1f}{result.percentile(50):>9.1f}"
            f"{result.percentile(95):>9.1f}{vs_stock:>10}{vs_floor:>10}{result.failures:>8}"
        )
    return "\n".join(lines)


async def main() -> None:
    turns = int(os.environ.get("BENCH_TURNS", "300"))
    logging.basicConfig(level=logging.ERROR)  # the demo school's start-up reminders would otherwise log warnings
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="esafety-bench-") as tmp:
        root = Path(tmp)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as http:
            async with our_app(root) as (url, connector, harness):
                school = harness.school
                senders = [{"id": p.id, "name": p.name} for p in school.people if "staff" in p.roles][:10]
                senders += [{"id": str(uuid.uuid4()), "name": f"Visitor {n}"} for n in range(10 - len(senders))]
                tenant_id = school.tenant_id
                for concurrency in CONCURRENCY:
                    results.append(await drive("app", url, connector, senders, tenant_id, turns, concurrency, http))

            connector = RecordingConnector()
            await connector.start()
            try:
                servers: list[tuple[str, Callable[[], Any]]] = [
                    ("pooled echo", lambda: pooled_echo(root / "var")),
                    ("stock echo", stock_echo),
                    ("floor", floor),
                ]
                for name, make in servers:
                    async with make() as url:
                        for concurrency in CONCURRENCY:
                            results.append(
                                await drive(name, url, connector, senders, tenant_id, turns, concurrency, http)
                            )
            finally:
                await connector.stop()
    ordered = sorted(
        results, key=lambda r: (r.concurrency, ["app", "pooled echo", "stock echo", "floor"].index(r.name))
    )
    print(f"{turns} message turns per row, after {WARMUP} warm-up turns; one process, loopback only.")
    print(report(ordered))
    app_1 = next(r for r in results if r.name == "app" and r.concurrency == 1)
    print(f"median app turn {statistics.median(app_1.latencies) * 1000:.1f} ms at concurrency 1")


def run(entry: Callable[[], Awaitable[None]] = main) -> None:
    asyncio.run(entry())


if __name__ == "__main__":
    run()
