"""Composition root: settings, database, adapter, directory, worker and routes in one async factory."""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import logging
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from botbuilder.core import TurnContext
from botbuilder.schema import Activity, ActivityTypes

from adapters.activity_checks import BodyRejected, activity_problem, field_at, parse_json
from adapters.clock import SettableClock, SystemClock
from adapters.connector import ClientPool, ProactiveSender, build_adapter
from adapters.connector_json import from_json
from adapters.directory_static import StaticDirectory
from adapters.filter_backends import backend_for
from adapters.graph_directory import GraphDirectory
from adapters.graph_install import GraphInstaller, start_staff_delta
from adapters.legal_pages import add_legal_routes
from adapters.logs import TurnRecord, configure_logging, current_correlation_id, resolve_format
from adapters.observability import OBSERVABILITY, add_observability
from adapters.outbox import SEND_LEASE, OutboxSender, QuietRule, tenant_route
from adapters.scheduler import start_wake_scheduler, stop_wake_scheduler
from adapters.send_budget import BudgetShare
from adapters.tab import add_tab_routes
from adapters.worker import WorkRunner, default_worker_name
from bot.audit import AuditKeys
from bot.audit_watch import AuditWatch
from bot.config import AppConfig, ConfigError, load_config
from bot.handler import BotServices, EsafetyBot, new_correlation_id
from bot.permissions import use as use_permissions
from bot.policy import Policy, load_policy
from bot.protocols import Clock, Directory
from bot.settings import Settings
from bot.wiring import Features, Wiring
from storage.audit_trail import CheckpointFile, audit_keys
from storage.caseload import SqlCaseload
from storage.checkpoint import WalCheckpoints
from storage.crypto import FieldCipher, KeyError_, dev_key, parse_key
from storage.db import create_engine, session_factory
from storage.migrate import pending_migrations, upgrade
from storage.one_trip import OneRead, OneTrip
from storage.outbox_stats import SqlOutboxStats
from storage.quiet import SqlConversationActivity, SqlGreetings
from storage.read_audit import SqlReadAudit
from storage.repos import SEND_KIND, ConversationRefs, WorkClaims
from storage.turns import SqlTurns
from storage.uow import unit_of_work_factory

log = logging.getLogger("esafety")

KNOWN_ACTIVITY_TYPES = {
    ActivityTypes.message,
    ActivityTypes.conversation_update,
    ActivityTypes.installation_update,
    ActivityTypes.invoke,
    ActivityTypes.message_reaction,
    ActivityTypes.event,
    ActivityTypes.end_of_conversation,
    ActivityTypes.message_update,
    ActivityTypes.message_delete,
    ActivityTypes.typing,
}
Feature = Callable[[Wiring], None]


def _features() -> list[Feature]:
    """Each capability installs its commands, card actions, dialogs and work handlers."""
    from adapters import pupils
    from dialogs import (
        allegations,
        audit,
        aup,
        children,
        deliveries,
        desk,
        exports,
        filtering,
        incidents,
        message_action,
        referrals,
        retention,
        reviews,
        trust,
    )

    return [
        deliveries.install,
        incidents.install,
        message_action.install,
        referrals.install,
        allegations.install,
        pupils.install,
        children.install,
        exports.install,
        desk.install,
        filtering.install,
        aup.install,
        reviews.install,
        audit.install,
        retention.install,
        trust.install,  # after reviews: the trust digest is made of each school's weekly digest
    ]


@dataclass
class Components:
    """The running parts, kept on the aiohttp app for the routes (and for tests to drive the worker)."""

    settings: Settings
    config: AppConfig
    clock: Clock
    directory: Directory
    policy: Policy
    engine: Any = None
    adapter: Any = None
    bot: Any = None
    runner: WorkRunner | None = None
    refs: ConversationRefs | None = None
    claims: WorkClaims | None = None
    uow: Any = None
    read_audit: SqlReadAudit | None = None
    features: Features = field(default_factory=Features)


COMPONENTS = web.AppKey("esafety", Components)


def data_cipher(settings: Settings) -> FieldCipher:
    text = settings.data_key.get_secret_value() if settings.data_key else dev_key(settings.var_dir)
    old = settings.data_keys_old.get_secret_value() if settings.data_keys_old else ""
    return FieldCipher(parse_key(text), [parse_key(part) for part in old.split(",") if part.strip()])


