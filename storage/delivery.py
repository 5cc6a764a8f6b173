"""Delivery outcomes read from the outbox: a group's sends, its watch, and what never arrived."""

from __future__ import annotations

import datetime as dt
import json

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.delivery import Delivery, Outcome, Watch, target_key
from storage.crypto import FieldCipher
from storage.models import WorkRow
from storage.repos import SEND_KIND, work_payload_context


class SqlDeliveries:
    def __init__(self, session: AsyncSession, cipher: FieldCipher) -> None:
        self._session = session
        self._cipher = cipher

    def _payload(self, row: WorkRow) -> dict:
        return json.loads(self._cipher.decrypt(row.payload, work_payload_context(row.school_id, row.row_key)))

    def _outcome(self, row: WorkRow) -> Outcome:
        payload = self._payload(row)
        return Outcome(
            row.id,
            target_key(payload["target"]),
            Delivery.from_json(payload["delivery"]),
            row.status,
            row.last_error,
            row.finished_at or row.run_at,
        )

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
        rows = (
            await self._session.scalars(
                select(WorkRow)
                .where(
                    WorkRow.school_id == school_id,
                    WorkRow.kind == SEND_KIND,
                    WorkRow.status == "failed",
                    WorkRow.delivery_group.is_not(None),
                    WorkRow.finished_at >= since,
                )
                .order_by(WorkRow.finished_at.desc())
            )
        ).all()
        return [self._outcome(r) for r in rows]

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
