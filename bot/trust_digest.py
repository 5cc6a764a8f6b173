"""The weekly trust digest: each school's weekly digest figures (bot.digest), summed and suppressed, sent weekly.

Decisions:
- Only counts from bot.digest.Figures come in, and only school names and labels go out: no case, reference, person
  or free text can reach this module, so none can reach the card.
- Per school there are totals only (concerns this week, not acknowledged in time, open, open over 30 days, filter
  changes, staff AUP agreement). Category and severity are trust totals: per school they would be a cross-table
  whose cells, in a small school, point at one child, and subtracting one school's row from the trust's would
  reveal them.
- Each per-school column adds up to a trust total the card shows, so the column is protected as one breakdown
  (bot.small_numbers.protect): a hidden small school cannot be worked out by subtraction.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from bot import schooltime
from bot.config import AppConfig, SchoolConfig
from bot.digest import Figures
from bot.protocols import Clock
from bot.small_numbers import Cell, each, protect, shown
from bot.work import WorkItem

LONG_OPEN = "Over 30 days"


@dataclass(frozen=True)
class SchoolRow:
    school: str
    concerns: str
    late: str
    open: str
    open_long: str
    filter_changes: str
    staff_aup: str


@dataclass(frozen=True)
class TrustDigestView:
    trust_name: str
    period_label: str
    threshold: int
    schools: list[SchoolRow]
    concerns_total: str
    late_total: str
    open_total: str
    by_group: list[Cell]
    by_severity: list[Cell]
    open_by_age: list[Cell]
    filter_changes: list[Cell]
    staff_aup: str  # trust-wide "acknowledged of expected (percent)"


def _sum_rows(rows: list[list[tuple[str, int]] | None]) -> list[tuple[str, int]]:
    order: list[str] = []
    totals: dict[str, int] = {}
    for row in rows:
        for label, n in row or []:
            if label not in totals:
                order.append(label)
                totals[label] = 0
            totals[label] += n
    return [(label, totals[label]) for label in order]


def _column(values: list[tuple[str, int]], threshold: int) -> list[str]:
    return [cell.text for cell in protect(values, threshold)]


def _staff_aup(figures: Figures) -> tuple[int, int]:
    staff = next((a for a in figures.aup or [] if a.audience == "Staff"), None)
    return (staff.acknowledged, staff.expected) if staff else (0, 0)


def _aup_text(acknowledged: int, expected: int, threshold: int) -> str:
    if not expected:
        return "no staff listed"
    count = shown(acknowledged, threshold)
    if count != str(acknowledged):
        return f"{count} of {expected}"  # the percentage would give the hidden count away
    return f"{acknowledged} of {expected} ({(200 * acknowledged + expected) // (2 * expected)}%)"


def build_view(trust_name: str, period_label: str, figures: list[Figures], threshold: int) -> TrustDigestView:
    """The trust digest from each school's weekly figures, in the configuration's order of schools."""
    names = [f.school_name for f in figures]
    concerns = [f.total or 0 for f in figures]
    late = [f.sla_breaches or 0 for f in figures]
    open_ = [f.open_total or 0 for f in figures]
    open_long = [dict(f.open_by_age or []).get(LONG_OPEN, 0) for f in figures]
    filters = [sum(n for _, n in f.filter_changes or []) for f in figures]
    aups = [_staff_aup(f) for f in figures]
    shown_concerns, shown_late, shown_open, shown_long, shown_filters = (
        _column(list(zip(names, values, strict=True)), threshold)
        for values in (concerns, late, open_, open_long, filters)
    )
    rows = [
        SchoolRow(
            school=name,
            concerns=shown_concerns[i],
            late=shown_late[i],
            open=shown_open[i],
            open_long=shown_long[i],
            filter_changes=shown_filters[i],
            staff_aup=_aup_text(*aups[i], threshold),
        )
        for i, name in enumerate(names)
    ]
    return TrustDigestView(
        trust_name=trust_name,
        period_label=period_label,
        threshold=threshold,
        schools=rows,
        concerns_total=shown(sum(concerns), threshold),
        late_total=shown(sum(late), threshold),
        open_total=shown(sum(open_), threshold),
        by_group=protect(_sum_rows([f.by_group for f in figures]), threshold),
        by_severity=protect(_sum_rows([f.by_severity for f in figures]), threshold),
        open_by_age=protect(_sum_rows([f.open_by_age for f in figures]), threshold),
        filter_changes=each(_sum_rows([f.filter_changes for f in figures]), threshold),
        staff_aup=_aup_text(sum(a for a, _ in aups), sum(e for _, e in aups), threshold),
    )


WEEKLY_KIND = "trust_digest.weekly"
REFUSAL = (
    "Sorry, the trust digest is only for the trust's safeguarding and online-safety leads. Your school's own "
    "figures are in `digest now`, if your role includes them."
)


class TrustDigestService:
    """Builds the trust digest from each school's weekly figures and sends it weekly as durable work.

    The weekly run is one work item per week, kept under the trust's home school (the first trust school in the
    trust people's tenant: work items and the outbox are keyed by school, and the outbox reaches a person through
    their tenant). Claiming the item is atomic across replicas, and each send's dedupe key names the week and the
    person, so a retried run sends nobody a second copy.
    """

    def __init__(self, config: AppConfig, uow: Any, clock: Clock, digest: Any, threshold: int, cards: Any) -> None:
        self.config = config
        self.uow = uow
        self.clock = clock
        self.digest = digest  # bot.digest.DigestService: the per-school weekly figures
        self.threshold = threshold
        self.cards = cards  # bot.cards.trust_digest

    def home_school(self) -> SchoolConfig | None:
        trust = self.config.trust
        if trust is None:
            return None
        return next((s for s in self.config.trust_schools() if s.tenant_id == trust.tenant_id), None)

    async def card(self, reader_id: str | None) -> dict[str, Any]:
        """The digest card; reading each school's figures is audited in that school's log, with the reader."""
        trust, home = self.config.trust, self.home_school()
        assert trust is not None and home is not None
        figures = [await self.digest.weekly(school, reader_id) for school in self.config.trust_schools()]
        end = self.clock.now()
        start = end - dt.timedelta(days=7)
        label = f"{schooltime.local(home, start).date():%-d %b} to {schooltime.local(home, end).date():%-d %b %Y}"
        card: dict[str, Any] = self.cards.build_trust_digest_card(
            build_view(trust.name, label, figures, self.threshold)
        )
        return card

    async def seed(self) -> None:
        home = self.home_school()
        if home is None:
            return
        async with self.uow() as uow:
            await self._schedule_next(uow, home, self.clock.now())

    async def _schedule_next(self, uow: Any, home: SchoolConfig, after: dt.datetime) -> None:
        trust = self.config.trust
        assert trust is not None
        at = schooltime.next_weekly(home, after, trust.digest.weekday, trust.digest.time)
        await uow.work.schedule(home.id, WEEKLY_KIND, at, {}, dedupe_key=f"{WEEKLY_KIND}:{at.date().isoformat()}")

    async def run_weekly(self, item: WorkItem) -> str:
        trust, home = self.config.trust, self.home_school()
        if trust is None or home is None or home.id != item.school_id:
            return "no trust configured"
        card = await self.card(None)
        week = item.dedupe_key or f"{WEEKLY_KIND}:{item.run_at.date().isoformat()}"
        async with self.uow() as uow:
            for person in trust.people:
                await uow.notify.to_person(home.id, person.id, card=card, dedupe_key=f"{week}:{person.id}", quiet=True)
            await self._schedule_next(uow, home, max(self.clock.now(), item.run_at))
        return f"sent to {len(trust.people)} trust people"
