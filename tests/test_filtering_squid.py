"""The squid backend for real: a private Squid on loopback, proved by fetching pages through it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.clock import SettableClock
from bot.config import SquidConfig
from tests.support.harness import Harness
from tests.support.squid import Squid, running_squid, squid_binary, start_filter_harness
from tests.test_filtering import HEAD, LEAD, REQUESTER, TECH, ask, deliver, everyone_opens_the_app

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(squid_binary() is None, reason="squid is not installed: run scripts/system-deps.sh"),
]
BLOCKED = "pupils-blocked.test"  # on the vendor's baseline block list
OPEN = "games.test"  # not blocked by the vendor


@pytest.fixture
async def squid() -> AsyncIterator[Squid]:
    async with running_squid(baseline=[BLOCKED]) as running:
        yield running


@pytest.fixture
async def harness(database_url: str, clock: SettableClock, tmp_path: Path, squid: Squid) -> AsyncIterator[Harness]:
    async with start_filter_harness(
        database_url=database_url, clock=clock, var_dir=tmp_path / "var", backend="squid", squid=squid.squid_config()
    ) as running:
        yield running


def said(harness: Harness, name: str, words: str) -> bool:
    conversation = harness.user(name).conversation_id
    return any(words in s.text for s in harness.connector.to(conversation))


async def test_unblock_through_squid_then_blocked_again_when_the_time_is_up(harness: Harness, squid: Squid) -> None:
    await everyone_opens_the_app(harness)
    await squid.wait_for_status(harness.http, BLOCKED, 403)
    assert await squid.status(harness.http, OPEN) == 200

    await ask(harness.user(REQUESTER), site=f"http://{BLOCKED}/lesson", until="today 15:00")
    await deliver(harness)
    reply = await harness.user(LEAD).executes("filter.approve", {"reference": "FR-0001"})
    assert "Approved" in json.dumps(reply.invoke_card)
    assert await squid.status(harness.http, BLOCKED) == 403, "nothing changes before the change is applied"
    await deliver(harness)
    assert said(
        harness, REQUESTER, f"{BLOCKED} is now unblocked (FR-0001). It ends by itself at Mon 23 Nov 2026, 15:00."
    )
    await squid.wait_for_status(harness.http, BLOCKED, 200)
    assert squid.allow_file.read_text() == f"{BLOCKED}\n", "that host only: the narrowest rule Squid can enforce"

    harness.clock.advance(hours=4, minutes=59)
    await deliver(harness)
    assert await squid.status(harness.http, BLOCKED) == 200, "still allowed a minute before the end"
    harness.clock.advance(minutes=2)
    await deliver(harness)
    await squid.wait_for_status(harness.http, BLOCKED, 403)
    assert squid.allow_file.read_text() == ""
    assert said(harness, REQUESTER, "is blocked again. If you need it again")
    assert said(harness, TECH, "Temporary unblock FR-0001")
    log = json.dumps((await harness.user(HEAD).says("filter log")).cards)
    for step in ("Requested", "Approved", "Applied", "Ended (reverted)"):
        assert step in log


async def test_block_request_is_enforced_by_squid(harness: Harness, squid: Squid) -> None:
    await everyone_opens_the_app(harness)
    assert await squid.status(harness.http, OPEN) == 200
    await ask(harness.user(REQUESTER), kind="block", site=f"https://{OPEN}/arcade")
    await deliver(harness)
    await harness.user(HEAD).executes("filter.approve", {"reference": "FR-0001"})
    await deliver(harness)
    await squid.wait_for_status(harness.http, OPEN, 403)
    assert said(harness, REQUESTER, f"{OPEN} is now blocked (FR-0001).")
    assert await squid.status(harness.http, "news.test") == 200, "other sites are untouched"


async def test_a_staff_only_unblock_opens_the_site_for_staff_devices_and_not_for_pupils(
    harness: Harness, squid: Squid
) -> None:
    await everyone_opens_the_app(harness)
    assert await squid.status(harness.http, BLOCKED, staff=True) == 403
    await ask(harness.user(REQUESTER), site=BLOCKED, audience="staff", until=None)
    await deliver(harness)
    await harness.user(LEAD).executes("filter.approve", {"reference": "FR-0001"})
    await deliver(harness)
    assert said(harness, REQUESTER, f"{BLOCKED} is now unblocked (FR-0001).")
    await squid.wait_for_status(harness.http, BLOCKED, 200, staff=True)
    assert await squid.status(harness.http, BLOCKED) == 403, "pupils' devices are still blocked"
    assert squid.allow_file.read_text() == ""


async def test_a_restart_before_the_end_still_ends_the_unblock(harness: Harness, squid: Squid) -> None:
    await everyone_opens_the_app(harness)
    await ask(harness.user(REQUESTER), site=BLOCKED, until="tomorrow 09:00")
    await deliver(harness)
    await harness.user(LEAD).executes("filter.approve", {"reference": "FR-0001"})
    await deliver(harness)
    await squid.wait_for_status(harness.http, BLOCKED, 200)

    await harness.restart()
    harness.clock.advance(days=1)  # Tuesday 10:00, an hour after the end
    await deliver(harness)
    await squid.wait_for_status(harness.http, BLOCKED, 403)
    assert said(harness, REQUESTER, "is blocked again. If you need it again")


@pytest.fixture
async def broken_harness(
    database_url: str, clock: SettableClock, tmp_path: Path, squid: Squid
) -> AsyncIterator[Harness]:
    """Squid's reload command fails (as it would with a broken squid.conf)."""
    broken = SquidConfig(
        allow_file=squid.allow_file,
        block_file=squid.block_file,
        reload_command=[squid_binary(), "-f", str(tmp_path / "missing.conf"), "-k", "reconfigure"],
    )
    async with start_filter_harness(
        database_url=database_url, clock=clock, var_dir=tmp_path / "var", backend="squid", squid=broken
    ) as running:
        yield running


