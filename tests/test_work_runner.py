"""The durable work runner, on SQLite and PostgreSQL: a long item (a sweep that queues thousands of cards) does not
hold back the work queued while it runs, and everything claimed is run exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from adapters.clock import SettableClock
from adapters.worker import WorkRunner
from bot.work import GiveUp, Then, WorkItem
from storage.crypto import FieldCipher, parse_key
from storage.db import create_engine, session_factory
from storage.migrate import upgrade
from storage.repos import WorkClaims
from storage.uow import SqlUnitOfWork, unit_of_work_factory
from tests.support.harness import TEST_DATA_KEY


@dataclass
class Rig:
    runner: WorkRunner
    uow: Callable[[], SqlUnitOfWork]


@pytest.fixture
async def rig(database_url: str, clock: SettableClock) -> AsyncIterator[Rig]:
    engine = create_engine(database_url)
    await upgrade(engine)
    cipher = FieldCipher(parse_key(TEST_DATA_KEY))
    sessions = session_factory(engine)
    runner = WorkRunner(WorkClaims(sessions, cipher, clock), clock, "test-runner", batch=5)
    try:
        yield Rig(runner, unit_of_work_factory(sessions, cipher, clock, on_work_committed=runner.wake))
    finally:
        await engine.dispose()


async def _queue(rig: Rig, clock: SettableClock, kind: str, n: int) -> None:
    async with rig.uow() as uow:
        await uow.work.schedule("school", kind, clock.now(), {"n": n})


async def test_work_queued_by_a_long_item_runs_while_it_is_still_running(rig: Rig, clock: SettableClock) -> None:
    release = asyncio.Event()
    ran: list[str] = []

    async def sweep(item: WorkItem) -> str:
        for n in range(3):  # queues its sends, then goes on with something long
            await _queue(rig, clock, "send", n)
        await release.wait()
        ran.append("sweep")
        return "done"

    async def send(item: WorkItem) -> str:
        ran.append(f"send {item.payload['n']}")
        if len(ran) == 3:
            release.set()  # every send went out while the sweep was still running
        return "sent"

    rig.runner.register("sweep", sweep)
    rig.runner.register("send", send)
    await _queue(rig, clock, "sweep", 0)
    # Before, the runner claimed nothing more until its whole batch had finished: the sweep would wait for ever for
    # sends that were never started. The bound turns such a hang into a failure; it measures nothing.
    assert await asyncio.wait_for(rig.runner.run_until_settled(), timeout=120) == 4
    assert sorted(ran[:3]) == ["send 0", "send 1", "send 2"] and ran[3] == "sweep"


async def test_more_due_items_than_a_batch_all_run_once(rig: Rig, clock: SettableClock) -> None:
    seen: list[int] = []

    async def send(item: WorkItem) -> str:
        seen.append(item.payload["n"])
        return "sent"

    rig.runner.register("send", send)
    for n in range(23):  # more than four batches of five
        await _queue(rig, clock, "send", n)
    assert await rig.runner.run_until_settled() == 23
    assert sorted(seen) == list(range(23))


async def test_the_replicas_sending_are_those_holding_a_live_send_lease(rig: Rig, clock: SettableClock) -> None:
    """Each replica's part of Teams' send budget follows this count (adapters.send_budget.BudgetShare)."""
    claims: WorkClaims = rig.runner._claims  # noqa: SLF001 - the runner's own claims, as the app wires them
    for n in range(4):
        await _queue(rig, clock, "send", n)
    await _queue(rig, clock, "sweep", 0)
    assert await claims.holders("send") == 0
    lease = dt.timedelta(seconds=60)
    assert len(await claims.claim("replica-a", ["send"], 2, lease)) == 2
    assert await claims.holders("send") == 1
    assert len(await claims.claim("replica-b", ["send"], 2, lease)) == 2
    await claims.claim("replica-c", ["sweep"], 1, lease)  # holding other work is not sending
    assert await claims.holders("send") == 2
    clock.advance(seconds=61)  # a replica that died holding sends stops counting when its leases run out
    assert await claims.holders("send") == 0


async def test_an_urgent_send_is_claimed_before_quiet_ones_that_were_due_first(rig: Rig, clock: SettableClock) -> None:
    """A publish queues its AUP cards (quiet: they may wait); a concern's alert queued after them goes first."""
    claims: WorkClaims = rig.runner._claims  # noqa: SLF001 - the runner's own claims, as the app wires them
    async with rig.uow() as uow:
        for n in range(6):
            await uow.notify.to_person("school", f"staff-{n}", text=f"AUP card {n}", quiet=True)
    clock.advance(seconds=1)
    async with rig.uow() as uow:
        await uow.notify.to_channel("school", "dsl", text="New online-safety concern")
    clock.advance(seconds=1)
    async with rig.uow() as uow:
        await uow.notify.to_person("school", "staff-9", text="AUP card 9", quiet=True)
    lease = dt.timedelta(seconds=60)
    first = await claims.claim("replica-a", ["send"], 3, lease)
    assert [item.payload["text"] for item in first] == ["New online-safety concern", "AUP card 0", "AUP card 1"]
    rest = await claims.claim("replica-a", ["send"], 10, lease)
    assert [item.payload["text"] for item in rest] == [*(f"AUP card {n}" for n in range(2, 6)), "AUP card 9"]


async def test_urgent_work_runs_at_once_while_the_runners_hands_are_full_of_quiet_sends_that_hang(
    rig: Rig, clock: SettableClock
) -> None:
    """A publish's cards fill the runner's hands and hang on an endpoint that has stopped answering. A concern's
    alert queued meanwhile still runs, and so does the send it is re-routed to when it cannot be delivered: each is
    claimed apart from the cards and runs in slots of its own, not after a card has gone."""
    stuck, full, rerouted = asyncio.Event(), asyncio.Event(), asyncio.Event()
    hanging: list[str] = []
    ran: list[str] = []

    async def send(item: WorkItem) -> str:
        text = item.payload["text"]
        if item.payload.get("quiet"):
            hanging.append(text)
            if len(hanging) == 5:
                full.set()
            await stuck.wait()
        elif text == "New online-safety concern":
            ran.append(text)
            then = Then("send", {"target": {"kind": "person", "id": "deputy"}, "text": "Passed to the deputy DSL"})
            raise GiveUp("undeliverable: the DSL has blocked the bot", then=(then,))
        else:
            ran.append(text)
            rerouted.set()
        return "sent"

    rig.runner.register("send", send)
    async with rig.uow() as uow:
        for n in range(5):  # the rig's batch: the runner's hands are full
            await uow.notify.to_person("school", f"staff-{n}", text=f"AUP card {n}", quiet=True)
    working = asyncio.create_task(rig.runner.run_forever(poll_seconds=3600))
    try:
        await full.wait()
        async with rig.uow() as uow:
            await uow.notify.to_channel("school", "dsl", text="New online-safety concern")
        # The bound turns a wait for a card to go (never, here) into a failure; it measures nothing.
        await asyncio.wait_for(rerouted.wait(), timeout=30)
        assert ran == ["New online-safety concern", "Passed to the deputy DSL"]
        assert len(hanging) == 5, "no card had gone, and none was started twice"
    finally:
        stuck.set()
        working.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await working
