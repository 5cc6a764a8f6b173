"""SQL models and repository for the Acceptable Use Policy: documents, acknowledgements and open requests."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping
from typing import Any, cast

from sqlalchemy import Boolean, Index, Integer, String, Table, Text, UniqueConstraint, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from bot.aup import Acknowledgement, Audience, AupDocument, AupRequest
from bot.protocols import Clock
from storage.crypto import FieldCipher
from storage.models import Base, UtcDateTime, WorkRow, rows_changed
from storage.repos import insert_for


class AupDocumentRow(Base):
    __tablename__ = "aup_documents"
    __table_args__ = (UniqueConstraint("school_id", "audience", "version", name="uq_aup_documents_version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    school_id: Mapped[str] = mapped_column(String(64))
    audience: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(255))
    summary: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    published_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    published_by: Mapped[str | None] = mapped_column(String(255))


class AupAcknowledgementRow(Base):
    __tablename__ = "aup_acknowledgements"
    __table_args__ = (
        UniqueConstraint("school_id", "person_id", "audience", "version", "cycle", name="uq_aup_acknowledgements_once"),
        Index("ix_aup_acknowledgements_version", "school_id", "audience", "version", "cycle"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    school_id: Mapped[str] = mapped_column(String(64))
    person_id: Mapped[str] = mapped_column(String(255))
    person_name: Mapped[str] = mapped_column(String(255))
    audience: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer)
    cycle: Mapped[str] = mapped_column(String(10))
    sha256: Mapped[str] = mapped_column(String(64))
    read_kcsie: Mapped[bool] = mapped_column(Boolean)
    agreed: Mapped[bool] = mapped_column(Boolean)
    acknowledged_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class AupRequestRow(Base):
    __tablename__ = "aup_requests"
    __table_args__ = (
        UniqueConstraint("school_id", "person_id", "audience", "version", "cycle", name="uq_aup_requests_once"),
        Index("ix_aup_requests_version", "school_id", "audience", "version", "cycle"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    school_id: Mapped[str] = mapped_column(String(64))
    person_id: Mapped[str] = mapped_column(String(255))
    audience: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer)
    cycle: Mapped[str] = mapped_column(String(10))
    owed_since: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    reminders_sent: Mapped[int] = mapped_column(Integer, default=0)
    escalated_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    last_card: Mapped[str | None] = mapped_column(String(255))
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


_REQUESTS = cast(Table, AupRequestRow.__table__)  # a mapped class's table, typed as the Table it is


def _document(row: AupDocumentRow) -> AupDocument:
    return AupDocument(
        row.school_id,
        Audience(row.audience),
        row.version,
        row.title,
        row.summary,
        row.text,
        row.sha256,
        row.published_at,
        row.published_by,
    )


def _ack(row: AupAcknowledgementRow) -> Acknowledgement:
    return Acknowledgement(
        row.school_id,
        row.person_id,
        row.person_name,
        Audience(row.audience),
        row.version,
        row.cycle,
        row.sha256,
        row.read_kcsie,
        row.agreed,
        row.acknowledged_at,
    )


def _request(row: AupRequestRow) -> AupRequest:
    return AupRequest(
        row.id,
        row.school_id,
        row.person_id,
        Audience(row.audience),
        row.version,
        row.cycle,
        row.owed_since,
        row.reminders_sent,
        row.escalated_at,
        row.last_card,
        row.acknowledged_at,
    )


class SqlAup:
    def __init__(self, session: AsyncSession, cipher: FieldCipher, clock: Clock) -> None:
        self._session = session
        self._cipher = cipher
        self._clock = clock

    # --- documents ---

    async def current(self, school_id: str, audience: Audience) -> AupDocument | None:
        row = await self._session.scalar(
            select(AupDocumentRow)
            .where(AupDocumentRow.school_id == school_id, AupDocumentRow.audience == audience.value)
            .order_by(AupDocumentRow.version.desc())
            .limit(1)
        )
        return _document(row) if row else None

    async def document(self, school_id: str, audience: Audience, version: int) -> AupDocument | None:
        row = await self._session.scalar(
            select(AupDocumentRow).where(
                AupDocumentRow.school_id == school_id,
                AupDocumentRow.audience == audience.value,
                AupDocumentRow.version == version,
            )
        )
        return _document(row) if row else None

    async def add_document(self, document: AupDocument) -> bool:
        """Store a version; False when that version already exists (so imports and double clicks are no-ops)."""
        statement = (
            insert_for(self._session)(AupDocumentRow)
            .values(
                school_id=document.school_id,
                audience=document.audience.value,
                version=document.version,
                title=document.title,
                summary=document.summary,
                text=document.text,
                sha256=document.sha256,
                published_at=document.published_at,
                published_by=document.published_by,
            )
            .on_conflict_do_nothing(index_elements=["school_id", "audience", "version"])
        )
        result = await self._session.execute(statement)
        return bool(rows_changed(result))

    # --- acknowledgements ---

    async def acknowledgement(
        self, school_id: str, person_id: str, audience: Audience, version: int, cycle: str
    ) -> Acknowledgement | None:
        row = await self._session.scalar(
            select(AupAcknowledgementRow).where(
                AupAcknowledgementRow.school_id == school_id,
                AupAcknowledgementRow.person_id == person_id,
                AupAcknowledgementRow.audience == audience.value,
                AupAcknowledgementRow.version == version,
                AupAcknowledgementRow.cycle == cycle,
            )
        )
        return _ack(row) if row else None

    async def acknowledgements(
        self, school_id: str, audience: Audience, version: int, cycle: str
    ) -> list[Acknowledgement]:
        rows = (
            await self._session.scalars(
                select(AupAcknowledgementRow)
                .where(
                    AupAcknowledgementRow.school_id == school_id,
                    AupAcknowledgementRow.audience == audience.value,
                    AupAcknowledgementRow.version == version,
                    AupAcknowledgementRow.cycle == cycle,
                )
                .order_by(AupAcknowledgementRow.id)
            )
        ).all()
        return [_ack(row) for row in rows]

    async def history(self, school_id: str, person_id: str) -> list[Acknowledgement]:
        rows = (
            await self._session.scalars(
                select(AupAcknowledgementRow)
                .where(AupAcknowledgementRow.school_id == school_id, AupAcknowledgementRow.person_id == person_id)
                .order_by(AupAcknowledgementRow.id)
            )
        ).all()
        return [_ack(row) for row in rows]

    async def add_acknowledgement(self, ack: Acknowledgement) -> bool:
        """Record once; False when this person already acknowledged this version in this cycle."""
        statement = (
            insert_for(self._session)(AupAcknowledgementRow)
            .values(
                school_id=ack.school_id,
                person_id=ack.person_id,
                person_name=ack.person_name,
                audience=ack.audience.value,
                version=ack.version,
                cycle=ack.cycle,
                sha256=ack.sha256,
                read_kcsie=ack.read_kcsie,
                agreed=ack.agreed,
                acknowledged_at=ack.at,
            )
            .on_conflict_do_nothing(index_elements=["school_id", "person_id", "audience", "version", "cycle"])
        )
        result = await self._session.execute(statement)
        return bool(rows_changed(result))

    # --- requests ---

    async def request(
        self, school_id: str, person_id: str, audience: Audience, version: int, cycle: str
    ) -> AupRequest | None:
        row = await self._session.scalar(
            select(AupRequestRow).where(
                AupRequestRow.school_id == school_id,
                AupRequestRow.person_id == person_id,
                AupRequestRow.audience == audience.value,
                AupRequestRow.version == version,
                AupRequestRow.cycle == cycle,
            )
        )
        return _request(row) if row else None

    async def requests(self, school_id: str, audience: Audience, version: int, cycle: str) -> list[AupRequest]:
        rows = (
            await self._session.scalars(
                select(AupRequestRow)
                .where(
                    AupRequestRow.school_id == school_id,
                    AupRequestRow.audience == audience.value,
                    AupRequestRow.version == version,
                    AupRequestRow.cycle == cycle,
                )
                .order_by(AupRequestRow.id)
            )
        ).all()
        return [_request(row) for row in rows]

    async def settled_people(
        self, school_id: str, audience: Audience, version: int, cycle: str, among: Collection[str] | None = None
    ) -> set[str]:
        """Who has already been asked for, or has acknowledged, this version in this cycle (of `among`, if given):
        one query."""
        asked = select(AupRequestRow.person_id).where(
            AupRequestRow.school_id == school_id,
            AupRequestRow.audience == audience.value,
            AupRequestRow.version == version,
            AupRequestRow.cycle == cycle,
        )
        acknowledged = select(AupAcknowledgementRow.person_id).where(
            AupAcknowledgementRow.school_id == school_id,
            AupAcknowledgementRow.audience == audience.value,
            AupAcknowledgementRow.version == version,
            AupAcknowledgementRow.cycle == cycle,
        )
        if among is not None:
            asked = asked.where(AupRequestRow.person_id.in_(list(among)))
            acknowledged = acknowledged.where(AupAcknowledgementRow.person_id.in_(list(among)))
        return set((await self._session.scalars(asked.union(acknowledged))).all())

    async def open_request(
        self,
        school_id: str,
        person_id: str,
        audience: Audience,
        version: int,
        cycle: str,
        at: dt.datetime,
        last_card: str | None = None,
    ) -> tuple[AupRequest, bool]:
        """The request for this person, version and cycle, and whether this call created it (with `last_card`, the
        card it is about to queue). A new one costs one statement."""
        created = await self.open_requests(school_id, audience, version, cycle, at, {person_id: last_card})
        if person_id in created:
            return created[person_id], True
        request = await self.request(school_id, person_id, audience, version, cycle)
        assert request is not None  # the conflict was with it
        return request, False

    async def open_requests(
        self,
        school_id: str,
        audience: Audience,
        version: int,
        cycle: str,
        at: dt.datetime,
        last_cards: Mapping[str, str | None],
    ) -> dict[str, AupRequest]:
        """open_request for many people at once ({person_id: the card about to be queued}): the requests this call
        created, by person. The unique key still decides who is new, so of two sweeps (or a sweep and someone's
        `aup`) only one opens each request; anyone missing from the answer was opened by someone else."""
        # In person-id order: two such inserts on PostgreSQL then wait on each other's rows in one order, never in a
        # cycle (a deadlock), whatever the two batches hold.
        rows = [
            dict(
                school_id=school_id,
                person_id=person_id,
                audience=audience.value,
                version=version,
                cycle=cycle,
                owed_since=at,
                reminders_sent=0,
                last_card=last_cards[person_id],
            )
            for person_id in sorted(last_cards)
        ]
        if not rows:
            return {}
        # One statement over every row (SQLAlchemy renders it as multi-row VALUES, compiled once); RETURNING names
        # only the rows it inserted, not those the unique key turned away.
        statement = (
            insert_for(self._session)(_REQUESTS)
            .on_conflict_do_nothing(index_elements=["school_id", "person_id", "audience", "version", "cycle"])
            .returning(_REQUESTS.c.id, _REQUESTS.c.person_id)
        )
        return {
            row.person_id: AupRequest(
                row.id, school_id, row.person_id, audience, version, cycle, at, last_card=last_cards[row.person_id]
            )
            for row in (await self._session.execute(statement, rows)).all()
        }

    async def send_state(self, dedupe_key: str) -> tuple[str, dt.datetime] | None:
        """The outbox status of a queued card (pending, running, done, failed, cancelled) and when it was queued."""
        row = (
            await self._session.execute(
                select(WorkRow.status, WorkRow.created_at).where(WorkRow.dedupe_key == dedupe_key)
            )
        ).first()
        return (row.status, row.created_at) if row else None

    async def update_request(self, request_id: int, **changes: Any) -> None:
        allowed = {"reminders_sent", "escalated_at", "last_card", "acknowledged_at"}
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"cannot change {sorted(unknown)} on an AUP request")
        await self._session.execute(update(AupRequestRow).where(AupRequestRow.id == request_id).values(**changes))
