"""Ties the turn's log line and the metrics to the running app: what each part reports and where it is served."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from aiohttp import web
from botbuilder.core import TurnContext

from adapters.logs import KnownNames, TurnRecord, current_turn, observed_turn, turn_kind
from adapters.metrics import Metrics, ScrapeSources, metrics_route
from bot.config import AppConfig
from bot.handler import BotServices, new_correlation_id
from bot.inbound import InvokeAnswer
from bot.protocols import Clock
from bot.settings import Settings
from bot.turns import ActivityNote, StateChange, TurnStart, TurnStore
from storage.outbox_stats import SqlOutboxStats

TURN_SCHOOL = "esafety.school"  # where the bot's handler keeps the school it decided on for the turn


class ObservedTurns:
    """The bot's TurnStore, noting on the current turn's record when an activity was a redelivery."""

    def __init__(self, inner: TurnStore) -> None:
        self._inner = inner

    async def begin(self, claim: str | None, state_key: str | None) -> TurnStart:
        started = await self._inner.begin(claim, state_key)
        turn = current_turn()
        if not started.claimed and turn is not None:
            turn.outcome = "duplicate"
        return started

    async def end(
        self, claim: str | None, answer: InvokeAnswer | None, state: StateChange | None, activity: ActivityNote | None
    ) -> bool:
        return await self._inner.end(claim, answer, state, activity)

    async def answered(self, claim: str) -> InvokeAnswer | None:
        return await self._inner.answered(claim)


class Observability:
    def __init__(self, config: AppConfig) -> None:
        self.metrics = Metrics()
        self.config = config
        self.known = KnownNames()

    def attach(
        self, services: BotServices, transport: Any, runner: Any, stats: SqlOutboxStats, clock: Clock, audit: Any
    ) -> None:
        """Once the app's parts exist: learn the registered invokes and verbs, and have the parts report here."""
        self.known = KnownNames(invokes=(services.invokes, services.answered_invokes), verbs=(services.card_actions,))
        if services.turns is not None:
            services.turns = ObservedTurns(services.turns)
        transport.observer = self.metrics
        runner.observer = self.metrics
        self.metrics.scraped.sources = ScrapeSources(
            backlog=stats.backlog,
            now=clock.now,
            audit_status=lambda: audit.status if audit is not None else None,
        )

    @contextmanager
    def turn(self) -> Iterator[TurnRecord]:
        """One inbound request: timed, logged in one line and counted, however it ends."""

        def counted(record: TurnRecord, seconds: float) -> None:
            self.metrics.turn(record.activity_type, record.kind, record.final_outcome(), seconds)

        with observed_turn(new_correlation_id(), on_end=counted) as record:
            yield record

    def describe(self, record: TurnRecord, body: Mapping[str, Any], activity_types: Any) -> None:
        """What the activity is and which school it is for, from tenant and team (never from what was typed)."""
        record.activity_type, record.kind = turn_kind(body, self.known, activity_types)
        conversation = body.get("conversation")
        channel_data = body.get("channelData")
        tenant = _text(conversation, "tenantId") or _text(_get(channel_data, "tenant"), "id")
        team = _text(_get(channel_data, "team"), "id")
        if tenant:
            school = self.config.school_for_tenant(tenant, team)
            record.school = school.id if school is not None else None

    def logic(
        self, record: TurnRecord, on_turn: Callable[[TurnContext], Awaitable[None]]
    ) -> Callable[[TurnContext], Awaitable[None]]:
        """The bot's turn, marking the record when it fails and taking the school the bot decided on."""

        async def run(context: TurnContext) -> None:
            try:
                await on_turn(context)
            except Exception:
                record.outcome = "error"  # the adapter's error handler tells the person; the record tells operators
                raise
            finally:
                if record.school is None:
                    record.school = getattr(context.turn_state.get(TURN_SCHOOL), "id", None)

        return run


def _get(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, dict) else None


def _text(value: Any, key: str) -> str | None:
    found = _get(value, key)
    return found if isinstance(found, str) and found else None


OBSERVABILITY = web.AppKey("esafety.observability", Observability)


def add_observability(app: web.Application, settings: Settings, config: AppConfig) -> Observability:
    """The app's metrics and turn log, and GET /metrics (off unless ESAFETY_METRICS_TOKEN is set)."""
    observability = Observability(config)
    app[OBSERVABILITY] = observability
    token = settings.metrics_token.get_secret_value().strip()
    app.router.add_get("/metrics", metrics_route(observability.metrics, token))
    return observability
