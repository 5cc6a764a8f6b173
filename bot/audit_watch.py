"""Checking the audit trail: at start-up, daily as durable work, and from `python app.py verify-audit`.

Decisions:
- A check reads a school's whole chain in one unit of work and compares it with the key(s), the head row and the
  last checkpoint written outside the database. Only an intact chain gets a new checkpoint: a checkpoint on a
  broken chain would bless the break.
- A break does not stop the app: reports, alerts and casework must go on (a school cannot stop safeguarding
  because its log was tampered with). It is logged at ERROR, shown by /readyz and, daily, sent to the online-safety
  lead, the Headteacher and the Chair of Governors.
- The daily check runs at 06:00 school time, one work item per school per day (dedupe key), each run scheduling
  the next, like the weekly digest.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from bot import schooltime
from bot.audit import AuditKeys, Break, Checkpoint, verify
from bot.config import AppConfig
from bot.people import Role
from bot.protocols import Clock, Directory
from bot.work import WorkItem

VERIFY_KIND = "audit.verify"
DAILY_AT = dt.time(6, 0)
ALERTED = (Role.ONLINE_SAFETY_LEAD, Role.HEADTEACHER, Role.CHAIR_OF_GOVERNORS)

log = logging.getLogger("esafety.audit")


class CheckpointStore(Protocol):
    async def append(self, checkpoint: Checkpoint) -> None: ...

    async def last(self, school_id: str) -> Checkpoint | None: ...


@dataclass(frozen=True)
class SchoolCheck:
    school_id: str
    entries: int
    broken: Break | None

    def line(self) -> str:
        if self.broken:
            return f"{self.broken.describe()} ({self.broken.reason})"
        return f"intact: school {self.school_id}, {self.entries} entries"


class AuditWatch:
    def __init__(
        self,
        uow: Any,
        keys: AuditKeys,
        checkpoints: CheckpointStore,
        clock: Clock,
        config: AppConfig | None = None,
        directory: Directory | None = None,
    ) -> None:
        self.uow = uow
        self.keys = keys
        self.checkpoints = checkpoints
        self.clock = clock
        self.config = config
        self.directory = directory
        self._latest: dict[str, Break | None] = {}

    @property
    def status(self) -> str:
        """One short phrase for /readyz: the first break this process has seen, else "intact"."""
        if not self._latest:
            return "not checked yet"
        broken = [b for _, b in sorted(self._latest.items()) if b is not None]
        return broken[0].describe() if broken else "intact"

    async def check_school(self, school_id: str, *, checkpoint: bool = False) -> SchoolCheck:
        async with self.uow() as uow:
            # Head first: everything up to it is committed (row and head change in one transaction), so appends
            # racing this read (PostgreSQL reads each statement afresh) are newer than the head and left for later.
            head = await uow.audit.head(school_id)
            entries = await uow.audit.entries(school_id)
        if head is not None:
            entries = [e for e in entries if e.seq <= head[0]]
        broken = verify(school_id, entries, self.keys, await self.checkpoints.last(school_id), head)
        if broken is not None:
            log.error("AUDIT TRAIL BROKEN %s (%s)", broken.describe(), broken.reason)
        elif checkpoint and entries:
            await self.write_checkpoint(Checkpoint(school_id, entries[-1].seq, entries[-1].hash, self.clock.now()))
        self._latest[school_id] = broken
        return SchoolCheck(school_id, len(entries), broken)

    async def check_all(self, *, checkpoint: bool = False) -> list[SchoolCheck]:
        async with self.uow() as uow:
            schools = set(await uow.audit.schools())
        schools |= {s.id for s in self.config.schools} if self.config else set()
        return [await self.check_school(school_id, checkpoint=checkpoint) for school_id in sorted(schools)]

    async def write_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Both out-of-database places: the file verify-audit reads, and the application log."""
        await self.checkpoints.append(checkpoint)
        log.info("%s", checkpoint.line())

    # --- the daily check ---

    async def seed(self, school_id: str) -> None:
        async with self.uow() as uow:
            await self._schedule_next(uow, school_id, self.clock.now())

    async def _schedule_next(self, uow: Any, school_id: str, after: dt.datetime) -> None:
        school = self.config.school(school_id) if self.config else None
        if school is None:
            return
        at = schooltime.next_daily(school, after, DAILY_AT)
        await uow.work.schedule(
            school_id, VERIFY_KIND, at, {}, dedupe_key=f"{VERIFY_KIND}:{school_id}:{at.date().isoformat()}"
        )

    async def run_daily(self, item: WorkItem) -> str:
        check = await self.check_school(item.school_id, checkpoint=True)
        async with self.uow() as uow:
            if check.broken is not None:
                await self._alert(uow, item, check.broken)
            await self._schedule_next(uow, item.school_id, max(self.clock.now(), item.run_at))
        return check.line()

    async def _alert(self, uow: Any, item: WorkItem, broken: Break) -> None:
        school = self.config.school(item.school_id) if self.config else None
        name = school.name if school else item.school_id
        text = (
            f"The audit trail for {name} failed today's integrity check at entry {broken.seq}: {broken.reason}. "
            "This can mean that someone changed or removed records directly in the database. The bot is still "
            "recording and reporting as normal. Please ask your IT team to keep the database as it is, and to "
            "compare it with the last audit checkpoint (in var/audit-checkpoints.log and in the footer of the "
            "weekly digest) by running `python app.py verify-audit`."
        )
        notified: set[str] = set()
        for role in ALERTED:
            for person in await self.directory.people_with_role(item.school_id, role) if self.directory else []:
                if person.id in notified:
                    continue
                notified.add(person.id)
                await uow.notify.to_person(
                    item.school_id,
                    person.id,
                    text=text,
                    dedupe_key=f"{item.dedupe_key or VERIFY_KIND}:alert:{person.id}",
                )
