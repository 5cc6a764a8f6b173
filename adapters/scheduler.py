"""APScheduler only wakes the work runner; the work itself lives in durable rows.

An in-memory job store is enough because nothing here is the work: if a wake-up is missed (the process was down),
the due rows are still there and the next poll, wake or restart runs them. The cron wake-ups at each school's
digest time and at the start of school hours only make those moments prompt rather than up to one poll late.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from adapters.logs import quiet_unless_configured
from bot.config import AppConfig

log = logging.getLogger(__name__)
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def start_wake_scheduler(wake: Callable[[], None], config: AppConfig, poll_seconds: float) -> AsyncIOScheduler:
    """Start (in the running event loop) a scheduler whose every job is `wake`."""
    # APScheduler logs two INFO lines per run of a job: with the poll every 2 s that was nearly all of the log.
    quiet_unless_configured("apscheduler")
    scheduler = AsyncIOScheduler(timezone=dt.UTC)
    scheduler.add_job(
        wake, IntervalTrigger(seconds=max(poll_seconds, 0.05)), id="wake:poll", coalesce=True, max_instances=1
    )
    for school in config.schools:
        scheduler.add_job(
            wake,
            CronTrigger(
                day_of_week=DAYS[school.digest.weekday],
                hour=school.digest.time.hour,
                minute=school.digest.time.minute,
                timezone=school.tz,
            ),
            id=f"wake:digest:{school.id}",
            coalesce=True,
            misfire_grace_time=None,
        )
        weekdays = ",".join(DAYS[d] for d in school.school_hours.weekdays) or "mon-fri"
        scheduler.add_job(
            wake,
            CronTrigger(
                day_of_week=weekdays,
                hour=school.school_hours.start.hour,
                minute=school.school_hours.start.minute,
                timezone=school.tz,
            ),
            id=f"wake:school-day:{school.id}",
            coalesce=True,
            misfire_grace_time=None,
        )
    scheduler.start()
    log.info("wake scheduler started with %d jobs", len(scheduler.get_jobs()))
    return scheduler


def stop_wake_scheduler(scheduler: AsyncIOScheduler | None) -> None:
    if scheduler is not None and scheduler.running:
        scheduler.shutdown(wait=False)
