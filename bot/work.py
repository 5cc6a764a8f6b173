"""Durable work: what must happen later is a row, claimed atomically and retried with backoff."""

from __future__ import annotations

import datetime as dt
import email.utils
import random
from dataclasses import dataclass
from typing import Any

SEND_KIND = "send"  # the outbox's kind: one message to one person or channel


def quiet_work(kind: str, payload: dict[str, Any]) -> bool:
    """A send marked quiet (bot.quiet: an AUP card, a reminder, a digest) may wait; all other work is urgent. Due work
    is claimed urgent first, and quiet sends run in slots of their own, so a broadcast never holds back an alert."""
    return kind == SEND_KIND and bool(payload.get("quiet"))


@dataclass(frozen=True)
class WorkItem:
    id: int
    school_id: str
    kind: str
    payload: dict[str, Any]
    run_at: dt.datetime
    attempts: int
    dedupe_key: str | None

    @property
    def quiet(self) -> bool:
        return quiet_work(self.kind, self.payload)


@dataclass(frozen=True)
class Then:
    """Work to queue when an item's outcome is recorded, in the same transaction (so a crash loses neither)."""

    kind: str
    payload: dict[str, Any]
    run_at: dt.datetime | None = None  # None: at once
    dedupe_key: str | None = None
    delivery_group: str | None = None


@dataclass(frozen=True)
class Done:
    """A handler's success, with the result to record and any follow-up work."""

    result: str | None = None
    then: tuple[Then, ...] = ()


class RetryLater(Exception):  # noqa: N818 - a signal, not an error
    """The work could not be done now; try again after `after` (or the backoff policy's delay)."""

    def __init__(self, reason: str, after: dt.timedelta | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.after = after


class NotYet(RetryLater):
    """The work is fine but should not happen yet (a quiet card waiting for a quiet moment): try again after
    `after`. Unlike a retry it costs no attempt, so waiting never uses up the item's tries."""

    def __init__(self, reason: str, after: dt.timedelta) -> None:
        super().__init__(reason, after)
        self.after: dt.timedelta = after  # always given here


class GiveUp(Exception):  # noqa: N818 - a signal, not an error
    """The work can never succeed (for example the person blocked the bot); record why and stop."""

    def __init__(self, reason: str, then: tuple[Then, ...] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.then = then


MAX_ATTEMPTS = 8
BASE_DELAY = dt.timedelta(seconds=2)
MAX_DELAY = dt.timedelta(minutes=15)


def backoff_delay(attempts: int, rng: random.Random | None = None) -> dt.timedelta:
    """Exponential backoff with full jitter: somewhere in [base, base * 2**attempts], capped."""
    rng = rng or random.Random()
    ceiling = min(MAX_DELAY.total_seconds(), BASE_DELAY.total_seconds() * (2 ** max(attempts - 1, 0)))
    return dt.timedelta(seconds=rng.uniform(BASE_DELAY.total_seconds(), max(ceiling, BASE_DELAY.total_seconds())))


def parse_retry_after(value: str | None, now: dt.datetime) -> dt.timedelta | None:
    """A Retry-After header as a delay: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    try:
        return dt.timedelta(seconds=max(0.0, float(value)))
    except ValueError:
        pass
    try:
        return max(dt.timedelta(0), email.utils.parsedate_to_datetime(value) - now)
    except (TypeError, ValueError):
        return None
