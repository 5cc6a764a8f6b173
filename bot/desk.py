"""The DSL's desk: the caseload a person may see, filtered and paged; one access rule for every view of it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from bot.incidents import IncidentSummary, Status, may_view_case
from bot.people import Person
from bot.permissions import may

if TYPE_CHECKING:
    from bot.delivery import Outcome

T = TypeVar("T")

PAGE_SIZE = 8  # rows per card page: a card stays well under Teams' 40 KB
VIEWS = {"open": "All open", "unowned": "Unowned", "mine": "Mine", "overdue": "Overdue", "urgent": "Urgent"}


@dataclass(frozen=True)
class CaseFilter:
    view: str = "open"  # one of VIEWS
    group: str | None = None  # a category group key from the policy, or None for every group
    page: int = 1


@dataclass(frozen=True)
class CaseRow:
    token: str  # opaque: what cards and the tab carry to open the case
    reference: str
    category: str
    group: str
    severity: str  # key: critical | high | medium | low
    status: str  # label
    reported_at: dt.datetime
    owner: str | None
    urgent: bool
    overdue: bool
    undelivered: int  # alerts about this case that reached nobody


@dataclass(frozen=True)
class CasePage:
    rows: list[CaseRow]
    filter: CaseFilter
    total: int
    pages: int
    groups: list[tuple[str, str]] = field(default_factory=list)  # (key, label) for the group filter


@dataclass(frozen=True)
class CaseloadFacts:
    """What a caseload is made from: the open cases a viewer may see, and what marks them (read only when any is)."""

    visible: list[IncidentSummary]
    failed: list[Outcome]  # tracked sends that failed lately: their cases' alerts reached nobody
    late: frozenset[int]  # the ids of cases with a required referral past its deadline


_SEVERITY_RANK = {"critical": 0, "high": 1, "medium": 2, "low": 3}


def may_use_desk(person: Person) -> bool:
    # Who gets `cases` and the desk tab; what each of them then sees is the one per-case rule (may_view_case).
    return may(person, "case.desk")


def parse_filter(view: object, group: object, page: object, groups: set[str]) -> CaseFilter:
    """A filter from card data or a query string; anything unknown falls back to the default, never an error."""
    chosen_view = view if isinstance(view, str) and view in VIEWS else "open"
    chosen_group = group if isinstance(group, str) and group in groups else None
    try:
        number = max(1, int(page))  # type: ignore[call-overload]
    except (TypeError, ValueError):
        number = 1
    return CaseFilter(view=chosen_view, group=chosen_group, page=number)


def is_overdue(case: IncidentSummary, now: dt.datetime, sla_minutes: int, late_referral: bool = False) -> bool:
    """Not taken on within the school's time for acknowledging a concern, or a statutory referral (the LADO,
    the police, the ICO...) past its deadline."""
    return (
        late_referral
        or case.status == Status.NEW
        and (case.sla_breached or now >= case.reported_at + dt.timedelta(minutes=sla_minutes))
    )


def visible_cases(cases: list[IncidentSummary], viewer: Person) -> list[IncidentSummary]:
    """The open cases among these that the viewer may see: the one per-case rule, for every view of the caseload."""
    return [c for c in cases if c.status != Status.CLOSED and may_view_case(viewer, c)]


def select_cases(
    cases: list[IncidentSummary],
    viewer: Person,
    chosen: CaseFilter,
    *,
    now: dt.datetime,
    sla_minutes: tuple[int, int],
    undelivered: dict[str, int],
    late_referrals: frozenset[int] = frozenset(),
) -> list[IncidentSummary]:
    """The viewer's open cases for a filter, most pressing first: undelivered alerts, then overdue, then
    severity, then the oldest. `sla_minutes` is (normal, urgent)."""

    def overdue(case: IncidentSummary) -> bool:
        return is_overdue(case, now, sla_minutes[1] if case.urgent else sla_minutes[0], case.id in late_referrals)

    tests: dict[str, Callable[[IncidentSummary], bool]] = {
        "open": lambda c: True,
        "unowned": lambda c: c.owner_id is None,
        "mine": lambda c: c.owner_id == viewer.id,
        "overdue": overdue,
        "urgent": lambda c: c.urgent,
    }
    keep = tests[chosen.view]
    chosen_cases = [
        c
        for c in visible_cases(cases, viewer)
        if keep(c) and (chosen.group is None or c.category_group == chosen.group)
    ]
    return sorted(
        chosen_cases,
        key=lambda c: (
            undelivered.get(c.reference, 0) == 0,
            not overdue(c),
            _SEVERITY_RANK.get(c.severity, 9),
            c.reported_at,
        ),
    )


def page_of(items: list[T], page: int, size: int = PAGE_SIZE) -> tuple[list[T], int, int]:
    """The items on one page, the page actually shown (clamped) and the number of pages."""
    pages = max(1, -(-len(items) // size))
    shown = min(max(1, page), pages)
    return items[(shown - 1) * size : shown * size], shown, pages
