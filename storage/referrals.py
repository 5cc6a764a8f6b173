"""Referrals made on a case and the referral clocks its policy requires; their references and reasons are sealed."""

from __future__ import annotations

import datetime as dt
import secrets

from sqlalchemy import ForeignKey, Index, Integer, String, Text, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from bot.protocols import Clock
from bot.referrals import ClockStatus, Referral, RequiredReferral
from storage.crypto import FieldCipher, row_context
from storage.models import Base, UtcDateTime, rows_changed
from storage.one_trip import run_in_session
from storage.prepared import Prepared, Work

REFERRAL_FIELDS = ("their_reference", "outcome")


class ReferralRow(Base):
    __tablename__ = "referrals"
    __table_args__ = (Index("ix_referrals_incident", "school_id", "incident_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    school_id: Mapped[str] = mapped_column(String(64))
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"))
    agency: Mapped[str] = mapped_column(String(32))
    made_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    made_by_id: Mapped[str] = mapped_column(String(255))
    made_by_name: Mapped[str] = mapped_column(String(255))
    row_key: Mapped[str] = mapped_column(String(32))  # random, fixed at insert: what the sealed fields are bound to
    their_reference: Mapped[str | None] = mapped_column(Text)  # encrypted
    outcome: Mapped[str | None] = mapped_column(Text)  # encrypted
    outcome_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    recorded_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class ReferralClockRow(Base):
    __tablename__ = "referral_clocks"
    __table_args__ = (
        # One clock per agency on a case: opening it again (a redelivery, a second change of type) finds this one.
        Index("uq_referral_clocks_agency", "incident_id", "agency", unique=True),
        Index("ix_referral_clocks_school", "school_id", "status"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    school_id: Mapped[str] = mapped_column(String(64))
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"))
    agency: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    due_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    status: Mapped[str] = mapped_column(String(16))  # open | met | waived
    waived_reason: Mapped[str | None] = mapped_column(Text)  # encrypted
    settled_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


def referral_context(field: str, school_id: str, incident_id: int, row_key: str) -> str:
    return row_context(f"referrals.{field}", school_id, incident_id, row_key)


def waived_context(school_id: str, incident_id: int, agency: str) -> str:
    return row_context("referral_clocks.waived_reason", school_id, incident_id, agency)


# Run by the driver itself (storage.prepared): the caseload reads it on every look at the desk that lists a case.
_OVERDUE = Prepared(
    select(ReferralClockRow.incident_id).where(
        ReferralClockRow.school_id == bindparam("school_id"),
        ReferralClockRow.status == bindparam("open"),
        ReferralClockRow.due_at < bindparam("now"),
    )
)


def overdue_work(school_id: str, now: dt.datetime) -> Work[set[int]]:
    """The cases of a school with a required referral past its deadline; no sealed field is read."""
    rows = (yield _OVERDUE, {"school_id": school_id, "open": ClockStatus.OPEN.value, "now": now}).rows
    return {row.incident_id for row in rows}


class SqlReferrals:
    def __init__(self, session: AsyncSession, cipher: FieldCipher, clock: Clock) -> None:
        self._session = session
        self._cipher = cipher
        self._clock = clock

    # --- referrals made --------------------------------------------------------------------------------------

    async def add(
        self,
        school_id: str,
        incident_id: int,
        agency: str,
        made_at: dt.datetime,
        made_by_id: str,
        made_by_name: str,
        their_reference: str | None,
    ) -> Referral:
        row_key = secrets.token_hex(16)
        row = ReferralRow(
            school_id=school_id,
            incident_id=incident_id,
            agency=agency,
            made_at=made_at,
            made_by_id=made_by_id,
            made_by_name=made_by_name,
            row_key=row_key,
            their_reference=self._cipher.encrypt(
                their_reference, referral_context("their_reference", school_id, incident_id, row_key)
            ),
            recorded_at=self._clock.now(),
        )
        self._session.add(row)
        await self._session.flush()
        return self._referral(row)

    async def made(self, school_id: str, incident_id: int) -> list[Referral]:
        rows = (
            await self._session.scalars(
                select(ReferralRow)
                .where(ReferralRow.school_id == school_id, ReferralRow.incident_id == incident_id)
                .order_by(ReferralRow.made_at, ReferralRow.id)
            )
        ).all()
        return [self._referral(r) for r in rows]

    def _referral(self, row: ReferralRow) -> Referral:
        def opened(field: str) -> str | None:
            return self._cipher.decrypt(
                getattr(row, field), referral_context(field, row.school_id, row.incident_id, row.row_key)
            )

        return Referral(
            id=row.id,
            school_id=row.school_id,
            incident_id=row.incident_id,
            agency=row.agency,
            made_at=row.made_at,
            made_by_id=row.made_by_id,
            made_by_name=row.made_by_name,
            their_reference=opened("their_reference"),
            recorded_at=row.recorded_at,
            outcome=opened("outcome"),
            outcome_at=row.outcome_at,
            handle=row.row_key,
        )

    async def set_outcome(self, school_id: str, incident_id: int, handle: str, outcome: str) -> Referral | None:
        """What the agency decided, on the referral a card named by its handle; None when no such referral."""
        row = await self._session.scalar(
            select(ReferralRow).where(
                ReferralRow.school_id == school_id,
                ReferralRow.incident_id == incident_id,
                ReferralRow.row_key == handle,
            )
        )
        if row is None:
            return None
        row.outcome = self._cipher.encrypt(outcome, referral_context("outcome", school_id, incident_id, row.row_key))
        row.outcome_at = self._clock.now()
        await self._session.flush()
        return self._referral(row)

    # --- required referrals and their clocks -----------------------------------------------------------------

    async def clocks(self, school_id: str, incident_id: int) -> list[RequiredReferral]:
        rows = (
            await self._session.scalars(
                select(ReferralClockRow)
                .where(ReferralClockRow.school_id == school_id, ReferralClockRow.incident_id == incident_id)
                .order_by(ReferralClockRow.due_at, ReferralClockRow.id)
            )
        ).all()
        return [self._clock_of(r) for r in rows]

    async def overdue_cases(self, school_id: str, now: dt.datetime) -> set[int]:
        """Cases with a required referral past its deadline, for the caseload; one query, no sealed field read."""
        return await run_in_session(self._session, overdue_work(school_id, now))

    async def clock(self, school_id: str, clock_id: int) -> RequiredReferral | None:
        row = await self._session.get(ReferralClockRow, clock_id, populate_existing=True)
        return self._clock_of(row) if row is not None and row.school_id == school_id else None

    async def open_clock(
        self, school_id: str, incident_id: int, agency: str, started_at: dt.datetime, due_at: dt.datetime
    ) -> RequiredReferral | None:
        """Start the clock; None when this case already has one for the agency that is running or was met.

        A clock waived because the case stopped needing it starts again from now."""
        row = await self._session.scalar(
            select(ReferralClockRow)
            .where(ReferralClockRow.incident_id == incident_id, ReferralClockRow.agency == agency)
            .with_for_update()
        )
        if row is None:
            row = ReferralClockRow(
                school_id=school_id,
                incident_id=incident_id,
                agency=agency,
                started_at=started_at,
                due_at=due_at,
                status=ClockStatus.OPEN.value,
            )
            self._session.add(row)
        elif row.status == ClockStatus.WAIVED.value:
            row.started_at, row.due_at, row.status = started_at, due_at, ClockStatus.OPEN.value
            row.waived_reason, row.settled_at = None, None
        else:
            return None
        await self._session.flush()
        return self._clock_of(row)

    async def settle(self, school_id: str, clock_id: int, status: ClockStatus, reason: str | None = None) -> bool:
        """Mark an open clock met or waived; False when it was no longer open (someone settled it first)."""
        row = await self._session.get(ReferralClockRow, clock_id)
        if row is None or row.school_id != school_id:
            return False
        result = await self._session.execute(
            update(ReferralClockRow)
            .where(ReferralClockRow.id == clock_id, ReferralClockRow.status == ClockStatus.OPEN.value)
            .values(
                status=status.value,
                settled_at=self._clock.now(),
                waived_reason=self._cipher.encrypt(reason, waived_context(school_id, row.incident_id, row.agency)),
            )
        )
        return rows_changed(result) == 1

    def _clock_of(self, row: ReferralClockRow) -> RequiredReferral:
        return RequiredReferral(
            id=row.id,
            school_id=row.school_id,
            incident_id=row.incident_id,
            agency=row.agency,
            started_at=row.started_at,
            due_at=row.due_at,
            status=ClockStatus(row.status),
            waived_reason=self._cipher.decrypt(
                row.waived_reason, waived_context(row.school_id, row.incident_id, row.agency)
            ),
            settled_at=row.settled_at,
        )
