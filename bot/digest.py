"""The weekly SLT digest and the governors' termly report: anonymised figures, built from SQL aggregates only.

Decisions:
- Everything here is a count. The source answers GROUP BY queries; no incident, request or person row (and so no
  name or narrative) ever reaches this module. A feature whose tables do not exist yet reads as "no data yet".
- "This week" is the seven days up to the moment the digest is built. Open cases are aged from when they were
  reported. The 12-week trend counts incidents per seven-day window ending now.
- AUP compliance per audience: people in the directory who owe that audience's AUP, against distinct people who
  acknowledged its current version in the current renewal cycle.
- Allegations about staff and concerns about the Headteacher are never in these figures: the Headteacher, or the
  accused, may be reading them. The governors' report has one termly count of them, and only for readers who cannot
  be the subject (governors who are not staff); everyone else is told they go to governors.
- Every count is shown through bot.small_numbers (the threshold is in the policy data): this goes to channels and
  groups, where a small number could point to one person.
- The weekly digest is a durable work item at the school's configured weekday and time (Monday 07:30 by
  default), posted to the SLT channel; each run schedules the next. A digest missed while the app was down is
  posted when it is back, once.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot import schooltime, small_numbers
from bot.actor import Actor
from bot.config import SchoolConfig
from bot.filtering_check import report_rows
from bot.people import Person, Role
from bot.policy import Policy
from bot.protocols import Clock, Directory
from bot.small_numbers import each, protect, shown
from bot.work import WorkItem

WEEKLY_KIND = "digest.weekly"
TREND_WEEKS = 12
AGE_BUCKETS = (
    ("Under 1 day", dt.timedelta(days=1)),
    ("1 to 7 days", dt.timedelta(days=7)),
    ("8 to 30 days", dt.timedelta(days=30)),
    ("Over 30 days", None),
)
SEVERITIES = ("critical", "high", "medium", "low")
STATUSES = ("new", "acknowledged", "in_progress", "escalated", "closed")
STATUS_LABELS = {
    "new": "New",
    "acknowledged": "Acknowledged",
    "in_progress": "In progress",
    "escalated": "Escalated",
    "closed": "Closed",
}
FILTER_ACTIONS = (
    ("Requested", ("requested",)),
    ("Approved", ("approved",)),
    ("Applied", ("applied",)),
    ("Ended or reverted", ("reverted", "expired")),
    ("Declined", ("declined",)),
)
AUDIENCES = (("staff", "Staff"), ("governor", "Governors"), ("volunteer", "Volunteers"))

Counts = dict[str, int]


@dataclass(frozen=True)
class PeriodCounts:
    """Incidents reported in a period: the counts by column are about pupils only; adults' are counted apart."""

    by_column: dict[str, Counts]  # category_group, severity, status, outcome -> value -> count
    sla_breaches: int  # about pupils, missed their acknowledgement deadline
    adult_allegations: int  # about staff or the Headteacher


@dataclass(frozen=True)
class OpenCounts:
    """Open (not closed) incidents about pupils, and the weekly trend of all incidents about pupils."""

    by_age: list[int]  # reported after bounds[0], else after bounds[1], ..., else up to now
    breached: int  # open and missed their acknowledgement deadline
    weekly: list[int] | None  # per window [edges[i], edges[i+1]), the last closed at its end; None without edges


class DigestSource(Protocol):
    """Aggregate queries; each answers None when the feature's tables do not exist yet."""

    async def period_counts(self, school_id: str, start: dt.datetime, end: dt.datetime) -> PeriodCounts | None:
        """Incidents reported in [start, end]."""

    async def open_counts(
        self, school_id: str, now: dt.datetime, bounds: list[dt.datetime], edges: list[dt.datetime] | None
    ) -> OpenCounts | None:
        """Open incidents by age (bounds newest first) and, given edges (oldest first), the weekly trend."""

    async def filter_actions(self, school_id: str, start: dt.datetime, end: dt.datetime) -> Counts | None:
        """Filter change-log entries in [start, end] grouped by action."""

    async def aup_acknowledged(self, school_id: str, cycle: str) -> Counts | None:
        """Per audience, distinct people who agreed the audience's current version in this cycle."""

    async def reviews_completed(self, school_id: str, start: dt.datetime, end: dt.datetime) -> Counts | None:
        """Reviews completed in [start, end] by kind."""


@dataclass(frozen=True)
class AupCompliance:
    audience: str
    acknowledged: int
    expected: int

    @property
    def percent(self) -> int:
        return (200 * self.acknowledged + self.expected) // (2 * self.expected) if self.expected else 100  # half up


@dataclass(frozen=True)
class ReviewDue:
    label: str
    due_on: dt.date
    days_left: int


