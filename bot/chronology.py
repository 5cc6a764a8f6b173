"""Chronology entries as people read them: plain events ("Taken on by Priya Shah"), never log codes."""

from __future__ import annotations

import datetime as dt
from typing import Any

from bot.incidents import Event

FUTURE_SLACK = dt.timedelta(minutes=5)  # a clock a little ahead on someone's device is not the future
EARLIEST_YEAR = 2000

SYSTEM = "eSafety"


def describe(event: Event) -> str:
    """One line for a case card, the tab, a child's file or an export; `detail` was typed, so callers show the
    result as text, never as Markdown."""
    who = event.actor_name or SYSTEM
    detail = event.detail or ""
    match event.kind:
        case "reported":
            return f"Reported by {who}" + (f". {detail}" if detail else "")
        case "updated":
            return f"Details added by {who}" + (f". {detail}" if detail and event.actor_name is None else "")
        case "owned":
            return f"Taken on by {who}"
        case "note":
            return f"Note from {who}: {detail}"
        case "action":
            return f"{detail} (recorded by {who})"
        case "escalated":
            return f"Escalated by {who} to {detail}"
        case "closed":
            return f"Closed by {who}. Outcome: {detail}"
        case "reopened":
            return f"Reopened by {who}: {detail}"
        case "recategorised":
            return f"Type changed by {who}: {detail}"
        case "moved":
            return f"Moved to other case managers by {who}: {detail}"
        case "sla_alert":
            return f"Not taken on in time. {detail}"
        case "rerouted":
            return detail or "An alert was sent to someone else because it could not be delivered."
        case "child_linked":
            return f"Linked to a child's record by {who}" + (f": {detail}" if detail else "")
        case "staff_linked":
            return f"Member of staff named by {who}; they cannot see this case"
        case "child_unlinked":
            return f"Unlinked from a child's record by {who}" + (f": {detail}" if detail else "")
        case "referral_made":
            agency, _, reference = detail.partition("\n")
            return f"Referred to {agency} by {who}" + (f". Their reference: {reference}" if reference else "")
        case "referral_outcome":
            agency, _, outcome = detail.partition("\n")
            return f"Outcome of the referral to {agency}, recorded by {who}: {outcome}"
        case "referral_not_made":
            agency, _, reason = detail.partition("\n")
            return f"Not referred to {agency}. Reason given by {who} when closing: {reason}"
        case "referral_not_needed":
            return f"A referral to {detail} is no longer needed: the case's type or who it is about changed"
        case "referral_overdue":
            return f"Referral overdue. {detail}"
        case "ukcis_review":
            return f"UKCIS initial review by {who}: {detail}"
        case "ukcis_referral":
            return f"Immediate referral to {detail} needed after the UKCIS review (recorded by {who})"
        case "allegation_decision":
            return f"Decision recorded by {who}: {detail}"
        case "exported":
            return f"Exported by {who}" + (f" ({detail})" if detail else "")
        case "legal_hold":
            return f"Legal hold placed by {who}" + (f": {detail}" if detail else "")
        case "hold_released":
            return f"Legal hold released by {who}" + (f": {detail}" if detail else "")
        case "anonymised":
            return "Anonymised under the retention schedule: names, accounts and typed details removed"
        case _:
            text = event.kind.replace("_", " ").capitalize()
            return f"{text} by {who}" + (f": {detail}" if detail else "")


def parse_happened(day: object, time: object, timezone: Any, now: dt.datetime) -> tuple[dt.datetime | None, str | None]:
    """When something happened, from a card's date and time inputs in the school's time zone.

    Nothing given means "now" (None: the entry happened when it was recorded). The future is refused: a
    chronology records what has happened."""
    day_text = day.strip() if isinstance(day, str) else ""
    time_text = time.strip() if isinstance(time, str) else ""
    if not day_text and not time_text:
        return None, None
    try:
        date = dt.date.fromisoformat(day_text) if day_text else now.astimezone(timezone).date()
        clock = dt.time.fromisoformat(time_text) if time_text else dt.time(0, 0)
    except ValueError:
        return None, "Please give the date as a day, month and year, and the time as hours and minutes."
    when = dt.datetime.combine(date, clock.replace(second=0, microsecond=0), tzinfo=timezone).astimezone(dt.UTC)
    if when > now + FUTURE_SLACK:
        return None, "That date and time is in the future. Please give when it happened."
    if when.year < EARLIEST_YEAR:
        return None, "Please check the year of when it happened."
    return when, None
