"""The wake-up scheduler: APScheduler only wakes the work runner, at the digest slot and when school opens."""

from __future__ import annotations

import datetime as dt

from adapters.scheduler import start_wake_scheduler, stop_wake_scheduler
from bot.config import load_config
from tests.support.harness import DEMO_CONFIG


async def test_wake_ups_at_the_configured_digest_time_and_the_start_of_the_school_day() -> None:
    config = load_config(DEMO_CONFIG)
    woken: list[int] = []
    scheduler = start_wake_scheduler(lambda: woken.append(1), config, 30.0)
    try:
        jobs = {job.id: job for job in scheduler.get_jobs()}
        assert set(jobs) == {"wake:poll", "wake:digest:oakfield", "wake:school-day:oakfield"}
        after = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC)  # Monday, after this week's digest slot
        digest = jobs["wake:digest:oakfield"].trigger.get_next_fire_time(None, after)
        assert digest.astimezone(dt.UTC) == dt.datetime(2026, 11, 30, 7, 30, tzinfo=dt.UTC)
        summer = jobs["wake:digest:oakfield"].trigger.get_next_fire_time(None, dt.datetime(2027, 6, 1, tzinfo=dt.UTC))
        assert summer.astimezone(dt.UTC) == dt.datetime(2027, 6, 7, 6, 30, tzinfo=dt.UTC)  # 07:30 BST
        opens = jobs["wake:school-day:oakfield"].trigger.get_next_fire_time(None, after)
        assert opens.astimezone(dt.UTC) == dt.datetime(2026, 11, 24, 8, 0, tzinfo=dt.UTC)
        # The jobs do nothing but wake the runner: the work itself is in the database.
        jobs["wake:poll"].func()
        assert woken == [1]
    finally:
        stop_wake_scheduler(scheduler)
