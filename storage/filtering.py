"""SQL models and repository for web-filter change requests and their change log."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from sqlalchemy import JSON, Boolean, Date, Index, Integer, String, Text, UniqueConstraint, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from bot.filtering import (
    OPEN_STATUSES,
    RELATED_STATUSES,
    ConcurrentChange,
    DuplicateRequest,
    FilterRequest,
    LogEntry,
    Scope,
)
from bot.protocols import Clock
from storage.crypto import FieldCipher, row_context
from storage.models import Base, UtcDateTime, rows_changed
from storage.repos import next_counter

REASON_CONTEXT = "filter_requests.reason"


def reason_context(school_id: str, reference: str) -> str:
    """A request's reason is bound to its school and FR reference, so it cannot be moved to another request."""
    return row_context(REASON_CONTEXT, school_id, reference)


class StaleRequest(ConcurrentChange):
    """Someone else changed the request first; reload it and decide again."""


class FilterRequestRow(Base):
    __tablename__ = "filter_requests"
    __table_args__ = (
        UniqueConstraint("school_id", "reference"),
        Index("ix_filter_domain", "school_id", "domain"),
        # One request per key: Send pressed twice, or again after a crash, finds the first one.
        Index("uq_filter_requests_idempotency_key", "school_id", "idempotency_key", unique=True),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    school_id: Mapped[str] = mapped_column(String(64))
    reference: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))
    url: Mapped[str] = mapped_column(Text)
    domain: Mapped[str] = mapped_column(String(255))
    audience: Mapped[str] = mapped_column(String(16))
    year_groups: Mapped[list] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(Text)  # encrypted: a lesson plan can mention pupils
    lesson_date: Mapped[dt.date | None] = mapped_column(Date)
    until: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    previewed: Mapped[bool] = mapped_column(Boolean)
    categories: Mapped[list] = mapped_column(JSON)
    needs_headteacher: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(String(16))
    requester_id: Mapped[str] = mapped_column(String(255))
    requester_name: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    approver_id: Mapped[str | None] = mapped_column(String(255))
    approver_name: Mapped[str | None] = mapped_column(String(255))
    decided_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    decision_note: Mapped[str | None] = mapped_column(Text)
    applier_id: Mapped[str | None] = mapped_column(String(255))
    applier_name: Mapped[str | None] = mapped_column(String(255))
    applied_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    backend_result: Mapped[str | None] = mapped_column(Text)
    reverted_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    linked_to: Mapped[str | None] = mapped_column(String(32))
    version: Mapped[int] = mapped_column(Integer)
    idempotency_key: Mapped[str | None] = mapped_column(String(64))  # NULL for requests made before keys
    # NULL for requests made before scopes: they covered the whole domain, and read as "domain".
    scope: Mapped[str | None] = mapped_column(String(8))
    target: Mapped[str | None] = mapped_column(Text)


