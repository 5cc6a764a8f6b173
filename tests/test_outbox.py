"""The durable outbox: proactive messages survive faults, honour the connector's answers, and survive restarts."""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.clock import SettableClock
from bot.work import MAX_DELAY
from storage.crypto import FieldCipher, parse_key
from storage.db import create_engine, session_factory
from storage.repos import SEND_KIND, WorkClaims, WorkStatus
from tests.support.harness import TEST_DATA_KEY, Harness, start_harness

# The foundation alone (features=[]): other capabilities queue their own messages, which these tests are not about.


@pytest.fixture
async def harness(database_url: str, clock: SettableClock, tmp_path: Path) -> AsyncIterator[Harness]:
    """The app with its background worker running."""
    async with start_harness(database_url=database_url, clock=clock, var_dir=tmp_path / "var", features=[]) as running:
        yield running


@pytest.fixture
async def quiet(database_url: str, clock: SettableClock, tmp_path: Path) -> AsyncIterator[Harness]:
    """The app with its background worker off, so only harness.run_due_work() sends (deterministic)."""
    async with start_harness(
        database_url=database_url, clock=clock, var_dir=tmp_path / "var", features=[], worker_enabled=False
    ) as running:
        yield running


async def _met(harness: Harness, name: str) -> str:
    """The person opens the app and says hello, so the bot learns where to reach them."""
    reply = await harness.user(name).says("hello")
    assert reply.status == 200
    return harness.person_id(name)


async def _queue_to(harness: Harness, person_id: str, text: str, dedupe_key: str | None = None) -> None:
    async with harness.parts.uow() as uow:
        await uow.notify.to_person(harness.school.id, person_id, text=text, dedupe_key=dedupe_key)


async def _sends(harness: Harness) -> list[WorkStatus]:
    return await harness.parts.claims.list(kind=SEND_KIND)


def _texts_to(harness: Harness, name: str) -> list[str]:
    return [s.text for s in harness.connector.to(harness.user(name).conversation_id) if s.op == "send"]


async def test_queued_message_is_delivered_by_the_running_worker(harness: Harness) -> None:
    person = await _met(harness, "Leah Brooks")
    await _queue_to(harness, person, "Your report ES-2026-0001 has been picked up.")
    harness.parts.runner.wake()
    await harness.connector.wait_for(lambda sent: any(s.op == "send" and "picked up" in s.text for s in sent))
    assert _texts_to(harness, "Leah Brooks") == ["Your report ES-2026-0001 has been picked up."]


async def test_delivered_once_and_marked_done(quiet: Harness) -> None:
    person = await _met(quiet, "Leah Brooks")
    await _queue_to(quiet, person, "One message.")
    assert await quiet.run_due_work() == 1
    assert await quiet.run_due_work() == 0
    assert _texts_to(quiet, "Leah Brooks") == ["One message."]
    [item] = await _sends(quiet)
    assert item.status == "done" and item.attempts == 1


async def test_429_waits_exactly_as_long_as_retry_after_says(quiet: Harness, clock: SettableClock) -> None:
    person = await _met(quiet, "Leah Brooks")
    await _queue_to(quiet, person, "After the throttle.")
    quiet.connector.fail_next(429, headers={"Retry-After": "40"})
    started = clock.now()

    await quiet.run_due_work()
    [item] = await _sends(quiet)
    assert item.status == "pending"
    assert item.run_at == started + dt.timedelta(seconds=40)
    assert "429" in (item.last_error or "")
    assert _texts_to(quiet, "Leah Brooks") == []

    clock.advance(seconds=39)
    assert await quiet.run_due_work() == 0, "must not retry before Retry-After has passed"
    assert _texts_to(quiet, "Leah Brooks") == []

    clock.advance(seconds=1)
    assert await quiet.run_due_work() == 1
    assert _texts_to(quiet, "Leah Brooks") == ["After the throttle."]


