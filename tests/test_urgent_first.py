"""Urgent before quiet: a concern's alerts go out ahead of the AUP cards a publish has already queued, and while the
cards in hand are stuck on a slow connector, over HTTP on SQLite and PostgreSQL. The work runner once took due work
oldest first, so a concern reported while a publish's cards waited went after all of them (6.5 s in `make bench`'s
2,000-card publish); then, with the cards' slots and places in the send budget shared, after those already in hand
(0.3 s there, and for as long as they hung)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.clock import SettableClock
from bot.protocols import PersonMessage
from tests.support.aup_cards import staff_of
from tests.support.connector import Sent
from tests.support.harness import Harness, start_harness
from tests.support.teams import TeamsUser
from tests.test_incidents import DSL_CHANNEL, everyone_says_hello, submit_report

QUIET = {"minutes": 2}  # with no idle period, a quiet card waits one activity-recording interval
WAITING = 40  # cards already queued: two of the work runner's batches
BATCH = 20  # the most items the work runner has in hand (adapters.worker.WorkRunner)
STARTED = 8  # of those, the most it runs at once


@pytest.fixture
async def harness(database_url: str, clock: SettableClock, tmp_path: Path) -> AsyncIterator[Harness]:
    """The whole app, its worker off: only run_due_work() sends, so what is queued waits until then."""
    async with start_harness(
        database_url=database_url, clock=clock, var_dir=tmp_path / "var", worker_enabled=False, quiet_idle_minutes=0
    ) as running:
        yield running


async def test_a_concerns_alert_goes_before_the_aup_cards_already_waiting(harness: Harness) -> None:
    sam, staff = await _staff_have_the_app(harness)
    await _a_publish_queues_cards(harness, staff)
    harness.clock.advance(seconds=1)
    reference = await submit_report(harness.user("Leah Brooks"), who="Jamie Smith, Year 8")
    harness.clock.advance(**QUIET)
    sent_before = len(harness.connector.sent)
    await harness.run_due_work()

    order = harness.connector.sent[sent_before:]
    alerted = {DSL_CHANNEL, sam.conversation_id}  # a concern of medium severity: the channel and the lead
    alerts = [i for i, s in enumerate(order) if s.conversation_id in alerted and reference in json.dumps(s.cards)]
    cards = [i for i, s in enumerate(order) if "Please read the staff AUP" in (s.text or "")]
    assert len(cards) == WAITING, "every card still went"
    assert {order[i].conversation_id for i in alerts} == alerted, "the DSL channel and the online-safety lead"
    # Claimed before every card, each alert starts in the runner's first batch; cards started with it, eight at a
    # time, may still arrive before it. Oldest first, all forty were claimed, and most sent, before any alert.
    cards_first = max(sum(1 for i in cards if i < alert) for alert in alerts)
    assert cards_first < BATCH, f"{cards_first} of the {WAITING} waiting cards reached staff before an alert"


@pytest.fixture
async def working(database_url: str, clock: SettableClock, tmp_path: Path) -> AsyncIterator[Harness]:
    """The whole app with its worker running, as deployed."""
    async with start_harness(
        database_url=database_url, clock=clock, var_dir=tmp_path / "var", quiet_idle_minutes=0
    ) as running:
        yield running


async def test_a_concerns_alert_goes_out_while_the_cards_in_hand_hang_on_a_slow_connector(working: Harness) -> None:
    """Every card the runner has started is held unanswered, as by an endpoint that has stopped answering (the
    connector's timeout is 15 s): the concern's alerts still go at once, and the cards follow when it answers."""
    harness = working
    sam, staff = await _staff_have_the_app(harness)
    hang = harness.connector.hang_when(lambda sent: "Please read the staff AUP" in (sent.text or ""))
    await _a_publish_queues_cards(harness, staff)  # its commit wakes the runner
    await hang.arrived(STARTED)  # the runner's hands are full: eight cards on the wire, twelve more waiting

    reference = await submit_report(harness.user("Leah Brooks"), who="Jamie Smith, Year 8")
    alerted = {DSL_CHANNEL, sam.conversation_id}

    def alerts(sent: list[Sent]) -> set[str]:
        return {s.conversation_id for s in sent if s.conversation_id in alerted and reference in json.dumps(s.cards)}

    # The bound is shorter than the connector's timeout, after which the held cards would end and free a place for
    # the alerts anyway; it turns a wait for a card into a failure, and measures nothing.
    await harness.connector.wait_for(lambda sent: alerts(sent) == alerted, within=5.0)
    assert not [s for s in harness.connector.sent if "Please read the staff AUP" in (s.text or "")], (
        "no card had been answered: the alerts did not wait for one"
    )
    hang.release()

    def cards(sent: list[Sent]) -> list[Sent]:
        return [s for s in sent if "Please read the staff AUP" in (s.text or "")]

    leahs = sum(1 for n in range(WAITING) if staff[n % len(staff)].name == "Leah Brooks")
    await harness.connector.wait_for(lambda sent: len(cards(sent)) >= WAITING - leahs)
    await harness.run_due_work()  # and their outcomes recorded, before the clock passes their leases
    harness.clock.advance(**QUIET)  # Leah's own cards wait for her conversation to be quiet again
    await harness.run_due_work()
    assert sorted(s.text for s in cards(harness.connector.sent)) == sorted(
        f"Please read the staff AUP ({n})" for n in range(WAITING)
    ), "each card went once"


async def _staff_have_the_app(harness: Harness) -> tuple[TeamsUser, list[TeamsUser]]:
    """The DSL channel has the bot, every member of staff has installed it, and nothing is left to send."""
    await harness.channel("dsl").bot_added(by=harness.user("Sam Patel"))
    sam = (await everyone_says_hello(harness, "Sam Patel", "Priya Shah"))["Sam Patel"]
    staff = staff_of(harness)
    for user in staff:
        await user.installs()
    harness.clock.advance(**QUIET)
    await harness.run_due_work()  # everything from before: the install greetings and the current AUP's cards
    return sam, staff


async def _a_publish_queues_cards(harness: Harness, staff: list[TeamsUser]) -> None:
    """What a publish's sweep queues, as it queues it: quiet cards, many to a batch."""
    async with harness.parts.uow() as uow:
        await uow.notify.to_people(
            harness.school.id,
            [
                PersonMessage(
                    harness.person_id(staff[n % len(staff)].name),
                    text=f"Please read the staff AUP ({n})",
                    dedupe_key=f"test-aup:{n}",
                    quiet=True,
                )
                for n in range(WAITING)
            ],
        )
