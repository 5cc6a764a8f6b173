"""One server under test for `make bench`, in its own process so its CPU time can be read from /proc.

    python -m tests.bench_server floor|stock|pooled
    python -m tests.bench_server claimed --database URL --var DIR
    python -m tests.bench_server app --database URL --config PATH --connector URL --var DIR [--aup-dir DIR]

It prints `READY <url of /api/messages>` on stdout once it listens on loopback, and serves until SIGTERM or until
its stdin closes (so it never outlives the benchmark). Replies go to each activity's serviceUrl: the benchmark's
local Bot Connector.

- floor:  a bare aiohttp handler that answers each activity with one POST to the connector;
- claimed: the floor plus what exactly-once delivery costs any turn: the app's own inbound claim (storage.turns,
          on the app's engines) taken before the reply and marked finished after it, as the app does;
- stock:  an echo bot on CloudAdapter + ConfigurationBotFrameworkAuthentication exactly as the samples build it;
- pooled: the same echo bot as the app runs a turn: the activity read by the project's JSON reader, then this
          project's adapter (adapters.connector.build_adapter + ClientPool);
- app:    this bot in dev mode, as tests/support/harness.py starts it, with a clock that runs from a school-day
          morning (so quiet hours hold nothing back) and, with --aup-dir, its AUP texts read from that directory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
from aiohttp import web
from botbuilder.core import ActivityHandler, TurnContext
from botbuilder.integration.aiohttp import CloudAdapter, ConfigurationBotFrameworkAuthentication

# Monday 23 November 2026, 10:00 in London: a school day in term, as the tests use.
SCHOOL_MORNING = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC)


class RunningClock:
    """Real time passing, from a fixed school-day morning: retries and delays fall due as they would in school."""

    def __init__(self, start: dt.datetime = SCHOOL_MORNING) -> None:
        self._start = start
        self._began = time.monotonic()

    def now(self) -> dt.datetime:
        return self._start + dt.timedelta(seconds=time.monotonic() - self._began)


class EchoBot(ActivityHandler):
    async def on_message_activity(self, turn_context: TurnContext) -> None:
        await turn_context.send_activity(f"You said: {turn_context.activity.text}")


def _echo_app(adapter: CloudAdapter) -> web.Application:
    bot = EchoBot()

    async def messages(request: web.Request) -> web.StreamResponse:
        return await adapter.process(request, bot)

    app = web.Application()
    app.router.add_post("/api/messages", messages)
    return app


def stock_echo(_args: argparse.Namespace) -> web.Application:
    configuration = SimpleNamespace(APP_ID="", APP_PASSWORD="", APP_TYPE="MultiTenant", APP_TENANTID="")
    return _echo_app(CloudAdapter(ConfigurationBotFrameworkAuthentication(configuration)))


def pooled_echo(args: argparse.Namespace) -> web.Application:
    """The echo bot as the app runs a turn: the activity read by the project's JSON reader (not msrest's, which
    CloudAdapter.process uses), then the project's adapter and its pooled connector."""
    from botbuilder.schema import Activity

    from adapters.connector import ClientPool, build_adapter
    from adapters.connector_json import from_json
    from bot.settings import Settings

    settings = Settings(dev=True, var_dir=Path(args.var or "."), **_budget(args))
    pool = ClientPool.from_settings(settings)
    adapter = build_adapter(settings, pool)
    bot = EchoBot()

    async def messages(request: web.Request) -> web.Response:
        activity = from_json(Activity, await request.json())
        await adapter.process_activity(request.headers.get("Authorization", ""), activity, bot.on_turn)
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/api/messages", messages)

    async def close_pool(_app: web.Application) -> None:
        await pool.close()

    app.on_cleanup.append(close_pool)
    return app


def floor(_args: argparse.Namespace, *, before: Any = None, after: Any = None, key: Any = None) -> web.Application:
    """The least any bot can do: read the activity, POST one reply to the connector, answer 200. With `before` and
    `after` (a claim's begin and end), the reply goes only if the claim is won, and the claim is finished after it."""
    sessions: list[aiohttp.ClientSession] = []

    async def messages(request: web.Request) -> web.Response:
        if not sessions:
            sessions.append(aiohttp.ClientSession())
        activity = await request.json()
        claim = key(activity["channelId"], activity["conversation"]["id"], activity["id"]) if key else None
        if before is not None and not (await before(claim, None)).claimed:
            return web.Response(status=200)
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
        async with sessions[0].post(url, json=reply) as response:
            await response.read()
        if after is not None:
            await after(claim, None, None, None)
        return web.Response(status=200)

    async def close(_app: web.Application) -> None:
        for session in sessions:
            await session.close()

    app = web.Application()
    app.router.add_post("/api/messages", messages)
    app.on_cleanup.append(close)
    return app