class FilterLogRow(Base):
    """The change log governors review: append-only."""

    __tablename__ = "filter_log"
    __table_args__ = (Index("ix_filter_log_school_at", "school_id", "at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    school_id: Mapped[str] = mapped_column(String(64))
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    reference: Mapped[str | None] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(32))
    actor_id: Mapped[str | None] = mapped_column(String(255))
    actor_name: Mapped[str] = mapped_column(String(255))
    domain: Mapped[str] = mapped_column(String(255))
    detail: Mapped[str] = mapped_column(Text)


_MUTABLE = (
    "status",
    "approver_id",
    "approver_name",
    "decided_at",
    "decision_note",
    "applier_id",
    "applier_name",
    "applied_at",
    "backend_result",
    "reverted_at",
    "linked_to",
)


class SqlFilterRequests:
    def __init__(self, session: AsyncSession, cipher: FieldCipher, clock: Clock) -> None:
        self._session = session
        self._cipher = cipher
        self._clock = clock

    def _to_request(self, row: FilterRequestRow) -> FilterRequest:
        return FilterRequest(
            id=row.id,
            school_id=row.school_id,
            reference=row.reference,
            kind=row.kind,
            url=row.url,
            domain=row.domain,
            audience=row.audience,
            year_groups=tuple(row.year_groups or ()),
            reason=self._cipher.decrypt(row.reason, reason_context(row.school_id, row.reference)),
            lesson_date=row.lesson_date,
            until=row.until,
            previewed=row.previewed,
            categories=tuple(row.categories or ()),
            needs_headteacher=row.needs_headteacher,
            status=row.status,
            requester_id=row.requester_id,
            requester_name=row.requester_name,
            created_at=row.created_at,
            approver_id=row.approver_id,
            approver_name=row.approver_name,
            decided_at=row.decided_at,
            decision_note=row.decision_note,
            applier_id=row.applier_id,
            applier_name=row.applier_name,
            applied_at=row.applied_at,
            backend_result=row.backend_result,
            reverted_at=row.reverted_at,
            linked_to=row.linked_to,
            version=row.version,
            scope=row.scope or Scope.DOMAIN.value,
            target=row.target or row.domain,
        )

    async def create(self, request: FilterRequest, *, key: str | None = None) -> FilterRequest:
        """Store a new request under the school's next FR-NNNN reference.

        DuplicateRequest when another transaction committed one with this key first.
        """
        number = await next_counter(self._session, request.school_id, "filter_request")
        reference = f"FR-{number:04d}"
        row = FilterRequestRow(
            school_id=request.school_id,
            reference=reference,
            kind=request.kind,
            url=request.url,
            domain=request.domain,
            audience=request.audience,
            year_groups=list(request.year_groups),
            reason=self._cipher.encrypt(request.reason, reason_context(request.school_id, reference)),
            lesson_date=request.lesson_date,
            until=request.until,
            previewed=request.previewed,
            categories=list(request.categories),
            needs_headteacher=request.needs_headteacher,
            status=request.status,
            requester_id=request.requester_id,
            requester_name=request.requester_name,
            created_at=request.created_at,
            linked_to=request.linked_to,
            version=1,
            idempotency_key=key,
            scope=request.scope,
            target=request.rule_target,
        )
        self._session.add(row)
        try:
            await self._session.flush()
        except IntegrityError as exc:
            if key is None:
                raise
            raise DuplicateRequest(key) from exc  # the transaction is spoilt: the caller re-reads in a new one
        return self._to_request(row)

    async def by_key(self, school_id: str, key: str) -> FilterRequest | None:
        row = await self._session.scalar(
            select(FilterRequestRow).where(
                FilterRequestRow.school_id == school_id, FilterRequestRow.idempotency_key == key
            )
        )
        return self._to_request(row) if row else None

    async def get(self, school_id: str, reference: str, *, for_update: bool = False) -> FilterRequest | None:
        query = select(FilterRequestRow).where(
            FilterRequestRow.school_id == school_id, FilterRequestRow.reference == reference
        )
        if for_update:
            query = query.with_for_update()
        row = (await self._session.scalars(query)).first()
        return self._to_request(row) if row else None

    async def open_for_domain(self, school_id: str, domain: str) -> list[FilterRequest]:
        """Requests for this domain still waiting for a decision or to be applied, oldest first."""
        return await self._for_domain(school_id, domain, OPEN_STATUSES)

    async def related(self, school_id: str, domain: str) -> list[FilterRequest]:
        """Requests for this domain that are waiting, being applied or in place, oldest first."""
        return await self._for_domain(school_id, domain, RELATED_STATUSES)

    async def _for_domain(self, school_id: str, domain: str, statuses: Iterable[str]) -> list[FilterRequest]:
        rows = (
            await self._session.scalars(
                select(FilterRequestRow)
                .where(
                    FilterRequestRow.school_id == school_id,
                    FilterRequestRow.domain == domain,
                    FilterRequestRow.status.in_([str(s) for s in statuses]),
                )
                .order_by(FilterRequestRow.id)
            )
        ).all()
        return [self._to_request(r) for r in rows]

    async def linked(self, school_id: str, reference: str) -> list[FilterRequest]:
        rows = (
            await self._session.scalars(
                select(FilterRequestRow)
                .where(FilterRequestRow.school_id == school_id, FilterRequestRow.linked_to == reference)
                .order_by(FilterRequestRow.id)
            )
        ).all()
        return [self._to_request(r) for r in rows]

    async def save(self, request: FilterRequest) -> FilterRequest:
        """Write the changed fields if nobody else has since it was read (optimistic lock on version)."""
        values = {name: getattr(request, name) for name in _MUTABLE}
        result = await self._session.execute(
            update(FilterRequestRow)
            .where(FilterRequestRow.id == request.id, FilterRequestRow.version == request.version)
            .values(**values, version=request.version + 1)
        )
        if rows_changed(result) != 1:
            raise StaleRequest(request.reference)
        return request.with_(version=request.version + 1)

    async def log(self, school_id: str, entry: LogEntry) -> None:
        self._session.add(
            FilterLogRow(
                school_id=school_id,
                at=entry.at,
                reference=entry.reference,
                action=entry.action,
                actor_id=entry.actor_id,
                actor_name=entry.actor_name,
                domain=entry.domain,
                detail=entry.detail,
            )
        )
        await self._session.flush()

    async def recent_log(self, school_id: str, limit: int = 500) -> list[LogEntry]:
        """Newest first."""
        rows = (
            await self._session.scalars(
                select(FilterLogRow)
                .where(FilterLogRow.school_id == school_id)
                .order_by(FilterLogRow.at.desc(), FilterLogRow.id.desc())
                .limit(limit)
            )
        ).all()
        return [LogEntry(r.at, r.action, r.actor_id, r.actor_name, r.domain, r.reference, r.detail) for r in rows]
