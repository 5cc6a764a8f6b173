"""Exact scope over HTTP: each request covers the narrowest rule the school's filter can enforce, says so in words,
and is a duplicate of another only when it is the same rule for the same people for the same time."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from adapters.clock import SettableClock
from adapters.filter_backends import SquidBackend
from bot.config import DnsmasqConfig
from bot.filtering import FilterChange
from tests.support.harness import Harness
from tests.support.squid import Squid, running_squid, squid_binary, start_filter_harness
from tests.support.teams import TeamsUser
from tests.test_filtering import HEAD, LEAD, REQUESTER, approval_card_reaches, cards_to, deliver, everyone_opens_the_app

PRIYA = "Priya Shah"
VIDEO_A = "https://www.youtube.com/watch?v=water-cycle"
VIDEO_B = "https://www.youtube.com/watch?v=fractions"


async def ask(user: TeamsUser, site: str, years: str | None = None, until: str | None = "Tuesday 15:30") -> Any:
    """The `filter` conversation for an unblock, pressing the card buttons, up to and including Send."""
    await user.says("filter")
    await user.submits({"answer": "unblock"})
    await user.says(site)
    await user.submits({"answer": "year_groups" if years else "all_pupils"})
    if years:
        await user.says(years)
    await user.says("A science lesson on the water cycle, with a short video")
    await user.says("tomorrow")
    await user.submits({"answer": "temporary" if until else "permanent"})
    if until:
        await user.says(until)
    summary = await user.submits({"answer": "yes"})
    sent = await user.submits({"answer": "submit"})
    return summary, sent


def approval_words(card: dict[str, Any]) -> str:
    return json.dumps(card)


@pytest.fixture
async def harness(database_url: str, clock: SettableClock, tmp_path: Path) -> AsyncIterator[Harness]:
    """The demo school: the manual backend, where a technician can allow one page."""
    async with start_filter_harness(database_url=database_url, clock=clock, var_dir=tmp_path / "var") as running:
        yield running


async def test_two_videos_for_different_year_groups_are_two_requests_and_the_approver_sees_both(
    harness: Harness,
) -> None:
    await everyone_opens_the_app(harness)
    summary, sent = await ask(harness.user(REQUESTER), VIDEO_A, years="Year 5, Year 6")
    assert (
        "This allows only the page https://www.youtube.com/watch?v=water-cycle (not the rest of youtube.com) for "
        "Years 5 and 6 until 24 November at 15:30."
    ) in json.dumps(summary.cards), "the requester sees the effect"
    assert any("FR-0001" in t and "sending it to" in t for t in sent.texts)
    _summary, sent = await ask(harness.user(PRIYA), VIDEO_B, years="Year 3")
    assert any("FR-0002" in t and "sending it to" in t for t in sent.texts), "a different video is not linked"
    assert not any("linked" in t for t in sent.texts)

    first = await approval_card_reaches(harness, LEAD, "FR-0001")
    second = await approval_card_reaches(harness, LEAD, "FR-0002")
    assert (
        "This allows only the page https://www.youtube.com/watch?v=fractions (not the rest of youtube.com) for "
        "Year 3 until 24 November at 15:30."
    ) in approval_words(second)
    assert "Other requests for youtube.com" in approval_words(second)
    assert (
        "FR-0001 (waiting for approval): This allows only the page https://www.youtube.com/watch?v=water-cycle"
        in approval_words(second)
    ), "the approver sees the related request: what, for whom and its status"
    assert "FR-0002" not in approval_words(first), "it was the only one when it was sent"

    # Either can be decided on its own: approving one leaves the other waiting.
    await harness.user(LEAD).executes("filter.approve", {"reference": "FR-0001"})
    refreshed = (await harness.user(LEAD).executes("filter.card", {"reference": "FR-0002"})).invoke_card
    assert [a["verb"] for a in refreshed["actions"]][0] == "filter.approve"
    assert "FR-0001 (approved, being applied)" in json.dumps(refreshed)


async def test_identical_requests_link_but_a_different_period_or_audience_does_not(harness: Harness) -> None:
    await everyone_opens_the_app(harness)
    await ask(harness.user(REQUESTER), VIDEO_A, years="Year 5, Year 6")
    _summary, sent = await ask(harness.user(PRIYA), VIDEO_A, years="Year 6, Year 5")
    assert any("FR-0002 is linked to it" in t and "FR-0001" in t for t in sent.texts), "the same change links"
    _summary, sent = await ask(harness.user(PRIYA), VIDEO_A, years="Year 5, Year 6", until="Wednesday 15:30")
    assert any("FR-0003" in t and "sending it to" in t for t in sent.texts), "a longer period is a separate request"
    _summary, sent = await ask(harness.user(PRIYA), VIDEO_A, until="Tuesday 15:30")
    assert any("FR-0004" in t and "sending it to" in t for t in sent.texts), "all pupils is a separate request"
    await deliver(harness)
    assert not any("Filter request FR-0002" in json.dumps(c) for c in cards_to(harness, LEAD))
    card = approval_words(await approval_card_reaches(harness, LEAD, "FR-0004"))
    assert "FR-0001 (waiting for approval)" in card and "FR-0003 (waiting for approval)" in card
    assert "FR-0002 (" not in card, "a linked request follows FR-0001 and is not listed again"
    assert (
        "This allows only the page https://www.youtube.com/watch?v=water-cycle (not the rest of youtube.com) "
        "for all pupils until 24 November at 15:30." in card
    )


async def test_a_request_stored_before_scopes_reads_as_the_whole_domain(harness: Harness) -> None:
    """Rows written before this change have no scope: they allowed the domain, and still say and do exactly that."""
    await everyone_opens_the_app(harness)
    await ask(harness.user(REQUESTER), VIDEO_A, until=None)
    engine = create_async_engine(harness.settings.database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("UPDATE filter_requests SET scope = NULL, target = NULL"))
    finally:
        await engine.dispose()
    card = approval_words(await approval_card_reaches(harness, LEAD, "FR-0001"))
    assert "This allows all of youtube.com and its subdomains for all pupils, permanently." in json.dumps(
        (await harness.user(LEAD).executes("filter.card", {"reference": "FR-0001"})).invoke_card
    )
    assert "watch?v=water-cycle" in card, "the exact address asked for is still shown"
    await harness.user(LEAD).executes("filter.approve", {"reference": "FR-0001"})
    await deliver(harness)
    assert any(
        "Please apply filter change FR-0001" in json.dumps(c)
        and "Allow youtube.com and its subdomains" in json.dumps(c)
        for c in cards_to(harness, "Alex Morgan")
    )


@pytest.fixture
async def dns_harness(database_url: str, clock: SettableClock, tmp_path: Path) -> AsyncIterator[Harness]:
    """A school on DNS filtering (the reload is a no-op here: only the words are under test)."""
    lists = tmp_path / "dnsmasq"
    config = DnsmasqConfig(
        allow_file=lists / "allow.txt",
        block_file=lists / "block.txt",
        servers_file=lists / "servers.conf",
        reload_command=[shutil.which("true") or "true"],
    )
    async with start_filter_harness(
        database_url=database_url, clock=clock, var_dir=tmp_path / "var", backend="dnsmasq", dnsmasq=config
    ) as running:
        yield running


async def test_the_approval_card_says_the_whole_domain_or_the_host_a_dns_filter_will_change(
    dns_harness: Harness,
) -> None:
    harness = dns_harness
    await everyone_opens_the_app(harness)
    await ask(harness.user(REQUESTER), "https://padlet.com/wall/abc", until=None)
    await ask(harness.user(PRIYA), VIDEO_A, years="Year 5, Year 6")
    padlet = approval_words(await approval_card_reaches(harness, LEAD, "FR-0001"))
    assert "This allows all of padlet.com and its subdomains for all pupils, permanently." in padlet, (
        "a resolver never sees the wall's path, and padlet.com's own name covers every name below it"
    )
    video = approval_words(await approval_card_reaches(harness, LEAD, "FR-0002"))
    assert (
        "This allows www.youtube.com and any address under it (not the rest of youtube.com) for Years 5 and 6 "
        "until 24 November at 15:30."
    ) in video
    await harness.user(LEAD).executes("filter.approve", {"reference": "FR-0002"})
    await deliver(harness)
    year_5 = (harness_dir(harness) / "servers.year-5.conf").read_text()  # the resolver Year 5's devices use
    assert "server=/www.youtube.com/#\n" in year_5 and "server=/youtube.com/" not in year_5
    assert "youtube" not in (harness_dir(harness) / "servers.conf").read_text(), "not for the other pupils"


def harness_dir(harness: Harness) -> Path:
    return Path(harness.config.schools[0].filtering.dnsmasq.servers_file).parent


@pytest.fixture
async def squid() -> AsyncIterator[Squid]:
    if squid_binary() is None:
        pytest.skip("squid is not installed: run scripts/system-deps.sh")
    async with running_squid(baseline=["pupils-blocked.test"]) as running:
        # Two hosts of the blocked domain, so one can be unblocked while its sibling stays blocked.
        with (running.directory / "hosts").open("a") as hosts:
            hosts.write("127.0.0.1 www.pupils-blocked.test\n127.0.0.1 mail.pupils-blocked.test\n")
        reload = await asyncio.create_subprocess_exec(*running.reload_command())
        await reload.wait()
        yield running


@pytest.fixture
async def squid_harness(
    database_url: str, clock: SettableClock, tmp_path: Path, squid: Squid
) -> AsyncIterator[Harness]:
    async with start_filter_harness(
        database_url=database_url, clock=clock, var_dir=tmp_path / "var", backend="squid", squid=squid.squid_config()
    ) as running:
        yield running


@pytest.mark.slow
async def test_squid_allows_only_the_host_so_a_sibling_host_of_the_domain_stays_blocked(
    squid_harness: Harness, squid: Squid
) -> None:
    harness = squid_harness
    await everyone_opens_the_app(harness)
    await squid.wait_for_status(harness.http, "www.pupils-blocked.test", 403)
    assert await squid.status(harness.http, "mail.pupils-blocked.test") == 403

    await ask(harness.user(REQUESTER), "http://www.pupils-blocked.test/lesson/3", until="today 15:00")
    card = approval_words(await approval_card_reaches(harness, LEAD, "FR-0001"))
    assert (
        "This allows www.pupils-blocked.test (that address only, not the rest of pupils-blocked.test) for all "
        "pupils until 23 November at 15:00."
    ) in card
    await harness.user(LEAD).executes("filter.approve", {"reference": "FR-0001"})
    await deliver(harness)
    await squid.wait_for_status(harness.http, "www.pupils-blocked.test", 200)
    assert squid.allow_file.read_text() == "www.pupils-blocked.test\n"
    assert await squid.status(harness.http, "mail.pupils-blocked.test") == 403, "a sibling host stays blocked"
    assert await squid.status(harness.http, "pupils-blocked.test") == 403, "so does the domain itself"
    shown = json.dumps((await harness.user(HEAD).says("filter FR-0001")).cards)
    assert "that address only" in shown

    harness.clock.advance(hours=5, minutes=1)  # past 15:00: the temporary unblock ends
    await deliver(harness)
    await squid.wait_for_status(harness.http, "www.pupils-blocked.test", 403)
    assert squid.allow_file.read_text() == ""


async def test_a_revert_removes_exactly_the_rule_it_applied(tmp_path: Path) -> None:
    """A host unblock ending leaves a domain unblock for other people in place, and the other way round."""
    backend = SquidBackend(tmp_path / "allow.txt", tmp_path / "block.txt", [shutil.which("true") or "true"])
    domain = FilterChange("FR-0001", "allow", "example.com", "all_pupils")
    host = FilterChange("FR-0002", "allow", "example.com", "all_pupils", scope="host", target="www.example.com")
    page = FilterChange(
        "FR-0003", "allow", "example.com", "all_pupils", scope="url", target="https://cdn.example.com/lesson"
    )
    for change in (domain, host, page):
        await backend.apply(change)
    assert (tmp_path / "allow.txt").read_text() == ".example.com\nwww.example.com\ncdn.example.com\n", (
        "Squid sees no paths, so a page rule is its host"
    )
    await backend.revert(host)
    assert (tmp_path / "allow.txt").read_text() == ".example.com\ncdn.example.com\n"
    await backend.revert(domain)
    assert (tmp_path / "allow.txt").read_text() == "cdn.example.com\n"


async def test_when_one_of_two_unblocks_of_the_same_rule_ends_the_other_keeps_it(dns_harness: Harness) -> None:
    """Two teachers, the same video for all pupils, different end times: two requests and one rule on the filter.
    The first one ending must not block the site for the second teacher's lesson."""
    harness = dns_harness
    await everyone_opens_the_app(harness)
    await ask(harness.user(REQUESTER), VIDEO_A, until="Tuesday 15:30")
    await ask(harness.user(PRIYA), VIDEO_A, until="Wednesday 15:30")
    for reference in ("FR-0001", "FR-0002"):
        await approval_card_reaches(harness, LEAD, reference)
        await harness.user(LEAD).executes("filter.approve", {"reference": reference})
    await deliver(harness)
    servers = harness_dir(harness) / "servers.conf"
    assert servers.read_text().count("server=/www.youtube.com/#") == 1

    harness.clock.advance(days=1, hours=6)  # past Tuesday 15:30: FR-0001 ends, FR-0002 still runs
    await deliver(harness)
    assert "server=/www.youtube.com/#" in servers.read_text(), "the second teacher's unblock still stands"
    told = [s.text for s in harness.connector.to(harness.user(REQUESTER).conversation_id) if "has ended" in s.text]
    assert len(told) == 1 and "Another request still in place keeps the same rule for now." in told[0]

    harness.clock.advance(days=1)  # past Wednesday 15:30: now nobody needs it
    await deliver(harness)
    assert "youtube" not in servers.read_text()
    ended = [s.text for s in harness.connector.to(harness.user(PRIYA).conversation_id) if "has ended" in s.text]
    assert len(ended) == 1 and "www.youtube.com is blocked again." in ended[0]
