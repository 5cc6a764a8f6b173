"""The review calendar: policy, filtering and monitoring, AUP renewal and the termly incident-log review.

Plain dataclasses and one service; storage and Teams sit behind protocols.

Decisions:
- Each school has at most one open review of each kind from the policy's `reviews` list. It is seeded at start-up
  when missing. The first due date: the incident-log review at the end of the current (or next) term; the AUP
  renewal on the school's AUP renewal day; the other annual reviews on 1 September, the start of the school year.
- Reminders go 30, 7 and 1 days before the due date to everyone holding the review's owner role, at the start of
  school hours, moved to the next school day (and into term) when that day is not one. A reminder whose moment
  had already passed when the review was created is not sent (nobody wants a "30 days to go" with 10 left).
- From the day after the due date, an open review is overdue: the Headteacher is told, then again each week
  until it is done. Every reminder and escalation is a durable work item with a dedupe key, so a replica that was
  down sends it when it is back, and two replicas never send it twice.
- Completing a review records who, when and notes, and opens the next one (due `every_months` later unless the
  person gives a date). Its pending reminders are cancelled.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Protocol

from bot import schooltime
from bot.actor import Actor, CardReply, Refused
from bot.config import SchoolConfig
from bot.people import Role
from bot.permissions import may
from bot.policy import Policy, ReviewKind
from bot.protocols import Clock, Directory
from bot.work import WorkItem

REMIND_KIND = "review.remind"
OVERDUE_KIND = "review.overdue"
COMPLETE_VERB = "review.complete"
OPEN_VERB = "review.open"
REMINDER_DAYS = (30, 7, 1)
OVERDUE_REPEAT = dt.timedelta(days=7)
NOTES_MAX = 2000


@dataclass(frozen=True)
class ReviewItem:
    id: int
    school_id: str
    kind: str
    due_on: dt.date
    owner_role: str
    reminders_sent: tuple[str, ...]
    created_at: dt.datetime
    completed_at: dt.datetime | None = None
    completed_by: str | None = None
    notes: str | None = None
    next_due_on: dt.date | None = None

    @property
    def is_open(self) -> bool:
        return self.completed_at is None


@dataclass(frozen=True)
class ReviewView:
    """A review as a card shows it: the item, its policy kind, and how far away it is."""

    item: ReviewItem
    kind: ReviewKind
    days_left: int  # negative when overdue
    default_next_due: dt.date
    can_complete: bool

    @property
    def overdue(self) -> bool:
        return self.item.is_open and self.days_left < 0


class ReviewStore(Protocol):
    async def ensure_open(self, school_id: str, kind: str, due_on: dt.date, owner_role: str) -> ReviewItem | None:
        """Open a review of this kind unless one is open already; returns the new one, or None."""

    async def get(self, school_id: str, review_id: int) -> ReviewItem | None: ...

    async def open_items(self, school_id: str) -> list[ReviewItem]: ...

    async def completed(self, school_id: str, limit: int = 5) -> list[ReviewItem]: ...

    async def mark_reminded(self, review_id: int, label: str) -> None: ...

    async def complete(
        self, school_id: str, review_id: int, by_id: str, by_name: str, notes: str, next_due_on: dt.date
    ) -> ReviewItem | None:
        """Close an open review; None when it was already closed (someone else got there first)."""


def first_due(kind: ReviewKind, school: SchoolConfig, today: dt.date) -> dt.date:
    """When a newly seeded review of this kind is first due."""
    if kind.termly or kind.key == "incident_log_review":
        end = schooltime.next_term_end(school, today)
        return end if end is not None else schooltime.add_months(today, kind.every_months)
    if kind.key == "aup_renewal":
        month, day = (int(part) for part in school.aup.renewal_month_day.split("-"))
        return schooltime.next_month_day(school, today, month, day)
    return schooltime.next_month_day(school, today, 9, 1)


def reminder_at(school: SchoolConfig, due_on: dt.date, days_before: int) -> dt.datetime:
    day = due_on - dt.timedelta(days=days_before)
    return schooltime.next_sendable(school, schooltime.at_local(school, day, school.school_hours.start))


def overdue_at(school: SchoolConfig, due_on: dt.date) -> dt.datetime:
    return schooltime.next_sendable(
        school, schooltime.at_local(school, due_on + dt.timedelta(days=1), school.school_hours.start)
    )


def remind_key(item: ReviewItem, days: int) -> str:
    return f"review:{item.id}:remind:{days}d"


def overdue_key(item: ReviewItem, when: dt.datetime) -> str:
    return f"review:{item.id}:overdue:{when.date().isoformat()}"


def parse_due(value: Any) -> dt.date | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return dt.date.fromisoformat(value.strip()[:10])
    except ValueError:
        return None


class ReviewService:
    def __init__(self, uow: Any, directory: Directory, clock: Clock, policy: Policy, school: Any, cards: Any) -> None:
        self.uow = uow
        self.directory = directory
        self.clock = clock
        self.policy = policy
        self.school = school  # (school_id) -> SchoolConfig | None
        self.cards = cards  # bot.cards.reviews module: reminder and overdue cards

    def kind(self, key: str) -> ReviewKind | None:
        return next((k for k in self.policy.reviews if k.key == key), None)

    def today(self, school: SchoolConfig) -> dt.date:
        return schooltime.local(school, self.clock.now()).date()

    # --- the calendar ---

    async def seed(self, school: SchoolConfig) -> int:
        """At start-up: open any missing review and schedule its reminders. Safe on every replica."""
        created = 0
        today = self.today(school)
        async with self.uow() as uow:
            for kind in self.policy.reviews:
                item = await uow.reviews.ensure_open(
                    school.id, kind.key, first_due(kind, school, today), kind.owner_role.value
                )
                if item is not None:
                    created += 1
                    await uow.audit.record(
                        school.id,
                        None,
                        "opened",
                        "review",
                        str(item.id),
                        {"kind": kind.key, "due_on": item.due_on.isoformat()},
                    )
                    await self._schedule(uow, school, item)
        return created

    async def _schedule(self, uow: Any, school: SchoolConfig, item: ReviewItem) -> None:
        now = self.clock.now()
        for days in REMINDER_DAYS:
            at = reminder_at(school, item.due_on, days)
            if at >= now or days == REMINDER_DAYS[-1]:
                await uow.work.schedule(
                    school.id,
                    REMIND_KIND,
                    max(at, now),
                    {"review_id": item.id, "days": days},
                    dedupe_key=remind_key(item, days),
                )
        first = overdue_at(school, item.due_on)
        await uow.work.schedule(
            school.id, OVERDUE_KIND, max(first, now), {"review_id": item.id}, dedupe_key=overdue_key(item, first)
        )

    async def views(self, actor: Actor) -> tuple[list[ReviewView], list[ReviewView]]:
        """Open reviews (soonest first) and the last few completed, for the `reviews` card."""
        school = actor.school
        async with self.uow() as uow:
            items = await uow.reviews.open_items(school.id)
            done = await uow.reviews.completed(school.id)
            await uow.audit.record(school.id, actor.person.id, "viewed", "review_calendar", None, {})
        return (
            [v for v in (self.view(actor, i) for i in items) if v is not None],
            [v for v in (self.view(actor, i) for i in done) if v is not None],
        )

    def view(self, actor: Actor | None, item: ReviewItem, school: SchoolConfig | None = None) -> ReviewView | None:
        kind = self.kind(item.kind)
        school = school or (actor.school if actor else self.school(item.school_id))
        if kind is None or school is None:
            return None
        days_left = (item.due_on - self.today(school)).days
        can = actor is not None and item.is_open and self._may_complete(actor, kind)
        return ReviewView(item, kind, days_left, schooltime.add_months(item.due_on, kind.every_months), can)

    @staticmethod
    def _may_complete(actor: Actor, kind: ReviewKind) -> bool:
        return actor.has(kind.owner_role) or may(actor.person, "reviews.complete")

    # --- card actions ---

    async def open_card(self, actor: Actor, data: dict[str, Any]) -> CardReply:
        """The completion form for one review."""
        item = await self._item(actor, data)
        view = self.view(actor, item)
        if view is None:
            raise Refused("That review is no longer in the calendar. Type `reviews` to see the current list.")
        return CardReply(card=self.cards.build_review_card(view, actor.school.tz))

    async def complete(self, actor: Actor, data: dict[str, Any]) -> CardReply:
        item = await self._item(actor, data)
        kind = self.kind(item.kind)
        if kind is None:
            raise Refused("That kind of review is no longer in the policy. Ask the online-safety lead to check it.")
        if not self._may_complete(actor, kind):
            raise Refused(
                f"Only the {kind.owner_role.value.replace('_', ' ')}, the online-safety lead or the "
                "Headteacher can mark this review done."
            )
        notes = str(data.get("notes") or "").strip()
        view = self.view(actor, item)
        assert view is not None  # the kind is known (above) and the actor's school is
        if not notes:
            return CardReply(
                card=self.cards.build_review_card(
                    view, actor.school.tz, problem="Please add a short note of what the review found, then try again."
                ),
                message="Please add a short note first.",
            )
        if len(notes) > NOTES_MAX:
            return CardReply(
                card=self.cards.build_review_card(
                    view, actor.school.tz, problem=f"Please keep the notes under {NOTES_MAX} characters."
                )
            )
        raw_next = data.get("next_due")
        next_due = parse_due(raw_next) if raw_next else view.default_next_due
        today = self.today(actor.school)
        if next_due is None or next_due <= today:
            return CardReply(
                card=self.cards.build_review_card(
                    view, actor.school.tz, problem="The next due date must be a real date after today."
                )
            )
        async with self.uow() as uow:
            done = await self.close(uow, actor, item, kind, notes, next_due)
            if done is None:
                raise Refused("Someone has already marked this review done. Type `reviews` to see the next one.")
        done_view = self.view(actor, done)
        return CardReply(
            card=self.cards.build_review_done_card(done_view, next_due, actor.school.tz),
            message=f"Thank you. {kind.label} is recorded as done; the next one is due {next_due:%-d %B %Y}.",
        )

    async def close(
        self, uow: Any, actor: Actor, item: ReviewItem, kind: ReviewKind, notes: str, next_due: dt.date
    ) -> ReviewItem | None:
        """Mark one open review done inside the caller's unit of work and open the next; None if it was done."""
        done: ReviewItem | None = await uow.reviews.complete(
            actor.school_id, item.id, actor.person.id, actor.person.name, notes, next_due
        )
        if done is None:
            return None
        for days in REMINDER_DAYS:
            await uow.work.cancel(remind_key(item, days))
        await uow.audit.record(
            actor.school_id,
            actor.person.id,
            "completed",
            "review",
            str(item.id),
            {"kind": item.kind, "next_due_on": next_due.isoformat()},
        )
        following = await uow.reviews.ensure_open(actor.school_id, item.kind, next_due, kind.owner_role.value)
        if following is not None:
            await uow.audit.record(
                actor.school_id,
                actor.person.id,
                "opened",
                "review",
                str(following.id),
                {"kind": item.kind, "due_on": next_due.isoformat()},
            )
            await self._schedule(uow, actor.school, following)
        return done

    async def close_open(self, uow: Any, actor: Actor, kind_key: str, notes: str) -> bool:
        """Complete the open review of this kind, if there is one (another feature recorded what it needed)."""
        kind = self.kind(kind_key)
        items: list[ReviewItem] = await uow.reviews.open_items(actor.school_id) if kind is not None else []
        item = next((i for i in items if i.kind == kind_key), None)
        if kind is None or item is None:
            return False
        following = schooltime.next_term_end(actor.school, item.due_on + dt.timedelta(days=1)) if kind.termly else None
        next_due = following or schooltime.add_months(item.due_on, kind.every_months)
        if next_due <= self.today(actor.school):  # done long after it was due: the next falls due from today
            next_due = schooltime.add_months(self.today(actor.school), kind.every_months)
        return await self.close(uow, actor, item, kind, notes, next_due) is not None

    async def _item(self, actor: Actor, data: dict[str, Any]) -> ReviewItem:
        given: Any = data.get("review_id")
        try:
            review_id = int(given)
        except (TypeError, ValueError):
            raise Refused("That button is missing which review it is for. Type `reviews` to start again.") from None
        async with self.uow() as uow:
            item: ReviewItem | None = await uow.reviews.get(actor.school_id, review_id)
        if item is None:
            raise Refused("That review is no longer in the calendar. Type `reviews` to see the current list.")
        return item

    # --- work handlers ---

    async def run_reminder(self, work: WorkItem) -> str:
        school = self.school(work.school_id)
        if school is None:
            return "school no longer configured"
        days = int(work.payload["days"])
        async with self.uow() as uow:
            item = await uow.reviews.get(school.id, int(work.payload["review_id"]))
            if item is None or not item.is_open:
                return "review already done"
            label = f"{days}d"
            if label in item.reminders_sent:
                return "already reminded"
            view = self.view(None, item, school)
            if view is None or view.days_left < 0:
                return "past its due date: the overdue notice covers it"
            owners = await self.directory.people_with_role(
                school.id, Role(item.owner_role)
            ) or await self.directory.people_with_role(school.id, Role.ONLINE_SAFETY_LEAD)  # nobody holds the role
            for person in owners:
                await uow.notify.to_person(
                    school.id,
                    person.id,
                    card=self.cards.build_reminder_card(view, school.tz),
                    dedupe_key=f"{remind_key(item, days)}:{person.id}",
                    quiet=True,
                )
            await uow.reviews.mark_reminded(item.id, label)
            await uow.audit.record(
                school.id, None, "reminded", "review", str(item.id), {"days_before": days, "recipients": len(owners)}
            )
        return f"reminded {len(owners)}"

    async def run_overdue(self, work: WorkItem) -> str:
        school = self.school(work.school_id)
        if school is None:
            return "school no longer configured"
        now = self.clock.now()
        async with self.uow() as uow:
            item = await uow.reviews.get(school.id, int(work.payload["review_id"]))
            if item is None or not item.is_open:
                return "review already done"
            view = self.view(None, item, school)
            if view is None:
                return "review kind no longer in the policy"
            heads = await self.directory.people_with_role(school.id, Role.HEADTEACHER)
            key = work.dedupe_key or f"review:{item.id}:overdue"
            for person in heads:
                await uow.notify.to_person(
                    school.id,
                    person.id,
                    card=self.cards.build_overdue_card(view, school.tz),
                    dedupe_key=f"{key}:{person.id}",
                    quiet=True,
                )
            await uow.reviews.mark_reminded(item.id, f"overdue:{now.date().isoformat()}")
            await uow.audit.record(
                school.id,
                None,
                "escalated_overdue",
                "review",
                str(item.id),
                {"days_overdue": -view.days_left, "recipients": len(heads)},
            )
            again = schooltime.next_sendable(school, now + OVERDUE_REPEAT)
            await uow.work.schedule(
                school.id, OVERDUE_KIND, again, {"review_id": item.id}, dedupe_key=overdue_key(item, again)
            )
        return f"escalated to {len(heads)}"