@dataclass
class Figures:
    """Anonymised counts for one period: what the digest card and the governors' report show."""

    title: str
    school_name: str
    period_label: str
    start: dt.datetime
    end: dt.datetime
    by_group: list[tuple[str, int]] | None
    by_severity: list[tuple[str, int]] | None
    by_status: list[tuple[str, int]] | None
    by_outcome: list[tuple[str, int]] | None = None
    sla_breaches: int | None = None
    open_by_age: list[tuple[str, int]] | None = None
    open_breached: int | None = None
    trend: list[tuple[str, int]] | None = None
    filter_changes: list[tuple[str, int]] | None = None
    aup: list[AupCompliance] | None = None
    reviews_due: list[ReviewDue] = field(default_factory=list)
    reviews_completed: list[tuple[str, int]] | None = None
    filtering_checks: list[tuple[str, str]] | None = None  # governors' report: each check's date, role and result
    threshold: int = 5  # small-number suppression, from the policy
    adult_allegations: int | None = None  # governors' report, for readers who cannot be the subject
    adults_withheld: bool = False  # governors' report for a member of staff: the line says where they go instead
    checkpoint: str | None = None  # the audit chain's head as these figures were read: a record outside the database

    @property
    def total(self) -> int | None:
        return sum(n for _, n in self.by_group) if self.by_group is not None else None

    @property
    def open_total(self) -> int | None:
        return sum(n for _, n in self.open_by_age) if self.open_by_age is not None else None


def audience_of(person: Person) -> str | None:
    """Which AUP a person owes (the AUP feature's rule): staff, else governor, else volunteer."""
    if person.has(Role.STAFF):
        return "staff"
    if person.has(Role.GOVERNOR, Role.CHAIR_OF_GOVERNORS):
        return "governor"
    if person.has(Role.VOLUNTEER):
        return "volunteer"
    return None


def sees_adult_allegations(person: Person) -> bool:
    """Only a governor who is not staff can never be the subject of an allegation about an adult here."""
    return person.has(Role.GOVERNOR, Role.CHAIR_OF_GOVERNORS) and not person.has(
        Role.STAFF, Role.HEADTEACHER, Role.SLT, Role.DSL, Role.DEPUTY_DSL, Role.ONLINE_SAFETY_LEAD
    )


def aup_cycle(school: SchoolConfig, today: dt.date) -> str:
    """The renewal cycle's key: the date it began (the most recent renewal month-day on or before today)."""
    month, day = (int(part) for part in school.aup.renewal_month_day.split("-"))

    def on(year: int) -> dt.date:
        try:
            return dt.date(year, month, day)
        except ValueError:
            return dt.date(year, month, 28)

    start = on(today.year) if on(today.year) <= today else on(today.year - 1)
    return start.isoformat()


def _ordered(
    counts: Counts | None, keys: list[tuple[str, str]], *, keep_zero: bool = True, other: str | None = "Other"
) -> list[tuple[str, int]] | None:
    """Counts in a fixed order with labels; unknown keys are summed under `other`."""
    if counts is None:
        return None
    known = {key for key, _ in keys}
    result = [(label, counts.get(key, 0)) for key, label in keys if keep_zero or counts.get(key, 0)]
    rest = sum(n for key, n in counts.items() if key not in known)
    if rest and other:
        result.append((other, rest))
    return result


