"""Incidents and their append-only chronology; narrative, subjects, evidence and notes are encrypted."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    Row,
    String,
    Text,
    UniqueConstraint,
    bindparam,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from bot.incidents import (
    DuplicateReport,
    Event,
    Incident,
    IncidentDraft,
    IncidentSummary,
    Status,
    VersionConflict,
    new_case_token,
)
from bot.protocols import Clock
from storage.crypto import FieldCipher, row_context
from storage.models import Base, UtcDateTime, rows_changed
from storage.one_trip import run_in_session
from storage.prepared import Prepared, Work
from storage.repos import next_counter

SECRET_FIELDS = ("subjects", "narrative", "evidence", "actions_taken", "occurred")


class IncidentRow(Base):
    __tablename__ = "incidents"
    __table_args__ = (
        UniqueConstraint("school_id", "reference"),
        Index("ix_incidents_school_status", "school_id", "status"),
        Index("ix_incidents_reporter", "school_id", "reporter_id"),
        Index("ix_incidents_reported_at", "school_id", "reported_at"),
        # One incident per key: a re-submit after a crash, or a double click, finds the first one.
        Index("uq_incidents_idempotency_key", "school_id", "idempotency_key", unique=True),
        Index("uq_incidents_token", "school_id", "token", unique=True),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    school_id: Mapped[str] = mapped_column(String(64))
    reference: Mapped[str] = mapped_column(String(32))
    reporter_id: Mapped[str] = mapped_column(String(255))
    reporter_name: Mapped[str] = mapped_column(String(255))
    reported_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    subject_kind: Mapped[str] = mapped_column(String(16))
    category: Mapped[str] = mapped_column(String(64))
    category_group: Mapped[str] = mapped_column(String(32))
    illegal: Mapped[bool] = mapped_column(Boolean, default=False)
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    immediate_danger: Mapped[bool] = mapped_column(Boolean, default=False)
    severity: Mapped[str] = mapped_column(String(16))
    location: Mapped[str | None] = mapped_column(String(32))
    occurred: Mapped[str | None] = mapped_column(Text)
    subjects: Mapped[str | None] = mapped_column(Text)
    narrative: Mapped[str | None] = mapped_column(Text)
    evidence: Mapped[str | None] = mapped_column(Text)
    actions_taken: Mapped[str | None] = mapped_column(Text)
    complete: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[str] = mapped_column(String(16))
    owner_id: Mapped[str | None] = mapped_column(String(255))
    owner_name: Mapped[str | None] = mapped_column(String(255))
    outcome: Mapped[str | None] = mapped_column(String(64))
    recorded_actions: Mapped[list] = mapped_column(JSON, default=list)
    case_roles: Mapped[list] = mapped_column(JSON, default=list)
    viewer_ids: Mapped[list] = mapped_column(JSON, default=list)
    excluded_ids: Mapped[list] = mapped_column(JSON, default=list)
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    closed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    sla_breached: Mapped[bool] = mapped_column(Boolean, default=False)
    version: Mapped[int] = mapped_column(Integer, default=1)
    idempotency_key: Mapped[str | None] = mapped_column(String(64))  # NULL for incidents filed without one
    token: Mapped[str | None] = mapped_column(String(64))  # what cards carry; set at creation, backfilled by 0011


class IncidentEventRow(Base):
    __tablename__ = "incident_events"
    __table_args__ = (Index("ix_incident_events_incident", "incident_id", "id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"))
    school_id: Mapped[str] = mapped_column(String(64))
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    actor_id: Mapped[str | None] = mapped_column(String(255))
    actor_name: Mapped[str | None] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(Text)  # encrypted: notes can name children
    occurred_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)  # when it happened, if someone said


# What a summary holds and nothing more, built once: every view of the caseload reads it, so neither the sealed fields
# nor an ORM object per case are loaded, and the statement is not rebuilt each time.
_SUMMARY_COLUMNS = (
    IncidentRow.id,
    IncidentRow.reference,
    IncidentRow.category,
    IncidentRow.category_group,
    IncidentRow.severity,
    IncidentRow.status,
    IncidentRow.reported_at,
    IncidentRow.reporter_id,
    IncidentRow.subject_kind,
    IncidentRow.excluded_ids,
    IncidentRow.token,
    IncidentRow.case_roles,
    IncidentRow.viewer_ids,
    IncidentRow.owner_id,
    IncidentRow.owner_name,
    IncidentRow.urgent,
    IncidentRow.sla_breached,
)
# Run by the driver itself (storage.prepared): the caseload reads it on every look at the desk.
_OPEN_SUMMARIES = Prepared(
    select(*_SUMMARY_COLUMNS)
    .where(IncidentRow.school_id == bindparam("school_id"), IncidentRow.status != bindparam("closed"))
    .order_by(IncidentRow.reported_at)
)


def open_summaries_work(school_id: str) -> Work[list[IncidentSummary]]:
    """Every open case of a school, without sealed fields: the caller applies the access rule."""
    rows = (yield _OPEN_SUMMARIES, {"school_id": school_id, "closed": Status.CLOSED.value}).rows
    return [SqlIncidents._to_summary(row) for row in rows]  # noqa: SLF001 - this module's own


def incident_context(field: str, school_id: str, reference: str) -> str:
    """An incident's sealed field is bound to its school and reference (known before the insert, never reused)."""
    return row_context(f"incidents.{field}", school_id, reference)


