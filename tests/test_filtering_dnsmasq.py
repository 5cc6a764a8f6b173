"""The dnsmasq backend for real: private resolvers on loopback, proved by asking them DNS questions."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.clock import SettableClock
from adapters.filter_backends import DnsmasqBackend
from bot.filtering import FilterBackendError, FilterChange
from tests.support.dnsmasq import NXDOMAIN, UPSTREAM_ADDRESS, Dnsmasq, dnsmasq_binary, running_dnsmasq
from tests.support.harness import Harness
from tests.support.squid import start_filter_harness
from tests.test_filtering import HEAD, LEAD, REQUESTER, TECH, ask, deliver, everyone_opens_the_app

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(dnsmasq_binary() is None, reason="dnsmasq is not installed: run scripts/system-deps.sh"),
]
BLOCKED = "pupils-blocked.test"  # on the school's base block list
OPEN = "games.test"  # not blocked


@pytest.fixture
async def dnsmasq() -> AsyncIterator[Dnsmasq]:
    async with running_dnsmasq(baseline=[BLOCKED]) as running:
        yield running


@pytest.fixture
async def harness(database_url: str, clock: SettableClock, tmp_path: Path, dnsmasq: Dnsmasq) -> AsyncIterator[Harness]:
    async with start_filter_harness(
        database_url=database_url,
        clock=clock,
        var_dir=tmp_path / "var",
        backend="dnsmasq",
        dnsmasq=dnsmasq.dnsmasq_config(),
    ) as running:
        yield running


def said(harness: Harness, name: str, words: str) -> bool:
    conversation = harness.user(name).conversation_id
    return any(words in s.text for s in harness.connector.to(conversation))


async def test_unblock_through_dns_then_blocked_again_when_the_time_is_up(harness: Harness, dnsmasq: Dnsmasq) -> None:
    await everyone_opens_the_app(harness)
    assert await dnsmasq.answer(BLOCKED) == NXDOMAIN
    assert await dnsmasq.answer(f"www.{BLOCKED}") == NXDOMAIN
    assert await dnsmasq.answer(OPEN) == UPSTREAM_ADDRESS

    # The host is the domain, and a DNS rule covers the names below it: the narrowest rule is the whole domain.
    await ask(harness.user(REQUESTER), site=f"http://{BLOCKED}/lesson", until="today 15:00")
    await deliver(harness)
    reply = await harness.user(LEAD).executes("filter.approve", {"reference": "FR-0001"})
    assert "Approved" in json.dumps(reply.invoke_card)
    assert await dnsmasq.answer(BLOCKED) == NXDOMAIN, "nothing changes before the change is applied"
    await deliver(harness)
    assert said(
        harness, REQUESTER, f"{BLOCKED} is now unblocked (FR-0001). It ends by itself at Mon 23 Nov 2026, 15:00."
    )
    assert await dnsmasq.answer(BLOCKED) == UPSTREAM_ADDRESS
    assert await dnsmasq.answer(f"www.{BLOCKED}") == UPSTREAM_ADDRESS
    assert f"server=/{BLOCKED}/#\n" in dnsmasq.servers_file.read_text()

    harness.clock.advance(hours=4, minutes=59)
    await deliver(harness)
    assert await dnsmasq.answer(f"www.{BLOCKED}") == UPSTREAM_ADDRESS, "still allowed a minute before the end"
    harness.clock.advance(minutes=2)
    await deliver(harness)
    assert await dnsmasq.answer(f"www.{BLOCKED}") == NXDOMAIN
    assert BLOCKED not in dnsmasq.servers_file.read_text()
    assert said(harness, REQUESTER, "is blocked again. If you need it again")
    assert said(harness, TECH, "Temporary unblock FR-0001")
    log = json.dumps((await harness.user(HEAD).says("filter log")).cards)
    for step in ("Requested", "Approved", "Applied", "Ended (reverted)"):
        assert step in log


async def test_a_block_request_makes_the_name_and_its_subdomains_stop_resolving(
    harness: Harness, dnsmasq: Dnsmasq
) -> None:
    await everyone_opens_the_app(harness)
    assert await dnsmasq.answer(f"cdn.{OPEN}") == UPSTREAM_ADDRESS
    await ask(harness.user(REQUESTER), kind="block", site=f"https://{OPEN}/arcade")
    await deliver(harness)
    await harness.user(HEAD).executes("filter.approve", {"reference": "FR-0001"})
    await deliver(harness)
    assert said(harness, REQUESTER, f"{OPEN} is now blocked (FR-0001).")
    for name in (OPEN, f"cdn.{OPEN}"):
        assert await dnsmasq.answer(name) == NXDOMAIN
        assert await dnsmasq.answer(name, staff=True) == NXDOMAIN, "a block is for everyone"
    assert await dnsmasq.answer("news.test") == UPSTREAM_ADDRESS, "other sites are untouched"


async def test_a_staff_only_unblock_resolves_for_staff_devices_and_not_for_pupils(
    harness: Harness, dnsmasq: Dnsmasq
) -> None:
    await everyone_opens_the_app(harness)
    assert await dnsmasq.answer(BLOCKED, staff=True) == NXDOMAIN
    await ask(harness.user(REQUESTER), site=BLOCKED, audience="staff", until=None)
    await deliver(harness)
    await harness.user(LEAD).executes("filter.approve", {"reference": "FR-0001"})
    await deliver(harness)
    assert said(harness, REQUESTER, f"{BLOCKED} is now unblocked (FR-0001).")
    assert await dnsmasq.answer(BLOCKED, staff=True) == UPSTREAM_ADDRESS
    assert await dnsmasq.answer(BLOCKED) == NXDOMAIN, "pupils' devices are still blocked"
    assert BLOCKED not in dnsmasq.servers_file.read_text()


async def test_a_restart_before_the_end_still_ends_the_unblock(harness: Harness, dnsmasq: Dnsmasq) -> None:
    await everyone_opens_the_app(harness)
    await ask(harness.user(REQUESTER), site=BLOCKED, until="tomorrow 09:00")
    await deliver(harness)
    await harness.user(LEAD).executes("filter.approve", {"reference": "FR-0001"})
    await deliver(harness)
    assert await dnsmasq.answer(BLOCKED) == UPSTREAM_ADDRESS

    await harness.restart()
    harness.clock.advance(days=1)  # Tuesday 10:00, an hour after the end
    await deliver(harness)
    assert await dnsmasq.answer(BLOCKED) == NXDOMAIN
    assert said(harness, REQUESTER, "is blocked again. If you need it again")


@pytest.fixture
async def broken_harness(
    database_url: str, clock: SettableClock, tmp_path: Path, dnsmasq: Dnsmasq
) -> AsyncIterator[Harness]:
    """dnsmasq's reload command fails (here: it cannot read the log it waits on, as with a wrong path)."""
    broken = dnsmasq.dnsmasq_config(dnsmasq.reload_command(log_of_pupils=tmp_path / "missing.log"))
    async with start_filter_harness(
        database_url=database_url, clock=clock, var_dir=tmp_path / "var", backend="dnsmasq", dnsmasq=broken
    ) as running:
        yield running