def audit_keyring(settings: Settings) -> AuditKeys:
    secret = settings.audit_key.get_secret_value() if settings.audit_key else None
    return audit_keys(secret, settings.audit_keys_retired, settings.var_dir)


async def create_app(
    settings: Settings,
    config: AppConfig,
    *,
    clock: Clock | None = None,
    directory: Directory | None = None,
    features: list[Feature] | None = None,
    policy: Policy | None = None,
) -> web.Application:
    """Build the aiohttp application; start-up and shutdown live in its cleanup context."""
    app = web.Application(client_max_size=settings.max_body_bytes)
    clock = clock or _clock(settings)
    if directory is None:
        graph = settings.directory == "graph"
        directory = GraphDirectory(settings, config, clock) if graph else StaticDirectory(config)
    parts = Components(
        settings=settings,
        config=config,
        clock=clock,
        directory=directory,
        policy=policy or load_policy(settings.policy_path),
    )
    # Commands, card actions and services all ask this policy's mapping, with each school's own grants on top.
    use_permissions(parts.policy.permissions, {school.id: school.permissions for school in config.schools})
    app[COMPONENTS] = parts
    app.cleanup_ctx.append(lambda app: _lifecycle(app, parts, features if features is not None else _features()))
    app.router.add_post("/api/messages", _messages)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/aup/{school}/{audience}/{version}", _aup_page)
    add_tab_routes(app, parts)  # the desk as a Teams tab: /tab and /tab/api/
    add_legal_routes(app, parts)  # /privacy and /terms, which the app package links to
    add_observability(app, settings, config)  # GET /metrics, and the one log line each turn writes
    return app


def serve_long_lived(app: web.Application) -> web.Application:
    """For a serving process: once start-up is done, keep what it made out of the garbage collector's full passes.

    Start-up builds everything the process keeps until it exits (modules, the config and directory, compiled
    statements, clients). Each full collection walked all of it again: 300 ms with the event loop stopped, several
    times a minute under load, the slowest replies of all. Frozen (gc.freeze), it is never walked again; later
    garbage is collected as before. Tests that build many apps in one process leave it out, since frozen objects
    are never freed.
    """

    async def freeze(_app: web.Application) -> None:
        gc.collect()
        gc.freeze()

    app.on_startup.append(freeze)  # after the start-up in cleanup_ctx, which aiohttp runs first
    return app


def _clock(settings: Settings) -> Clock:
    """The system clock; in local dev mode, a clock fixed at ESAFETY_FAKE_NOW when that is set."""
    if settings.dev and settings.fake_now is not None:
        return SettableClock(settings.fake_now)
    return SystemClock()


