"""Cards that are not urgent wait for a quiet moment in the person's chat; urgent alerts never wait."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.clock import SettableClock
from tests.support.harness import Harness, start_harness
from tests.support.teams import TeamsUser
from tests.test_incidents import answer, confirmation, up_to_the_danger_question

AUP = "aup.acknowledge"


@pytest.fixture
async def harness(database_url: str, clock: SettableClock, tmp_path: Path) -> AsyncIterator[Harness]:
    """The background worker is off: only run_due_work() sends, so what has been sent is known at each step."""
    async with start_harness(
        database_url=database_url, clock=clock, var_dir=tmp_path / "var", worker_enabled=False
    ) as running:
        yield running


def _aup_cards(harness: Harness, user: TeamsUser) -> list[dict]:
    return [c for s in harness.connector.to(user.conversation_id) for c in s.cards if AUP in json.dumps(c)]


async def test_the_aup_card_waits_until_the_report_is_finished_and_the_chat_has_been_quiet(harness: Harness) -> None:
    assert harness.settings.quiet_idle_minutes == 3
    leah = harness.user("Leah Brooks")
    await up_to_the_danger_question(leah)  # half-way through a report
    await harness.run_due_work()  # the daily AUP check asks everyone who owes it, Leah included
    assert _aup_cards(harness, leah) == []
    harness.clock.advance(hours=2)  # she has gone to teach; the report is still open
    await harness.run_due_work()
    assert _aup_cards(harness, leah) == []

    await leah.says("No")  # back: she carries on where she was
    for text in ("Online", "Today at lunch", "JS, Year 8", "Mean messages", "Screenshots", "Nothing yet"):
        await leah.says(text)
    done = await leah.says("submit")
    assert confirmation(done) and AUP not in done.everything
    await harness.run_due_work()
    assert _aup_cards(harness, leah) == []
    harness.clock.advance(minutes=2)  # not yet quiet for the setting
    await harness.run_due_work()
    assert _aup_cards(harness, leah) == []
    await leah.says("my reports")  # any word from her starts the quiet period again
    harness.clock.advance(minutes=3)
    await harness.run_due_work()
    assert _aup_cards(harness, leah) == []

    harness.clock.advance(minutes=2)  # now quiet for the setting (and the minute activity is recorded to)
    await harness.run_due_work()
    assert len(_aup_cards(harness, leah)) == 1
    sends = [
        w
        for w in await harness.parts.claims.list("send")
        if AUP in json.dumps(w.payload) and w.payload["target"].get("id") == leah.aad_id
    ]
    assert [(w.status, w.attempts) for w in sends] == [("done", 1)]  # waiting used up none of its tries


async def test_an_urgent_alert_reaches_a_dsl_at_once_in_the_middle_of_her_own_report(harness: Harness) -> None:
    priya, leah = harness.user("Priya Shah"), harness.user("Leah Brooks")
    await up_to_the_danger_question(priya)  # the DSL is half-way through a report of her own
    await harness.run_due_work()  # her AUP card is queued now, and held back
    await up_to_the_danger_question(leah)
    raised = await leah.says("Yes, someone is in danger now")
    assert any("Urgent alert raised: ES-2026-0001" in t for t in raised.texts)
    await harness.run_due_work()  # no clock change: nothing has been quiet for any time
    to_priya = harness.connector.to(priya.conversation_id)
    assert any("Urgent online-safety concern ES-2026-0001" in s.text for s in to_priya)
    assert _aup_cards(harness, priya) == []


async def test_a_report_left_unfinished_for_a_day_no_longer_holds_cards_back(harness: Harness) -> None:
    leah = harness.user("Leah Brooks")
    await up_to_the_danger_question(leah)
    await harness.run_due_work()
    harness.clock.advance(hours=23)
    await harness.run_due_work()
    assert _aup_cards(harness, leah) == []
    harness.clock.advance(hours=1, minutes=5)  # past the hold: the report was abandoned
    await harness.run_due_work()
    assert len(_aup_cards(harness, leah)) >= 1


async def test_cards_reach_someone_who_finished_a_report_long_ago(harness: Harness) -> None:
    leah = harness.user("Leah Brooks")
    await answer(leah)
    await leah.says("submit")
    harness.clock.advance(minutes=4)
    await harness.run_due_work()
    assert len(_aup_cards(harness, leah)) == 1
