"""Commands interrupt a guided conversation, and one left too long ends with its half-written answers deleted.

Over HTTP on SQLite and PostgreSQL, as a teacher would: `help` typed in the middle of a report (even days later)
used to be saved as the answer; now every command stops the conversation, says what became of it, and runs.
"""

from __future__ import annotations

import json

from sqlalchemy import text

from bot.people import Person, Role
from bot.permissions import may
from tests.support.harness import Harness
from tests.support.teams import TeamsUser
from tests.test_incidents import everyone_says_hello, up_to_the_danger_question

STOPPED_REPORT = "I have stopped your unfinished report. Nothing was sent."


async def _half_a_report(user: TeamsUser) -> None:
    await user.says("report")
    await user.says("A pupil")  # who it is about; the next question is the kind of concern


async def test_every_command_interrupts_a_report_and_says_what_became_of_it(harness: Harness) -> None:
    priya = (await everyone_says_hello(harness, "Priya Shah"))["Priya Shah"]
    staff = next(p for p in harness.school.people if p.id == priya.aad_id)
    person = Person(staff.id, staff.name, roles=frozenset(Role(r) for r in staff.roles))
    commands = sorted(
        {
            c.name
            for c in harness.parts.bot._services.commands  # noqa: SLF001 - the registrations
            if c.permission is None or may(person, c.permission)
        }
        | {"help"}
    )
    assert {"help", "report", "my reports", "cases", "filter", "aup", "case", "child"} <= set(commands)
    for command in commands:
        await _half_a_report(priya)
        reply = await priya.says(command)
        assert STOPPED_REPORT in reply.texts[0], (command, reply.everything[:300])
        assert "Sorry, I didn't understand" not in reply.everything, command
        assert len(reply.texts) + len(reply.cards) >= 2, (command, reply.everything[:300])  # and it ran
        if command == "report":
            await priya.says("cancel")  # the new report it started
    # Nothing was filed by any of it, and no answer was saved as "help".
    async with harness.parts.engine.connect() as connection:
        assert (await connection.execute(text("SELECT count(*) FROM incidents"))).scalar_one() == 0


async def test_a_longer_answer_that_starts_with_a_command_is_still_an_answer(harness: Harness) -> None:
    leah = harness.user("Leah Brooks")
    await up_to_the_danger_question(leah)
    await leah.says("No")
    await leah.says("Online")
    reply = await leah.says("report time was after lunch")  # "when": starts with a command's name
    assert "stopped" not in reply.everything and "Who is involved" in reply.everything


async def test_a_report_interrupted_after_its_urgent_alert_says_the_alert_stands(harness: Harness) -> None:
    await everyone_says_hello(harness, "Priya Shah", "Tom Reed", "Chris Doyle", "Grace Okafor")
    leah = harness.user("Leah Brooks")
    await up_to_the_danger_question(leah)
    raised = await leah.says("Yes, someone is in danger now")
    assert any("Urgent alert raised: ES-2026-0001" in t for t in raised.texts)
    reply = await leah.says("my reports")
    assert "already has your urgent alert ES-2026-0001" in reply.replies[0].text
    assert "Nothing was sent" not in reply.everything
    assert "ES-2026-0001" in json.dumps(reply.cards)  # and `my reports` ran


async def test_a_conversation_left_for_a_day_ends_and_its_answers_are_deleted(harness: Harness) -> None:
    leah = harness.user("Leah Brooks")
    await _half_a_report(leah)
    harness.clock.advance(hours=23)
    kept = await leah.says("2")  # within the day: an answer, as before
    assert "stopped" not in kept.everything and "deleted" not in kept.everything
    harness.clock.advance(hours=25)
    late = await leah.says("1")
    assert "Your unfinished report was left for more than a day, so I have deleted it" in late.texts[0]
    # The answers are gone from the conversation's saved state: a new report starts from the first question.
    again = await leah.says("report")
    assert "Who is the concern about?" in again.everything
    filtered = harness.user("Sam Patel")
    await filtered.says("filter")
    harness.clock.advance(hours=25)
    late = await filtered.says("help")
    assert "Your unfinished filter request was left for more than a day, so I have deleted it" in late.texts[0]
    assert "Hello Sam. What would you like to do?" in late.everything  # help ran after it
