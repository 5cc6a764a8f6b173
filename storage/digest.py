"""Aggregate SQL for the digest and the governors' report: GROUP BY counts only, never rows.

The other features' tables are reached through SQLAlchemy Core `table()` descriptions of just the columns used
here, so this module does not depend on their ORM classes. A query against a table that does not exist yet answers
None: "no data yet". SQLite refuses such a statement and the transaction carries on; PostgreSQL would abort the
whole transaction, so there the tables are looked up first.

The incident figures take two statements, not one per figure: one pass over the period's incidents, and one over the
school's open incidents (and the trend's weeks). Both group by everything their figures need at once, and the counts
are split into figures here.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

from sqlalchemy import (
    Boolean,
    Integer,
    String,
    and_,
    bindparam,
    case,
    column,
    func,
    literal,
    or_,
    select,
    table,
    union_all,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.util import find_tables

from bot.digest import OpenCounts, PeriodCounts
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
PERIOD_COLUMNS = ("category_group", "severity", "status", "outcome")
FEATURE_TABLES = (incidents, filter_log, aup_documents, aup_acks, reviews)


class SqlDigestSource:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session
        self._present: set[str] | None = None  # PostgreSQL: which of these tables exist, looked up once

    async def _rows(self, statement: Any, params: dict[str, Any] | None = None) -> list[Any] | None:
        """Run an aggregate; None when a table is not there (the feature is not installed yet)."""
        if self._session.get_bind().dialect.name == "sqlite":
            try:  # SQLite refuses the statement before running it, and the transaction carries on
                return list((await self._session.execute(statement, params)).all())
            except DBAPIError as exc:
                if _missing_table(exc):
                    return None
                raise
        # PostgreSQL would abort the whole transaction instead: look first, for every table at once (a SAVEPOINT
        # around each query was two more round trips per figure).
        if self._present is None:
            names = [t.name for t in FEATURE_TABLES]
            # In the same trip, for the rest of this transaction: plan each statement for its own values. From its
            # sixth run on a connection PostgreSQL may keep a generic plan instead, and for the open incidents that
            # plan expects one row and sorts all of them on disk (half as slow again as the plan for the values).
            custom = func.set_config("plan_cache_mode", "force_custom_plan", True)
            found = (
                await self._session.execute(select(custom, *(func.to_regclass(n).is_not(None) for n in names)))
            ).one()[1:]
            self._present = {name for name, there in zip(names, found, strict=True) if there}
        if not _table_names(statement) <= self._present:
            return None
        return list((await self._session.execute(statement, params)).all())

    async def period_counts(self, school_id: str, start: dt.datetime, end: dt.datetime) -> PeriodCounts | None:
        rows = await self._rows(_PERIOD, {"school_id": school_id, "start": start, "end": end})
        if rows is None:
            return None
        by_column: dict[str, dict[str, int]] = {name: {} for name in PERIOD_COLUMNS}
        sla_breaches = adults = 0
        for *values, breached, is_adult, n in rows:
            if is_adult:
                adults += n
                continue
            for name, value in zip(PERIOD_COLUMNS, values, strict=True):
                by_column[name][value] = by_column[name].get(value, 0) + n
            if breached:
                sla_breaches += n
        return PeriodCounts(by_column, sla_breaches, adults)

    async def open_counts(
        self, school_id: str, now: dt.datetime, bounds: list[dt.datetime], edges: list[dt.datetime] | None
    ) -> OpenCounts | None:
        # One pass over the school's incidents (not one per figure): rows are counted by slice of the time line,
        # cut at every age bound and trend edge, and the slices are summed into age buckets and weeks here.
        points = sorted({now, *bounds, *(edges or [])})
        params: dict[str, Any] = {f"point{i}": point for i, point in enumerate(points)}
        params["school_id"] = school_id
        if edges is not None:
            params["since"] = edges[0]
        dialect = self._session.get_bind().dialect.name
        rows = await self._rows(_open_statement(len(points), edges is not None, dialect), params)
        if rows is None:
            return None
        by_age = [0] * (len(bounds) + 1)
        breached = 0
        weekly = [0] * (len(edges) - 1) if edges is not None else None
        for key, n, late in rows:
            index, opened = divmod(int(key), 2)
            at = _witness(points, index)
            if opened:
                breached += late
                if at <= (now, 0):
                    by_age[next((i for i, bound in enumerate(bounds) if at > (bound, 0)), len(bounds))] += n
            if weekly is not None and edges is not None and (edges[0], 0) <= at <= (edges[-1], 0):
                last = len(weekly) - 1
                weekly[next((i for i in range(last) if at < (edges[i + 1], 0)), last)] += n
        return OpenCounts(by_age, breached, weekly)

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


_adult = incidents.c.subject_kind.in_(ADULT_SUBJECTS).label("adult")
_period_keys = [*(incidents.c[name] for name in PERIOD_COLUMNS), incidents.c.sla_breached, _adult]
# Incidents in a period, grouped by every column the digest splits them by at once; the split is done in Python.
_PERIOD = (
    select(*_period_keys, func.count())
    .where(
        incidents.c.school_id == bindparam("school_id"),
        incidents.c.reported_at >= bindparam("start", type_=UtcDateTime()),
        incidents.c.reported_at <= bindparam("end", type_=UtcDateTime()),
    )
    .group_by(*_period_keys)
)

# Compared bare, SQLite would walk the (school_id, reported_at) index and fetch every row out of order, and would
# try each text it compares as a number first (the column's affinity); through coalesce() it reads the school's rows
# in table order and compares plain text. PostgreSQL is given the bare column: coalesce() would hide it from indexes.
_reported = func.coalesce(incidents.c.reported_at, incidents.c.reported_at)
_is_open = incidents.c.status != "closed"


@functools.lru_cache(maxsize=16)
def _open_statement(points: int, trend: bool, dialect: str) -> Any:
    """Open incidents about pupils (and, for a trend, all since `since`) counted by (slice of the time line, open).

    The slice is found by a binary search in SQL over the points `point0` < `point1` < ...: 2i below point i (and
    above the one before), 2i+1 at it. Rows older than every point (usually most of them) are all slice 0. Built
    once per shape: the tree is large, and only the parameters change between digests.
    """
    marks = [bindparam(f"point{i}", type_=UtcDateTime()) for i in range(points)]
    since = bindparam("since", type_=UtcDateTime())
    reported = incidents.c.reported_at if dialect == "postgresql" else _reported

    def search(low: int, high: int) -> Any:
        if low == high:
            return literal(low)
        middle = (low + high + 1) // 2
        below = reported < marks[middle // 2] if middle % 2 else reported <= marks[middle // 2 - 1]
        return case((below, search(low, middle - 1)), else_=search(middle, high))

    def counted(rows: Any) -> Any:
        return select(rows.c.key, func.count().label("n"), func.count().filter(rows.c.breached.is_(True)))

    recent = or_(reported >= since, _is_open) if trend else _is_open  # closed incidents count in the trend only
    if dialect != "postgresql":
        # One test first sends the old rows to slice 0; SQLite reads the table once, in order (see `_reported`).
        key = case((reported < marks[0], literal(0)), else_=search(1, 2 * points))
        rows = select(
            (key * 2 + case((_is_open, 1), else_=0)).label("key"), incidents.c.sla_breached.label("breached")
        ).where(incidents.c.school_id == bindparam("school_id"), about_pupils, recent)
        inner = rows.subquery()
        return counted(inner).group_by(inner.c.key)
    # PostgreSQL: the old open incidents (slice 0, open: key 1) are only counted, from the partial index of open
    # incidents about pupils (migration 0023) alone, without reading the table; only the weeks since the first point
    # are read row by row and sliced. The index's condition is repeated word for word so the planner can use it.
    # Written into the statement, not sent as parameters, so that a generic plan can still use the index.
    index_condition = and_(
        incidents.c.status != literal("closed", literal_execute=True),
        incidents.c.subject_kind.not_in([literal(kind, literal_execute=True) for kind in ADULT_SUBJECTS]),
    )
    old = select(
        literal(1).label("key"), func.count().label("n"), func.count().filter(incidents.c.sla_breached.is_(True))
    ).where(incidents.c.school_id == bindparam("school_id"), index_condition, reported < marks[0])
    rows = select(
        (search(1, 2 * points) * 2 + case((_is_open, 1), else_=0)).label("key"),
        incidents.c.sla_breached.label("breached"),
    ).where(incidents.c.school_id == bindparam("school_id"), about_pupils, reported >= marks[0], recent)
    inner = rows.subquery()
    return union_all(old, counted(inner).group_by(inner.c.key))


@functools.lru_cache(maxsize=64)
def _table_names(statement: Any) -> frozenset[str]:
    """The tables a statement reads; remembered, as walking the open incidents' large CASE tree costs a while."""
    return frozenset(t.name for t in find_tables(statement))


def _witness(points: list[dt.datetime], index: int) -> tuple[dt.datetime, int]:
    """A stand-in for every time in slice `index` that compares with (point, 0) exactly as they do with point."""
    if index % 2:
        return points[index // 2], 0
    if index // 2 < len(points):
        return points[index // 2], -1  # just below the point, above the one before
    return points[-1], 1


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
