"""Conversation activity and greeting claims in SQL (see bot/quiet.py for the rules).

Both are single statements that are atomic across replicas on SQLite and PostgreSQL: a conditional upsert for
activity (so an unchanged conversation is written at most once every RECORD_EVERY), and a primary-key insert that
does nothing on conflict for a greeting, taken over only when its lease ran out unfinished.
"""

from __future__ import annotations

import datetime as dt
import hashlib

from sqlalchemy import Boolean, String, and_, bindparam, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql import Insert

from bot.protocols import Clock
from bot.quiet import GREETING_LEASE, RECORD_EVERY, LastActivity
from bot.turns import ActivityNote
from storage.models import Base, UtcDateTime
from storage.prepared import Prepared, Write
from storage.repos import insert_for, insert_for_dialect


class ConversationActivityRow(Base):
    __tablename__ = "conversation_activity"
    school_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)  # person | channel
    key: Mapped[str] = mapped_column(String(255), primary_key=True)  # Entra object id or channel id
    last_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    in_conversation: Mapped[bool] = mapped_column(Boolean)


class GreetingRow(Base):
    __tablename__ = "greetings"
    school_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # SHA-256 of the conversation id: ids of any length make a fixed-size key.
    conversation_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    claimed_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    lease_until: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    greeted_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class SqlConversationActivity:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        *,
        read_sessions: async_sessionmaker[AsyncSession] | None = None,
    ) -> None:
        self._sessions = sessions
        self._read_sessions = read_sessions or sessions
        self._clock = clock

    async def record(self, school_id: str, kind: str, key: str, in_conversation: bool) -> None:
        async with self._sessions() as session, session.begin():
            note, now = ActivityNote(school_id, kind, key, in_conversation), self._clock.now()
            dialect = session.get_bind().dialect.name
            await session.execute(_note_statement(dialect), _note_values(note, now))

    async def last(self, school_id: str, kind: str, key: str) -> LastActivity | None:
        async with self._read_sessions() as session:
            row = (
                await session.execute(
                    select(ConversationActivityRow.last_at, ConversationActivityRow.in_conversation).where(
                        ConversationActivityRow.school_id == school_id,
                        ConversationActivityRow.kind == kind,
                        ConversationActivityRow.key == key,
                    )
                )
            ).first()
        return LastActivity(row.last_at, bool(row.in_conversation)) if row else None


def note_write(note: ActivityNote, now: dt.datetime) -> Write:
    """Note activity; a no-op unless the stored note is stale or its busy flag changed."""
    return _NOTE, _note_values(note, now)


def _note_values(note: ActivityNote, now: dt.datetime) -> dict[str, object]:
    return {
        "school_id": note.school_id,
        "kind": note.kind,
        "key": note.key,
        "now": now,
        "busy": note.busy,
        "stale_before": now - RECORD_EVERY,
    }


def _note_statement(dialect: str) -> Insert:
    table = ConversationActivityRow.__table__
    now, busy = bindparam("now", type_=UtcDateTime), bindparam("busy", type_=Boolean)
    return (
        insert_for_dialect(dialect)(table)
        .values(
            school_id=bindparam("school_id"),
            kind=bindparam("kind"),
            key=bindparam("key"),
            last_at=now,
            in_conversation=busy,
        )
        .on_conflict_do_update(
            index_elements=["school_id", "kind", "key"],
            set_={"last_at": now, "in_conversation": busy},
            where=or_(table.c.in_conversation != busy, table.c.last_at <= bindparam("stale_before", type_=UtcDateTime)),
        )
    )


_NOTE = Prepared(_note_statement)


def _conversation_key(conversation_id: str) -> str:
    return hashlib.sha256(conversation_id.encode("utf-8", "surrogatepass")).hexdigest()


class SqlGreetings:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    async def claim(self, school_id: str, conversation_id: str) -> bool:
        now = self._clock.now()
        key = _conversation_key(conversation_id)
        async with self._sessions() as session, session.begin():
            statement = insert_for(session)(GreetingRow).values(
                school_id=school_id, conversation_key=key, claimed_at=now, lease_until=now + GREETING_LEASE
            )
            won = await session.scalar(
                statement.on_conflict_do_nothing(index_elements=["school_id", "conversation_key"]).returning(
                    GreetingRow.conversation_key
                )
            )
            if won is None:  # a turn that claimed it and died before greeting leaves it to the next one
                won = await session.scalar(
                    update(GreetingRow)
                    .where(
                        GreetingRow.school_id == school_id,
                        GreetingRow.conversation_key == key,
                        and_(GreetingRow.greeted_at.is_(None), GreetingRow.lease_until < now),
                    )
                    .values(claimed_at=now, lease_until=now + GREETING_LEASE)
                    .returning(GreetingRow.conversation_key)
                )
        return won is not None

    async def greeted(self, school_id: str, conversation_id: str) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(GreetingRow)
                .where(
                    GreetingRow.school_id == school_id,
                    GreetingRow.conversation_key == _conversation_key(conversation_id),
                )
                .values(greeted_at=self._clock.now())
            )

    async def release(self, school_id: str, conversation_id: str) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(
                delete(GreetingRow).where(
                    GreetingRow.school_id == school_id,
                    GreetingRow.conversation_key == _conversation_key(conversation_id),
                )
            )