async def test_a_failed_reload_is_retried_then_reported(broken_harness: Harness, dnsmasq: Dnsmasq) -> None:
    harness = broken_harness
    await everyone_opens_the_app(harness)
    await ask(harness.user(REQUESTER), site=BLOCKED, until=None)
    await deliver(harness)
    await harness.user(LEAD).executes("filter.approve", {"reference": "FR-0001"})
    await deliver(harness)
    for _ in range(3):  # retries after 1, 2 and 4 minutes
        harness.clock.advance(minutes=10)
        await deliver(harness)
    failure = next(
        c
        for s in harness.connector.to(harness.user(TECH).conversation_id)
        for c in s.cards
        if "Filter change FR-0001 failed" in json.dumps(c)
    )
    assert "dnsmasq reload failed" in json.dumps(failure)
    assert said(harness, REQUESTER, "could not be applied yet")
    assert await dnsmasq.answer(BLOCKED) == NXDOMAIN, "the running resolver was never told to reload"


async def test_a_name_that_could_change_dnsmasqs_configuration_is_refused(dnsmasq: Dnsmasq) -> None:
    backend = DnsmasqBackend(dnsmasq.allow_file, dnsmasq.block_file, dnsmasq.servers_file, dnsmasq.reload_command())
    before = dnsmasq.servers_file.read_text()
    for name in (f"{OPEN}/\naddress=/#/127.0.0.9", f"{OPEN}/#", ""):
        with pytest.raises(FilterBackendError, match="not a DNS name"):
            await backend.apply(FilterChange("FR-0009", "block", name, "all_pupils"))
    assert dnsmasq.servers_file.read_text() == before
    assert not dnsmasq.block_file.exists()
    assert await dnsmasq.answer(OPEN) == UPSTREAM_ADDRESS
