"""The per-turn database work (bot.turns) in SQL: one transaction before the turn, at most one after it.

Core statements on a connection, not ORM objects: a turn is a handful of fixed-shape statements, and the ORM's unit
of work costs more than they do. On SQLite the writer is one connection that transactions queue for; a turn holds
it only for its own few statements, never across a send, and while nobody holds it the turn's statements are
written on the event loop itself (storage.one_trip, `brief`).
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.inbound import InvokeAnswer
from bot.protocols import Clock
from bot.turns import ActivityNote, RecentActivity, StateChange, TurnStart
from storage.bot_storage import STATE_COLUMNS, read_state, state_from, state_params, state_write
from storage.crypto import FieldCipher
from storage.db import BOOKKEEPING
from storage.inbound import SweepTimer, answered_on, claim_steps, finish_write, sweep_on
from storage.one_trip import OneTrip
from storage.prepared import Work, Write, together
from storage.quiet import note_write

log = logging.getLogger(__name__)


class SqlTurns:
    def __init__(
        self,
        engine: AsyncEngine,
        cipher: FieldCipher,
        clock: Clock,
        *,
        reads: AsyncEngine | None = None,
        trip: OneTrip | None = None,  # shared with other short writes, so SQLite's group commits take them all
    ):
        self._engine = engine
        self._reads = reads or engine  # on SQLite, connections that read a snapshot without waiting for the writer
        self._cipher = cipher
        self._clock = clock
        self._sweeps = SweepTimer()
        self._recent = RecentActivity()
        self._own_trip = trip is None
        self._trip = trip or OneTrip(engine)

    async def close(self) -> None:
        """Close the trip this made for itself (a shared one is closed by whoever made it)."""
        if self._own_trip:
            await self._trip.close()

    async def begin(self, claim: str | None, state_key: str | None) -> TurnStart:
        now = self._clock.now()
        if claim is None:
            if state_key is None:
                return TurnStart(True, None)
            async with self._reads.connect() as connection:
                return TurnStart(True, await read_state(connection, self._cipher, state_key))
        also, params = (STATE_COLUMNS, state_params(state_key)) if state_key else ((), None)
        # Whole on its own: the insert, or else (a redelivery) the conditional takeover, each one statement.
        won = await self._trip.steps(
            lambda: claim_steps(claim, now, also, params), synchronous=BOOKKEEPING, atomic=False, brief=True
        )
        if self._sweeps.due(now):
            await self._sweep()
        if won is None:
            return TurnStart(False, None)
        return TurnStart(True, state_from(self._cipher, state_key, *won) if state_key else None)

    async def end(
        self,
        claim: str | None,
        answer: InvokeAnswer | None,
        state: StateChange | None,
        activity: ActivityNote | None,
    ) -> bool:
        now = self._clock.now()
        note = activity if activity is not None and self._recent.due(activity, now) else None
        if claim is None and state is None and note is None:
            return True  # nothing to write: most turns of an activity without an id, and no transaction at all

        writes: list[Write] = []
        if claim is not None:
            writes.append(finish_write(self._cipher, claim, answer, now))
        if state is not None:
            writes.append(state_write(self._cipher, state, now))
        if note is not None:
            writes.append(note_write(note, now))
        state_at = int(claim is not None)  # where the state's count is in the outcome

        def bookkeeping() -> Work[bool]:
            outcome = yield together(*(statement for statement, _ in writes)), [values for _, values in writes]
            return state is None or outcome.counts[state_at] == 1

        # A transaction whose loss in a power cut only means a turn runs again (its effects are idempotent and were
        # committed durably by their own units of work), so SQLite need not flush it to disk at once. All of it is
        # one statement on PostgreSQL (storage.prepared.Together), atomic with no transaction around it.
        saved = await self._trip.steps(bookkeeping, synchronous=BOOKKEEPING, atomic=False, brief=True)
        if note is not None:
            self._recent.written(note, now)
        return saved

    async def answered(self, claim: str) -> InvokeAnswer | None:
        async with self._reads.connect() as connection:
            return await answered_on(connection, self._cipher, claim)

    async def _sweep(self) -> None:
        try:
            async with self._engine.begin() as connection:
                deleted = await sweep_on(connection, self._clock.now())
        except Exception:  # noqa: BLE001 - housekeeping must not fail the person's turn; the next sweep retries
            log.exception("could not delete expired inbound claims")
        else:
            self._sweeps.backlog(deleted, self._clock.now())
