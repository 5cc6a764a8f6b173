"""SQL models and repository for the review calendar."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, Date, Index, Integer, String, Text, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from bot.protocols import Clock
from bot.reviews import ReviewItem
from storage.crypto import FieldCipher, row_context
from storage.models import Base, UtcDateTime
from storage.repos import insert_for

NOTES_CONTEXT = "review_items.notes"


def notes_context(school_id: str, review_id: int) -> str:
    """Notes are sealed when a review is completed, after its insert, so the row id is known and bound in."""
    return row_context(NOTES_CONTEXT, school_id, review_id)


class ReviewRow(Base):
    """One review of one kind with its due date; `open_key` is set while open, so a school has one open per kind."""

    __tablename__ = "review_items"
    __table_args__ = (Index("ix_review_items_school", "school_id", "kind"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    school_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(64))
    open_key: Mapped[str | None] = mapped_column(String(160), unique=True)
    due_on: Mapped[dt.date] = mapped_column(Date)
    owner_role: Mapped[str] = mapped_column(String(32))
    reminders_sent: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    completed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    completed_by_id: Mapped[str | None] = mapped_column(String(255))
    completed_by_name: Mapped[str | None] = mapped_column(String(255))
    notes: Mapped[str | None] = mapped_column(Text)  # encrypted: findings can mention people
    next_due_on: Mapped[dt.date | None] = mapped_column(Date)


class SqlReviews:
    def __init__(self, session: AsyncSession, cipher: FieldCipher, clock: Clock) -> None:
        self._session = session
        self._cipher = cipher
        self._clock = clock

    def _item(self, row: ReviewRow) -> ReviewItem:
        return ReviewItem(
            row.id,
            row.school_id,
            row.kind,
            row.due_on,
            row.owner_role,
            tuple(row.reminders_sent or ()),
            row.created_at,
            row.completed_at,
            row.completed_by_name,
            self._cipher.decrypt(row.notes, notes_context(row.school_id, row.id)),
            row.next_due_on,
        )

    async def ensure_open(self, school_id: str, kind: str, due_on: dt.date, owner_role: str) -> ReviewItem | None:
        statement = (
            insert_for(self._session)(ReviewRow)
            .values(
                school_id=school_id,
                kind=kind,
                open_key=f"{school_id}:{kind}",
                due_on=due_on,
                owner_role=owner_role,
                reminders_sent=[],
                created_at=self._clock.now(),
            )
            .on_conflict_do_nothing(index_elements=["open_key"])
            .returning(ReviewRow.id)
        )
        new_id = (await self._session.execute(statement)).scalar_one_or_none()
        return await self.get(school_id, new_id) if new_id is not None else None

    async def get(self, school_id: str, review_id: int) -> ReviewItem | None:
        row = await self._session.get(ReviewRow, review_id, populate_existing=True)
        if row is None or row.school_id != school_id:
            return None
        return self._item(row)

    async def open_items(self, school_id: str) -> list[ReviewItem]:
        rows = (
            await self._session.scalars(
                select(ReviewRow)
                .where(ReviewRow.school_id == school_id, ReviewRow.completed_at.is_(None))
                .order_by(ReviewRow.due_on, ReviewRow.id)
            )
        ).all()
        return [self._item(r) for r in rows]

    async def completed(self, school_id: str, limit: int = 5) -> list[ReviewItem]:
        rows = (
            await self._session.scalars(
                select(ReviewRow)
                .where(ReviewRow.school_id == school_id, ReviewRow.completed_at.is_not(None))
                .order_by(ReviewRow.completed_at.desc(), ReviewRow.id.desc())
                .limit(limit)
            )
        ).all()
        return [self._item(r) for r in rows]

    async def mark_reminded(self, review_id: int, label: str) -> None:
        row = await self._session.get(ReviewRow, review_id, populate_existing=True, with_for_update=True)
        if row is not None and label not in (row.reminders_sent or []):
            row.reminders_sent = [*(row.reminders_sent or []), label]
            await self._session.flush()

    async def complete(
        self, school_id: str, review_id: int, by_id: str, by_name: str, notes: str, next_due_on: dt.date
    ) -> ReviewItem | None:
        changed = (
            await self._session.execute(
                update(ReviewRow)
                .where(ReviewRow.school_id == school_id, ReviewRow.id == review_id, ReviewRow.completed_at.is_(None))
                .values(
                    completed_at=self._clock.now(),
                    completed_by_id=by_id,
                    completed_by_name=by_name,
                    notes=self._cipher.encrypt(notes, notes_context(school_id, review_id)),
                    next_due_on=next_due_on,
                    open_key=None,
                )
                .returning(ReviewRow.id)
            )
        ).scalar_one_or_none()
        return await self.get(school_id, review_id) if changed is not None else None
