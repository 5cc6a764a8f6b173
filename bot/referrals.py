"""Referrals to outside agencies and the clocks the policy sets for them, as pure rules.

Decisions:
- A clock counts from when the case needed the referral: when it was reported, or when a change of type or
  subject made it needed.
- `working_days` are school days after the day the clock started (that day counts too when it started before
  school opened); the referral is due at the end of the last one, in school time. `hours` are calendar hours.
- A case needs at most one clock per agency: the first rule that matches names who is told when it is missed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bot.chronology import parse_happened
from bot.config import SchoolConfig
from bot.policy import ReferralClock, ReferralPolicy, ReferralRule
from bot.schooltime import MAX_DAYS_AHEAD, at_local, is_school_day

MAX_REFERENCE_CHARS = 64


class ClockStatus(StrEnum):
    OPEN = "open"
    MET = "met"
    WAIVED = "waived"


@dataclass(frozen=True)
class Referral:
    """A referral someone made and recorded on a case."""

    id: int
    school_id: str
    incident_id: int
    agency: str
    made_at: dt.datetime
    made_by_id: str
    made_by_name: str
    their_reference: str | None
    recorded_at: dt.datetime
    outcome: str | None = None
    outcome_at: dt.datetime | None = None
    handle: str = ""  # random, what a card carries to name this referral (never the database id)


@dataclass(frozen=True)
class RequiredReferral:
    """A referral the policy requires for a case, and its deadline."""

    id: int
    school_id: str
    incident_id: int
    agency: str
    started_at: dt.datetime
    due_at: dt.datetime
    status: ClockStatus
    waived_reason: str | None = None
    settled_at: dt.datetime | None = None

    @property
    def is_open(self) -> bool:
        return self.status == ClockStatus.OPEN

    def overdue(self, now: dt.datetime) -> bool:
        return self.is_open and now >= self.due_at


@dataclass(frozen=True)
class ReferralInput:
    """A referral as typed on the card, checked."""

    agency: str
    made_at: dt.datetime | None  # None: just now
    their_reference: str | None


def required_rules(
    policy: ReferralPolicy, *, subject_kind: str, category: str, illegal: bool, immediate_danger: bool
) -> list[ReferralRule]:
    """The rules a case matches, the first one per agency, in the policy's order."""
    found: dict[str, ReferralRule] = {}
    for rule in policy.required:
        if rule.agency in found:
            continue
        if rule.subject_kinds and subject_kind not in rule.subject_kinds:
            continue
        if rule.categories and category not in rule.categories:
            continue
        if rule.illegal is not None and rule.illegal != illegal:
            continue
        if rule.immediate_danger is not None and rule.immediate_danger != immediate_danger:
            continue
        found[rule.agency] = rule
    return list(found.values())


def rule_for(policy: ReferralPolicy, agency: str, **case: Any) -> ReferralRule | None:
    return next((r for r in required_rules(policy, **case) if r.agency == agency), None)


def due_at(school: SchoolConfig, clock: ReferralClock, start: dt.datetime) -> dt.datetime:
    """The deadline of a clock that started at `start` (UTC)."""
    if clock.hours is not None:
        return start + dt.timedelta(hours=clock.hours)
    return _after_working_days(school, start, clock.working_days or 1)


def _after_working_days(school: SchoolConfig, start: dt.datetime, days: int) -> dt.datetime:
    hours = school.school_hours
    local = start.astimezone(school.tz)
    counted = 0
    for offset in range(MAX_DAYS_AHEAD):
        day = local.date() + dt.timedelta(days=offset)
        if offset == 0 and not (is_school_day(school, day) and local.time() < hours.start):
            continue
        if is_school_day(school, day):
            counted += 1
            if counted == days:
                return at_local(school, day, hours.end)
    return start + dt.timedelta(days=days)  # no school day within reach: plain days, never "no deadline"


def remind_at(clock: ReferralClock, start: dt.datetime, due: dt.datetime) -> dt.datetime | None:
    """When to remind the case managers; None when there is no reminder or it would come before the start."""
    if clock.remind_before_minutes <= 0:
        return None
    when = due - dt.timedelta(minutes=clock.remind_before_minutes)
    return when if when > start else None


def missed_at(rule: ReferralRule, due: dt.datetime, stage: int) -> dt.datetime:
    return due + dt.timedelta(minutes=rule.missed[stage].after_minutes)


def due_text(when: dt.datetime, timezone: Any) -> str:
    """ "Tue 24 Nov, 17:30" in school time."""
    return when.astimezone(timezone).strftime("%a %d %b, %H:%M")


def overdue_for(due: dt.datetime, now: dt.datetime) -> str:
    minutes = max(0, int((now - due).total_seconds() // 60))
    if minutes < 120:
        return f"{minutes} minutes"
    if minutes < 48 * 60:
        return f"{minutes // 60} hours"
    return f"{minutes // (24 * 60)} days"


def check_referral(
    policy: ReferralPolicy, data: dict[str, Any], timezone: Any, now: dt.datetime
) -> tuple[ReferralInput | None, str | None]:
    """The typed referral, or a kind message saying what to fix."""
    agency = data.get("referral_agency")
    if not isinstance(agency, str) or policy.agency(agency.strip()) is None:
        return None, "Please choose who the referral was made to from the list."
    reference = data.get("referral_reference")
    reference = " ".join(reference.split()) if isinstance(reference, str) else ""
    if len(reference) > MAX_REFERENCE_CHARS:
        return None, (
            f"Their reference is {len(reference)} characters long. Please keep it to "
            f"{MAX_REFERENCE_CHARS} or fewer: the reference number they gave is enough."
        )
    made_at, problem = parse_happened(data.get("referral_on"), data.get("referral_time"), timezone, now)
    if problem:
        return None, problem.replace("when it happened", "when the referral was made")
    return ReferralInput(agency.strip(), made_at, reference or None), None