async def _lifecycle(app: web.Application, parts: Components, features: list[Feature]) -> AsyncIterator[None]:
    settings = parts.settings
    cipher = data_cipher(settings)
    parts.engine = create_engine(settings.database_url)
    await upgrade(parts.engine)
    sessions = session_factory(parts.engine)
    keys = audit_keyring(settings)

    def wake_runner(urgent: bool) -> None:
        assert parts.runner is not None  # made below, before any unit of work commits
        parts.runner.wake(urgent=urgent)

    parts.uow = unit_of_work_factory(sessions, cipher, parts.clock, on_work_committed=wake_runner, audit_keys=keys)
    read_engine = create_engine(settings.database_url, reads_only=True) if settings.is_sqlite else parts.engine
    read_sessions = session_factory(read_engine)
    reads: Any = unit_of_work_factory(read_sessions, cipher, parts.clock)  # as parts.uow: a UnitOfWork structurally
    trip = OneTrip(parts.engine)
    read_audit = parts.read_audit = SqlReadAudit(trip, keys, parts.clock)
    parts.refs = ConversationRefs(sessions, parts.clock, read_sessions=read_sessions)
    parts.claims = WorkClaims(sessions, cipher, parts.clock)

    pool = ClientPool.from_settings(settings)
    parts.adapter = build_adapter(settings, pool)
    parts.adapter.on_turn_error = _turn_error_handler
    activity = SqlConversationActivity(sessions, parts.clock, read_sessions=read_sessions)
    services = BotServices(
        config=parts.config,
        directory=parts.directory,
        uow=parts.uow,
        refs=parts.refs,
        dev=settings.dev,
        turns=SqlTurns(parts.engine, cipher, parts.clock, reads=read_engine, trip=trip),
        greetings=SqlGreetings(sessions, parts.clock),
        clock=parts.clock,
        conversation_timeout=dt.timedelta(hours=settings.conversation_timeout_hours),
    )
    parts.runner = WorkRunner(parts.claims, parts.clock, default_worker_name(settings.replica_name))
    sender = ProactiveSender(parts.adapter, settings.app_id)
    graph = parts.directory if isinstance(parts.directory, GraphDirectory) else None
    reach = GraphInstaller(settings, parts.config, graph, parts.refs, sender, parts.uow).reach if graph else None
    route = tenant_route(parts.refs, settings.teams_service_url, settings.app_id)
    quiet = QuietRule(
        parts.config,
        activity,
        parts.clock,
        idle=dt.timedelta(minutes=settings.quiet_idle_minutes),
        hold=dt.timedelta(hours=settings.quiet_hold_hours),
    )
    claims = parts.claims
    share = BudgetShare(pool.transport.budget, lambda: claims.holders(SEND_KIND), every=0.25)
    parts.runner.register(
        SEND_KIND,
        OutboxSender(
            parts.config,
            parts.refs,
            sender,
            parts.clock,
            parts.uow,
            route=route,
            reach=reach,
            quiet=quiet,
            before_send=share.refresh,
        ),
        lease=SEND_LEASE,
    )
    wiring = Wiring(
        config=parts.config,
        policy=parts.policy,
        directory=parts.directory,
        uow=parts.uow,
        reads=reads,
        read_audit=read_audit,
        caseload=SqlCaseload(OneRead(read_engine), cipher),
        clock=parts.clock,
        services=services,
        work=parts.runner,
        features=parts.features,
        filter_backend_for=backend_for,
    )
    parts.features.public_url = settings.public_url or f"http://{settings.host}:{settings.port}"
    parts.features.settings = settings
    watch = AuditWatch(parts.uow, keys, CheckpointFile(settings.var_dir), parts.clock, parts.config, parts.directory)
    parts.features.audit_watch = watch
    for install in features:
        install(wiring)
    # After the features: the turn log and metrics name only the invokes and card verbs they registered.
    read_stats = SqlOutboxStats(session_factory(read_engine), cipher)
    app[OBSERVABILITY].attach(services, pool.transport, parts.runner, read_stats, parts.clock, watch)
    if graph is not None:
        await start_staff_delta(wiring, settings, graph)
    for start in parts.features.startup:  # features' start-up work, e.g. importing documents
        await start()
    parts.bot = EsafetyBot(services)
    # A broken trail is logged at ERROR and shown by /readyz, but the app still serves: casework must go on.
    await watch.check_all(checkpoint=True)

    # SQLite: the write-ahead log is checkpointed off the writer (storage.checkpoint).
    checkpoints = (
        asyncio.create_task(WalCheckpoints(read_engine).run_forever(), name="wal-checkpoints")
        if read_engine is not parts.engine
        else None
    )
    worker_task = None
    if settings.worker_enabled:
        worker_task = asyncio.create_task(parts.runner.run_forever(settings.worker_poll_seconds), name="work-runner")
    scheduler = (
        start_wake_scheduler(parts.runner.wake, parts.config, settings.worker_poll_seconds)
        if settings.worker_enabled
        else None
    )
    log.info(
        "eSafety bot ready (%s mode, %s)",
        "local dev" if settings.dev else "production",
        parts.engine.url.get_backend_name(),
    )
    try:
        yield
    finally:
        stop_wake_scheduler(scheduler)
        if worker_task is not None:
            worker_task.cancel()
            # The runner lets items in hand finish for up to 20 s; a stuck one must not keep the process from exiting
            # (its claim's lease hands it to another replica).
            stopped, _ = await asyncio.wait({worker_task}, timeout=30)
            if not stopped:
                log.error("the work runner did not stop within 30 s; shutting down without it")
        await pool.close()
        if checkpoints is not None:
            checkpoints.cancel()
            await asyncio.wait({checkpoints})
        for stop in parts.features.shutdown:  # features' clients (e.g. the export uploader's session)
            await stop()
        if graph is not None:
            await graph.close()
        await trip.close()
        if read_engine is not parts.engine:
            await read_engine.dispose()
        await parts.engine.dispose()


