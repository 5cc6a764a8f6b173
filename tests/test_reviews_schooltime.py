"""When a reminder may go: school hours in school time, school days, term dates (unit tests, no I/O)."""

from __future__ import annotations

import datetime as dt

from bot import schooltime
from bot.config import load_config
from tests.support.harness import DEMO_CONFIG

SCHOOL = load_config(DEMO_CONFIG).schools[0]  # Europe/London, 08:00-17:30 Monday to Friday, three terms


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


def test_in_school_hours_it_goes_now() -> None:
    assert schooltime.next_sendable(SCHOOL, utc(2026, 11, 24, 13, 5)) == utc(2026, 11, 24, 13, 5)


def test_before_school_it_waits_for_eight_and_after_school_for_the_next_morning() -> None:
    assert schooltime.next_sendable(SCHOOL, utc(2026, 11, 24, 6, 0)) == utc(2026, 11, 24, 8, 0)
    assert schooltime.next_sendable(SCHOOL, utc(2026, 11, 24, 17, 30)) == utc(2026, 11, 25, 8, 0)


def test_a_weekend_waits_for_monday() -> None:
    assert schooltime.next_sendable(SCHOOL, utc(2026, 11, 28, 10, 0)) == utc(2026, 11, 30, 8, 0)


def test_a_holiday_waits_for_the_first_day_of_next_term() -> None:
    assert schooltime.next_sendable(SCHOOL, utc(2026, 12, 21, 10, 0)) == utc(2027, 1, 5, 8, 0)
    assert schooltime.next_sendable(SCHOOL, utc(2027, 4, 1, 9, 0)) == utc(2027, 4, 12, 7, 0)  # BST by then


def test_british_summer_time_keeps_eight_oclock_local() -> None:
    assert schooltime.next_sendable(SCHOOL, utc(2027, 5, 4, 5, 0)) == utc(2027, 5, 4, 7, 0)


def test_after_the_last_listed_term_weekdays_count_again() -> None:
    assert schooltime.next_sendable(SCHOOL, utc(2027, 8, 7, 10, 0)) == utc(2027, 8, 9, 7, 0)


def test_the_digest_slot_is_the_next_monday_at_0730_school_time() -> None:
    assert schooltime.next_weekly(SCHOOL, utc(2026, 11, 23, 10, 0), 0, dt.time(7, 30)) == utc(2026, 11, 30, 7, 30)
    assert schooltime.next_weekly(SCHOOL, utc(2026, 11, 30, 7, 0), 0, dt.time(7, 30)) == utc(2026, 11, 30, 7, 30)
    assert schooltime.next_weekly(SCHOOL, utc(2027, 6, 1, 0, 0), 0, dt.time(7, 30)) == utc(2027, 6, 7, 6, 30)


def test_months_are_added_without_running_off_the_end_of_the_month() -> None:
    assert schooltime.add_months(dt.date(2026, 12, 18), 4) == dt.date(2027, 4, 18)
    assert schooltime.add_months(dt.date(2027, 1, 31), 1) == dt.date(2027, 2, 28)
