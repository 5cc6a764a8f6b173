"""The outbox's backlog for the metrics endpoint: counts and times only, no payload is read or decrypted."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.crypto import FieldCipher
from storage.delivery import SqlDeliveries
from storage.models import WorkRow
from storage.repos import SEND_KIND

UNSENT = ("pending", "running")


@dataclass(frozen=True)
class OutboxBacklog:
    unsent: int  # sends queued and not yet delivered or given up (waiting, retrying or in hand)
    oldest_queued: dt.datetime | None  # when the longest-waiting of them was queued
    undelivered: int  # tracked sends (alerts) that failed for good since the window's start


class SqlOutboxStats:
    """Read on its own short transaction (the read-only engine on SQLite), so a scrape never waits on a writer."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], cipher: FieldCipher) -> None:
        self._sessions = sessions
        self._cipher = cipher

    async def backlog(self, undelivered_since: dt.datetime) -> OutboxBacklog:
        async with self._sessions() as session, session.begin():
            unsent, oldest = (
                await session.execute(
                    select(func.count(), func.min(WorkRow.created_at)).where(
                        WorkRow.kind == SEND_KIND, WorkRow.status.in_(UNSENT)
                    )
                )
            ).one()
            undelivered = await SqlDeliveries(session, self._cipher).count_failed(undelivered_since)
        return OutboxBacklog(int(unsent or 0), oldest, undelivered)  # min() keeps the column's UTC type
