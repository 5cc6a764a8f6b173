"""Export requests: the opaque token a file consent card carries, who asked, and where the request is up to."""

from __future__ import annotations

import datetime as dt
import secrets

from sqlalchemy import Integer, String, UniqueConstraint, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from bot.exports import ExportRequest
from bot.protocols import Clock
from storage.models import Base, UtcDateTime, rows_changed


class ExportRequestRow(Base):
    """One offer of a file to one person. Nothing about the case is kept here: the file is regenerated, from the
    directory's current view of the person, when they accept."""

    __tablename__ = "export_requests"
    __table_args__ = (UniqueConstraint("token", name="uq_export_requests_token"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    school_id: Mapped[str] = mapped_column(String(64))
    token: Mapped[str] = mapped_column(String(64))  # random; the card's accept and decline contexts carry only this
    person_id: Mapped[str] = mapped_column(String(255))  # who asked: the only person whose consent counts
    kind: Mapped[str] = mapped_column(String(16))  # case | child
    subject: Mapped[str] = mapped_column(String(255))  # the case's or child's opaque token
    format: Mapped[str] = mapped_column(String(8))  # pdf | json
    status: Mapped[str] = mapped_column(String(16))  # offered | accepted | declined | sent | failed
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


def _request(row: ExportRequestRow) -> ExportRequest:
    return ExportRequest(
        school_id=row.school_id,
        token=row.token,
        person_id=row.person_id,
        kind=row.kind,
        subject=row.subject,
        format=row.format,
        status=row.status,
        created_at=row.created_at,
    )


class SqlExports:
    def __init__(self, session: AsyncSession, clock: Clock) -> None:
        self._session = session
        self._clock = clock

    async def add(self, school_id: str, person_id: str, kind: str, subject: str, fmt: str) -> ExportRequest:
        now = self._clock.now()
        row = ExportRequestRow(
            school_id=school_id,
            token=secrets.token_urlsafe(24),
            person_id=person_id,
            kind=kind,
            subject=subject,
            format=fmt,
            status="offered",
            created_at=now,
            updated_at=now,
        )
        self._session.add(row)
        await self._session.flush()
        return _request(row)

    async def get(self, school_id: str, token: str) -> ExportRequest | None:
        row = await self._session.scalar(
            select(ExportRequestRow).where(ExportRequestRow.school_id == school_id, ExportRequestRow.token == token)
        )
        return _request(row) if row is not None else None

    async def move(self, school_id: str, token: str, from_status: str, to_status: str) -> bool:
        """Change the status only from the one expected: of two answers to the same card, one wins."""
        result = await self._session.execute(
            update(ExportRequestRow)
            .where(
                ExportRequestRow.school_id == school_id,
                ExportRequestRow.token == token,
                ExportRequestRow.status == from_status,
            )
            .values(status=to_status, updated_at=self._clock.now())
        )
        return rows_changed(result) == 1
