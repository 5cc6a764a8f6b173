"""Publishing an AUP answers at once and the worker sends the cards; the per-turn follow-up and its cache."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.clock import SettableClock
from bot.aup import Audience, FollowUpCache
from tests.support.aup_cards import SUBMIT, aup_cards, staff_of
from tests.support.harness import Harness, start_harness
from tests.support.teams import TeamsUser

QUIET = {"minutes": 2}  # with no idle period, a quiet card waits one activity-recording interval


@pytest.fixture
async def harness(database_url: str, clock: SettableClock, tmp_path: Path) -> AsyncIterator[Harness]:
    """The whole app on SQLite and PostgreSQL, its worker off (only run_due_work() runs due work)."""
    async with start_harness(
        database_url=database_url,
        clock=clock,
        var_dir=tmp_path / "var",
        worker_enabled=False,
        quiet_idle_minutes=0,
    ) as running:
        yield running


def _ticked(card: dict) -> dict:
    return {**card["actions"][0]["data"], "read_kcsie": "true", "agree": "true"}


async def _everyone_has_version_1(harness: Harness, people: list[TeamsUser]) -> None:
    """Everyone opens the app and, once their chat is quiet, has the card for version 1."""
    for user in people:
        await user.installs()
    harness.clock.advance(**QUIET)
    await harness.run_due_work()
    assert all(len(aup_cards(harness, user, 1)) == 1 for user in people)


async def _publish_action(sam: TeamsUser) -> dict:
    preview = await sam.says("aup publish staff")
    card = next(c for c in preview.cards if "aup.publish" in json.dumps(c))
    action: dict = card["actions"][0]
    return action


async def test_publish_answers_first_and_the_worker_then_brings_every_member_of_staff_the_card(
    harness: Harness,
) -> None:
    staff = staff_of(harness)
    governors = [harness.user("Ruth Evans"), harness.user("Ben Carter")]
    await _everyone_has_version_1(harness, [*staff, *governors])
    sam = harness.user("Sam Patel")

    action = await _publish_action(sam)
    published = await sam.executes(action["verb"], action["data"])
    message = published.invoke_message or ""
    assert "Published version 2 of the staff AUP" in message
    assert f"on its way to the {len(staff):,} people who need to acknowledge it" in message
    assert "`aup status`" in message and "sent the card" not in message
    # The answer came before anyone was asked: asking is the worker's job, not the card action's.
    assert not any(aup_cards(harness, user, 2) for user in staff)
    status = json.dumps((await sam.says("aup status")).card)
    assert f"**Staff** (version 2): 0% acknowledged, 0 of {len(staff)}" in status
    assert "Leah Brooks: not asked yet" in status

    harness.clock.advance(**QUIET)
    await harness.run_due_work()
    assert [len(aup_cards(harness, user, 2)) for user in staff] == [1] * len(staff)
    assert not any(aup_cards(harness, user, 2) for user in governors)  # the governors' AUP did not change
    status = json.dumps((await sam.says("aup status")).card)
    assert "Leah Brooks: asked 23 Nov, 0 reminders" in status and "not asked yet" not in status


async def test_publishing_twice_or_running_the_sweep_twice_brings_each_person_one_card(harness: Harness) -> None:
    staff = staff_of(harness)
    await _everyone_has_version_1(harness, staff)
    sam = harness.user("Sam Patel")
    action = await _publish_action(sam)
    assert "Published version 2" in ((await sam.executes(action["verb"], action["data"])).invoke_message or "")
    again = await sam.executes(action["verb"], action["data"])  # a double click, or Teams retrying the invoke
    assert "already published" in (again.invoke_message or "")

    # The same sweep queued again under another key, as a retry on a second replica would run it: the worker takes
    # both in one batch and runs them side by side.
    async with harness.parts.uow() as uow:
        await uow.work.schedule(
            harness.school.id, "aup.sweep", harness.clock.now(), {"audience": "staff"}, dedupe_key="second replica"
        )
    harness.clock.advance(**QUIET)
    await harness.run_due_work()
    async with harness.parts.uow() as uow:
        await uow.work.schedule(
            harness.school.id, "aup.sweep", harness.clock.now(), {"audience": "staff"}, dedupe_key="once more"
        )
    await harness.run_due_work()

    assert [len(aup_cards(harness, user, 2)) for user in staff] == [1] * len(staff)
    async with harness.parts.uow() as uow:
        requests = await uow.aup.requests(harness.school.id, Audience.STAFF, 2, "2026-09-01")
    assert sorted(r.person_id for r in requests) == sorted(harness.person_id(u.name) for u in staff)


async def test_someone_who_has_acknowledged_gets_no_follow_up_card_after_their_next_messages(
    harness: Harness,
) -> None:
    leah = harness.user("Leah Brooks")
    shown = await leah.says("aup")
    [card] = [c for c in shown.cards if SUBMIT in json.dumps(c)]
    await leah.says("help")  # owes it, and has the card in front of her: nothing to follow up
    done = await leah.executes(SUBMIT, _ticked(card))
    assert "Your acknowledgement is recorded" in json.dumps(done.invoke_card)

    for text in ("help", "hello", "help"):
        reply = await leah.says(text)
        assert not any(SUBMIT in json.dumps(c) for c in reply.cards)
    harness.clock.advance(days=1)
    await harness.run_due_work()
    assert len(aup_cards(harness, leah, 1)) == 1  # only the one she asked for with `aup`


async def test_after_a_publish_the_next_message_follows_up_a_card_that_could_not_be_delivered(
    harness: Harness,
) -> None:
    leah, sam = harness.user("Leah Brooks"), harness.user("Sam Patel")
    await _everyone_has_version_1(harness, [leah])
    await leah.executes(SUBMIT, _ticked(aup_cards(harness, leah, 1)[0]))
    await leah.says("help")  # up to date: this process notes there is nothing to follow up for her

    action = await _publish_action(sam)
    await sam.executes(action["verb"], action["data"])
    harness.connector.fail_next(403, conversation_id=leah.conversation_id)  # she has removed the app for now
    harness.clock.advance(**QUIET)
    await harness.run_due_work()
    assert harness.connector.failed == [(403, leah.conversation_id)]
    assert not aup_cards(harness, leah, 2)

    await leah.says("help")  # back again: the publish made this process look afresh, so the card follows
    harness.clock.advance(**QUIET)
    await harness.run_due_work()
    assert len(aup_cards(harness, leah, 2)) == 1
    await leah.says("help")
    harness.clock.advance(days=1)
    await harness.run_due_work()
    assert len(aup_cards(harness, leah, 2)) == 1


async def test_a_card_that_fails_while_they_chat_follows_on_a_later_message(harness: Harness) -> None:
    leah, sam = harness.user("Leah Brooks"), harness.user("Sam Patel")
    await _everyone_has_version_1(harness, [leah])
    await leah.executes(SUBMIT, _ticked(aup_cards(harness, leah, 1)[0]))

    action = await _publish_action(sam)
    await sam.executes(action["verb"], action["data"])
    await harness.run_due_work()  # her card is queued, and waits for a pause in her chat
    await leah.says("help")  # her card is on its way: nothing to follow up yet
    harness.connector.fail_next(403, conversation_id=leah.conversation_id)
    harness.clock.advance(**QUIET)
    await harness.run_due_work()
    assert harness.connector.failed == [(403, leah.conversation_id)]

    await leah.says("help")  # a minute or more later: the failed card is noticed
    harness.clock.advance(**QUIET)
    await harness.run_due_work()
    assert len(aup_cards(harness, leah, 2)) == 1


def test_the_follow_up_cache_is_bounded_per_cycle_and_ignores_answers_from_before_a_forget() -> None:
    now = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC)
    cache = FollowUpCache(ttl=dt.timedelta(minutes=5), max_entries=3)
    for number in range(5):
        cache.settle("school", f"p{number}", Audience.STAFF, "2026-09-01", now, cache.generation)
    assert len(cache) == 3
    assert not cache.settled("school", "p0", Audience.STAFF, "2026-09-01", now)  # the oldest went first
    assert cache.settled("school", "p4", Audience.STAFF, "2026-09-01", now)
    assert not cache.settled("school", "p4", Audience.STAFF, "2027-09-01", now)  # a new cycle asks again
    assert not cache.settled("school", "p3", Audience.STAFF, "2026-09-01", now + dt.timedelta(minutes=5))

    began = cache.generation
    cache.forget_school("school")
    cache.settle("school", "p1", Audience.STAFF, "2026-09-01", now, began)  # a check that started before it
    assert not cache.settled("school", "p1", Audience.STAFF, "2026-09-01", now)
