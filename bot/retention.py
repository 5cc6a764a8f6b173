"""The retention schedule: when each kind of record is due, and what then happens to it (delete or anonymise).

Decisions:
- Cases are anonymised, never deleted: the dates, type, severity and outcome stay for the counts governors and the
  weekly digest read (policy 004 asks for anonymised incident reports), and other features' records on a case keep
  their parent. Everything that identifies someone goes: typed text, names, accounts, links to children.
- A child protection file runs to the linked child's 25th birthday (IRMS toolkit); a case linked to several
  children runs to the latest of their birthdays. With no child, or no date of birth, it runs a fixed period from
  closure (25 years by default: longer than any pupil can need).
- Allegations about staff: KCSIE keeps them to the normal pension age or 10 years, whichever is longer. The bot
  holds no staff dates of birth, so it cannot know the pension date: it uses the fixed period from closure, and a
  legal hold keeps one longer.
- The audit trail is kept whole. Each entry is sealed to the one before it, so anonymising an entry's detail
  would break the chain the daily check verifies; entries already hold account ids and references only.
- A case under a legal hold is never changed, and neither is any child's record linked to it.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # bot.policy validates the schedule with ALLOWED_ACTIONS below, so it imports this module
    from bot.policy import RetentionPolicy, RetentionRule

SWEEP_KIND = "retention.sweep"
DAILY_AT = dt.time(2, 30)  # school time: the quietest hour
MORE_AFTER = dt.timedelta(minutes=5)  # a backlog continues in batches, a few minutes apart

DELETE, ANONYMISE, KEEP = "delete", "anonymise", "keep"
CASE_TYPES = ("safeguarding_case", "allegation", "other_incident")
RECORD_TYPES = (
    "safeguarding_case",
    "child_record",
    "allegation",
    "other_incident",
    "filter_request",
    "filter_log",
    "aup_acknowledgement",
    "audit_entry",
    "conversation_state",
    "outbox",
)
ALLOWED_ACTIONS: dict[str, frozenset[str]] = {
    "safeguarding_case": frozenset({ANONYMISE}),
    "child_record": frozenset({DELETE}),
    "allegation": frozenset({ANONYMISE}),
    "other_incident": frozenset({ANONYMISE}),
    "filter_request": frozenset({ANONYMISE}),
    "filter_log": frozenset({DELETE}),
    "aup_acknowledgement": frozenset({DELETE}),
    "audit_entry": frozenset({KEEP}),
    "conversation_state": frozenset({DELETE}),
    "outbox": frozenset({ANONYMISE}),
}
LABELS = {
    "safeguarding_case": "Safeguarding case files",
    "child_record": "Children's records",
    "allegation": "Allegations about staff",
    "other_incident": "Technical and data-protection incidents",
    "filter_request": "Filtering change requests",
    "filter_log": "Filtering change log",
    "aup_acknowledgement": "Acceptable Use Policy acknowledgements",
    "audit_entry": "Audit trail",
    "conversation_state": "Half-written reports and unfinished conversations",
    "outbox": "Messages the bot sent",
}
STAFF_SUBJECTS = frozenset({"staff", "headteacher"})
INBOUND_NOTE = (
    "Records of what Teams delivered, kept only to stop a message taking effect twice, are deleted "
    "automatically after a day."
)


def add_years(day: dt.date, years: int) -> dt.date:
    """The same day `years` later; 29 February becomes 28 February in a year without it."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


def _shift(when: dt.datetime, rule: RetentionRule, sign: int) -> dt.datetime:
    moved = dt.datetime.combine(add_years(when.date(), sign * rule.after_years), when.timetz())
    return moved + sign * dt.timedelta(days=rule.after_days, hours=rule.after_hours)


def due_after(rule: RetentionRule, start: dt.datetime) -> dt.datetime:
    """When a record whose period began at `start` becomes due."""
    return _shift(start, rule, +1)


def cutoff(rule: RetentionRule, now: dt.datetime) -> dt.datetime:
    """The latest start that is due by `now` (records that began at or before it are due)."""
    return _shift(now, rule, -1)


def birthday_at(born: dt.date, age: int) -> dt.datetime:
    """The start (UTC) of the day someone reaches `age`."""
    return dt.datetime.combine(add_years(born, age), dt.time(0, 0), tzinfo=dt.UTC)


def case_type(subject_kind: str, routing: str) -> str:
    """Which schedule a closed case follows: allegations by who it is about, then by the type's routing."""
    if subject_kind in STAFF_SUBJECTS:
        return "allegation"
    return "safeguarding_case" if routing == "safeguarding" else "other_incident"


def case_due(rule: RetentionRule, closed_at: dt.datetime, births: list[dt.date | None]) -> dt.datetime:
    """A closed case's due date: the latest linked child's birthday at the rule's age; the fixed period from
    closure with no child, or for a child with no date of birth."""
    fixed = due_after(rule, closed_at)
    if rule.until_child_age is None or not births:
        return fixed
    return max(birthday_at(born, rule.until_child_age) if born else fixed for born in births)


