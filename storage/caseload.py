"""The caseload's reads (bot.desk_service): a look at the desk is one trip to the database, not a unit of work."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from bot.desk import CaseloadFacts
from bot.incidents import IncidentSummary
from storage.crypto import FieldCipher
from storage.delivery import failed_work
from storage.incidents import open_summaries_work
from storage.one_trip import OneRead
from storage.prepared import Work
from storage.referrals import overdue_work


class SqlCaseload:
    def __init__(self, reads: OneRead, cipher: FieldCipher) -> None:
        self._reads = reads
        self._cipher = cipher

    async def caseload(
        self,
        school_id: str,
        since: dt.datetime,
        now: dt.datetime,
        visible: Callable[[list[IncidentSummary]], list[IncidentSummary]],
    ) -> CaseloadFacts:
        def work() -> Work[CaseloadFacts]:
            shown = visible((yield from open_summaries_work(school_id)))
            if not shown:  # nothing the viewer may see, so nothing for the marks to mark
                return CaseloadFacts([], [], frozenset())
            failed = yield from failed_work(self._cipher, school_id, since)
            late = yield from overdue_work(school_id, now)
            return CaseloadFacts(shown, failed, frozenset(late))

        return await self._reads.run(work)
