"""Observability, as an operator meets it: GET /metrics behind its token, counters that move with real turns, outbox
gauges read from the database, one log line per turn with no personal data, and a scheduler that stays quiet."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from adapters.clock import SettableClock
from adapters.logs import TURN_LOGGER, JsonFormatter
from adapters.scheduler import start_wake_scheduler, stop_wake_scheduler
from bot.actor import Command, Turn
from bot.wiring import Wiring
from tests.support.harness import DEMO_CONFIG, Harness, start_harness

TOKEN = "metrics-token-for-tests-0123456789"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
async def app(database_url: str, clock: SettableClock, tmp_path: Path) -> AsyncIterator[Harness]:
    """The real app with metrics on; the worker runs only when a test says so, so queued sends stay queued."""
    async with start_harness(
        database_url=database_url, clock=clock, var_dir=tmp_path / "var", metrics_token=TOKEN, worker_enabled=False
    ) as running:
        yield running


async def get_metrics(harness: Harness, authorization: str | None = f"Bearer {TOKEN}") -> tuple[int, str]:
    headers = {"Authorization": authorization} if authorization is not None else {}
    async with harness.http.get(f"{harness.url}/metrics", headers=headers) as response:
        return response.status, await response.text()


async def scrape(harness: Harness) -> Samples:
    status, text = await get_metrics(harness)
    assert status == 200, text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def turns(samples: Samples, kind: str, outcome: str) -> float:
    return value(samples, "esafety_turns_total", kind=kind, outcome=outcome)


async def test_metrics_need_the_token_and_count_real_turns(app: Harness) -> None:
    assert (await get_metrics(app, None))[0] == 401
    assert (await get_metrics(app, "Bearer not-the-token"))[0] == 401
    assert (await get_metrics(app, TOKEN))[0] == 401  # the token alone, without "Bearer"

    before = await scrape(app)
    tom = app.user("Tom Reed")
    first = tom.message("help")
    assert (await tom.post(first, tom.conversation_id)).status == 200
    await tom.redelivers(first)  # Teams delivers the same activity again: no second effect, and counted as such
    await tom.executes("no.such.verb")
    async with app.http.post(f"{app.url}/api/messages", json={"type": "message"}) as response:
        assert response.status == 400
    after = await scrape(app)

    assert turns(after, "message", "ok") - turns(before, "message", "ok") == 1
    assert turns(after, "message", "duplicate") - turns(before, "message", "duplicate") == 1
    assert turns(after, "card:other", "ok") - turns(before, "card:other", "ok") == 1
    assert turns(after, "message", "400") - turns(before, "message", "400") == 1
    latency = "esafety_turn_duration_seconds_count"
    assert value(after, latency, activity_type="message") - value(before, latency, activity_type="message") == 3
    assert value(after, latency, activity_type="invoke") - value(before, latency, activity_type="invoke") == 1
    assert value(after, "esafety_audit_verified") == 1


async def test_metrics_are_off_until_a_token_is_set(harness: Harness) -> None:
    status, _ = await get_metrics(harness)
    assert status == 404


@pytest.fixture
async def bare(database_url: str, clock: SettableClock, tmp_path: Path) -> AsyncIterator[Harness]:
    """The app without its features, so the only durable work is what a test queues."""
    async with start_harness(
        database_url=database_url,
        clock=clock,
        var_dir=tmp_path / "var",
        features=[],
        metrics_token=TOKEN,
        worker_enabled=False,
    ) as running:
        yield running


async def test_outbox_gauges_and_work_figures_follow_a_queued_send(bare: Harness, clock: SettableClock) -> None:
    app = bare
    school, person = app.school.id, app.person_id("Tom Reed")
    tom = app.user("Tom Reed")
    await tom.says("help")  # the bot learns where Tom's chat is
    empty = await scrape(app)
    assert value(empty, "esafety_outbox_depth") == 0
    assert value(empty, "esafety_outbox_oldest_age_seconds") == 0
    assert value(empty, "esafety_undelivered_alerts") == 0

    async with app.parts.uow() as uow:
        await uow.notify.to_person(school, person, text="A reminder from the online-safety lead.")
    clock.advance(minutes=5)
    queued = await scrape(app)
    assert value(queued, "esafety_outbox_depth") == 1
    assert value(queued, "esafety_outbox_oldest_age_seconds") == 300

    app.connector.fail_next(503, headers={"Retry-After": "60"}, conversation_id=tom.conversation_id)
    await app.run_due_work()  # the send fails and is rescheduled, durably, for a minute on
    retried = await scrape(app)
    assert value(retried, "esafety_work_retries_total", kind="send") == 1
    assert value(retried, "esafety_outbox_depth") == 1
    assert value(retried, "esafety_work_lag_seconds_sum", kind="send") == 300  # it started 5 minutes after due

    clock.advance(seconds=90)
    await app.run_due_work()
    assert [s.text for s in app.connector.to(tom.conversation_id)][-1] == "A reminder from the online-safety lead."
    sent = await scrape(app)
    assert value(sent, "esafety_outbox_depth") == 0
    assert value(sent, "esafety_outbox_oldest_age_seconds") == 0
    assert value(sent, "esafety_work_lag_seconds_count", kind="send") == 2
    assert value(sent, "esafety_work_lag_seconds_sum", kind="send") == 300 + 30


async def test_connector_throttling_is_counted(app: Harness) -> None:
    tom = app.user("Tom Reed")
    app.connector.fail_next(429, headers={"Retry-After": "0"}, conversation_id=tom.conversation_id)
    reply = await tom.says("help")
    assert reply.replies, "the reply was retried after the 429 and arrived"
    samples = await scrape(app)
    assert value(samples, "esafety_connector_throttled_total") == 1
    assert value(samples, "esafety_connector_retries_total", status="429") == 1


async def test_each_turn_logs_one_line_without_personal_data(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=TURN_LOGGER)
    tom = harness.user("Tom Reed")
    person = next(p for p in harness.school.people if p.name == "Tom Reed")
    typed = "Jamie Smith in Year 6 showed me something worrying"
    await tom.says(typed)
    await tom.executes("no.such.verb", {"note": typed})

    lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records if r.name == TURN_LOGGER]
    assert [line["kind"] for line in lines] == ["message", "card:other"]
    for line in lines:
        assert line["message"] == "turn"
        assert len(line["correlation_id"]) == 8
        assert line["school"] == harness.school.id
        assert line["outcome"] == "ok"
        assert isinstance(line["latency_ms"], float) and line["latency_ms"] >= 0
    everything = "\n".join(
        [JsonFormatter().format(r) for r in caplog.records] + [r.getMessage() for r in caplog.records]
    )
    for personal in (typed, "Jamie", "Tom Reed", person.email, person.id, tom.aad_id):
        assert personal not in everything
    assert len({line["correlation_id"] for line in lines}) == 2


def _failing_feature(wiring: Wiring) -> None:
    async def run(_turn: Turn, _args: str) -> None:
        raise RuntimeError("a fault inside the bot")

    wiring.services.add_command(Command("break", "Break", "Test only.", run))


async def test_a_failed_turn_is_logged_with_the_id_the_person_is_given(
    database_url: str, clock: SettableClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=TURN_LOGGER)
    async with start_harness(
        database_url=database_url,
        clock=clock,
        var_dir=tmp_path / "var",
        features=[_failing_feature],
        metrics_token=TOKEN,
        worker_enabled=False,
    ) as app:
        reply = await app.user("Tom Reed").says("break")
        samples = await scrape(app)
    [line] = [r.turn for r in caplog.records if r.name == TURN_LOGGER]  # type: ignore[attr-defined]
    assert line["outcome"] == "error"
    assert f"quote {line['correlation_id']}" in reply.texts[0]  # an operator finds the turn from what they are told
    assert turns(samples, "message", "error") == 1


async def test_a_client_cannot_write_its_own_words_into_the_log(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """Invoke names are the client's to choose: only ones the app answers are logged (and used as labels)."""
    caplog.set_level(logging.INFO, logger=TURN_LOGGER)
    tom = harness.user("Tom Reed")
    await tom.post(tom.invoke("Call me on 07700 900123", {}), tom.conversation_id)
    await tom.post(tom.invoke("healthCheck", {}), tom.conversation_id)
    kinds = [r.turn["kind"] for r in caplog.records if r.name == TURN_LOGGER]  # type: ignore[attr-defined]
    assert kinds == ["invoke:other", "invoke:healthCheck"]
    assert "07700" not in caplog.text


async def test_the_scheduler_is_quiet_at_info(caplog: pytest.LogCaptureFixture) -> None:
    from bot.config import load_config

    scheduler_log = logging.getLogger("apscheduler")
    scheduler_log.setLevel(logging.NOTSET)  # as in a fresh process, before anything configured it
    caplog.set_level(logging.INFO)
    woken = 0
    ticked = asyncio.Event()

    def wake() -> None:
        nonlocal woken
        woken += 1
        if woken >= 3:
            ticked.set()

    scheduler = start_wake_scheduler(wake, load_config(DEMO_CONFIG), poll_seconds=0.05)
    try:
        await asyncio.wait_for(ticked.wait(), timeout=30)
    finally:
        stop_wake_scheduler(scheduler)
    assert [r.getMessage() for r in caplog.records if r.name.startswith("apscheduler")] == []
    assert [r.name for r in caplog.records] == ["adapters.scheduler"]  # its one line at start-up
