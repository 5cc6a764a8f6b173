"""The weekly trust digest, on SQLite and PostgreSQL: each school's figures and the trust's totals, small numbers
hidden, nothing of any case; sent once a week to each trust lead's own chat, and on demand to trust leads only."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from adapters.clock import SettableClock
from bot.cards.trust_digest import build_trust_digest_card
from bot.digest import AupCompliance, Figures
from bot.trust_digest import build_view
from storage.incidents import IncidentRow
from tests.support.harness import Harness, start_harness
from tests.test_trust import CONFIG, TRUST_CONFIG, submit_report, user

TITLE = "Riverside Learning Trust: weekly trust digest"


@pytest.fixture
async def trust(database_url: str, clock: SettableClock, tmp_path: Path) -> AsyncIterator[Harness]:
    async with start_harness(
        database_url=database_url, clock=clock, var_dir=tmp_path / "var", config_path=TRUST_CONFIG
    ) as running:
        yield running


def at(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return (
        dt.datetime(2026, 11, day, hour, minute, tzinfo=dt.UTC)
        if day > 20
        else dt.datetime(2026, 12, day, hour, minute, tzinfo=dt.UTC)
    )


async def incidents(harness: Harness, school_id: str, severities: list[str]) -> None:
    """Concerns reported this week, straight into the table (reporting each one would take a minute)."""
    rows = [
        dict(
            school_id=school_id,
            reference=f"ZZ-2026-{school_id}-{i:03d}",
            reporter_id="x",
            reporter_name="Secret Reporter",
            reported_at=harness.clock.now() - dt.timedelta(hours=2 + i),
            subject_kind="pupil",
            category="gambling",
            category_group="commerce",
            illegal=False,
            urgent=False,
            immediate_danger=False,
            severity=severity,
            status="new",
            outcome=None,
            recorded_actions=[],
            case_roles=[],
            viewer_ids=[],
            excluded_ids=[],
            sla_breached=False,
            version=1,
            complete=True,
        )
        for i, severity in enumerate(severities)
    ]
    async with harness.parts.engine.begin() as connection:
        await connection.execute(insert(IncidentRow), rows)


def facts_under(card: dict[str, Any], heading: str) -> dict[str, str]:
    body = card["body"]
    index = next(i for i, e in enumerate(body) if e.get("text") == heading)
    return {f["title"]: f["value"] for f in body[index + 1]["facts"]}


def everyone_named() -> list[str]:
    names = [p.name for s in CONFIG.schools for p in s.people] + [p.name for s in CONFIG.schools for p in s.pupils]
    assert CONFIG.trust is not None
    return names + [p.name for p in CONFIG.trust.people] + ["Secret Reporter"]


def trust_digests(harness: Harness, name: str) -> list[dict[str, Any]]:
    """Trust digest cards the bot sent on its own (not as a reply) to this trust person's 1:1 chat."""
    aad_id = next(p.id for p in CONFIG.trust.people if p.name == name)  # type: ignore[union-attr]
    return [
        s.card
        for s in harness.connector.to(f"a:personal-{aad_id}")
        if s.op == "send" and s.card and s.card["body"][0].get("text") == TITLE
    ]


async def test_totals_across_schools_with_small_numbers_hidden_and_nothing_of_any_case(trust: Harness) -> None:
    await incidents(trust, "ashby", ["high"] * 5 + ["medium"] * 2)
    await incidents(trust, "birch", ["medium"] * 5)
    await incidents(trust, "cedar", ["low"])
    reference = await submit_report(user(trust, "Ben Hale"), what="Kestrel chat at lunch", who="BQ, Year 5")
    reply = await user(trust, "Helen Marsh").says("trust digest")
    card = next(c for c in reply.cards if c["body"][0].get("text") == TITLE)
    assert card["version"] == "1.5" and len(json.dumps(card).encode()) <= 40 * 1024

    trust_wide = facts_under(card, "Across the trust")
    assert trust_wide["Concerns reported this week"] == "14" and trust_wide["Open now"] == "14"
    severity = facts_under(card, "Concerns by severity")
    # 1 low is hidden, and with it the next smallest (5 high), so the total cannot give it away; Ben's concern is
    # medium, with Ashby's 2 and Birch's 5.
    assert severity == {"Critical": "0", "High": "not shown", "Medium": "8", "Low": "fewer than 5"}
    ashby, birch, cedar = (
        facts_under(card, name) for name in ("Ashby Primary School", "Birch Academy", "Cedar High School")
    )
    # Cedar's one concern is hidden, and so is the next smallest school, so 14 - 7 cannot reveal it.
    assert ashby["Concerns reported this week"] == "7"
    assert birch["Concerns reported this week"] == "not shown"
    assert cedar["Concerns reported this week"] == "fewer than 5"
    assert ashby["Staff acceptable use agreed"] == "0 of 4 (0%)"

    text = json.dumps(card)
    for name in everyone_named():
        assert name not in text, name
    for secret in (reference, "BIR-", "ZZ-2026", "Kestrel", "BQ, Year 5"):
        assert secret not in text, secret
    assert "Counts from 1 to 4" in text