class DigestService:
    def __init__(
        self, uow: Any, directory: Directory, clock: Clock, policy: Policy, school: Any, reviews: Any, cards: Any
    ) -> None:
        self.uow = uow
        self.directory = directory
        self.clock = clock
        self.policy = policy
        self.school = school  # (school_id) -> SchoolConfig | None
        self.reviews = reviews  # bot.reviews.ReviewService, for kind labels
        self.cards = cards  # bot.cards.digest module

    async def figures(
        self,
        school: SchoolConfig,
        title: str,
        period_label: str,
        start: dt.datetime,
        end: dt.datetime,
        *,
        trend: bool,
        outcomes: bool,
        actor_id: str | None,
        adults: bool | None = None,
    ) -> Figures:
        """Gather every count for a period in one unit of work (audited: the log says who looked)."""
        groups = [(g.key, g.label) for g in self.policy.category_groups]
        now = self.clock.now()
        today = schooltime.local(school, now).date()
        async with self.uow() as uow:
            source: DigestSource = uow.digest
            period = await source.period_counts(school.id, start, end)
            by_column = period.by_column if period is not None else {}
            by_group = _ordered(by_column.get("category_group"), groups)
            by_severity = _ordered(by_column.get("severity"), [(s, s.capitalize()) for s in SEVERITIES])
            by_status = _ordered(by_column.get("status"), [(s, STATUS_LABELS[s]) for s in STATUSES])
            figures = Figures(
                title,
                school.name,
                period_label,
                start,
                end,
                by_group,
                by_severity,
                by_status,
                threshold=self.policy.small_number_threshold,
            )
            if outcomes:
                outcome_keys = [(o.key, o.label) for o in self.policy.outcomes]
                raw = by_column.get("outcome")
                if raw is not None:
                    raw = {("" if k is None else k): n for k, n in raw.items()}
                    raw["still_open"] = raw.pop("", 0)
                figures.by_outcome = _ordered(raw, [*outcome_keys, ("still_open", "Still open")], keep_zero=False)
            figures.sla_breaches = period.sla_breaches if period is not None else None
            if adults is not None:  # None: not part of this report at all (the SLT digest)
                figures.adult_allegations = period.adult_allegations if adults and period is not None else None
                figures.adults_withheld = not adults
            bounds = [now - limit for _, limit in AGE_BUCKETS if limit is not None]
            edges = [end - dt.timedelta(weeks=TREND_WEEKS - i) for i in range(TREND_WEEKS + 1)] if trend else None
            open_counts = await source.open_counts(school.id, now, bounds, edges)
            if open_counts is not None:
                figures.open_by_age = [
                    (label, n) for (label, _), n in zip(AGE_BUCKETS, open_counts.by_age, strict=True)
                ]
                figures.open_breached = open_counts.breached
                if edges is not None and open_counts.weekly is not None:
                    figures.trend = [
                        (f"{schooltime.local(school, edges[i]).date():%-d %b}", n)
                        for i, n in enumerate(open_counts.weekly)
                    ]
            actions = await source.filter_actions(school.id, start, end)
            if actions is not None:
                figures.filter_changes = [
                    (label, sum(actions.get(a, 0) for a in names)) for label, names in FILTER_ACTIONS
                ]
            acknowledged = await source.aup_acknowledged(school.id, aup_cycle(school, today))
            if acknowledged is not None:
                everyone = await self.directory.everyone(school.id)
                expected = {key: sum(1 for p in everyone if audience_of(p) == key) for key, _ in AUDIENCES}
                figures.aup = [
                    AupCompliance(label, min(acknowledged.get(key, 0), expected[key]), expected[key])
                    for key, label in AUDIENCES
                    if expected[key]
                ]
            for item in await uow.reviews.open_items(school.id):
                kind = self.reviews.kind(item.kind)
                days_left = (item.due_on - today).days
                if kind is not None and days_left <= 30:
                    figures.reviews_due.append(ReviewDue(kind.label, item.due_on, days_left))
            if outcomes:
                done = await source.reviews_completed(school.id, start, end)
                labels = [(k.key, k.label) for k in self.policy.reviews]
                figures.reviews_completed = _ordered(done, labels, keep_zero=False, other=None)
                figures.filtering_checks = report_rows(
                    await uow.filtering_checks.between(school.id, start, end), school.tz
                )
            viewed = await uow.audit.record(
                school.id,
                actor_id,
                "viewed",
                "aggregate_report",
                title,
                {"from": start.isoformat(), "to": end.isoformat()},
            )
            figures.checkpoint = viewed.checkpoint().line()
        return figures

    async def weekly(self, school: SchoolConfig, actor_id: str | None = None) -> Figures:
        end = self.clock.now()
        start = end - dt.timedelta(days=7)
        label = f"{schooltime.local(school, start).date():%-d %b} to {schooltime.local(school, end).date():%-d %b %Y}"
        return await self.figures(
            school, "Weekly online-safety digest", label, start, end, trend=True, outcomes=False, actor_id=actor_id
        )

    async def termly(
        self, school: SchoolConfig, actor_id: str | None = None, *, reader: Person | None = None
    ) -> Figures:
        """The governors' report; the allegations-about-adults line only for a reader who cannot be its subject."""
        now = self.clock.now()
        today = schooltime.local(school, now).date()
        term = schooltime.current_term(school, today)
        if term is None:
            name, first, last = "The last four months", schooltime.add_months(today, -4), today
        else:
            name, first, last = term
        start = schooltime.at_local(school, first, dt.time(0, 0))
        end = min(now, schooltime.at_local(school, last + dt.timedelta(days=1), dt.time(0, 0)))
        label = f"{name}: {first:%-d %b %Y} to {min(last, today):%-d %b %Y}"
        return await self.figures(
            school,
            "Governors' termly online-safety report",
            label,
            start,
            end,
            trend=False,
            outcomes=True,
            actor_id=actor_id,
            adults=reader is not None and sees_adult_allegations(reader),
        )

    # --- the schedule ---

    async def seed(self, school: SchoolConfig) -> None:
        """Make sure the next weekly digest is scheduled (idempotent across replicas and restarts)."""
        async with self.uow() as uow:
            await self._schedule_next(uow, school, self.clock.now())

    async def _schedule_next(self, uow: Any, school: SchoolConfig, after: dt.datetime) -> None:
        at = schooltime.next_weekly(school, after, school.digest.weekday, school.digest.time)
        await uow.work.schedule(
            school.id, WEEKLY_KIND, at, {}, dedupe_key=f"{WEEKLY_KIND}:{school.id}:{at.date().isoformat()}"
        )

    async def run_weekly(self, item: WorkItem) -> str:
        school = self.school(item.school_id)
        if school is None:
            return "school no longer configured"
        figures = await self.weekly(school)
        card = self.cards.build_digest_card(figures)
        async with self.uow() as uow:
            if school.channels.slt:
                await uow.notify.to_channel(
                    school.id, "slt", card=card, dedupe_key=f"{item.dedupe_key or WEEKLY_KIND}:post", quiet=True
                )
            await self._schedule_next(uow, school, max(self.clock.now(), item.run_at))
        return "posted" if school.channels.slt else "no SLT channel configured"

    async def on_demand(self, actor: Actor) -> dict[str, Any]:
        card: dict[str, Any] = self.cards.build_digest_card(await self.weekly(actor.school, actor.person.id))
        return card


