"""Delivery outcomes read from the outbox: a group's sends, its watch, and what never arrived."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy import Row, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.delivery import Delivery, Outcome, Watch, target_key
from storage.crypto import FieldCipher
from storage.models import WorkRow
from storage.one_trip import run_in_session
from storage.prepared import Prepared, Work
from storage.repos import SEND_KIND, work_payload_context


def _payload(cipher: FieldCipher, row: WorkRow | Row[Any]) -> dict:
    return json.loads(cipher.decrypt(row.payload, work_payload_context(row.school_id, row.row_key)))


def _outcome(cipher: FieldCipher, row: WorkRow | Row[Any]) -> Outcome:
    payload = _payload(cipher, row)
    return Outcome(
        row.id,
        target_key(payload["target"]),
        Delivery.from_json(payload["delivery"]),
        row.status,
        row.last_error,
        row.finished_at or row.run_at,
    )


# Run by the driver itself (storage.prepared): the caseload reads it on every look at the desk that lists a case.
_FAILED = Prepared(
    select(
        WorkRow.id,
        WorkRow.school_id,
        WorkRow.row_key,
        WorkRow.payload,
        WorkRow.status,
        WorkRow.last_error,
        WorkRow.finished_at,
        WorkRow.run_at,
    )
    .where(
        WorkRow.school_id == bindparam("school_id"),
        WorkRow.kind == bindparam("kind"),
        WorkRow.status == bindparam("failed"),
        WorkRow.delivery_group.is_not(None),
        WorkRow.finished_at >= bindparam("since"),
    )
    .order_by(WorkRow.finished_at.desc())
)


def failed_work(cipher: FieldCipher, school_id: str, since: dt.datetime) -> Work[list[Outcome]]:
    """The tracked sends of a school that failed since a time, newest first."""
    params = {"school_id": school_id, "kind": SEND_KIND, "failed": "failed", "since": since}
    rows = (yield _FAILED, params).rows
    return [_outcome(cipher, row) for row in rows]


class SqlDeliveries:
    def __init__(self, session: AsyncSession, cipher: FieldCipher) -> None:
        self._session = session
        self._cipher = cipher

    def _payload(self, row: WorkRow) -> dict:
        return _payload(self._cipher, row)

    def _outcome(self, row: WorkRow) -> Outcome:
        return _outcome(self._cipher, row)

    async def group(self, school_id: str, group: str) -> list[Outcome]:
        rows = (
            await self._session.scalars(
                select(WorkRow)
                .where(WorkRow.school_id == school_id, WorkRow.delivery_group == group, WorkRow.kind == SEND_KIND)
                .order_by(WorkRow.id)
            )
        ).all()
        return [self._outcome(r) for r in rows]

    async def watch(self, school_id: str, group: str) -> Watch | None:
        row = await self._session.scalar(
            select(WorkRow).where(WorkRow.dedupe_key == f"{group}:deadline", WorkRow.school_id == school_id)
        )
        return Watch.from_json(self._payload(row)) if row is not None else None

    async def deadline_missed(self, school_id: str, group: str) -> bool:
        result = await self._session.scalar(
            select(WorkRow.result).where(
                WorkRow.dedupe_key == f"{group}:deadline", WorkRow.school_id == school_id, WorkRow.status == "done"
            )
        )
        return result == "undelivered"

    async def failed(self, school_id: str, since: dt.datetime) -> list[Outcome]:
        return await run_in_session(self._session, failed_work(self._cipher, school_id, since))

    async def sent_about(self, school_id: str, about: str) -> list[tuple[dict[str, str], str]]:
        """Every message posted about a case that arrived: (target, activity id), newest version of each once."""
        rows = (
            await self._session.scalars(
                select(WorkRow)
                .where(
                    WorkRow.school_id == school_id,
                    WorkRow.about == about,
                    WorkRow.kind == SEND_KIND,
                    WorkRow.status == "done",
                )
                .order_by(WorkRow.id)
            )
        ).all()
        posted: dict[str, tuple[dict[str, str], str]] = {}
        for row in rows:
            payload = self._payload(row)
            activity_id = payload.get("update_of") or (row.result or "").removeprefix("sent:")
            if activity_id and (row.result or "").startswith("sent:"):
                posted[activity_id] = (payload["target"], activity_id)
        return list(posted.values())

    async def withdraw_unsent_about(self, school_id: str, about: str, keep_people: set[str]) -> int:
        """Cancel 1:1 messages about a case not yet sent to people who may no longer see it; the count."""
        rows = (
            await self._session.scalars(
                select(WorkRow).where(
                    WorkRow.school_id == school_id,
                    WorkRow.about == about,
                    WorkRow.kind == SEND_KIND,
                    WorkRow.status == "pending",
                )
            )
        ).all()
        withdrawn = 0
        for row in rows:
            target = self._payload(row)["target"]
            if target["kind"] == "person" and target["id"] not in keep_people:
                row.status, row.result = "cancelled", "withdrawn: access to the case changed"
                withdrawn += 1
        return withdrawn

    async def count_failed(self, since: dt.datetime) -> int:
        """How many tracked sends failed since a time, across schools (for /readyz); no payload is read."""
        return (
            await self._session.scalar(
                select(func.count())
                .select_from(WorkRow)
                .where(
                    WorkRow.kind == SEND_KIND,
                    WorkRow.status == "failed",
                    WorkRow.delivery_group.is_not(None),
                    WorkRow.finished_at >= since,
                )
            )
            or 0
        )
