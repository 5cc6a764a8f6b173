"""Inbound claims in SQL (see bot/inbound.py for the rule).

A claim is one primary-key insert that does nothing on conflict, so it is atomic across replicas on SQLite and
PostgreSQL alike; a claim whose lease ran out unfinished is taken over by a conditional update. An invoke's first
answer is sealed onto its claim, so a redelivery gets the same answer instead of a second effect. Claims are only
needed while Teams may still retry, so they expire after a day and are swept in small batches.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from sqlalchemy import String, Text, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from bot.inbound import CLAIM_LEASE, CLAIM_LIFETIME, InvokeAnswer
from bot.protocols import Clock
from storage.crypto import FieldCipher, row_context
from storage.models import Base, UtcDateTime, rows_changed
from storage.repos import insert_for

log = logging.getLogger(__name__)

RESPONSE_CONTEXT = "inbound_claims.response"


def response_context(key: str) -> str:
    """An answer is bound to the claim it answers, so a redelivery can never replay another activity's answer."""
    return row_context(RESPONSE_CONTEXT, key)


SWEEP_EVERY = dt.timedelta(minutes=10)
SWEEP_BATCH = 1_000


class InboundClaimRow(Base):
    __tablename__ = "inbound_claims"
    # SHA-256 of (channel id, conversation id, activity id): ids of any length make a fixed-size key.
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    claimed_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, index=True)
    # Until then the claiming turn owns it; past it with no finish, that turn died and a redelivery may take over.
    lease_until: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    # The first invoke's answer, sealed (it may be a case card); NULL until that turn finishes.
    response: Mapped[str | None] = mapped_column(Text)


class SqlInboundClaims:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        cipher: FieldCipher,
        clock: Clock,
        *,
        read_sessions: async_sessionmaker[AsyncSession] | None = None,
    ) -> None:
        self._sessions = sessions
        self._read_sessions = read_sessions or sessions
        self._cipher = cipher
        self._clock = clock
        self._next_sweep: dt.datetime | None = None

    async def claim(self, key: str) -> bool:
        """True for the first delivery of this activity, or a redelivery after the first one's turn died."""
        now = self._clock.now()
        async with self._sessions() as session, session.begin():
            statement = insert_for(session)(InboundClaimRow).values(
                key=key, claimed_at=now, lease_until=now + CLAIM_LEASE
            )
            won = await session.scalar(
                statement.on_conflict_do_nothing(index_elements=["key"]).returning(InboundClaimRow.key)
            )
            if won is None:  # only redeliveries pay for this second statement
                won = await session.scalar(
                    update(InboundClaimRow)
                    .where(
                        InboundClaimRow.key == key,
                        InboundClaimRow.finished_at.is_(None),
                        InboundClaimRow.lease_until < now,
                    )
                    .values(lease_until=now + CLAIM_LEASE)
                    .returning(InboundClaimRow.key)
                )
                if won is not None:
                    log.warning("an earlier delivery of this activity never finished; taking it over")
        if self._next_sweep is None or now >= self._next_sweep:
            self._next_sweep = now + SWEEP_EVERY
            try:
                deleted = await self.sweep()
            except Exception:  # noqa: BLE001 - housekeeping must not fail the person's turn; the next sweep retries
                log.exception("could not delete expired inbound claims")
            else:
                if deleted >= SWEEP_BATCH:  # a backlog (say, after downtime): sweep again on the next claim
                    self._next_sweep = now
        return won is not None

    async def sweep(self) -> int:
        """Delete up to one batch of expired claims; a bounded statement, so it never holds the database long."""
        cutoff = self._clock.now() - CLAIM_LIFETIME
        expired = select(InboundClaimRow.key).where(InboundClaimRow.claimed_at < cutoff).limit(SWEEP_BATCH)
        async with self._sessions() as session, session.begin():
            result = await session.execute(delete(InboundClaimRow).where(InboundClaimRow.key.in_(expired)))
        return rows_changed(result) or 0

    async def finish(self, key: str, answer: InvokeAnswer | None = None) -> None:
        """Mark the turn done, keeping an invoke's answer for its redeliveries."""
        values: dict[str, Any] = {"finished_at": self._clock.now()}
        if answer is not None:
            try:
                document = json.dumps({"status": answer.status, "body": answer.body})
            except (TypeError, ValueError):  # a body that is not JSON cannot be replayed; the status still can
                document = json.dumps({"status": answer.status, "body": None})
            values["response"] = self._cipher.encrypt(document, response_context(key))
        async with self._sessions() as session, session.begin():
            await session.execute(update(InboundClaimRow).where(InboundClaimRow.key == key).values(**values))

    async def answered(self, key: str) -> InvokeAnswer | None:
        """The first delivery's answer, or None while it is still running."""
        async with self._read_sessions() as session:
            sealed = await session.scalar(select(InboundClaimRow.response).where(InboundClaimRow.key == key))
        if sealed is None:
            return None
        document = json.loads(self._cipher.decrypt(sealed, response_context(key)))
        return InvokeAnswer(status=int(document["status"]), body=document["body"])
