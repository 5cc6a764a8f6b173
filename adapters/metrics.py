"""Prometheus metrics on GET /metrics, behind a bearer token, from a registry of this app's own.

Each app has its own CollectorRegistry (never prometheus-client's global one), so several apps in one process (the
tests, two replicas in one run) count apart. Counters move as things happen; the outbox and audit figures are read
when scraped, by one short read-only query, so an idle app does no work for them.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from storage.outbox_stats import OutboxBacklog

log = logging.getLogger(__name__)

UNDELIVERED_WINDOW = dt.timedelta(days=7)  # as /readyz counts them
# A turn must be answered within Teams' 15 s; most take tens of milliseconds.
TURN_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0)
# Due work normally starts within a poll (2 s); minutes mean the runner is behind or was down.
LAG_BUCKETS = (0.5, 1.0, 2.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0, 4 * 3600.0)


@dataclass
class ScrapeSources:
    """Where the scrape-time figures come from; set once the app's database is up."""

    backlog: Callable[[dt.datetime], Awaitable[OutboxBacklog]]
    now: Callable[[], dt.datetime]
    audit_status: Callable[[], str | None]  # AuditWatch.status: "intact", a break's description, or not checked


class _ScrapeTimeCollector(Collector):
    """Gauges read from the database just before each scrape (collect() itself must not do I/O: it is sync)."""

    def __init__(self) -> None:
        self.sources: ScrapeSources | None = None
        self._families: list[Metric] = []

    def describe(self) -> Iterable[Metric]:
        return []  # nothing at registration: the database is not up yet

    def collect(self) -> Iterable[Metric]:
        return list(self._families)

    async def refresh(self) -> None:
        sources = self.sources
        if sources is None:
            self._families = []
            return
        families: list[Metric] = []
        now = sources.now()
        try:
            backlog = await sources.backlog(now - UNDELIVERED_WINDOW)
        except Exception as exc:  # noqa: BLE001 - a scrape reports what it can; the database may be down
            log.warning("metrics: could not read the outbox (%s)", exc.__class__.__name__)
        else:
            age = (now - backlog.oldest_queued).total_seconds() if backlog.oldest_queued is not None else 0.0
            families += [
                GaugeMetricFamily(
                    "esafety_outbox_depth", "Proactive sends queued and not yet delivered or given up.", backlog.unsent
                ),
                GaugeMetricFamily(
                    "esafety_outbox_oldest_age_seconds",
                    "How long the longest-waiting unsent send has been queued (0 when none).",
                    max(age, 0.0),
                ),
                GaugeMetricFamily(
                    "esafety_undelivered_alerts",
                    "Tracked sends (alerts) that never reached their person in the last 7 days, as /readyz counts.",
                    backlog.undelivered,
                ),
            ]
        status = sources.audit_status()
        if status is not None and status != "not checked yet":
            families.append(
                GaugeMetricFamily(
                    "esafety_audit_verified",
                    "1 when every school's audit trail verified at its last check, 0 when one is broken.",
                    1 if status == "intact" else 0,
                )
            )
        self._families = families


class Metrics:
    """The app's counters and histograms; the worker and the connector report through the small methods below."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.turns = Counter(
            "esafety_turns",
            "Inbound activities by kind (message, card verb, invoke name, other) and outcome.",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.turn_seconds = Histogram(
            "esafety_turn_duration_seconds",
            "Time to answer an inbound activity, by activity type.",
            ["activity_type"],
            buckets=TURN_BUCKETS,
            registry=self.registry,
        )
        self.connector_retries = Counter(
            "esafety_connector_retries",
            "Bot Connector calls retried within the call, by the status that caused it.",
            ["status"],
            registry=self.registry,
        )
        self.connector_throttled = Counter(
            "esafety_connector_throttled",
            "Bot Connector answers of 429 Too Many Requests, retried or not.",
            registry=self.registry,
        )
        self.work_lag = Histogram(
            "esafety_work_lag_seconds",
            "How late durable work started against its due time, by kind.",
            ["kind"],
            buckets=LAG_BUCKETS,
            registry=self.registry,
        )
        self.work_retries = Counter(
            "esafety_work_retries",
            "Durable work items rescheduled after a failure, by kind.",
            ["kind"],
            registry=self.registry,
        )
        self.work_failed = Counter(
            "esafety_work_failed",
            "Durable work items given up, by kind.",
            ["kind"],
            registry=self.registry,
        )
        self._turn_children: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}
        self.scraped = _ScrapeTimeCollector()
        self.registry.register(self.scraped)

    # --- reported by the parts -------------------------------------------------------------------------------

    def turn(self, activity_type: str, kind: str, outcome: str, seconds: float) -> None:
        # Every turn counts here, and labels() validates and locks each time: its children are kept per label set
        # (a few dozen at most: every label is one of the known names, adapters.logs.KnownNames).
        key = (activity_type, kind, outcome)
        children = self._turn_children.get(key)
        if children is None:
            children = self._turn_children[key] = (
                self.turns.labels(kind, outcome),
                self.turn_seconds.labels(activity_type),
            )
        counted, timed = children
        counted.inc()
        timed.observe(seconds)

    def connector_answered(self, status: int) -> None:
        if status == 429:
            self.connector_throttled.inc()

    def connector_retrying(self, status: int) -> None:
        self.connector_retries.labels(str(status)).inc()

    def work_started(self, kind: str, late: dt.timedelta) -> None:
        self.work_lag.labels(kind).observe(max(late.total_seconds(), 0.0))

    def work_retried(self, kind: str) -> None:
        self.work_retries.labels(kind).inc()

    def work_gave_up(self, kind: str) -> None:
        self.work_failed.labels(kind).inc()

    # --- the endpoint ----------------------------------------------------------------------------------------

    async def exposition(self) -> bytes:
        await self.scraped.refresh()
        return generate_latest(self.registry)


def metrics_route(metrics: Metrics, token: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    """GET /metrics: 404 while no token is set (off by default), 401 without the right bearer token."""
    expected = f"Bearer {token}".encode()

    async def handle(request: web.Request) -> web.Response:
        if not token:
            return web.Response(status=404, text="Not found.")
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return web.Response(
                status=401,
                text="Unauthorized: send Authorization: Bearer <token>.",
                headers={"WWW-Authenticate": "Bearer"},
            )
        body = await metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    return handle
