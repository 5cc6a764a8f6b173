"""SQL model and repository for termly filtering checks (bot/filtering_check.py)."""

from __future__ import annotations

import datetime as dt
import json

from sqlalchemy import Index, Integer, String, Text, UniqueConstraint, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from bot.filtering_check import FilteringCheck, TestResult
from bot.protocols import Clock
from storage.crypto import FieldCipher
from storage.models import Base, UtcDateTime
from storage.repos import insert_for

NOTES_CONTEXT = "filtering_checks.notes"


def notes_context(school_id: str, token: str) -> str:
    # Bound to the card's token, known before the insert, so the notes are sealed in the same statement.
    return f"{NOTES_CONTEXT}:{school_id}:{token}"


class FilteringCheckRow(Base):
    __tablename__ = "filtering_checks"
    __table_args__ = (
        UniqueConstraint("school_id", "form_token", name="uq_filtering_checks_token"),
        Index("ix_filtering_checks_school_run_at", "school_id", "run_at"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    school_id: Mapped[str] = mapped_column(String(64))
    form_token: Mapped[str] = mapped_column(String(64))
    run_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    run_by_id: Mapped[str] = mapped_column(String(255))
    run_by_name: Mapped[str] = mapped_column(String(255))
    run_by_role: Mapped[str] = mapped_column(String(64))
    device: Mapped[str] = mapped_column(String(255))
    results: Mapped[str] = mapped_column(Text)  # JSON: [{key, label, outcome}] in the policy's order
    notes: Mapped[str | None] = mapped_column(Text)  # encrypted: findings can name people or devices


class SqlFilteringChecks:
    def __init__(self, session: AsyncSession, cipher: FieldCipher, clock: Clock) -> None:
        self._session = session
        self._cipher = cipher
        self._clock = clock

    async def add(
        self,
        school_id: str,
        token: str,
        run_by_id: str,
        run_by_name: str,
        run_by_role: str,
        device: str,
        results: list[TestResult],
        notes: str | None,
    ) -> tuple[FilteringCheck, bool]:
        statement = (
            insert_for(self._session)(FilteringCheckRow)
            .values(
                school_id=school_id,
                form_token=token,
                run_at=self._clock.now(),
                run_by_id=run_by_id,
                run_by_name=run_by_name,
                run_by_role=run_by_role,
                device=device,
                results=json.dumps([{"key": r.key, "label": r.label, "outcome": r.outcome} for r in results]),
                notes=self._cipher.encrypt(notes, notes_context(school_id, token)),
            )
            .on_conflict_do_nothing(index_elements=["school_id", "form_token"])
            .returning(FilteringCheckRow.id)
        )
        new_id = (await self._session.execute(statement)).scalar_one_or_none()
        row = (
            await self._session.scalars(
                select(FilteringCheckRow).where(
                    FilteringCheckRow.school_id == school_id, FilteringCheckRow.form_token == token
                )
            )
        ).one()
        return self._check(row), new_id is not None

    async def between(self, school_id: str, start: dt.datetime, end: dt.datetime) -> list[FilteringCheck]:
        rows = (
            await self._session.scalars(
                select(FilteringCheckRow)
                .where(
                    FilteringCheckRow.school_id == school_id,
                    FilteringCheckRow.run_at >= start,
                    FilteringCheckRow.run_at <= end,
                )
                .order_by(FilteringCheckRow.run_at, FilteringCheckRow.id)
            )
        ).all()
        return [self._check(r) for r in rows]

    async def latest(self, school_id: str) -> FilteringCheck | None:
        row = (
            await self._session.scalars(
                select(FilteringCheckRow)
                .where(FilteringCheckRow.school_id == school_id)
                .order_by(FilteringCheckRow.run_at.desc(), FilteringCheckRow.id.desc())
                .limit(1)
            )
        ).first()
        return self._check(row) if row is not None else None

    def _check(self, row: FilteringCheckRow) -> FilteringCheck:
        results = tuple(TestResult(str(r["key"]), str(r["label"]), str(r["outcome"])) for r in json.loads(row.results))
        return FilteringCheck(
            row.id,
            row.school_id,
            row.run_at,
            row.run_by_id,
            row.run_by_name,
            row.run_by_role,
            row.device,
            results,
            self._cipher.decrypt(row.notes, notes_context(row.school_id, row.form_token)),
        )