def event_context(school_id: str, incident_id: int, at: dt.datetime, kind: str) -> str:
    """A note is bound to its incident, time and kind, so it cannot be moved to another case or entry."""
    return row_context(
        "incident_events.detail", school_id, incident_id, at.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S.%f"), kind
    )


class SqlIncidents:
    def __init__(self, session: AsyncSession, cipher: FieldCipher, clock: Clock) -> None:
        self._session = session
        self._cipher = cipher
        self._clock = clock

    def _seal(self, field: str, value: str | None, school_id: str, reference: str) -> str | None:
        return self._cipher.encrypt(value, incident_context(field, school_id, reference))

    def _open(self, field: str, row: IncidentRow) -> str | None:
        return self._cipher.decrypt(getattr(row, field), incident_context(field, row.school_id, row.reference))

    async def next_reference(self, school_id: str, prefix: str, year: int) -> str:
        number = await next_counter(self._session, school_id, f"incident-{year}")
        return f"{prefix}-{year}-{number:04d}"

    async def add(self, draft: IncidentDraft, *, reference: str, complete: bool, key: str | None = None) -> Incident:
        """Insert the incident; DuplicateReport when another transaction committed one with this key first."""
        row = IncidentRow(
            school_id=draft.school_id,
            reference=reference,
            reporter_id=draft.reporter_id,
            reporter_name=draft.reporter_name,
            reported_at=draft.reported_at,
            subject_kind=draft.subject_kind,
            category=draft.category,
            category_group=draft.category_group,
            illegal=draft.illegal,
            urgent=draft.urgent,
            immediate_danger=draft.immediate_danger,
            severity=draft.severity,
            location=draft.location,
            complete=complete,
            status=Status.NEW.value,
            recorded_actions=[],
            case_roles=list(draft.case_roles),
            viewer_ids=list(draft.viewer_ids),
            excluded_ids=list(draft.excluded_ids),
            sla_breached=False,
            version=1,
            idempotency_key=key,
            token=new_case_token(),
            **{field: self._seal(field, getattr(draft, field), draft.school_id, reference) for field in SECRET_FIELDS},
        )
        self._session.add(row)
        try:
            await self._session.flush()
        except IntegrityError as exc:
            if key is None:
                raise
            raise DuplicateReport(key) from exc  # the transaction is spoilt: the caller re-reads in a new one
        added = await self.get(draft.school_id, row.id)
        assert added is not None  # just inserted in this transaction
        return added

    async def by_key(self, school_id: str, key: str) -> Incident | None:
        row = await self._session.scalar(
            select(IncidentRow).where(IncidentRow.school_id == school_id, IncidentRow.idempotency_key == key)
        )
        return await self._to_incident(row) if row else None

    async def complete_details(self, school_id: str, incident_id: int, draft: IncidentDraft) -> bool:
        """Fill in the answers given after an early urgent alert, once; False when they were filled in already.

        The condition on `complete` makes a second, concurrent completion wait for the first and then match nothing.
        """
        reference = await self._session.scalar(
            select(IncidentRow.reference).where(IncidentRow.school_id == school_id, IncidentRow.id == incident_id)
        )
        if reference is None:
            return False
        result = await self._session.execute(
            update(IncidentRow)
            .where(IncidentRow.school_id == school_id, IncidentRow.id == incident_id, IncidentRow.complete.is_(False))
            .values(
                location=draft.location,
                complete=True,
                version=IncidentRow.version + 1,
                subject_kind=draft.subject_kind,
                category=draft.category,
                category_group=draft.category_group,
                illegal=draft.illegal,
                urgent=draft.urgent,
                severity=draft.severity,
                **{field: self._seal(field, getattr(draft, field), school_id, reference) for field in SECRET_FIELDS},
            )
        )
        return rows_changed(result) == 1

    async def get(self, school_id: str, incident_id: int) -> Incident | None:
        row = await self._session.get(IncidentRow, incident_id, populate_existing=True)
        if row is None or row.school_id != school_id:
            return None
        return await self._to_incident(row)

    async def by_token(self, school_id: str, token: str) -> Incident | None:
        """The case a card points at, only within the asking person's school."""
        row = await self._session.scalar(
            select(IncidentRow).where(IncidentRow.school_id == school_id, IncidentRow.token == token)
        )
        return await self._to_incident(row) if row else None

    async def by_reference(self, school_id: str, reference: str) -> Incident | None:
        row = await self._session.scalar(
            select(IncidentRow).where(IncidentRow.school_id == school_id, IncidentRow.reference == reference.upper())
        )
        return await self._to_incident(row) if row else None

    async def reported_by(self, school_id: str, reporter_id: str, limit: int = 20) -> list[IncidentSummary]:
        rows = (
            await self._session.scalars(
                select(IncidentRow)
                .where(IncidentRow.school_id == school_id, IncidentRow.reporter_id == reporter_id)
                .order_by(IncidentRow.reported_at.desc())
                .limit(limit)
            )
        ).all()
        return [self._to_summary(r) for r in rows]

    async def change(self, school_id: str, incident_id: int, expected_version: int, **values: object) -> None:
        """Apply a change only if nobody else changed the incident first (optimistic lock)."""
        result = await self._session.execute(
            update(IncidentRow)
            .where(
                IncidentRow.school_id == school_id,
                IncidentRow.id == incident_id,
                IncidentRow.version == expected_version,
            )
            .values(version=IncidentRow.version + 1, **values)
        )
        if rows_changed(result) != 1:
            raise VersionConflict(f"incident {incident_id} is no longer at version {expected_version}")

    async def mark_sla_breached(self, school_id: str, incident_id: int) -> None:
        await self._session.execute(
            update(IncidentRow)
            .where(IncidentRow.school_id == school_id, IncidentRow.id == incident_id)
            .values(sla_breached=True)
        )

    async def append_event(
        self,
        school_id: str,
        incident_id: int,
        actor_id: str | None,
        actor_name: str | None,
        kind: str,
        detail: str | None = None,
        *,
        occurred_at: dt.datetime | None = None,
    ) -> None:
        at = self._clock.now()
        self._session.add(
            IncidentEventRow(
                incident_id=incident_id,
                school_id=school_id,
                at=at,
                actor_id=actor_id,
                actor_name=actor_name,
                kind=kind,
                occurred_at=occurred_at,
                detail=self._cipher.encrypt(detail, event_context(school_id, incident_id, at, kind)),
            )
        )
        await self._session.flush()

    async def _to_incident(self, row: IncidentRow) -> Incident:
        events = (
            await self._session.scalars(
                select(IncidentEventRow).where(IncidentEventRow.incident_id == row.id).order_by(IncidentEventRow.id)
            )
        ).all()
        return Incident(
            id=row.id,
            school_id=row.school_id,
            reference=row.reference,
            reporter_id=row.reporter_id,
            reporter_name=row.reporter_name,
            reported_at=row.reported_at,
            subject_kind=row.subject_kind,
            category=row.category,
            category_group=row.category_group,
            illegal=row.illegal,
            urgent=row.urgent,
            immediate_danger=row.immediate_danger,
            severity=row.severity,
            location=row.location,
            complete=row.complete,
            status=Status(row.status),
            owner_id=row.owner_id,
            owner_name=row.owner_name,
            outcome=row.outcome,
            recorded_actions=list(row.recorded_actions or []),
            case_roles=tuple(row.case_roles or []),
            viewer_ids=tuple(row.viewer_ids or []),
            excluded_ids=tuple(row.excluded_ids or []),
            acknowledged_at=row.acknowledged_at,
            closed_at=row.closed_at,
            sla_breached=row.sla_breached,
            version=row.version,
            token=row.token or "",
            events=[
                Event(
                    e.at,
                    e.actor_id,
                    e.actor_name,
                    e.kind,
                    self._cipher.decrypt(e.detail, event_context(e.school_id, e.incident_id, e.at, e.kind)),
                    occurred_at=e.occurred_at,
                )
                for e in events
            ],
            **{field: self._open(field, row) for field in SECRET_FIELDS},
        )

    async def open_summaries(self, school_id: str) -> list[IncidentSummary]:
        """Every open case of a school in one query, without sealed fields: the caller applies the access rule."""
        return await run_in_session(self._session, open_summaries_work(school_id))

    async def summaries_about(self, school_id: str, subject_kind: str) -> list[IncidentSummary]:
        """Every case (open or closed) about one kind of subject, without sealed fields, for the access rule."""
        rows = (
            await self._session.scalars(
                select(IncidentRow).where(IncidentRow.school_id == school_id, IncidentRow.subject_kind == subject_kind)
            )
        ).all()
        return [self._to_summary(r) for r in rows]

    @staticmethod
    def _to_summary(row: IncidentRow | Row[Any]) -> IncidentSummary:
        return IncidentSummary(
            id=row.id,
            reference=row.reference,
            category=row.category,
            category_group=row.category_group,
            severity=row.severity,
            status=Status(row.status),
            reported_at=row.reported_at,
            reporter_id=row.reporter_id,
            subject_kind=row.subject_kind,
            excluded_ids=tuple(row.excluded_ids or []),
            token=row.token or "",
            case_roles=tuple(row.case_roles or []),
            viewer_ids=tuple(row.viewer_ids or []),
            owner_id=row.owner_id,
            owner_name=row.owner_name,
            urgent=row.urgent,
            sla_breached=row.sla_breached,
        )
