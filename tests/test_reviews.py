"""The review calendar over HTTP: reminders 30, 7 and 1 days before, overdue to the Headteacher, completion."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from tests.support.harness import Harness

LONDON = dt.timezone.utc  # the demo school is in Europe/London, which is UTC in winter
LEAD = "Sam Patel"
GOVERNORS = ("Ruth Evans", "Ben Carter")
HEAD = "Grace Okafor"


def at(year: int, month: int, day: int, hour: int = 10, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=LONDON)


def actions(node: Any) -> list[dict[str, Any]]:
    """Every Action.Execute in a card, wherever it sits."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if node.get("type") == "Action.Execute":
            found.append(node)
        for value in node.values():
            found += actions(value)
    elif isinstance(node, list):
        for value in node:
            found += actions(value)
    return found


def calendar(reply: Any) -> dict[str, Any]:
    """The review calendar card among what the bot answered (other features may add their own cards)."""
    return next(c for c in reply.cards if c["body"] and c["body"][0].get("text") == "Review calendar")


def reminders_to(harness: Harness, name: str, words: str) -> list[str]:
    conversation = harness.user(name).conversation_id
    return [json.dumps(s.card) for s in harness.connector.to(conversation) if s.card and words in json.dumps(s.card)]


async def received(harness: Harness, name: str, words: str, count: int) -> list[str]:
    """Run what is due, wait until `name` has exactly `count` such cards (the app's own worker may be sending
    too, woken by the last turn), and return them."""
    await harness.run_due_work()
    await harness.connector.wait_for(lambda _sent: len(reminders_to(harness, name, words)) >= count)
    await harness.run_due_work()
    found = reminders_to(harness, name, words)
    assert len(found) == count, found
    return found


async def open_chats(harness: Harness, *names: str) -> None:
    for name in names:
        await harness.user(name).installs()


async def review_id(harness: Harness, label: str, who: str = LEAD) -> int:
    card = calendar(await harness.user(who).says("reviews"))
    for container in card["body"]:
        if container.get("type") == "Container" and container["items"][0]["text"] == label:
            return actions(container)[0]["data"]["review_id"]
    raise AssertionError(f"{label} not in {json.dumps(card)[:400]}")


async def test_reviews_lists_the_calendar_with_due_dates(harness: Harness) -> None:
    body = json.dumps(calendar(await harness.user(LEAD).says("reviews")))
    for label in (
        "Online-safety policy review",
        "Filtering and monitoring review",
        "Acceptable Use Policy renewal",
        "Incident log review",
    ):
        assert label in body
    assert "Due 18 December 2026, in 25 days" in body  # the end of the autumn term
    assert "Due 1 September 2027" in body
    assert "Mark as done" in body


async def test_staff_without_a_role_cannot_see_the_calendar(harness: Harness) -> None:
    reply = await harness.user("Leah Brooks").says("reviews")
    assert "not available to you" in " ".join(reply.texts)


async def test_reminders_go_7_and_1_days_before_in_school_hours_then_overdue_waits_for_term(harness: Harness) -> None:
    await open_chats(harness, *GOVERNORS, HEAD)
    # Due 18 December, seeded on 23 November: the 30-day point had passed, so no stale "30 days" reminder.
    harness.clock.set(at(2026, 12, 11, 7, 59))  # Friday before school opens
    await harness.run_due_work()
    assert reminders_to(harness, "Ruth Evans", "Incident log review") == []
    harness.clock.set(at(2026, 12, 11, 8, 0))
    for name in GOVERNORS:
        sent = await received(harness, name, "Incident log review", 1)
        assert "due in 7 days" in sent[0]
    harness.clock.set(at(2026, 12, 17, 8, 30))
    ruth = await received(harness, "Ruth Evans", "Incident log review", 2)
    assert "due tomorrow" in ruth[1]
    # Overdue from 19 December, a Saturday in the Christmas holiday: the Headteacher hears on the first day of term.
    harness.clock.set(at(2026, 12, 21, 10))
    await harness.run_due_work()
    assert reminders_to(harness, HEAD, "Overdue: Incident log review") == []
    harness.clock.set(at(2027, 1, 5, 8, 0))
    overdue = await received(harness, HEAD, "Overdue: Incident log review", 1)
    assert "Incident log review" in overdue[0]
    assert reminders_to(harness, "Ruth Evans", "Overdue: Incident log review") == []  # to the Head only
    # And again a week later while it is still open.
    harness.clock.set(at(2027, 1, 12, 9))
    await received(harness, HEAD, "Overdue: Incident log review", 2)


