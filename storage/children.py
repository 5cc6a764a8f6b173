"""Child records and the links from cases to children and to a member of staff; names and ids are encrypted."""

from __future__ import annotations

import datetime as dt
import secrets

from sqlalchemy import ForeignKey, Index, Integer, String, Text, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from bot.children import Child, ChildInput, name_matches, query_words
from bot.protocols import Clock
from storage.crypto import FieldCipher, row_context
from storage.models import Base, UtcDateTime, rows_changed

SECRET_FIELDS = ("name", "date_of_birth", "upn", "mis_id")
TOKEN_BYTES = 24


class ChildRow(Base):
    __tablename__ = "children"
    __table_args__ = (
        Index("uq_children_token", "school_id", "token", unique=True),
        # One record per directory pupil; NULL (typed records) never collides.
        Index("uq_children_directory", "school_id", "directory_id", unique=True),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    school_id: Mapped[str] = mapped_column(String(64))
    token: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(Text)  # encrypted
    date_of_birth: Mapped[str | None] = mapped_column(Text)  # encrypted ISO date
    upn: Mapped[str | None] = mapped_column(Text)  # encrypted
    mis_id: Mapped[str | None] = mapped_column(Text)  # encrypted
    year_group: Mapped[str | None] = mapped_column(String(40))  # clear: says little alone, and lists group by it
    source: Mapped[str] = mapped_column(String(16))
    directory_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    created_by: Mapped[str | None] = mapped_column(String(255))


class CaseLinkRow(Base):
    __tablename__ = "case_links"
    __table_args__ = (
        Index("uq_case_links_child", "incident_id", "child_id", unique=True),
        Index("uq_case_links_staff", "incident_id", "staff_id", unique=True),
        Index("ix_case_links_child", "school_id", "child_id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    school_id: Mapped[str] = mapped_column(String(64))
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"))
    child_id: Mapped[int | None] = mapped_column(ForeignKey("children.id"))
    staff_id: Mapped[str | None] = mapped_column(String(255))  # the directory's person id
    staff_name: Mapped[str | None] = mapped_column(Text)  # encrypted: who an allegation is about
    linked_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    linked_by: Mapped[str | None] = mapped_column(String(255))


def child_context(field: str, school_id: str, token: str) -> str:
    """A child's sealed field is bound to its school and token (set before the insert, never reused)."""
    return row_context(f"children.{field}", school_id, token)


def staff_context(school_id: str, incident_id: int, staff_id: str) -> str:
    return row_context("case_links.staff_name", school_id, incident_id, staff_id)


class SqlChildren:
    def __init__(self, session: AsyncSession, cipher: FieldCipher, clock: Clock) -> None:
        self._session = session
        self._cipher = cipher
        self._clock = clock

    async def add(
        self,
        school_id: str,
        details: ChildInput,
        *,
        source: str = "local",
        directory_id: str | None = None,
        created_by: str | None = None,
    ) -> Child:
        token = secrets.token_urlsafe(TOKEN_BYTES)
        values = {
            "name": details.name,
            "upn": details.upn,
            "mis_id": details.mis_id,
            "date_of_birth": details.date_of_birth.isoformat() if details.date_of_birth else None,
        }
        row = ChildRow(
            school_id=school_id,
            token=token,
            year_group=details.year_group,
            source=source,
            directory_id=directory_id,
            created_at=self._clock.now(),
            created_by=created_by,
            **{f: self._cipher.encrypt(values[f], child_context(f, school_id, token)) for f in SECRET_FIELDS},
        )
        if directory_id is None:
            self._session.add(row)
            await self._session.flush()
            return self._to_child(row)
        try:
            # Two people picking the same pupil at once: the second finds the first one's record, and only the
            # savepoint is lost, not their unit of work.
            async with self._session.begin_nested():
                self._session.add(row)
        except IntegrityError:
            existing = await self.by_directory_id(school_id, directory_id)
            if existing is None:
                raise
            return existing
        return self._to_child(row)

    async def by_token(self, school_id: str, token: str) -> Child | None:
        row = await self._session.scalar(
            select(ChildRow).where(ChildRow.school_id == school_id, ChildRow.token == token)
        )
        return self._to_child(row) if row else None

    async def by_directory_id(self, school_id: str, directory_id: str) -> Child | None:
        row = await self._session.scalar(
            select(ChildRow).where(ChildRow.school_id == school_id, ChildRow.directory_id == directory_id)
        )
        return self._to_child(row) if row else None

    async def search(self, school_id: str, query: str, limit: int = 10) -> list[Child]:
        """Records whose name has a part starting with every word of the query.

        Names are encrypted, each bound to its own row, so the database cannot compare them: the school's records
        are opened here and matched in Python. A school has hundreds to a few thousand children, which is quick.
        """
        words = query_words(query)
        if not words:
            return []
        rows = (
            await self._session.scalars(select(ChildRow).where(ChildRow.school_id == school_id).order_by(ChildRow.id))
        ).all()
        found = [c for c in (self._to_child(r) for r in rows) if name_matches(words, c.name)]
        return sorted(found, key=lambda c: (c.name.casefold(), c.id))[:limit]

    # --- links --------------------------------------------------------------------------------------------------

    async def link_child(self, school_id: str, incident_id: int, child_id: int, linked_by: str) -> bool:
        """False when the child was linked to the case already."""
        existing = await self._session.scalar(
            select(CaseLinkRow.id).where(CaseLinkRow.incident_id == incident_id, CaseLinkRow.child_id == child_id)
        )
        if existing is not None:
            return False
        try:
            async with self._session.begin_nested():  # someone linking the same child at this moment wins
                self._session.add(
                    CaseLinkRow(
                        school_id=school_id,
                        incident_id=incident_id,
                        child_id=child_id,
                        linked_at=self._clock.now(),
                        linked_by=linked_by,
                    )
                )
        except IntegrityError:
            return False
        return True

    async def unlink_child(self, school_id: str, incident_id: int, child_id: int) -> bool:
        result = await self._session.execute(
            delete(CaseLinkRow).where(
                CaseLinkRow.school_id == school_id,
                CaseLinkRow.incident_id == incident_id,
                CaseLinkRow.child_id == child_id,
            )
        )
        return rows_changed(result) > 0

    async def children_of(self, school_id: str, incident_id: int) -> list[Child]:
        rows = (
            await self._session.scalars(
                select(ChildRow)
                .join(CaseLinkRow, CaseLinkRow.child_id == ChildRow.id)
                .where(CaseLinkRow.school_id == school_id, CaseLinkRow.incident_id == incident_id)
                .order_by(CaseLinkRow.id)
            )
        ).all()
        return [self._to_child(r) for r in rows]

    async def cases_of(self, school_id: str, child_id: int) -> list[int]:
        """The ids of every case the child is linked to, oldest link first."""
        return list(
            (
                await self._session.scalars(
                    select(CaseLinkRow.incident_id)
                    .where(CaseLinkRow.school_id == school_id, CaseLinkRow.child_id == child_id)
                    .order_by(CaseLinkRow.id)
                )
            ).all()
        )

    async def link_staff(
        self, school_id: str, incident_id: int, staff_id: str, staff_name: str, linked_by: str
    ) -> bool:
        """The one member of staff an allegation is about; replaces an earlier choice. False if unchanged."""
        current = await self.staff_of(school_id, incident_id)
        if current is not None and current[0] == staff_id:
            return False
        await self._session.execute(
            delete(CaseLinkRow).where(
                CaseLinkRow.school_id == school_id,
                CaseLinkRow.incident_id == incident_id,
                CaseLinkRow.staff_id.is_not(None),
            )
        )
        self._session.add(
            CaseLinkRow(
                school_id=school_id,
                incident_id=incident_id,
                staff_id=staff_id,
                linked_at=self._clock.now(),
                linked_by=linked_by,
                staff_name=self._cipher.encrypt(staff_name, staff_context(school_id, incident_id, staff_id)),
            )
        )
        await self._session.flush()
        return True

    async def staff_of(self, school_id: str, incident_id: int) -> tuple[str, str] | None:
        """(person id, name) of the member of staff linked to the case, if any."""
        row = await self._session.scalar(
            select(CaseLinkRow).where(
                CaseLinkRow.school_id == school_id,
                CaseLinkRow.incident_id == incident_id,
                CaseLinkRow.staff_id.is_not(None),
            )
        )
        if row is None:
            return None
        staff_id = row.staff_id
        assert staff_id is not None  # selected by it
        name = self._cipher.decrypt(row.staff_name, staff_context(school_id, incident_id, staff_id))
        return staff_id, name or ""

    def _to_child(self, row: ChildRow) -> Child:
        opened = {
            f: self._cipher.decrypt(getattr(row, f), child_context(f, row.school_id, row.token)) for f in SECRET_FIELDS
        }
        born = opened["date_of_birth"]
        return Child(
            token=row.token,
            name=opened["name"] or "",
            year_group=row.year_group,
            date_of_birth=dt.date.fromisoformat(born) if born else None,
            upn=opened["upn"],
            mis_id=opened["mis_id"],
            source=row.source,
            directory_id=row.directory_id,
            id=row.id,
        )
