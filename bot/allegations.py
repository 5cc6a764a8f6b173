"""Allegations about adults (KCSIE Part 4): the case manager's recorded decisions, and the register of low-level
concerns read for patterns. Pure: no I/O."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from bot.people import Person
from bot.permissions import may

DECISION_PREFIX = "decision."
INPUT_PREFIX = "alleg_"  # card input ids are unique on the whole case card
LOW_LEVEL_KIND = "staff_low_level"
MAX_NOTE = 2000


@dataclass(frozen=True)
class CaseDecision:
    """One recorded answer on a case: the UKCIS review, or one of an allegation manager's decisions."""

    kind: str
    answers: dict[str, Any]
    by_id: str
    by_name: str
    at: dt.datetime


@dataclass(frozen=True)
class Decision:
    key: str
    considered: bool
    note: str


@dataclass(frozen=True)
class LowLevelConcern:
    reference: str
    reported_at: dt.datetime
    closed: bool
    person_ids: tuple[str, ...]  # the member of staff it is about (empty when the reporter did not say)


@dataclass(frozen=True)
class RegisterRow:
    person_id: str | None
    name: str
    references: tuple[str, ...]
    open_count: int
    latest: dt.datetime

    @property
    def count(self) -> int:
        return len(self.references)


PATTERN_AT = 2  # two or more concerns about one person is a pattern to look at


def parse_decisions(data: dict[str, Any], keys: list[str]) -> tuple[list[Decision], str | None]:
    """The decisions answered on the card; each answered one needs a note. Unanswered ones are left as they are."""
    found: list[Decision] = []
    for key in keys:
        answer = _text(data.get(f"{INPUT_PREFIX}{key}")).lower()
        if answer not in ("yes", "no"):
            continue
        note = _text(data.get(f"{INPUT_PREFIX}{key}_note"))
        if not note:
            return [], "Please add a short note for each decision you record."
        found.append(Decision(key, answer == "yes", note[:MAX_NOTE]))
    if not found:
        return [], "Please answer Yes or No for at least one decision."
    return found, None


def register(concerns: list[LowLevelConcern], people: dict[str, Person], viewer: Person) -> list[RegisterRow]:
    """Concerns grouped by the member of staff, most concerns first, so repeated concerns about one person stand
    out. A concern about the viewer is never listed to them."""
    groups: dict[str | None, list[LowLevelConcern]] = {}
    for concern in concerns:
        if viewer.id in concern.person_ids:
            continue
        groups.setdefault(concern.person_ids[0] if concern.person_ids else None, []).append(concern)
    rows = []
    for person_id, items in groups.items():
        person = people.get(person_id) if person_id else None
        name = (
            person.name
            if person
            else ("Not named by the reporter" if person_id is None else "Someone no longer in the directory")
        )
        rows.append(
            RegisterRow(
                person_id,
                name,
                tuple(c.reference for c in items),
                sum(1 for c in items if not c.closed),
                max(c.reported_at for c in items),
            )
        )
    return sorted(rows, key=lambda r: (r.person_id is None, -r.count, r.name.casefold()))


def may_read_register(person: Person) -> bool:
    return may(person, "lowlevel.register")


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""