def child_due(rule: RetentionRule, born: dt.date | None, created_at: dt.datetime) -> dt.datetime:
    if rule.until_child_age is not None and born is not None:
        return birthday_at(born, rule.until_child_age)
    return due_after(rule, created_at)


@dataclass
class Tally:
    """What one sweep did to one record type: counts only, never names."""

    deleted: int = 0
    anonymised: int = 0
    held: int = 0  # would have been due, kept because of a legal hold

    def add(self, other: Tally) -> None:
        self.deleted += other.deleted
        self.anonymised += other.anonymised
        self.held += other.held

    @property
    def any(self) -> bool:
        return bool(self.deleted or self.anonymised or self.held)

    def as_json(self) -> dict[str, int]:
        return {"deleted": self.deleted, "anonymised": self.anonymised, "kept_on_hold": self.held}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Tally:
        return cls(int(data.get("deleted", 0)), int(data.get("anonymised", 0)), int(data.get("kept_on_hold", 0)))


@dataclass
class Figures:
    """A sweep's tallies per record type."""

    tallies: dict[str, Tally] = field(default_factory=dict)

    def of(self, record_type: str) -> Tally:
        return self.tallies.setdefault(record_type, Tally())

    def add(self, other: Figures) -> None:
        for record_type, tally in other.tallies.items():
            self.of(record_type).add(tally)

    def as_json(self) -> dict[str, dict[str, int]]:
        return {k: t.as_json() for k, t in self.tallies.items() if t.any}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Figures:
        return cls({k: Tally.from_json(v) for k, v in (data or {}).items() if k in RECORD_TYPES})


def _period(rule: RetentionRule) -> str:
    parts = []
    for amount, unit in ((rule.after_years, "year"), (rule.after_days, "day"), (rule.after_hours, "hour")):
        if amount:
            parts.append(f"{amount} {unit}{'' if amount == 1 else 's'}")
    return " and ".join(parts)


def _done(rule: RetentionRule) -> str:
    return "deleted" if rule.action == DELETE else "anonymised"


def describe(record_type: str, rule: RetentionRule) -> str:
    """One rule in plain words, for the DPO."""
    period, done = _period(rule), _done(rule)
    age = rule.until_child_age
    match record_type:
        case "safeguarding_case":
            if age:
                return (
                    f"{done.capitalize()} on the linked child's {_ordinal(age)} birthday; with no child or no "
                    f"date of birth, {period} after the case closed."
                )
            return f"{done.capitalize()} {period} after the case closed."
        case "child_record":
            if age:
                first = (
                    f"after the child's {_ordinal(age)} birthday ({period} after it was made when no date of "
                    "birth is recorded)"
                )
            else:
                first = f"{period} after it was made"
            return f"Deleted {first}, once no case still kept is linked to it."
        case "allegation":
            return (
                f"{done.capitalize()} {period} after the case closed. The bot does not hold staff dates of birth, "
                "so it cannot count to retirement age: place a legal hold to keep one longer."
            )
        case "other_incident":
            return f"{done.capitalize()} {period} after the case closed."
        case "filter_request":
            return f"Names and reasons removed {period} after the last step; the site and the decision are kept."
        case "filter_log":
            return f"Deleted {period} after the entry was made."
        case "aup_acknowledgement":
            return f"Deleted {period} after the person acknowledged a newer version."
        case "audit_entry":
            return (
                "Kept. Each entry is sealed to the one before it, so removing one would break the proof that "
                "nothing was changed. Entries hold account ids and case references, never names or case text."
            )
        case "conversation_state":
            return f"Deleted {period} after the last message."
        case "outbox":
            return f"Text and cards removed {period} after sending; who it went to and when are kept."
    return f"{done.capitalize()} after {period}."


def _ordinal(number: int | None) -> str:
    number = number or 0
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def schedule_lines(policy: RetentionPolicy) -> list[tuple[str, str]]:
    """(label, plain words) per record type, in a stable order."""
    return [(LABELS[t], describe(t, getattr(policy, t))) for t in RECORD_TYPES]


def tally_words(tally: Tally) -> str:
    parts = []
    if tally.deleted:
        parts.append(f"{tally.deleted} deleted")
    if tally.anonymised:
        parts.append(f"{tally.anonymised} anonymised")
    if tally.held:
        parts.append(f"{tally.held} kept because of a legal hold")
    return ", ".join(parts) or "nothing due"


MAX_REASON_CHARS = 500
CASE_REFERENCE = re.compile(r"^[A-Z]{2,4}-\d{4}-\d{4,}$")


def hold_reason(value: object) -> str | None:
    """A typed reason, trimmed and clipped; None when there is none."""
    if not isinstance(value, str) or not value.strip():
        return None
    return " ".join(value.split())[:MAX_REASON_CHARS]
