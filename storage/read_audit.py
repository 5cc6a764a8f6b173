"""Audit entries for reads (a caseload listed, a case opened or refreshed), appended in transactions of their own.

A read writes nothing but its entry, so the entry need not wait for the reader's unit of work; and every entry of a
school's chain holds the school's head row from its claim to its commit. With the entry inside the unit of work, ten
deputies opening the caseload at once queued for that row each in turn, for as long as their whole transaction took.
Here the entries that arrive while one append holds a school's head wait for it and then go together, in the next
transaction: one hold of the head, three statements, for all of them. Each reader's `record` returns only once its
entry is committed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from bot.audit import AuditEntry, AuditKeys
from bot.protocols import Clock
from storage.one_trip import OneTrip
from storage.repos import AuditItem, append_steps


@dataclass
class _School:
    waiting: list[tuple[AuditItem, asyncio.Future[AuditEntry]]] = field(default_factory=list)
    appending: asyncio.Task[None] | None = None


class SqlReadAudit:
    def __init__(self, trip: OneTrip, keys: AuditKeys, clock: Clock) -> None:
        self._trip = trip  # the turns' own, so on SQLite an entry goes in the group commit with their bookkeeping
        self._keys = keys
        self._clock = clock
        self._schools: dict[str, _School] = {}

    async def record(
        self,
        school_id: str,
        actor_id: str | None,
        action: str,
        record_type: str,
        record_id: str | None,
        detail: dict[str, Any] | None = None,
    ) -> AuditEntry:
        school = self._schools.setdefault(school_id, _School())
        done: asyncio.Future[AuditEntry] = asyncio.get_running_loop().create_future()
        school.waiting.append(((actor_id, action, record_type, record_id, detail), done))
        if school.appending is None:
            school.appending = asyncio.create_task(self._append(school_id, school))
        # Shielded: a reader who goes away (a cancelled request) does not take the others' entries with them.
        return await asyncio.shield(done)

    async def _append(self, school_id: str, school: _School) -> None:
        batch: list[tuple[AuditItem, asyncio.Future[AuditEntry]]] = []
        try:
            while school.waiting:
                batch, school.waiting = school.waiting, []
                items = [item for item, _done in batch]
                work = partial(append_steps, self._keys, self._clock, school_id, items)
                try:
                    entries = await self._trip.steps(work)
                except Exception as exc:  # noqa: BLE001 - each reader hears it, and is shown nothing
                    for _item, done in batch:
                        done.set_exception(exc)
                else:
                    for (_item, done), entry in zip(batch, entries, strict=True):
                        done.set_result(entry)
        except BaseException:  # stopped (the app is shutting down): nobody may be left waiting for ever
            for _item, done in (*batch, *school.waiting):
                done.cancel()
            school.waiting = []
            raise
        finally:
            school.appending = None