async def test_backend_failure_is_retried_then_reported_and_shown(broken_harness: Harness, squid: Squid) -> None:
    harness = broken_harness
    await everyone_opens_the_app(harness)
    await ask(harness.user(REQUESTER), site=BLOCKED, until=None)
    await deliver(harness)
    await harness.user(LEAD).executes("filter.approve", {"reference": "FR-0001"})
    await deliver(harness)
    assert not any("failed" in json.dumps(s.cards) for s in harness.connector.to(harness.user(TECH).conversation_id)), (
        "one failure is retried quietly"
    )
    for _ in range(3):  # retries after 1, 2 and 4 minutes
        harness.clock.advance(minutes=10)
        await deliver(harness)

    for name in (TECH, LEAD):
        failure = next(
            c
            for s in harness.connector.to(harness.user(name).conversation_id)
            for c in s.cards
            if "Filter change FR-0001 failed" in json.dumps(c)
        )
        assert "Squid reload failed" in json.dumps(failure)
        assert failure["actions"][0]["verb"] == "filter.retry"
    assert said(harness, REQUESTER, "could not be applied yet")
    shown = json.dumps((await harness.user(REQUESTER).says("filter FR-0001")).cards)
    assert "Approved, but the filter change failed" in shown and "Squid reload failed" in shown
    reply = await harness.user("Tom Reed").says("filter FR-0001")
    assert any("can't find a filter request FR-0001" in t for t in reply.texts), "not theirs to see"
    log = json.dumps((await harness.user(HEAD).says("filter log")).cards)
    assert "Applying failed" in log
    assert await squid.status(harness.http, BLOCKED) == 403

    # A technician asks for another go once the server is looked at; it is tried again (and here fails again).
    reply = await harness.user(TECH).executes("filter.retry", {"reference": "FR-0001"})
    assert "Trying FR-0001 again" in reply.invoke_message
    reply = await harness.user(REQUESTER).executes("filter.retry", {"reference": "FR-0001"})
    assert "not allowed" in reply.invoke_message