async def test_30_day_reminder_for_an_annual_review(harness: Harness) -> None:
    await open_chats(harness, LEAD)
    harness.clock.set(at(2027, 8, 2, 9))  # 30 days before 1 September 2027 (a Monday, summer holiday)
    # 2 August is in the summer holiday, after the last listed term: weekdays count again, so it goes.
    sent = await received(harness, LEAD, "due in 30 days", 3)
    labels = {
        label
        for label in ("Online-safety policy review", "Filtering and monitoring review", "Acceptable Use Policy renewal")
        if any(label in s for s in sent)
    }
    assert len(sent) == 3 and len(labels) == 3


async def test_a_reminder_that_fell_due_while_the_bot_was_down_is_sent_once_when_it_is_back(harness: Harness) -> None:
    await open_chats(harness, *GOVERNORS)
    await harness.stop()
    harness.clock.set(at(2026, 12, 14, 11))  # the 7-day reminder was due on Friday 11th, while we were down
    await harness.start()
    await received(harness, "Ruth Evans", "due in 4 days", 1)
    await harness.restart()
    await harness.run_due_work()
    assert len(reminders_to(harness, "Ruth Evans", "Incident log review")) == 1


async def test_completing_a_review_records_notes_sets_the_next_date_and_stops_its_reminders(harness: Harness) -> None:
    await open_chats(harness, *GOVERNORS, HEAD)
    ruth = harness.user("Ruth Evans")
    review = await review_id(harness, "Incident log review", who="Ruth Evans")
    form = (await ruth.executes("review.open", {"review_id": review})).invoke_card
    body = json.dumps(form)
    assert "Check how quickly reports were acknowledged" in body  # the checklist from the policy
    assert '"id": "next_due"' in body and "2027-04-18" in body  # four months on by default

    empty = await ruth.executes("review.complete", {"review_id": review, "notes": "  "})
    assert "Please add a short note" in json.dumps(empty.invoke_card)

    done = await ruth.executes(
        "review.complete", {"review_id": review, "notes": "Figures seen; no patterns.", "next_due": "2027-04-18"}
    )
    assert "done" in json.dumps(done.invoke_card)
    assert "18 April 2027" in json.dumps(done.invoke_card)

    again = await ruth.executes("review.complete", {"review_id": review, "notes": "twice"})
    assert "already marked this review done" in (again.invoke_message or "")

    listing = json.dumps(calendar(await harness.user(LEAD).says("reviews")))
    assert "Incident log review" in listing and "Due 18 April 2027" in listing and "Recently completed" in listing

    harness.clock.set(at(2026, 12, 17, 9))  # the old review's 7- and 1-day reminders must not come
    await harness.run_due_work()
    assert reminders_to(harness, "Ruth Evans", "Reminder: Incident log review") == []
    harness.clock.set(at(2027, 1, 6, 9))
    await harness.run_due_work()
    assert reminders_to(harness, HEAD, "Overdue: Incident log review") == []


async def test_submit_fallback_completes_with_a_chosen_date(harness: Harness) -> None:
    review = await review_id(harness, "Filtering and monitoring review")
    reply = await harness.user(LEAD).submits(
        {
            "verb": "review.complete",
            "review_id": review,
            "notes": "Tested with the safe checks; all blocked.",
            "next_due": "2027-07-01",
        }
    )
    assert "1 July 2027" in json.dumps(reply.cards) + " ".join(reply.texts)
    listing = json.dumps(calendar(await harness.user(LEAD).says("reviews")))
    assert "Due 1 July 2027" in listing


async def test_people_outside_the_review_cannot_complete_it_and_bad_dates_are_refused(harness: Harness) -> None:
    review = await review_id(harness, "Online-safety policy review")
    leah = await harness.user("Leah Brooks").executes("review.complete", {"review_id": review, "notes": "x"})
    assert "not allowed" in (leah.invoke_message or "")
    ben = await harness.user("Ben Carter").executes("review.complete", {"review_id": review, "notes": "x"})
    assert "Only the online safety lead" in (ben.invoke_message or "")
    past = await harness.user(LEAD).executes(
        "review.complete", {"review_id": review, "notes": "Done.", "next_due": "2020-01-01"}
    )
    assert "after today" in json.dumps(past.invoke_card)
    nonsense = await harness.user(LEAD).executes("review.complete", {"review_id": "abc", "notes": "Done."})
    assert nonsense.status == 200 and "missing which review" in (nonsense.invoke_message or "")