async def _turn_error_handler(context: TurnContext, error: Exception) -> None:
    """Log with a correlation id; tell the person plainly, without internals."""
    correlation = current_correlation_id() or new_correlation_id()  # the id the turn's log line carries
    log.error("turn failed [%s]: %s", correlation, error, exc_info=error)
    message = (
        f"Sorry, something went wrong on my side and I could not finish that. Please try again. If it keeps "
        f"happening, tell your IT team and quote {correlation}."
    )
    try:
        if context.activity.type == ActivityTypes.invoke:
            context.turn_state[context.adapter._INVOKE_RESPONSE_KEY] = Activity(  # noqa: SLF001 - SDK's own slot
                type=ActivityTypes.invoke_response,
                value=_invoke_error_body(message),
            )
        else:
            await context.send_activity(message)
    except Exception:  # noqa: BLE001 - the connector itself may be what failed
        log.warning("could not tell the user about failure [%s]", correlation)


def _invoke_error_body(message: str) -> Any:
    from botbuilder.core import InvokeResponse

    return InvokeResponse(
        status=200,
        body={
            "statusCode": 200,
            "type": "application/vnd.microsoft.activity.message",
            "value": message,
        },
    )


def _bad_request(reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=400)


async def _messages(request: web.Request) -> web.Response:
    with request.app[OBSERVABILITY].turn() as turn:  # one log line and the turn metrics, however it ends
        response = await _answer_activity(request, turn)
        turn.status = response.status
    return response


async def _answer_activity(request: web.Request, turn: TurnRecord) -> web.Response:
    parts: Components = request.app[COMPONENTS]
    if "json" not in (request.content_type or ""):
        return web.json_response({"error": "Content-Type must be application/json"}, status=415)
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return web.json_response({"error": "Request body is too large"}, status=413)
    try:
        body = parse_json(raw)
    except BodyRejected as rejected:
        return _bad_request(rejected.reason)
    if not isinstance(body, dict):
        return _bad_request("Body is not an Activity: expected a JSON object")
    observability = request.app[OBSERVABILITY]
    observability.describe(turn, body, KNOWN_ACTIVITY_TYPES)
    kind = body.get("type")
    if not isinstance(kind, str) or not kind:
        return _bad_request("Body is not an Activity: missing 'type'")
    if kind not in KNOWN_ACTIVITY_TYPES:
        return web.Response(status=200)
    if not body.get("conversation"):
        return _bad_request("Activity is missing 'conversation'")
    problem = activity_problem(body, raw)
    if problem:
        return _bad_request(problem)
    if not body["conversation"].get("id"):
        return _bad_request("Activity is missing 'conversation.id'")
    if not body.get("channelId"):
        return _bad_request("Activity is missing 'channelId'")
    if kind in (ActivityTypes.message, ActivityTypes.invoke) and not field_at(body, "from.id"):
        return _bad_request("Activity is missing 'from.id'")
    if kind == ActivityTypes.conversation_update and body["channelId"] == "msteams" and not body.get("channelData"):
        return _bad_request("Activity is missing 'channelData'")  # Teams always sends it; the SDK relies on it
    try:
        activity = from_json(Activity, body)
    except Exception:  # noqa: BLE001 - msrest raises several types (and RecursionError) for malformed fields
        return _bad_request("Activity has malformed fields")
    auth_header = request.headers.get("Authorization", "")
    try:
        response = await parts.adapter.process_activity(
            auth_header, activity, observability.logic(turn, parts.bot.on_turn)
        )
    except PermissionError:
        return web.json_response({"error": "Unauthorized"}, status=401)
    if response is not None:
        body = response.body
        return (
            web.json_response(body, status=response.status)
            if body is not None
            else web.Response(status=response.status)
        )
    return web.Response(status=200)


async def _aup_page(request: web.Request) -> web.Response:
    """The full text of one AUP version (HTML, or the exact Markdown with ?format=md), for the card's link."""
    page = request.app[COMPONENTS].features.aup_page
    found = (
        await page(
            request.match_info["school"],
            request.match_info["audience"],
            request.match_info["version"],
            request.query.get("format", "html"),
        )
        if page
        else None
    )
    if found is None:
        return web.Response(status=404, text="There is no such policy version.")
    content_type, body = found
    return web.Response(text=body, content_type=content_type, charset="utf-8")


