"""School time: when a reminder may be sent, from the school's hours, timezone and term dates.

Decisions:
- A reminder goes out on a school weekday, between the start and end of school hours, in school time.
- When the school lists term dates, a day outside every term (a holiday) is not a school day; reminders wait for
  the next term. After the last listed term the calendar is unknown, so every weekday counts again (nothing
  waits forever because nobody entered next year's terms).
- Times are stored in UTC; the school's timezone only decides which local day and hour it is (so GMT/BST changes
  keep 08:00 at 08:00 local).
"""

from __future__ import annotations

import calendar
import datetime as dt

from bot.config import SchoolConfig

MAX_DAYS_AHEAD = 400  # a school year and a bit: enough to cross any holiday


def is_school_day(school: SchoolConfig, day: dt.date) -> bool:
    """A weekday the school works, inside a term when terms are listed (and not past the last one)."""
    if day.weekday() not in school.school_hours.weekdays:
        return False
    if not school.terms:
        return True
    if any(term.start <= day <= term.end for term in school.terms):
        return True
    last_end = max(term.end for term in school.terms)
    first_start = min(term.start for term in school.terms)
    return day > last_end or day < first_start


def local(school: SchoolConfig, when: dt.datetime) -> dt.datetime:
    return when.astimezone(school.tz)


def at_local(school: SchoolConfig, day: dt.date, time: dt.time) -> dt.datetime:
    """A local wall-clock time on a day, as UTC."""
    return dt.datetime.combine(day, time, tzinfo=school.tz).astimezone(dt.UTC)


def next_daily(school: SchoolConfig, after: dt.datetime, time: dt.time) -> dt.datetime:
    """The next time the school's clock shows `time`, strictly after `after` (daily jobs: checks, sweeps)."""
    day = local(school, after).date()
    at = at_local(school, day, time)
    return at if at > after else at_local(school, day + dt.timedelta(days=1), time)


def next_sendable(school: SchoolConfig, when: dt.datetime) -> dt.datetime:
    """The first moment at or after `when` that falls in school hours on a school day, in UTC."""
    hours = school.school_hours
    moment = local(school, when)
    day = moment.date()
    for offset in range(MAX_DAYS_AHEAD):
        candidate = day + dt.timedelta(days=offset)
        if not is_school_day(school, candidate):
            continue
        opens = at_local(school, candidate, hours.start)
        closes = at_local(school, candidate, hours.end)
        if offset == 0:
            if when < opens:
                return opens
            if when < closes:
                return when.astimezone(dt.UTC)
            continue
        return opens
    return when.astimezone(dt.UTC)


def next_weekly(school: SchoolConfig, after: dt.datetime, weekday: int, time: dt.time) -> dt.datetime:
    """The next local weekday-and-time strictly after `after`, in UTC (the digest's slot)."""
    moment = local(school, after)
    for offset in range(8):
        day = moment.date() + dt.timedelta(days=offset)
        if day.weekday() != weekday:
            continue
        slot = at_local(school, day, time)
        if slot > after:
            return slot
    return at_local(school, moment.date() + dt.timedelta(days=7), time)


def next_month_day(school: SchoolConfig, today: dt.date, month: int, day: int) -> dt.date:
    """The next date with this month and day strictly after today (29 February falls back to the 28th)."""
    for year in (today.year, today.year + 1):
        try:
            candidate = dt.date(year, month, day)
        except ValueError:
            candidate = dt.date(year, month, 28)
        if candidate > today:
            return candidate
    return dt.date(today.year + 1, month, min(day, 28))


def add_months(day: dt.date, months: int) -> dt.date:
    """The same day `months` later, clamped to the month's last day."""
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def current_term(school: SchoolConfig, today: dt.date) -> tuple[str, dt.date, dt.date] | None:
    """The term today falls in, else the most recent one that ended; None when no terms are listed."""
    if not school.terms:
        return None
    for term in school.terms:
        if term.start <= today <= term.end:
            return term.name, term.start, term.end
    ended = [t for t in school.terms if t.end < today]
    if ended:
        last = max(ended, key=lambda t: t.end)
        return last.name, last.start, last.end
    first = min(school.terms, key=lambda t: t.start)
    return first.name, first.start, first.end


def next_term_end(school: SchoolConfig, today: dt.date) -> dt.date | None:
    """The end of the current or next listed term, on or after today."""
    ends = sorted(t.end for t in school.terms if t.end >= today)
    return ends[0] if ends else None
