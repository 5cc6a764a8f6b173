"""Retention: legal holds, the queries that find records by age, and the delete and anonymise operations.

Every operation is safe to run twice and from two replicas at once: deletes are by id (a row already gone counts
nothing), and an anonymisation first inserts its mark, so only the transaction whose mark went in changes the row.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, and_, cast, delete, exists, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, aliased, mapped_column

from bot.incidents import Status
from bot.protocols import Clock
from storage.aup import AupAcknowledgementRow
from storage.children import CaseLinkRow, ChildRow, child_context
from storage.crypto import FieldCipher, row_context
from storage.filtering import FilterLogRow, FilterRequestRow, reason_context
from storage.incidents import SECRET_FIELDS as INCIDENT_SECRETS
from storage.incidents import IncidentEventRow, IncidentRow
from storage.models import Base, BotStateRow, UtcDateTime, WorkRow, rows_changed
from storage.repos import SEND_KIND, insert_for, work_payload_context

REMOVED_NAME = "(removed)"  # what an anonymised case shows where a person's name was
CASE_MARK = "case"
SEND_KEEPS = ("target", "delivery", "about", "update_of", "plain")  # what delivery outcomes still read


class LegalHoldRow(Base):
    __tablename__ = "retention_holds"
    __table_args__ = (
        # One active hold per case: `active_key` is the incident id while held and NULL once released.
        Index("uq_retention_holds_active", "school_id", "active_key", unique=True),
        Index("ix_retention_holds_incident", "school_id", "incident_id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    school_id: Mapped[str] = mapped_column(String(64))
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"))
    active_key: Mapped[str | None] = mapped_column(String(32))
    set_by: Mapped[str] = mapped_column(String(255))
    set_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    reason: Mapped[str] = mapped_column(Text)  # encrypted: a reason can name a claimant or a child
    released_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    released_by: Mapped[str | None] = mapped_column(String(255))
    release_reason: Mapped[str | None] = mapped_column(Text)  # encrypted


class RetentionMarkRow(Base):
    """A record already anonymised: the mark goes in first, so a second sweep (or replica) changes nothing."""

    __tablename__ = "retention_marks"
    __table_args__ = (Index("uq_retention_marks", "school_id", "record_type", "record_key", unique=True),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    school_id: Mapped[str] = mapped_column(String(64))
    record_type: Mapped[str] = mapped_column(String(32))
    record_key: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))
    done_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class RetentionSweepRow(Base):
    """What one sweep run did: counts per record type, never names."""

    __tablename__ = "retention_sweeps"
    __table_args__ = (Index("ix_retention_sweeps_school", "school_id", "ran_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    school_id: Mapped[str] = mapped_column(String(64))
    ran_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    figures: Mapped[dict] = mapped_column(JSON)


@dataclass(frozen=True)
class Hold:
    incident_id: int
    set_by: str
    set_at: dt.datetime
    reason: str


@dataclass(frozen=True)
class ClosedCase:
    id: int
    reference: str
    subject_kind: str
    category: str
    closed_at: dt.datetime


@dataclass(frozen=True)
class UnlinkedChild:
    id: int
    born: dt.date | None
    created_at: dt.datetime


@dataclass(frozen=True)
class SweepRun:
    ran_at: dt.datetime
    figures: dict[str, Any]


def hold_context(field: str, school_id: str, hold_id: int) -> str:
    return row_context(f"retention_holds.{field}", school_id, hold_id)


class SqlRetention:
    def __init__(self, session: AsyncSession, cipher: FieldCipher, clock: Clock) -> None:
        self._session = session
        self._cipher = cipher
        self._clock = clock

    # --- legal holds ------------------------------------------------------------------------------------------

    async def active_hold(self, school_id: str, incident_id: int) -> Hold | None:
        row = await self._session.scalar(
            select(LegalHoldRow).where(LegalHoldRow.school_id == school_id, LegalHoldRow.active_key == str(incident_id))
        )
        if row is None:
            return None
        return Hold(
            row.incident_id,
            row.set_by,
            row.set_at,
            self._cipher.decrypt(row.reason, hold_context("reason", school_id, row.id)) or "",
        )

    async def place_hold(self, school_id: str, incident_id: int, by: str, reason: str) -> bool:
        """False when the case is held already (two people placing one at once: the second finds the first)."""
        row = LegalHoldRow(
            school_id=school_id,
            incident_id=incident_id,
            active_key=str(incident_id),
            set_by=by,
            set_at=self._clock.now(),
            reason="",
        )
        try:
            async with self._session.begin_nested():
                self._session.add(row)
                await self._session.flush()
                # The reason is sealed to the row's id, known only after the insert.
                row.reason = self._cipher.encrypt(reason, hold_context("reason", school_id, row.id))
        except IntegrityError:
            return False
        return True

    async def release_hold(self, school_id: str, incident_id: int, by: str, reason: str) -> bool:
        row = await self._session.scalar(
            select(LegalHoldRow).where(LegalHoldRow.school_id == school_id, LegalHoldRow.active_key == str(incident_id))
        )
        if row is None:
            return False
        result = await self._session.execute(
            update(LegalHoldRow)
            .where(LegalHoldRow.id == row.id, LegalHoldRow.active_key.is_not(None))
            .values(
                active_key=None,
                released_at=self._clock.now(),
                released_by=by,
                release_reason=self._cipher.encrypt(reason, hold_context("release_reason", school_id, row.id)),
            )
        )
        return rows_changed(result) == 1

    async def held_incident_ids(self, school_id: str) -> set[int]:
        return set(
            (
                await self._session.scalars(
                    select(LegalHoldRow.incident_id).where(
                        LegalHoldRow.school_id == school_id, LegalHoldRow.active_key.is_not(None)
                    )
                )
            ).all()
        )

    async def anonymised_at(self, school_id: str, incident_id: int) -> dt.datetime | None:
        return await self._session.scalar(
            select(RetentionMarkRow.done_at).where(
                RetentionMarkRow.school_id == school_id,
                RetentionMarkRow.record_type == CASE_MARK,
                RetentionMarkRow.record_key == str(incident_id),
            )
        )

    # --- marks ------------------------------------------------------------------------------------------------

    async def _mark(self, school_id: str, record_type: str, record_key: str, action: str) -> bool:
        """True only for the one transaction whose mark went in."""
        statement = (
            insert_for(self._session)(RetentionMarkRow)
            .values(
                school_id=school_id,
                record_type=record_type,
                record_key=record_key,
                action=action,
                done_at=self._clock.now(),
            )
            .on_conflict_do_nothing(index_elements=["school_id", "record_type", "record_key"])
        )
        return rows_changed(await self._session.execute(statement)) == 1

    def _unmarked(self, school_id: str, record_type: str, key_column: Any) -> Any:
        return ~exists().where(
            RetentionMarkRow.school_id == school_id,
            RetentionMarkRow.record_type == record_type,
            RetentionMarkRow.record_key == key_column,
        )

    # --- cases --------------------------------------------------------------------------------------------------

    async def closed_cases(self, school_id: str, closed_by: dt.datetime) -> list[ClosedCase]:
        """Closed cases not yet anonymised, oldest closure first (no sealed field is read)."""
        rows = (
            await self._session.execute(
                select(
                    IncidentRow.id,
                    IncidentRow.reference,
                    IncidentRow.subject_kind,
                    IncidentRow.category,
                    IncidentRow.closed_at,
                )
                .where(
                    IncidentRow.school_id == school_id,
                    IncidentRow.status == Status.CLOSED.value,
                    IncidentRow.closed_at.is_not(None),
                    IncidentRow.closed_at <= closed_by,
                    self._unmarked(school_id, CASE_MARK, cast(IncidentRow.id, String)),
                )
                .order_by(IncidentRow.closed_at, IncidentRow.id)
            )
        ).all()
        return [ClosedCase(r.id, r.reference, r.subject_kind, r.category, r.closed_at) for r in rows]

    async def birthdays(self, school_id: str, incident_ids: Iterable[int]) -> dict[int, list[dt.date | None]]:
        """The dates of birth of the children linked to each case (None for a child with none recorded)."""
        ids = list(incident_ids)
        found: dict[int, list[dt.date | None]] = {}
        for start in range(0, len(ids), 500):
            rows = (
                await self._session.execute(
                    select(CaseLinkRow.incident_id, ChildRow.token, ChildRow.date_of_birth)
                    .join(ChildRow, ChildRow.id == CaseLinkRow.child_id)
                    .where(CaseLinkRow.school_id == school_id, CaseLinkRow.incident_id.in_(ids[start : start + 500]))
                )
            ).all()
            for r in rows:
                born = self._cipher.decrypt(r.date_of_birth, child_context("date_of_birth", school_id, r.token))
                found.setdefault(r.incident_id, []).append(dt.date.fromisoformat(born) if born else None)
        return found

    async def anonymise_case(self, school_id: str, incident_id: int) -> bool:
        """Remove everything that identifies anyone from a closed case; keep its dates, type, severity and outcome.
        False when it was anonymised already (by an earlier sweep or another replica).

        `excluded_ids` stay: the person an allegation was about must still not read even what is left of it."""
        if not await self._mark(school_id, CASE_MARK, str(incident_id), "anonymise"):
            return False
        await self._session.execute(
            update(IncidentRow)
            .where(IncidentRow.school_id == school_id, IncidentRow.id == incident_id)
            .values(
                reporter_id="",
                reporter_name=REMOVED_NAME,
                owner_id=None,
                owner_name=None,
                viewer_ids=[],
                idempotency_key=None,
                version=IncidentRow.version + 1,
                **{name: None for name in INCIDENT_SECRETS},
            )
        )
        await self._session.execute(
            update(IncidentEventRow)
            .where(IncidentEventRow.school_id == school_id, IncidentEventRow.incident_id == incident_id)
            .values(actor_id=None, actor_name=REMOVED_NAME, detail=None)
        )
        await self._session.execute(
            delete(CaseLinkRow).where(CaseLinkRow.school_id == school_id, CaseLinkRow.incident_id == incident_id)
        )
        # Messages about the case keep who and when for delivery records; their text goes with the outbox rule.
        return True

    # --- children ---------------------------------------------------------------------------------------------

    async def unlinked_children(self, school_id: str) -> list[UnlinkedChild]:
        rows = (
            await self._session.execute(
                select(ChildRow.id, ChildRow.token, ChildRow.date_of_birth, ChildRow.created_at)
                .where(ChildRow.school_id == school_id, ~exists().where(CaseLinkRow.child_id == ChildRow.id))
                .order_by(ChildRow.id)
            )
        ).all()
        children = []
        for r in rows:
            born = self._cipher.decrypt(r.date_of_birth, child_context("date_of_birth", school_id, r.token))
            children.append(UnlinkedChild(r.id, dt.date.fromisoformat(born) if born else None, r.created_at))
        return children

    async def delete_child(self, school_id: str, child_id: int) -> bool:
        """Only while no case links it: a link made since the query keeps the record."""
        result = await self._session.execute(
            delete(ChildRow).where(
                ChildRow.school_id == school_id,
                ChildRow.id == child_id,
                ~exists().where(CaseLinkRow.child_id == ChildRow.id),
            )
        )
        return rows_changed(result) == 1

    # --- filtering ----------------------------------------------------------------------------------------------

    async def filter_requests_before(self, school_id: str, before: dt.datetime) -> list[int]:
        """Requests not yet anonymised whose last step was at or before `before`, oldest first."""
        rows = (
            await self._session.execute(
                select(
                    FilterRequestRow.id,
                    FilterRequestRow.created_at,
                    FilterRequestRow.decided_at,
                    FilterRequestRow.applied_at,
                    FilterRequestRow.reverted_at,
                )
                .where(
                    FilterRequestRow.school_id == school_id,
                    FilterRequestRow.created_at <= before,
                    self._unmarked(school_id, "filter_request", cast(FilterRequestRow.id, String)),
                )
                .order_by(FilterRequestRow.created_at, FilterRequestRow.id)
            )
        ).all()
        return [
            r.id
            for r in rows
            if max(t for t in (r.created_at, r.decided_at, r.applied_at, r.reverted_at) if t) <= before
        ]

    async def anonymise_filter_request(self, school_id: str, request_id: int) -> bool:
        if not await self._mark(school_id, "filter_request", str(request_id), "anonymise"):
            return False
        reference = await self._session.scalar(
            select(FilterRequestRow.reference).where(FilterRequestRow.id == request_id)
        )
        assert reference is not None  # listed by filter_requests_before; requests are never deleted
        await self._session.execute(
            update(FilterRequestRow)
            .where(FilterRequestRow.school_id == school_id, FilterRequestRow.id == request_id)
            .values(
                reason=self._cipher.encrypt("", reason_context(school_id, reference)),
                requester_id="",
                requester_name=REMOVED_NAME,
                approver_id=None,
                approver_name=None,
                applier_id=None,
                applier_name=None,
                decision_note=None,
                idempotency_key=None,
            )
        )
        return True

    async def delete_filter_log(self, school_id: str, before: dt.datetime, limit: int) -> tuple[int, bool]:
        """(deleted, more remain)."""
        ids = (
            await self._session.scalars(
                select(FilterLogRow.id)
                .where(FilterLogRow.school_id == school_id, FilterLogRow.at <= before)
                .order_by(FilterLogRow.id)
                .limit(limit + 1)
            )
        ).all()
        result = await self._session.execute(delete(FilterLogRow).where(FilterLogRow.id.in_(ids[:limit])))
        return rows_changed(result), len(ids) > limit

    # --- AUP acknowledgements -----------------------------------------------------------------------------------

    async def delete_superseded_acknowledgements(
        self, school_id: str, before: dt.datetime, limit: int
    ) -> tuple[int, bool]:
        """Acknowledgements the same person replaced with a newer one at or before `before`."""
        newer = aliased(AupAcknowledgementRow)
        old = AupAcknowledgementRow
        ids = (
            await self._session.scalars(
                select(old.id)
                .where(
                    old.school_id == school_id,
                    exists().where(
                        and_(
                            newer.school_id == old.school_id,
                            newer.person_id == old.person_id,
                            newer.audience == old.audience,
                            or_(
                                newer.acknowledged_at > old.acknowledged_at,
                                and_(newer.acknowledged_at == old.acknowledged_at, newer.id > old.id),
                            ),
                            newer.acknowledged_at <= before,
                        )
                    ),
                )
                .order_by(old.id)
                .limit(limit + 1)
            )
        ).all()
        result = await self._session.execute(
            delete(AupAcknowledgementRow).where(AupAcknowledgementRow.id.in_(ids[:limit]))
        )
        return rows_changed(result), len(ids) > limit

    # --- conversation state and the outbox ----------------------------------------------------------------------

    async def delete_conversation_state(self, before: dt.datetime, limit: int) -> tuple[int, bool]:
        """Dialog state untouched since `before` (half-written reports). Not per school: state keys name none."""
        keys = (
            await self._session.scalars(
                select(BotStateRow.key_hash)
                .where(BotStateRow.updated_at <= before)
                .order_by(BotStateRow.updated_at)
                .limit(limit + 1)
            )
        ).all()
        # The condition is repeated so a conversation that moved on since the query is left alone.
        result = await self._session.execute(
            delete(BotStateRow).where(BotStateRow.key_hash.in_(keys[:limit]), BotStateRow.updated_at <= before)
        )
        return rows_changed(result), len(keys) > limit

    async def anonymise_sends(self, school_id: str, before: dt.datetime, limit: int) -> tuple[int, bool]:
        """Finished sends: the text, card and attachment go; target, delivery group and case reference stay."""
        rows = (
            await self._session.scalars(
                select(WorkRow)
                .where(
                    WorkRow.school_id == school_id,
                    WorkRow.kind == SEND_KIND,
                    WorkRow.status.in_(("done", "failed", "cancelled")),
                    WorkRow.finished_at <= before,
                    self._unmarked(school_id, "outbox", cast(WorkRow.id, String)),
                )
                .order_by(WorkRow.finished_at, WorkRow.id)
                .limit(limit + 1)
            )
        ).all()
        done = 0
        for row in rows[:limit]:
            if not await self._mark(school_id, "outbox", str(row.id), "anonymise"):
                continue
            context = work_payload_context(row.school_id, row.row_key)
            payload = json.loads(self._cipher.decrypt(row.payload, context))
            kept = {k: payload[k] for k in SEND_KEEPS if k in payload}
            await self._session.execute(
                update(WorkRow)
                .where(WorkRow.id == row.id)
                .values(payload=self._cipher.encrypt(json.dumps({**kept, "text": None, "card": None}), context))
            )
            done += 1
        return done, len(rows) > limit

    # --- sweep figures ------------------------------------------------------------------------------------------

    async def record_sweep(self, school_id: str, figures: dict[str, Any]) -> None:
        self._session.add(RetentionSweepRow(school_id=school_id, ran_at=self._clock.now(), figures=figures))
        await self._session.flush()

    async def last_sweep_runs(self, school_id: str) -> list[SweepRun]:
        """The latest run and the runs of the same day before it (a backlog is swept in several runs)."""
        latest = await self._session.scalar(
            select(RetentionSweepRow.ran_at)
            .where(RetentionSweepRow.school_id == school_id)
            .order_by(RetentionSweepRow.ran_at.desc())
            .limit(1)
        )
        if latest is None:
            return []
        rows = (
            await self._session.scalars(
                select(RetentionSweepRow)
                .where(
                    RetentionSweepRow.school_id == school_id, RetentionSweepRow.ran_at > latest - dt.timedelta(hours=20)
                )
                .order_by(RetentionSweepRow.ran_at)
            )
        ).all()
        return [SweepRun(r.ran_at, r.figures) for r in rows]

    async def next_sweep_at(self, school_id: str, kind: str) -> dt.datetime | None:
        return await self._session.scalar(
            select(WorkRow.run_at)
            .where(WorkRow.school_id == school_id, WorkRow.kind == kind, WorkRow.status == "pending")
            .order_by(WorkRow.run_at)
            .limit(1)
        )


def retention_store(uow: Any) -> SqlRetention:
    """The retention repository inside a unit of work."""
    return uow.retention
