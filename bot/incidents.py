"""Online-safety incidents: the record, its states, severity and who may see or act on it."""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass, field
from enum import StrEnum

from bot.people import Person, Role


class Status(StrEnum):
    NEW = "new"
    ACKNOWLEDGED = "acknowledged"
    IN_PROGRESS = "in_progress"
    ESCALATED = "escalated"
    CLOSED = "closed"


STATUS_LABELS = {
    Status.NEW: "New",
    Status.ACKNOWLEDGED: "Acknowledged",
    Status.IN_PROGRESS: "In progress",
    Status.ESCALATED: "Escalated",
    Status.CLOSED: "Closed",
}

SUBJECT_KINDS = {
    "pupil": "A pupil",
    "staff": "A member of staff",
    "staff_low_level": "A member of staff: a low-level concern",
    "headteacher": "The Headteacher",
    "visitor": "A visitor or someone outside school",
    "unknown": "Not sure",
}

LOCATIONS = {"in_school": "In school", "out_of_school": "Out of school", "online": "Online"}

SEVERITY_LABELS = {"critical": "Critical", "high": "High", "medium": "Medium", "low": "Low"}

LOW_SEVERITY_CATEGORIES = frozenset({"over_blocking", "copyright", "misinformation", "in_game_purchases"})

MAX_ANSWER_CHARS = 2000


class VersionConflict(Exception):
    """Someone else changed the incident since this version was read."""


class DuplicateReport(Exception):  # noqa: N818 - an outcome the service turns into "the same case again"
    """Another transaction committed an incident with this idempotency key first."""


def severity_for(*, illegal: bool, immediate_danger: bool, urgent: bool, category: str) -> str:
    """Critical for illegal content or danger now; high for urgent categories; low for minor technical ones."""
    if illegal or immediate_danger:
        return "critical"
    if urgent:
        return "high"
    if category in LOW_SEVERITY_CATEGORIES:
        return "low"
    return "medium"


@dataclass(frozen=True)
class Event:
    """One chronology entry: `at` is when it was recorded, `occurred_at` when it happened, if someone said."""

    at: dt.datetime
    actor_id: str | None
    actor_name: str | None
    kind: str  # see bot.chronology.describe for every kind
    detail: str | None = None
    occurred_at: dt.datetime | None = None

    @property
    def happened_at(self) -> dt.datetime:
        return self.occurred_at or self.at


@dataclass
class IncidentDraft:
    """What a reporter has told us, plus what routing decided; the service turns it into an Incident."""

    school_id: str
    reporter_id: str
    reporter_name: str
    reported_at: dt.datetime
    subject_kind: str
    category: str
    category_group: str
    illegal: bool
    urgent: bool
    immediate_danger: bool
    severity: str
    location: str | None = None
    occurred: str | None = None
    subjects: str | None = None
    narrative: str | None = None
    evidence: str | None = None
    actions_taken: str | None = None
    case_roles: tuple[str, ...] = ()
    viewer_ids: tuple[str, ...] = ()
    excluded_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Incident:
    id: int
    school_id: str
    reference: str
    reporter_id: str
    reporter_name: str
    reported_at: dt.datetime
    subject_kind: str
    category: str
    category_group: str
    illegal: bool
    urgent: bool
    immediate_danger: bool
    severity: str
    location: str | None
    occurred: str | None
    subjects: str | None
    narrative: str | None
    evidence: str | None
    actions_taken: str | None
    complete: bool
    status: Status
    owner_id: str | None
    owner_name: str | None
    outcome: str | None
    recorded_actions: list[str]
    case_roles: tuple[str, ...]
    viewer_ids: tuple[str, ...]
    excluded_ids: tuple[str, ...]
    acknowledged_at: dt.datetime | None
    closed_at: dt.datetime | None
    sla_breached: bool
    version: int
    events: list[Event] = field(default_factory=list)
    token: str = ""  # what cards carry instead of the id: random, so a case cannot be found by guessing

    @property
    def is_open(self) -> bool:
        return self.status != Status.CLOSED


@dataclass(frozen=True)
class IncidentSummary:
    """What a reporter may see of their own report."""

    id: int
    reference: str
    category: str
    category_group: str
    severity: str
    status: Status
    reported_at: dt.datetime
    reporter_id: str = ""
    subject_kind: str = ""
    excluded_ids: tuple[str, ...] = ()
    # What the access rule and the caseload need, without reading a case's sealed fields or its chronology.
    token: str = ""
    case_roles: tuple[str, ...] = ()
    viewer_ids: tuple[str, ...] = ()
    owner_id: str | None = None
    owner_name: str | None = None
    urgent: bool = False
    sla_breached: bool = False


TOKEN_BYTES = 24  # 32 url-safe characters


def new_case_token() -> str:
    """An opaque handle for cards: never sequential, so holding one card says nothing about other cases."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def is_excluded(person: Person, incident: Incident | IncidentSummary) -> bool:
    return person.id in incident.excluded_ids or (
        incident.subject_kind == "headteacher" and person.has(Role.HEADTEACHER)
    )


def can_act(person: Person, incident: Incident | IncidentSummary) -> bool:
    """Case managers act on a case; the subject of an allegation never does."""
    if is_excluded(person, incident):
        return False
    return any(role in person.roles for role in (Role(r) for r in incident.case_roles))


def can_view(person: Person, incident: Incident | IncidentSummary) -> bool:
    """Case managers, and people a case was explicitly shared with (urgent alerts, escalations)."""
    if is_excluded(person, incident):
        return False
    return can_act(person, incident) or person.id in incident.viewer_ids


def may_correct_routing(person: Person, incident: Incident | IncidentSummary) -> bool:
    """Who may change what a case is about or its type (which can move it to other case managers): its case
    managers, and the DSL team on any case they can read. Never anyone who cannot read the case: a form that
    answered for a guessed reference would tell an accused member of staff that an allegation exists."""
    return can_act(person, incident) or (person.is_safeguarding_team and can_view(person, incident))


# The one access rule: every path that reads or changes a case (case card, card refresh, `case REF`, the card
# buttons) asks these, and anyone they refuse gets the same reply whether or not the case exists.
may_view_case = can_view
may_act_on_case = can_act


def may_see_own_report(person: Person, report: IncidentSummary) -> bool:
    """A reporter follows their own report, unless it turned out to be about them (then they learn nothing)."""
    return report.reporter_id == person.id and not is_excluded(person, report)


def age_text(since: dt.datetime, now: dt.datetime) -> str:
    """A short, human age such as '5 min', '3 h' or '2 days'."""
    minutes = max(0, int((now - since).total_seconds() // 60))
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h"
    return f"{minutes // (24 * 60)} days"
