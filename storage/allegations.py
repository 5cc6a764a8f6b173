"""Statutory records on a case: the UKCIS initial review and the allegation manager's decisions, and the
low-level concerns register. Typed reasons and notes live on the (encrypted) chronology; rows here hold answers."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, UniqueConstraint, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from bot.allegations import CaseDecision, LowLevelConcern
from bot.incidents import Status
from bot.protocols import Clock
from storage.incidents import IncidentRow
from storage.models import Base, UtcDateTime

UKCIS_KIND = "ukcis"


class CaseDecisionRow(Base):
    __tablename__ = "case_decisions"
    __table_args__ = (UniqueConstraint("incident_id", "kind", name="uq_case_decisions_kind"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    school_id: Mapped[str] = mapped_column(String(64))
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"))
    kind: Mapped[str] = mapped_column(String(32))  # "ukcis", or "decision.<key>" for an allegation's decision
    answers: Mapped[dict] = mapped_column(JSON)  # yes/no answers only: never typed text
    decided_by: Mapped[str] = mapped_column(String(255))
    decided_by_name: Mapped[str] = mapped_column(String(255))
    decided_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class SqlAllegations:
    def __init__(self, session: AsyncSession, clock: Clock) -> None:
        self._session = session
        self._clock = clock

    async def record_once(
        self, school_id: str, incident_id: int, kind: str, answers: dict[str, Any], by_id: str, by_name: str
    ) -> bool:
        """False when this record was made already (someone else, or a second press of the button)."""
        if await self.get(school_id, incident_id, kind) is not None:
            return False
        try:
            async with self._session.begin_nested():
                self._session.add(self._row(school_id, incident_id, kind, answers, by_id, by_name))
        except IntegrityError:
            return False
        return True

    async def put(
        self, school_id: str, incident_id: int, kind: str, answers: dict[str, Any], by_id: str, by_name: str
    ) -> None:
        """Record a decision, replacing an earlier one (the chronology keeps every change)."""
        row = await self._session.scalar(
            select(CaseDecisionRow).where(
                CaseDecisionRow.school_id == school_id,
                CaseDecisionRow.incident_id == incident_id,
                CaseDecisionRow.kind == kind,
            )
        )
        if row is None:
            self._session.add(self._row(school_id, incident_id, kind, answers, by_id, by_name))
        else:
            row.answers, row.decided_by, row.decided_by_name = answers, by_id, by_name
            row.decided_at = self._clock.now()
        await self._session.flush()

    async def get(self, school_id: str, incident_id: int, kind: str) -> CaseDecision | None:
        row = await self._session.scalar(
            select(CaseDecisionRow).where(
                CaseDecisionRow.school_id == school_id,
                CaseDecisionRow.incident_id == incident_id,
                CaseDecisionRow.kind == kind,
            )
        )
        return _decision(row) if row else None

    async def all_for(self, school_id: str, incident_id: int) -> list[CaseDecision]:
        rows = (
            await self._session.scalars(
                select(CaseDecisionRow)
                .where(CaseDecisionRow.school_id == school_id, CaseDecisionRow.incident_id == incident_id)
                .order_by(CaseDecisionRow.id)
            )
        ).all()
        return [_decision(r) for r in rows]

    async def low_level_concerns(self, school_id: str) -> list[LowLevelConcern]:
        """Every low-level concern, open or closed: the person each is about is the one excluded from it by id."""
        rows = (
            await self._session.execute(
                select(IncidentRow.reference, IncidentRow.reported_at, IncidentRow.status, IncidentRow.excluded_ids)
                .where(IncidentRow.school_id == school_id, IncidentRow.subject_kind == "staff_low_level")
                .order_by(IncidentRow.reported_at, IncidentRow.id)
            )
        ).all()
        return [
            LowLevelConcern(
                reference=r.reference,
                reported_at=r.reported_at,
                closed=r.status == Status.CLOSED.value,
                person_ids=tuple(r.excluded_ids or ()),
            )
            for r in rows
        ]

    def _row(
        self, school_id: str, incident_id: int, kind: str, answers: dict[str, Any], by_id: str, by_name: str
    ) -> CaseDecisionRow:
        return CaseDecisionRow(
            school_id=school_id,
            incident_id=incident_id,
            kind=kind,
            answers=answers,
            decided_by=by_id,
            decided_by_name=by_name,
            decided_at=self._clock.now(),
        )


def _decision(row: CaseDecisionRow) -> CaseDecision:
    return CaseDecision(
        kind=row.kind,
        answers=dict(row.answers or {}),
        by_id=row.decided_by,
        by_name=row.decided_by_name,
        at=row.decided_at,
    )
