"""Aggregate SQL for the digest and the governors' report: GROUP BY counts only, never rows.

The other features' tables are reached through SQLAlchemy Core `table()` descriptions of just the columns used
here, so this module does not depend on their ORM classes. A query against a table that does not exist yet runs
inside a SAVEPOINT (PostgreSQL aborts the whole transaction otherwise) and answers None: "no data yet".
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Boolean, Integer, String, and_, case, column, func, literal, select, table
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import UtcDateTime

incidents = table(
    "incidents",
    column("school_id", String),
    column("reported_at", UtcDateTime()),
    column("category_group", String),
    column("severity", String),
    column("status", String),
    column("outcome", String),
    column("sla_breached", Boolean),
    column("subject_kind", String),
)
# Allegations about staff and concerns about the Headteacher never reach the SLT figures (the Headteacher, or the
# accused, may be reading them); the governors' report has one termly count of them, from `adult_allegations`.
ADULT_SUBJECTS = ("staff", "headteacher")
about_pupils = incidents.c.subject_kind.not_in(ADULT_SUBJECTS)
filter_log = table("filter_log", column("school_id", String), column("at", UtcDateTime()), column("action", String))
aup_documents = table(
    "aup_documents", column("school_id", String), column("audience", String), column("version", Integer)
)
aup_acks = table(
    "aup_acknowledgements",
    column("school_id", String),
    column("person_id", String),
    column("audience", String),
    column("version", Integer),
    column("cycle", String),
    column("agreed", Boolean),
)
reviews = table(
    "review_items", column("school_id", String), column("kind", String), column("completed_at", UtcDateTime())
)
INCIDENT_COLUMNS = {"category_group", "severity", "status", "outcome"}


class SqlDigestSource:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def _rows(self, statement: Any) -> list[Any] | None:
        """Run an aggregate; None when the table is not there (the feature is not installed yet)."""
        try:
            async with self._session.begin_nested():
                return list((await self._session.execute(statement)).all())
        except DBAPIError as exc:
            if _missing_table(exc):
                return None
            raise

    async def incident_counts(
        self, school_id: str, start: dt.datetime, end: dt.datetime, column_name: str
    ) -> dict[str, int] | None:
        if column_name not in INCIDENT_COLUMNS:
            raise ValueError(f"not an aggregate column: {column_name}")
        key = incidents.c[column_name]
        rows = await self._rows(
            select(key, func.count())
            .where(
                incidents.c.school_id == school_id,
                incidents.c.reported_at >= start,
                incidents.c.reported_at <= end,
                about_pupils,
            )
            .group_by(key)
        )
        return None if rows is None else {k: n for k, n in rows}

    async def sla_breaches(self, school_id: str, start: dt.datetime, end: dt.datetime) -> int | None:
        rows = await self._rows(
            select(func.count()).where(
                incidents.c.school_id == school_id,
                incidents.c.reported_at >= start,
                incidents.c.reported_at <= end,
                incidents.c.sla_breached.is_(True),
                about_pupils,
            )
        )
        return None if rows is None else int(rows[0][0])

    async def adult_allegations(self, school_id: str, start: dt.datetime, end: dt.datetime) -> int | None:
        rows = await self._rows(
            select(func.count()).where(
                incidents.c.school_id == school_id,
                incidents.c.reported_at >= start,
                incidents.c.reported_at <= end,
                incidents.c.subject_kind.in_(ADULT_SUBJECTS),
            )
        )
        return None if rows is None else int(rows[0][0])

    async def open_by_age(self, school_id: str, now: dt.datetime, bounds: list[dt.datetime]) -> list[int] | None:
        reported = incidents.c.reported_at
        bucket = case(*[(reported > bound, literal(i)) for i, bound in enumerate(bounds)], else_=literal(len(bounds)))
        inner = (
            select(bucket.label("bucket"))
            .where(incidents.c.school_id == school_id, incidents.c.status != "closed", reported <= now, about_pupils)
            .subquery()
        )
        rows = await self._rows(select(inner.c.bucket, func.count()).group_by(inner.c.bucket))
        if rows is None:
            return None
        counts = [0] * (len(bounds) + 1)
        for index, n in rows:
            counts[int(index)] += n
        return counts

    async def open_breached(self, school_id: str) -> int | None:
        rows = await self._rows(
            select(func.count()).where(
                incidents.c.school_id == school_id,
                incidents.c.status != "closed",
                incidents.c.sla_breached.is_(True),
                about_pupils,
            )
        )
        return None if rows is None else int(rows[0][0])

    async def weekly_counts(self, school_id: str, edges: list[dt.datetime]) -> list[int] | None:
        reported = incidents.c.reported_at
        windows = len(edges) - 1
        bucket = case(*[(reported < edges[i + 1], literal(i)) for i in range(windows - 1)], else_=literal(windows - 1))
        inner = (
            select(bucket.label("bucket"))
            .where(incidents.c.school_id == school_id, reported >= edges[0], reported <= edges[-1], about_pupils)
            .subquery()
        )
        rows = await self._rows(select(inner.c.bucket, func.count()).group_by(inner.c.bucket))
        if rows is None:
            return None
        counts = [0] * windows
        for index, n in rows:
            counts[int(index)] += n
        return counts

    async def filter_actions(self, school_id: str, start: dt.datetime, end: dt.datetime) -> dict[str, int] | None:
        rows = await self._rows(
            select(filter_log.c.action, func.count())
            .where(
                filter_log.c.school_id == school_id,
                filter_log.c.at >= start,
                filter_log.c.at <= end,
            )
            .group_by(filter_log.c.action)
        )
        return None if rows is None else {k: n for k, n in rows}

    async def aup_acknowledged(self, school_id: str, cycle: str) -> dict[str, int] | None:
        current = (
            select(aup_documents.c.audience, func.max(aup_documents.c.version).label("version"))
            .where(aup_documents.c.school_id == school_id)
            .group_by(aup_documents.c.audience)
            .subquery()
        )
        rows = await self._rows(
            select(aup_acks.c.audience, func.count(aup_acks.c.person_id.distinct()))
            .select_from(
                aup_acks.join(
                    current, and_(aup_acks.c.audience == current.c.audience, aup_acks.c.version == current.c.version)
                )
            )
            .where(aup_acks.c.school_id == school_id, aup_acks.c.cycle == cycle, aup_acks.c.agreed.is_(True))
            .group_by(aup_acks.c.audience)
        )
        return None if rows is None else {k: n for k, n in rows}

    async def reviews_completed(self, school_id: str, start: dt.datetime, end: dt.datetime) -> dict[str, int] | None:
        rows = await self._rows(
            select(reviews.c.kind, func.count())
            .where(
                reviews.c.school_id == school_id,
                reviews.c.completed_at >= start,
                reviews.c.completed_at <= end,
            )
            .group_by(reviews.c.kind)
        )
        return None if rows is None else {k: n for k, n in rows}


def _missing_table(exc: DBAPIError) -> bool:
    text = str(exc.orig if exc.orig is not None else exc).lower()
    return "no such table" in text or ("relation" in text and "does not exist" in text) or "undefinedtable" in text


async def plain_group_by(session: AsyncSession, school_id: str) -> dict[str, int]:
    """One plain GROUP BY count over the incidents table (the benchmark's yardstick)."""
    rows = (
        await session.execute(
            select(incidents.c.category_group, func.count())
            .where(incidents.c.school_id == school_id)
            .group_by(incidents.c.category_group)
        )
    ).all()
    return {k: n for k, n in rows}