async def test_429_retry_after_as_an_http_date(quiet: Harness, clock: SettableClock) -> None:
    person = await _met(quiet, "Leah Brooks")
    await _queue_to(quiet, person, "After the dated throttle.")
    when = clock.now() + dt.timedelta(minutes=2)
    quiet.connector.fail_next(429, headers={"Retry-After": email.utils.format_datetime(when, usegmt=True)})
    await quiet.run_due_work()
    [item] = await _sends(quiet)
    assert item.status == "pending" and item.run_at == when
    clock.set(when)
    assert await quiet.run_due_work() == 1
    assert _texts_to(quiet, "Leah Brooks") == ["After the dated throttle."]


async def test_429_without_retry_after_backs_off(quiet: Harness, clock: SettableClock) -> None:
    person = await _met(quiet, "Leah Brooks")
    await _queue_to(quiet, person, "Eventually.")
    quiet.connector.fail_next(429)
    before = clock.now()
    await quiet.run_due_work()
    [item] = await _sends(quiet)
    assert item.status == "pending" and item.run_at > before
    assert await quiet.run_due_work() == 0
    clock.set(item.run_at)
    assert await quiet.run_due_work() == 1


@pytest.mark.parametrize("status", [412, 502, 503, 504])
async def test_transient_failures_are_retried_with_growing_backoff(
    quiet: Harness, clock: SettableClock, status: int
) -> None:
    person = await _met(quiet, "Leah Brooks")
    await _queue_to(quiet, person, f"Survives {status}.")
    quiet.connector.fail_next(status, times=3)

    delays = []
    for attempt in range(1, 4):
        before = clock.now()
        await quiet.run_due_work()
        [item] = await _sends(quiet)
        assert item.status == "pending" and item.attempts == attempt
        assert str(status) in (item.last_error or "")
        delays.append(item.run_at - before)
        assert dt.timedelta(seconds=1) <= delays[-1] <= MAX_DELAY
        assert await quiet.run_due_work() == 0, "nothing is retried before its backoff is over"
        clock.set(item.run_at)

    # Full jitter: each ceiling doubles, so the third wait can be anything up to four times the base.
    assert _texts_to(quiet, "Leah Brooks") == []
    assert await quiet.run_due_work() == 1
    assert _texts_to(quiet, "Leah Brooks") == [f"Survives {status}."]
    [item] = await _sends(quiet)
    assert item.status == "done" and item.attempts == 4
    assert [failure[0] for failure in quiet.connector.failed] == [status] * 3


async def test_403_is_recorded_as_undeliverable_and_not_retried(quiet: Harness, clock: SettableClock) -> None:
    person = await _met(quiet, "Leah Brooks")
    await _queue_to(quiet, person, "You will never see this.")
    quiet.connector.fail_next(403)

    assert await quiet.run_due_work() == 1
    [item] = await _sends(quiet)
    assert item.status == "failed"
    assert "403" in item.last_error and "blocked" in item.last_error
    assert item.attempts == 1

    clock.advance(hours=2)
    assert await quiet.run_due_work() == 0
    assert _texts_to(quiet, "Leah Brooks") == []
    assert quiet.connector.failed == [(403, quiet.user("Leah Brooks").conversation_id)]


async def test_message_to_someone_the_bot_never_met_fails_with_a_reason(quiet: Harness) -> None:
    await _queue_to(quiet, quiet.person_id("Ben Carter"), "Hello governor.")
    await quiet.run_due_work()
    [item] = await _sends(quiet)
    assert item.status == "failed"
    assert "not opened the app" in item.last_error