async def _healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    parts: Components = request.app[COMPONENTS]
    try:
        pending = await pending_migrations(parts.engine)
    except Exception as exc:  # noqa: BLE001 - any database fault means not ready
        return web.json_response({"status": "unavailable", "database": exc.__class__.__name__}, status=503)
    if pending:
        return web.json_response({"status": "migrating", "pending": sorted(pending)}, status=503)
    # Ready still means ready; the count tells an operator that some alerts never reached a person this week.
    async with parts.uow() as uow:
        undelivered = await uow.deliveries.count_failed(parts.clock.now() - dt.timedelta(days=7))
    watch = parts.features.audit_watch
    return web.json_response(
        {"status": "ready", "undelivered_last_7_days": undelivered, "audit": watch.status if watch else "not checked"}
    )


def _configure_logging(settings: Settings) -> None:
    configure_logging(settings.log_level, resolve_format(settings.log_format, settings.dev))


def _load(settings: Settings) -> AppConfig:
    problem = settings.startup_problem()
    if problem:
        raise SystemExit(f"eSafety bot will not start: {problem}")
    try:
        config = load_config(settings.config_path)
        load_policy(settings.policy_path)
        data_cipher(settings)
    except ConfigError as exc:
        raise SystemExit(f"eSafety bot will not start: invalid configuration: {exc}") from exc
    except KeyError_ as exc:
        raise SystemExit(f"eSafety bot will not start: {exc}") from exc
    return config


async def _migrate_only(settings: Settings) -> None:
    engine = create_engine(settings.database_url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


async def _rotate_key(settings: Settings) -> int:
    """Re-seal every encrypted value under ESAFETY_DATA_KEY; safe beside the running app and safe to re-run."""
    from storage.rotation import rotate

    cipher = data_cipher(settings)
    engine = create_engine(settings.database_url)
    try:
        await upgrade(engine)  # older rows get their row keys from the schema this needs
        print(f"Re-sealing under key {cipher.key_id}.")
        tallies = await rotate(session_factory(engine), cipher)
    finally:
        await engine.dispose()
    for name, tally in tallies.items():
        print(f"{name}: {tally.changed} of {tally.checked} re-sealed")
    print("Done. Keys in ESAFETY_DATA_KEYS_OLD are no longer needed once every replica runs with this key.")
    return 0


async def _verify_audit(settings: Settings, config: AppConfig) -> int:
    """Check every school's chain; one line each; 0 when all hold, 1 on any break, 3 when not migrated."""
    engine = create_engine(settings.database_url)
    try:
        pending = await pending_migrations(engine)
        if pending:
            print("The database needs migrating first: run `python app.py migrate`.", file=sys.stderr)
            return 3
        uow = unit_of_work_factory(
            session_factory(engine), data_cipher(settings), SystemClock(), audit_keys=audit_keyring(settings)
        )
        watch = AuditWatch(uow, audit_keyring(settings), CheckpointFile(settings.var_dir), SystemClock(), config)
        checks = await watch.check_all()
    finally:
        await engine.dispose()
    for check in checks:
        print(check.line())
    return 1 if any(check.broken for check in checks) else 0


async def _serving(settings: Settings, config: AppConfig) -> web.Application:
    return serve_long_lived(await create_app(settings, config))


def main(argv: list[str]) -> int:
    try:
        settings = Settings()
    except Exception as exc:  # noqa: BLE001 - pydantic names the bad variable
        print(f"eSafety bot will not start: invalid setting: {exc}", file=sys.stderr)
        return 2
    _configure_logging(settings)
    try:
        config = _load(settings)
    except SystemExit as exc:
        print(str(exc), file=sys.stderr)
        return 2
    command = argv[1] if len(argv) > 1 else "serve"
    if command == "migrate":
        asyncio.run(_migrate_only(settings))
        print("Database is up to date.")
        return 0
    if command == "verify-audit":
        return asyncio.run(_verify_audit(settings, config))
    if command == "rotate-key":
        return asyncio.run(_rotate_key(settings))
    if command != "serve":
        print("usage: python app.py [serve|migrate|verify-audit|rotate-key]", file=sys.stderr)
        return 2
    web.run_app(
        _serving(settings, config),
        host=settings.host,
        port=settings.port,
        shutdown_timeout=30,
        print=lambda _: print(f"eSafety bot listening on http://{settings.host}:{settings.port}/api/messages"),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
