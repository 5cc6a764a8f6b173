"""The DSL's desk in the Microsoft 365 Agents Playground (a Teams-like client) driven by headless Chromium.

The real app runs on loopback (SQLite) as in tests/test_filtering_playground.py; the playground is the DSL's client
for her 1:1 chat. Two concerns are reported over the Bot Framework protocol first; then Priya Shah (DSL) lists her
caseload, opens a case from it, takes it on and adds a note that happened earlier, as a person would, in the page.
Screenshots go to var/screenshots/playground/ for people to look at.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.clock import SettableClock
from tests.conftest import START
from tests.support.harness import ROOT, Harness, start_harness
from tests.test_filtering_playground import MISSING, drive, running_playground
from tests.test_incidents import everyone_says_hello, submit_report

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        MISSING, reason="the Agents Playground or Chromium is not installed: run scripts/system-deps.sh"
    ),
]
PRIYA_ID = "00000000-0000-4000-8000-000000000001"
SCREENSHOTS = ROOT / "var" / "screenshots" / "playground"


@pytest.fixture
async def sqlite_harness(tmp_path: Path) -> AsyncIterator[Harness]:
    async with start_harness(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'esafety.db'}",
        clock=SettableClock(START),
        var_dir=tmp_path / "var",
    ) as running:
        yield running


async def test_a_dsl_works_her_caseload_in_the_playground(sqlite_harness: Harness, tmp_path: Path) -> None:
    harness = sqlite_harness
    await everyone_says_hello(harness, "Tom Reed", "Chris Doyle", "Grace Okafor", "Sam Patel")
    leah = harness.user("Leah Brooks")
    first = await submit_report(leah, what="Unkind messages in a class group chat")
    harness.clock.advance(minutes=20)
    second = await submit_report(
        leah, group="contact", category="stranger_contact", what="An adult asked a Year 5 pupil for photos"
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    async with running_playground(harness, tmp_path, current_user_id=PRIYA_ID) as url:
        await drive(
            url,
            tmp_path,
            "--send",
            "cases",
            "--expect",
            "Cases: all open",
            "--expect",
            first,
            "--expect",
            second,
            "--screenshot",
            str(SCREENSHOTS / "desk-caseload.png"),
            "--click",
            "Open",
            "--expect",
            "An adult asked a Year 5 pupil for photos",
            "--click",
            "Take ownership",
            "--expect",
            "Taken on by Priya Shah",
            "--click",
            "Add note",
            "--fill",
            "note=Phoned the parent",
            "--fill",
            "note_time=08:15",
            "--click",
            "Save note",
            "--expect",
            "Note from Priya Shah: Phoned the parent",
            "--screenshot",
            str(SCREENSHOTS / "desk-case.png"),
            "--send",
            "cases mine",
            "--expect",
            "Cases: mine",
            "--screenshot",
            str(SCREENSHOTS / "desk-caseload-mine.png"),
        )
    async with harness.parts.uow() as uow:
        incident = await uow.incidents.by_reference(harness.school.id, second)
    note = next(e for e in incident.events if e.kind == "note")
    assert incident.owner_name == "Priya Shah" and note.detail == "Phoned the parent"
    # Recorded now, but it happened at 08:15 school time that day: the chronology keeps both.
    assert note.occurred_at is not None and note.occurred_at.astimezone(harness.school.tz).strftime("%H:%M") == "08:15"
    assert note.occurred_at != note.at
