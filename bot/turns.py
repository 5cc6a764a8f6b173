"""What one turn reads before it runs and writes after it: the whole per-turn database work, in two transactions.

Before the turn: the inbound claim (so a redelivery has no second effect) and the conversation's state, together.
After it: the claim marked finished (with an invoke's answer for redeliveries), the state if it changed, and the
note that someone spoke (bot.quiet), together. A feature's own writes (a report, an audit row) are its own unit of
work and commit before the turn ends, so nothing the person was told depends on the closing transaction.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.inbound import InvokeAnswer
from bot.quiet import RECORD_EVERY


@dataclass
class ConversationState:
    """A conversation's state as plain JSON data, and the version it was read at (None: there was none).

    Only what a turn must carry to the next one lives here (an unfinished guided conversation); it is written only
    when its JSON differs from what was read.
    """

    key: str
    data: dict[str, Any] = field(default_factory=dict)
    etag: str | None = None
    _read_as: str = field(default="{}", repr=False)

    @classmethod
    def read(
        cls, key: str, data: dict[str, Any] | None, etag: str | None, stored: str | None = None
    ) -> ConversationState:
        """`stored` is the JSON `data` was read from, when it was written by canonical() (a stored document is): then
        it need not be written out again to compare with. Any other form only costs one write of the same state."""
        data = data or {}
        return cls(key, data, etag, stored if stored is not None else canonical(data))

    def change(self) -> StateChange | None:
        """The write this turn owes, if its state differs from what was read."""
        now = canonical(self.data)
        if now == self._read_as:
            return None
        return StateChange(self.key, now, self.etag)


def canonical(data: dict[str, Any]) -> str:
    """The state's JSON, one way only, so an unchanged state compares equal (and is never written)."""
    if not data:
        return "{}"  # most turns' state, outside any guided conversation; what the encoder writes for it
    return _CANONICAL.encode(data)


# What json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False) uses, made once: json.dumps
# builds an encoder on every call with any option set, twice a turn.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class StateChange:
    key: str
    document: str  # the state's canonical JSON
    etag: str | None  # the version it was read at: a write that finds another has lost


@dataclass(frozen=True)
class ActivityNote:
    """Someone spoke in a conversation (bot.quiet): a person's 1:1 chat or a channel; busy while a guided
    conversation is under way there."""

    school_id: str
    kind: str
    key: str
    busy: bool


@dataclass(frozen=True)
class TurnStart:
    claimed: bool  # False: a redelivery of an activity that already ran (or is running); nothing may happen
    state: ConversationState | None  # None when the turn has no conversation, or did not claim


class TurnStore(Protocol):
    async def begin(self, claim: str | None, state_key: str | None) -> TurnStart:
        """Claim the activity (when it has a key) and read the conversation's state, in one transaction."""

    async def end(
        self,
        claim: str | None,
        answer: InvokeAnswer | None,
        state: StateChange | None,
        activity: ActivityNote | None,
    ) -> bool:
        """Finish the claim, save the state and note the activity, in one transaction. False when the state was
        not saved because another turn in the conversation saved first (its state stands)."""

    async def answered(self, claim: str) -> InvokeAnswer | None:
        """The first delivery's invoke answer, or None while it is still running."""


class RecentActivity:
    """The activity notes this process wrote lately, so a turn writes one only when the stored one may be stale.

    The store itself writes a note at most once every RECORD_EVERY; skipping the statement here too keeps it off
    most turns. Another replica may have written meanwhile, which only makes the stored note newer.
    """

    def __init__(self, limit: int = 20_000) -> None:
        self._limit = limit
        self._written: dict[tuple[str, str, str], tuple[dt.datetime, bool]] = {}

    def due(self, note: ActivityNote, now: dt.datetime) -> bool:
        last = self._written.get((note.school_id, note.kind, note.key))
        return last is None or last[1] != note.busy or now - last[0] >= RECORD_EVERY

    def written(self, note: ActivityNote, now: dt.datetime) -> None:
        if len(self._written) >= self._limit:
            self._written.clear()  # a bound, not an LRU: at worst some notes are written once more
        self._written[(note.school_id, note.kind, note.key)] = (now, note.busy)
