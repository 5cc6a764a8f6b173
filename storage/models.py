"""SQLAlchemy models. Every table carries school_id; repositories turn rows into bot/ dataclasses."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, cast

from sqlalchemy import (
    JSON,
    Boolean,
    CursorResult,
    DateTime,
    Index,
    Integer,
    Result,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UtcDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on both SQLite (which stores them naive) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)

    def bind_processor(self, dialect: Any) -> Callable[[dt.datetime | None], Any] | None:
        """On SQLite, the text SQLAlchemy's DATETIME stores (its default format, which always has the microseconds),
        written in one step: through process_bind_param and then the dialect's own formatting, each value cost
        twice as much, three times a turn."""
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)  # type: ignore[no-any-return]

        def process(value: dt.datetime | None) -> str | None:
            if value is None:
                return None
            if value.tzinfo is None:
                raise ValueError("naive datetime given to a UTC column")
            utc = value if value.tzinfo is dt.UTC else value.astimezone(dt.UTC)
            return utc.replace(tzinfo=None).isoformat(" ", "microseconds")

        return process


class Base(DeclarativeBase):
    pass


class ConversationRefRow(Base):
    """Where the bot can reach a person (1:1) or a channel, learned from the activities it sees."""

    __tablename__ = "conversation_refs"
    school_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)  # person | channel
    key: Mapped[str] = mapped_column(String(255), primary_key=True)  # Entra object id or channel id
    name: Mapped[str | None] = mapped_column(String(255))
    team_id: Mapped[str | None] = mapped_column(String(255))
    reference: Mapped[dict] = mapped_column(JSON)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class AuditRow(Base):
    __tablename__ = "audit_events"
    __table_args__ = (
        UniqueConstraint("school_id", "seq"),
        Index("ix_audit_record", "school_id", "record_type", "record_id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    school_id: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    actor_id: Mapped[str | None] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64))
    record_type: Mapped[str] = mapped_column(String(64))
    record_id: Mapped[str | None] = mapped_column(String(255))
    detail: Mapped[dict] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    # Which audit key sealed this entry (HMAC); NULL for entries written before the HMAC chain (plain SHA-256).
    key_id: Mapped[str | None] = mapped_column(String(32))


class AuditHeadRow(Base):
    """The chain head per school; updating it first serialises concurrent appends."""

    __tablename__ = "audit_heads"
    school_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


class WorkRow(Base):
    """Durable work: proactive sends (kind 'send') and everything scheduled for later."""

    __tablename__ = "work_items"
    __table_args__ = (
        Index("ix_work_due", "status", "run_at"),
        Index("ix_work_delivery_group", "delivery_group"),
        Index("ix_work_about", "school_id", "about"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    school_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)  # encrypted JSON: messages can carry case details
    # Random, set before the insert; the payload is sealed to it. NULL only for rows from before revision 0013.
    row_key: Mapped[str | None] = mapped_column(String(32))
    run_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|running|done|failed|cancelled
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    locked_by: Mapped[str | None] = mapped_column(String(128))
    locked_until: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[str | None] = mapped_column(String(255))
    dedupe_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    # The delivery group a send belongs to (bot.delivery), so a group's outcomes are found without decrypting.
    delivery_group: Mapped[str | None] = mapped_column(String(255))
    # The case a send shows (its reference), so its posted cards can be found and replaced when access changes.
    about: Mapped[str | None] = mapped_column(String(64))
    # A send marked quiet (not urgent: an AUP card, a reminder, a digest). Due work is taken with these last, so a
    # concern's alert never waits behind the cards a publish has queued.
    quiet: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class BotStateRow(Base):
    """Bot Framework conversation and user state documents (encrypted JSON) with an e_tag."""

    __tablename__ = "bot_state"
    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(Text)
    document: Mapped[str] = mapped_column(Text)
    e_tag: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class CounterRow(Base):
    """Per-school sequences, such as incident references per year."""

    __tablename__ = "counters"
    school_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(Integer)


def rows_changed(result: Result[Any]) -> int:
    """How many rows an INSERT, UPDATE or DELETE changed (the async session types every result as a plain Result)."""
    return cast(CursorResult[Any], result).rowcount
