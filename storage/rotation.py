"""Key rotation: re-seal every encrypted field under the current key, bound to its row, in small batches.

Each batch is its own short transaction and each value is replaced only if it is still the one that was read, so the
running app is never blocked and never loses a write it made meanwhile. Values already under the current key are
skipped, so an interrupted run is simply run again.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import inspect, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.bot_storage import document_context
from storage.children import SECRET_FIELDS as CHILD_FIELDS
from storage.children import CaseLinkRow, ChildRow, child_context, staff_context
from storage.crypto import FieldCipher
from storage.filtering import FilterRequestRow, reason_context
from storage.inbound import InboundClaimRow, response_context
from storage.incidents import SECRET_FIELDS, IncidentEventRow, IncidentRow, event_context, incident_context
from storage.models import BotStateRow, ConversationRefRow, WorkRow, rows_changed
from storage.referrals import REFERRAL_FIELDS, ReferralClockRow, ReferralRow, referral_context, waived_context
from storage.repos import REFERENCE_NAME_FIELDS, without_names, work_payload_context
from storage.retention import LegalHoldRow, hold_context
from storage.reviews import ReviewRow, notes_context

BATCH = 100


@dataclass(frozen=True)
class Sealed:
    """One encrypted column and how a row's associated data is made."""

    model: Any  # a mapped row class
    column: str
    context: Callable[[Any], str]


def _per_field(context: Callable[[str, Any], str], field: str) -> Callable[[Any], str]:
    """A row's associated data for one of a table's several sealed columns."""
    return lambda row: context(field, row)


SEALED: tuple[Sealed, ...] = (
    *(
        Sealed(IncidentRow, field, _per_field(lambda f, r: incident_context(f, r.school_id, r.reference), field))
        for field in SECRET_FIELDS
    ),
    Sealed(IncidentEventRow, "detail", lambda r: event_context(r.school_id, r.incident_id, r.at, r.kind)),
    Sealed(FilterRequestRow, "reason", lambda r: reason_context(r.school_id, r.reference)),
    Sealed(ReviewRow, "notes", lambda r: notes_context(r.school_id, r.id)),
    Sealed(BotStateRow, "document", lambda r: document_context(r.key_hash)),
    Sealed(InboundClaimRow, "response", lambda r: response_context(r.key)),
    Sealed(WorkRow, "payload", lambda r: work_payload_context(r.school_id, r.row_key)),
    *(
        Sealed(ChildRow, field, _per_field(lambda f, r: child_context(f, r.school_id, r.token), field))
        for field in CHILD_FIELDS
    ),
    Sealed(CaseLinkRow, "staff_name", lambda r: staff_context(r.school_id, r.incident_id, r.staff_id)),
    *(
        Sealed(
            ReferralRow,
            field,
            _per_field(lambda f, r: referral_context(f, r.school_id, r.incident_id, r.row_key), field),
        )
        for field in REFERRAL_FIELDS
    ),
    Sealed(ReferralClockRow, "waived_reason", lambda r: waived_context(r.school_id, r.incident_id, r.agency)),
    Sealed(LegalHoldRow, "reason", lambda r: hold_context("reason", r.school_id, r.id)),
    Sealed(LegalHoldRow, "release_reason", lambda r: hold_context("release_reason", r.school_id, r.id)),
)


@dataclass
class Tally:
    checked: int = 0
    changed: int = 0


async def rotate(
    sessions: async_sessionmaker[AsyncSession], cipher: FieldCipher, progress: Callable[[str], None] = print
) -> dict[str, Tally]:
    """Re-seal every value not yet under the current key; scrub names from conversation references."""
    tallies: dict[str, Tally] = {}
    for sealed in SEALED:
        name = f"{sealed.model.__tablename__}.{sealed.column}"
        tallies[name] = await _rotate_column(sessions, cipher, sealed, name, progress)
    tallies["conversation_refs.names"] = await _scrub_references(sessions, progress)
    return tallies


async def _pages(
    sessions: async_sessionmaker[AsyncSession], model: Any, handle: Callable[[AsyncSession, Sequence[Any]], Any]
) -> None:
    """Walk a table in primary-key order, one short transaction per batch."""
    keys = inspect(model).primary_key
    after: tuple | None = None
    while True:
        async with sessions() as session, session.begin():
            query = select(model).order_by(*keys).limit(BATCH)
            if after is not None:
                query = query.where(tuple_(*keys) > tuple_(*after))
            rows = (await session.scalars(query)).all()
            if not rows:
                return
            await handle(session, rows)
            after = tuple(getattr(rows[-1], key.key) for key in keys)


async def _rotate_column(
    sessions: async_sessionmaker[AsyncSession],
    cipher: FieldCipher,
    sealed: Sealed,
    name: str,
    progress: Callable[[str], None],
) -> Tally:
    tally = Tally()
    model, column = sealed.model, sealed.column
    keys = inspect(model).primary_key

    async def handle(session: AsyncSession, rows: Sequence[Any]) -> None:
        for row in rows:
            tally.checked += 1
            stored = getattr(row, column)
            if cipher.is_current(stored):
                continue
            old_context = sealed.context(row)
            values: dict[str, Any] = {}
            if model is WorkRow and row.row_key is None:  # written before row keys: give it one as it is re-sealed
                values["row_key"] = secrets.token_hex(16)
                row_for_context = _Shadow(row, row_key=values["row_key"])
            else:
                row_for_context = row
            values[column] = cipher.reseal(stored, sealed.context(row_for_context), old_context)
            # Only if nobody changed it since it was read: a write by the running app is already current.
            where = [key == getattr(row, key.key) for key in keys] + [getattr(model, column) == stored]
            result = await session.execute(
                update(model).where(*where).values(**values).execution_options(synchronize_session=False)
            )
            tally.changed += rows_changed(result) or 0
        progress(f"{name}: {tally.checked} checked, {tally.changed} re-sealed")

    await _pages(sessions, model, handle)
    return tally


async def _scrub_references(sessions: async_sessionmaker[AsyncSession], progress: Callable[[str], None]) -> Tally:
    """References saved before names were dropped: remove the display names they still hold."""
    tally = Tally()

    async def handle(session: AsyncSession, rows: Sequence[Any]) -> None:
        for row in rows:
            tally.checked += 1
            reference = row.reference or {}
            has_names = any(
                isinstance(reference.get(a), dict) and "name" in reference[a] for a in REFERENCE_NAME_FIELDS
            )
            if row.name is None and not has_names:
                continue
            await session.execute(
                update(ConversationRefRow)
                .where(
                    ConversationRefRow.school_id == row.school_id,
                    ConversationRefRow.kind == row.kind,
                    ConversationRefRow.key == row.key,
                )
                .values(name=None, reference=without_names(reference))
                .execution_options(synchronize_session=False)
            )
            tally.changed += 1
        progress(f"conversation_refs: {tally.checked} checked, {tally.changed} names removed")

    await _pages(sessions, ConversationRefRow, handle)
    return tally


class _Shadow:
    """A row with some attributes replaced, to compute the associated data a row will have after the update."""

    def __init__(self, row: Any, **overrides: Any) -> None:
        self._row = row
        self._overrides = overrides

    def __getattr__(self, name: str) -> Any:
        if name in self._overrides:
            return self._overrides[name]
        return getattr(self._row, name)