def figures_csv(figures: Figures) -> str:
    """The governors' report as CSV: section, item, count."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["section", "item", "count"])
    for section, rows in _sections(figures):
        for name, value in rows:
            writer.writerow([section, name, value])
    writer.writerow(["Note", small_numbers.note(figures.threshold), ""])
    if figures.checkpoint:
        writer.writerow(["Audit trail", figures.checkpoint, ""])
    return out.getvalue()


def figures_markdown(figures: Figures) -> str:
    lines = [
        f"# {figures.title}",
        "",
        f"{figures.school_name}. {figures.period_label}.",
        "",
        "Figures only: no names and no details of any case.",
        "",
        small_numbers.note(figures.threshold),
        "",
    ]
    for section, rows in _sections(figures):
        lines += [f"## {section}", "", "| | Count |", "|---|---:|"]
        lines += [f"| {name} | {value} |" for name, value in rows] or ["| No data yet | |"]
        lines.append("")
    if figures.checkpoint:
        lines += [f"Audit trail: {figures.checkpoint}", ""]
    return "\n".join(lines)


ADULTS_LABEL = "Allegations about adults this term"
ADULTS_WITHHELD = "reported to governors only"


def adults_row(figures: Figures) -> tuple[str, str] | None:
    """The governors' report's one line about allegations against staff or the Headteacher, if it has one."""
    if figures.adults_withheld:
        return ADULTS_LABEL, ADULTS_WITHHELD
    if figures.adult_allegations is None:
        return None
    return ADULTS_LABEL, shown(figures.adult_allegations, figures.threshold)


def aup_text(figures: Figures, aup: AupCompliance) -> tuple[str, str]:
    """(acknowledged of expected, percent or ""): the percent would give a hidden count away, so it goes with it."""
    count = shown(aup.acknowledged, figures.threshold)
    return f"{count} of {aup.expected}", "" if count != str(aup.acknowledged) else f"{aup.percent}%"


def _sections(figures: Figures) -> list[tuple[str, list[tuple[str, Any]]]]:
    sections: list[tuple[str, list[tuple[str, Any]]]] = []
    limit = figures.threshold

    def protected(rows: list[tuple[str, int]] | None) -> list[tuple[str, str]]:
        return [(c.label, c.text) for c in protect(rows or [], limit)]

    sections.append(("Incidents by category group", protected(figures.by_group)))
    sections.append(("Incidents by severity", protected(figures.by_severity)))
    sections.append(("Incidents by status", protected(figures.by_status)))
    if figures.by_outcome is not None:
        sections.append(("Incidents by outcome", protected(figures.by_outcome)))
    if figures.sla_breaches is not None:
        sections.append(
            (
                "Response times",
                [
                    ("Reported in the period", shown(figures.total or 0, limit)),
                    ("Not acknowledged in time", shown(figures.sla_breaches, limit)),
                ],
            )
        )
    adults = adults_row(figures)
    if adults is not None:
        sections.append(("Allegations about adults", [adults]))
    if figures.filter_changes is not None:
        sections.append(("Web filter changes", [(c.label, c.text) for c in each(figures.filter_changes, limit)]))
    if figures.aup is not None:
        sections.append(
            (
                "Acceptable use agreements",
                [
                    (f"{a.audience} ({percent})" if percent else a.audience, count)
                    for a in figures.aup
                    for count, percent in [aup_text(figures, a)]
                ],
            )
        )
    if figures.reviews_completed is not None:
        sections.append(("Reviews completed", figures.reviews_completed))
    if figures.filtering_checks is not None:
        sections.append(("Filtering checks", figures.filtering_checks or [("None recorded this term", "-")]))
    return sections