async def test_sent_once_a_week_to_each_trust_lead_and_refused_to_a_school_dsl(trust: Harness) -> None:
    for name in ("Helen Marsh", "Omar Nasser"):
        hello = await user(trust, name).says("hello")
        assert "trust digest" in hello.everything  # told what they can do, though no school lists them
    refused = await user(trust, "Asha Khan").says("trust digest")
    assert "not available to you" in refused.everything and TITLE not in refused.everything
    help_card = await user(trust, "Asha Khan").says("help")
    assert "Trust digest" not in help_card.everything

    trust.clock.set(at(30, 7, 59))  # Monday 30 November, a minute early
    await trust.run_due_work()
    assert trust_digests(trust, "Helen Marsh") == [] and trust_digests(trust, "Omar Nasser") == []
    trust.clock.set(at(30, 8))
    await trust.run_due_work()
    await trust.connector.wait_for(
        lambda _sent: trust_digests(trust, "Helen Marsh") and trust_digests(trust, "Omar Nasser")
    )
    await trust.restart()  # a replica starting up seeds the schedule again: it must not send again
    await trust.run_due_work()
    assert len(trust_digests(trust, "Helen Marsh")) == 1 and len(trust_digests(trust, "Omar Nasser")) == 1
    trust.clock.set(at(7, 8))  # the next Monday
    await trust.run_due_work()
    await trust.connector.wait_for(
        lambda _sent: len(trust_digests(trust, "Helen Marsh")) == 2 and len(trust_digests(trust, "Omar Nasser")) == 2
    )
    assert len(trust_digests(trust, "Helen Marsh")) == 2


def _school_figures(count: int) -> list[Figures]:
    start = dt.datetime(2026, 11, 16, tzinfo=dt.UTC)
    return [
        Figures(
            "Weekly online-safety digest",
            f"School number {i} with a long official name, Academy Trust",
            "16 Nov to 23 Nov 2026",
            start,
            start + dt.timedelta(days=7),
            [("Commerce", i % 9), ("Conduct", 3)],
            [("High", i % 9), ("Low", 3)],
            [("New", i % 9 + 3)],
            sla_breaches=i % 4,
            open_by_age=[("Under 1 day", 1), ("Over 30 days", i % 6)],
            filter_changes=[("Requested", i % 7)],
            aup=[AupCompliance("Staff", 40, 80)],
        )
        for i in range(count)
    ]


def test_a_large_trust_still_gets_a_card_teams_accepts() -> None:
    """The card is a pure function of the view. Fifty schools are each listed; beyond what 40 KB holds, the card
    keeps the trust's figures and says where each school's went, rather than fail to send."""
    fifty = json.dumps(build_trust_digest_card(build_view("A trust", "16 to 23 Nov", _school_figures(50), 5)))
    assert len(fifty.encode()) <= 40 * 1024 and "School number 49 " in fifty
    assert "2000 of 4000 (50%)" in fifty  # the trust's staff AUP agreement, summed over every school
    many = json.dumps(build_trust_digest_card(build_view("A trust", "16 to 23 Nov", _school_figures(150), 5)))
    assert len(many.encode()) <= 40 * 1024 and "School number" not in many
    assert "too many schools to list on one card" in many and "Concerns by category" in many
