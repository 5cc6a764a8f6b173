"""Child records: who a case is about, typed by the DSL or picked from the school's directory of pupils."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from bot.people import Person
from bot.permissions import may

MAX_NAME = 120
MAX_YEAR_GROUP = 40
MAX_MIS_ID = 64
MAX_AGE_YEARS = 25  # older than a pupil (or a care leaver) could be: almost certainly a typing slip
MAX_QUERY = 80
SOURCES = ("local", "directory")
# The DfE's Unique Pupil Number: 13 characters, a check letter and then 12 digits.
UPN = re.compile(r"^[A-Z]\d{12}$")
_YEAR = re.compile(r"^(?:year|yr|y)?\s*(\d{1,2})$")
_RECEPTION = {"r", "rec", "reception", "yr r", "year r"}
_NURSERY = {"n", "nur", "nursery"}
_WORDS = re.compile(r"[\s\-]+")


@dataclass(frozen=True)
class Child:
    """A child's record in one school; name, date of birth and ids are stored encrypted."""

    token: str  # opaque and random: what cards and the tab carry, never the database id
    name: str
    year_group: str | None
    date_of_birth: dt.date | None
    upn: str | None
    mis_id: str | None
    source: str = "local"  # "local" (typed by the DSL) or "directory" (created from a directory pupil)
    directory_id: str | None = None
    id: int = 0


@dataclass(frozen=True)
class Pupil:
    """A pupil as the school's directory knows them (the static list or School Data Sync via Graph)."""

    id: str
    name: str
    year_group: str | None = None
    date_of_birth: dt.date | None = None
    upn: str | None = None
    mis_id: str | None = None
    classes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ChildMatch:
    """One search result: an existing record (`token`), or a directory pupil to create one from (`pupil_id`)."""

    name: str
    year_group: str | None
    date_of_birth: dt.date | None
    token: str | None = None
    pupil_id: str | None = None
    classes: tuple[str, ...] = ()

    @property
    def is_record(self) -> bool:
        return self.token is not None


@dataclass(frozen=True)
class ChildInput:
    """What the DSL typed, checked and tidied."""

    name: str
    year_group: str | None = None
    date_of_birth: dt.date | None = None
    upn: str | None = None
    mis_id: str | None = None


@dataclass(frozen=True)
class Checked:
    value: ChildInput | None
    problems: list[str] = field(default_factory=list)


class PupilsUnavailable(Exception):  # noqa: N818 - a condition the service shows, not a fault
    """The school's directory of pupils could not answer now."""


def may_use_child_records(person: Person) -> bool:
    """Child records (search, create, link, read a child's file) are for the DSL and deputies only."""
    return may(person, "child.view")


def _text(value: Any) -> str:
    return " ".join(value.split()) if isinstance(value, str) else ""


def year_group(value: str) -> str | None:
    """'y3', 'Year 3' and '3' all read as 'Year 3'; 'rec' as 'Reception'; anything else short is kept."""
    tidy = _text(value)
    lowered = tidy.lower()
    if not tidy:
        return None
    if lowered in _RECEPTION:
        return "Reception"
    if lowered in _NURSERY:
        return "Nursery"
    match = _YEAR.match(lowered)
    if match and 1 <= int(match.group(1)) <= 13:
        return f"Year {int(match.group(1))}"
    return tidy


def parse_date(value: str) -> dt.date | None:
    """ISO (what a date picker sends) or the UK day/month/year people type."""
    tidy = _text(value)
    try:
        return dt.date.fromisoformat(tidy)
    except ValueError:
        pass
    for pattern in ("%d/%m/%Y", "%d-%m-%Y", "%d.%m.%Y", "%d %B %Y", "%d %b %Y"):
        try:
            return dt.datetime.strptime(tidy, pattern).date()
        except ValueError:
            continue
    return None


def check_child(fields: dict[str, Any], today: dt.date) -> Checked:
    """Check typed details; every problem is a short sentence saying what to change."""
    problems: list[str] = []
    name = _text(fields.get("name"))
    if not name:
        problems.append("Please give the child's name.")
    elif len(name) > MAX_NAME:
        problems.append(f"Please shorten the name to {MAX_NAME} characters or fewer.")
    year = year_group(_text(fields.get("year_group")))
    if year is not None and len(year) > MAX_YEAR_GROUP:
        problems.append("Please give the year group briefly, for example Reception or Year 4.")
    born: dt.date | None = None
    dob_text = _text(fields.get("date_of_birth"))
    if dob_text:
        born = parse_date(dob_text)
        if born is None:
            problems.append("Please give the date of birth as a date, for example 14/03/2016.")
        elif born >= today:
            problems.append("The date of birth must be in the past. Please check it.")
        elif born < _years_before(today, MAX_AGE_YEARS):
            problems.append(f"That date of birth is more than {MAX_AGE_YEARS} years ago. Please check it.")
    upn = _text(fields.get("upn")).replace(" ", "").upper() or None
    if upn is not None and not UPN.match(upn):
        problems.append("A UPN is 13 characters: a letter and then 12 digits. Please check it, or leave it blank.")
    mis_id = _text(fields.get("mis_id")) or None
    if mis_id is not None and len(mis_id) > MAX_MIS_ID:
        problems.append(f"Please shorten the MIS id to {MAX_MIS_ID} characters or fewer.")
    if problems:
        return Checked(None, problems)
    return Checked(ChildInput(name=name, year_group=year, date_of_birth=born, upn=upn, mis_id=mis_id))


def from_pupil(pupil: Pupil) -> ChildInput:
    """A directory pupil as a record's details; the directory's own values are kept, tidied only."""
    upn = (pupil.upn or "").replace(" ", "").upper()
    return ChildInput(
        name=_text(pupil.name)[:MAX_NAME] or "Unnamed pupil",
        year_group=year_group(pupil.year_group or "") if pupil.year_group else None,
        date_of_birth=pupil.date_of_birth,
        upn=upn if UPN.match(upn) else None,
        mis_id=(pupil.mis_id or None) and pupil.mis_id[:MAX_MIS_ID],
    )


def _years_before(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def query_words(query: str) -> list[str]:
    return [w for w in _WORDS.split(_text(query)[:MAX_QUERY].casefold()) if w]


def name_matches(words: list[str], name: str) -> bool:
    """Every word typed is the start of some part of the name: 'jam sm' finds 'Jamie Smith-Jones'."""
    parts = [p for p in _WORDS.split(name.casefold()) if p]
    return bool(words) and all(any(part.startswith(word) for part in parts) for word in words)