async def claimed_floor(args: argparse.Namespace) -> web.Application:
    """The floor, with the claim every one of the app's turns takes (bot.inbound): the least a bot can do that
    answers each delivery once however often Teams redelivers it, across crashes and replicas."""
    from app import data_cipher
    from bot.inbound import claim_key
    from storage.checkpoint import WalCheckpoints
    from storage.db import create_engine
    from storage.migrate import upgrade
    from storage.turns import SqlTurns
    from tests.support.harness import test_settings

    settings = test_settings(args.database, Path(args.var))
    engine = create_engine(settings.database_url)
    await upgrade(engine)
    reads = create_engine(settings.database_url, reads_only=True) if settings.is_sqlite else engine
    turns = SqlTurns(engine, data_cipher(settings), RunningClock(), reads=reads)
    app = floor(args, before=turns.begin, after=turns.end, key=claim_key)
    # As in the app: SQLite's log is checkpointed off the turns (the claim, written on the loop, never does it).
    checkpoints = asyncio.create_task(WalCheckpoints(reads).run_forever()) if settings.is_sqlite else None

    async def close(_app: web.Application) -> None:
        if checkpoints is not None:
            checkpoints.cancel()
            await asyncio.gather(checkpoints, return_exceptions=True)
        await turns.close()
        for made in {engine, reads}:
            await made.dispose()

    app.on_cleanup.append(close)
    return app


async def the_app(args: argparse.Namespace) -> web.Application:
    from app import create_app, serve_long_lived
    from bot.config import load_config
    from tests.support.harness import test_settings

    settings = test_settings(
        args.database,
        Path(args.var),
        config_path=Path(args.config),
        teams_service_url=args.connector,
        worker_poll_seconds=1.0,
        **_budget(args),
    )
    features = _features_reading_aup_from(Path(args.aup_dir)) if args.aup_dir else None
    app = await create_app(settings, load_config(settings.config_path), clock=RunningClock(), features=features)
    return serve_long_lived(app)  # as `python app.py` serves


def _budget(args: argparse.Namespace) -> dict[str, float]:
    """With --no-budget, sends are not held to Teams' per-tenant and per-conversation rates (see tests/bench.py)."""
    if not args.no_budget:
        return {}
    return {"connector_tenant_rate": 1e9, "connector_bulk_rate": 1e9, "connector_conversation_rate": 1e9}


def _features_reading_aup_from(directory: Path) -> list[Callable[[Any], None]]:
    """The app's features, with the AUP texts read from `directory` (empty at start: nothing to import or send
    until the benchmark puts a text there and publishes it through the card actions)."""
    from app import _features
    from dialogs import aup

    def install_aup(wiring: Any) -> None:
        wiring.features.aup_source = aup.markdown_source(directory)
        aup.install(wiring)

    return [install_aup if feature is aup.install else feature for feature in _features()]


KINDS: dict[str, Callable[[argparse.Namespace], Any]] = {
    "floor": floor,
    "claimed": claimed_floor,
    "stock": stock_echo,
    "pooled": pooled_echo,
    "app": the_app,
}


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001
    try:
        yield f"http://127.0.0.1:{port}/api/messages"
    finally:
        async with asyncio.timeout(60):
            await runner.cleanup()


async def _until_told_to_stop() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    # A closed stdin means the benchmark has gone: stop rather than linger.
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not sys.stdin.buffer.read1(1024) else None)
    await stop.wait()


async def main(args: argparse.Namespace) -> None:
    made = KINDS[args.kind](args)
    app = await made if asyncio.iscoroutine(made) else made
    async with serving(app) as url:
        print(f"READY {url}", flush=True)
        await _until_told_to_stop()


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench_server")
    parser.add_argument("kind", choices=sorted(KINDS))
    parser.add_argument("--database")
    parser.add_argument("--config")
    parser.add_argument("--connector")
    parser.add_argument("--var")
    parser.add_argument("--aup-dir")
    parser.add_argument("--no-budget", action="store_true")
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse(sys.argv[1:])
    if arguments.kind == "app":
        # As a school's server logs (ESAFETY_LOG_LEVEL and ESAFETY_LOG_FORMAT outside dev mode): its JSON line for
        # every turn is part of what a turn costs. To its log file in the run's directory.
        from adapters.logs import configure_logging

        configure_logging(os.environ.get("BENCH_SERVER_LOG", "INFO"), "json")
    else:
        # The other servers log nothing of their own a turn. BENCH_SERVER_LOG=INFO shows the SDK's when debugging.
        logging.basicConfig(level=os.environ.get("BENCH_SERVER_LOG", "ERROR"))
    asyncio.run(main(arguments))
