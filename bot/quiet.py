"""Quiet cards: a card that is not urgent waits until its conversation is quiet, and one greeting per install.

A conversation is quiet once nobody has spoken in it for the idle period and no guided conversation (a report, a
filter request) is under way in it. Activity is recorded at most once every RECORD_EVERY, so the wait adds that
much: the card never arrives sooner than the idle period after the person's last word.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol

RECORD_EVERY = dt.timedelta(minutes=1)
# A claim to greet a conversation that was never finished (the process died mid-turn) may be retaken after this.
GREETING_LEASE = dt.timedelta(seconds=60)


@dataclass(frozen=True)
class LastActivity:
    """When a conversation last had activity, and whether a guided conversation was then under way in it."""

    at: dt.datetime
    in_conversation: bool


def wait_before_sending(
    last: LastActivity | None, now: dt.datetime, idle: dt.timedelta, hold: dt.timedelta
) -> dt.timedelta | None:
    """How long a quiet card should wait, or None to send it now.

    A guided conversation holds cards back until it ends, unless it was left untouched for `hold` (abandoned: the
    card should not wait for ever). After it, or any other activity, the conversation must be idle for `idle`.
    """
    if last is None:
        return None  # nobody has spoken there: there is nothing to interrupt
    quiet_at = last.at + idle + RECORD_EVERY
    if last.in_conversation and now - last.at < hold:
        return max(idle, quiet_at - now)  # look again after a while; it ends on their next turn at the earliest
    if now >= quiet_at:
        return None
    return quiet_at - now


class ConversationActivity(Protocol):
    async def record(self, school_id: str, kind: str, key: str, in_conversation: bool) -> None:
        """Note activity in a conversation (kind 'person' or 'channel'); cheap when nothing changed."""

    async def last(self, school_id: str, kind: str, key: str) -> LastActivity | None:
        """The last recorded activity there, or None if there has been none."""


class Greetings(Protocol):
    async def claim(self, school_id: str, conversation_id: str) -> bool:
        """True for exactly one turn per install of the app in this conversation (across replicas)."""

    async def greeted(self, school_id: str, conversation_id: str) -> None:
        """The greeting was sent: the claim is kept until the app is removed."""

    async def release(self, school_id: str, conversation_id: str) -> None:
        """The greeting failed, or the app was removed: the next install (or a redelivery) may greet."""