async def test_a_crashed_workers_claim_is_taken_over_after_its_lease(quiet: Harness, clock: SettableClock) -> None:
    person = await _met(quiet, "Leah Brooks")
    await _queue_to(quiet, person, "Sent once, despite the crash.")
    taken = await quiet.parts.claims.claim("worker-that-crashes", [SEND_KIND], 10, dt.timedelta(seconds=60))
    assert len(taken) == 1

    assert await quiet.run_due_work() == 0, "a live lease is respected"
    await quiet.restart()
    clock.advance(seconds=59)
    assert await quiet.run_due_work() == 0

    clock.advance(seconds=2)
    assert await quiet.run_due_work() == 1
    assert _texts_to(quiet, "Leah Brooks") == ["Sent once, despite the crash."]
    [item] = await _sends(quiet)
    assert item.status == "done"

    # The crashed worker coming back cannot overwrite the outcome.
    await quiet.parts.claims.finish(taken[0], "worker-that-crashes", "failed", error="late")
    [item] = await _sends(quiet)
    assert item.status == "done"


async def test_a_restart_loses_no_queued_message(quiet: Harness) -> None:
    people = [await _met(quiet, name) for name in ("Leah Brooks", "Tom Reed", "Priya Shah")]
    for person in people:
        await _queue_to(quiet, person, "Queued before the deploy.")
    await quiet.restart()
    assert await quiet.run_due_work() == 3
    for name in ("Leah Brooks", "Tom Reed", "Priya Shah"):
        assert _texts_to(quiet, name) == ["Queued before the deploy."]


async def test_dedupe_key_queues_a_message_once(quiet: Harness) -> None:
    person = await _met(quiet, "Leah Brooks")
    await _queue_to(quiet, person, "Reminder.", dedupe_key="reminder:1")
    await _queue_to(quiet, person, "Reminder.", dedupe_key="reminder:1")
    await quiet.run_due_work()
    assert _texts_to(quiet, "Leah Brooks") == ["Reminder."]


async def test_channel_post_goes_to_the_configured_channel_before_and_after_the_bot_joins_the_team(
    quiet: Harness,
) -> None:
    school = quiet.school
    async with quiet.parts.uow() as uow:
        await uow.notify.to_channel(school.id, "slt", text="The first post, before the bot has seen the team.")
    await quiet.run_due_work()
    [item] = await _sends(quiet)
    assert item.status == "done", "a channel id and the tenant's service URL are enough to start a thread"
    first = [s for s in quiet.connector.to(school.channels.slt) if s.op == "send"]
    assert [s.text for s in first] == ["The first post, before the bot has seen the team."]

    await quiet.channel("dsl").bot_added(by=quiet.user("Sam Patel"))
    async with quiet.parts.uow() as uow:
        await uow.notify.to_channel(school.id, "slt", text="Weekly figures are ready.")
        await uow.notify.to_channel(school.id, "dsl", text="A new concern needs triage.")
    assert await quiet.run_due_work() == 2
    slt = [s.text for s in quiet.connector.to(school.channels.slt) if s.op == "send" and s.text]
    dsl = [s.text for s in quiet.connector.to(school.channels.dsl) if s.op == "send" and s.text]
    assert slt == ["The first post, before the bot has seen the team.", "Weekly figures are ready."]
    assert dsl == ["A new concern needs triage."]


async def test_two_workers_never_take_the_same_item(quiet: Harness, database_url: str) -> None:
    person = await _met(quiet, "Leah Brooks")
    for n in range(40):
        async with quiet.parts.uow() as uow:
            await uow.notify.to_person(quiet.school.id, person, text=f"message {n}")

    cipher = FieldCipher(parse_key(TEST_DATA_KEY))
    engines = [create_engine(database_url), create_engine(database_url)]
    try:
        workers = [WorkClaims(session_factory(engine), cipher, quiet.clock) for engine in engines]

        async def drain(name: str, claims: WorkClaims) -> list[int]:
            taken: list[int] = []
            while items := await claims.claim(name, [SEND_KIND], 3, dt.timedelta(minutes=5)):
                taken.extend(item.id for item in items)
                await asyncio.sleep(0)
            return taken

        first, second = await asyncio.gather(drain("one", workers[0]), drain("two", workers[1]))
    finally:
        for engine in engines:
            await engine.dispose()

    assert not set(first) & set(second)
    assert len(first) + len(second) == 40
    assert sorted(first + second) == [item.id for item in await _sends(quiet)]
