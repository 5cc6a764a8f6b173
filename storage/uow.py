"""The SQL unit of work: one `session.begin()` shared by every repository used inside it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Self

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.audit import AuditKeys
from bot.protocols import Clock
from storage import allegations as allegation_store
from storage import aup as aup_store
from storage import children as child_store
from storage import delivery as delivery_store
from storage import digest as digest_store
from storage import exports as export_store
from storage import filtering as filtering_store
from storage import filtering_checks as filtering_check_store
from storage import graph_state as graph_store
from storage import incidents as incident_store
from storage import referrals as referral_store
from storage import retention as retention_store
from storage import reviews as review_store
from storage.crypto import FieldCipher
from storage.repos import SqlAuditLog, SqlNotifier, SqlWorkQueue


class SqlUnitOfWork:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        cipher: FieldCipher,
        clock: Clock,
        on_work_committed: Callable[[], None] | None = None,
        audit_keys: AuditKeys | None = None,
    ) -> None:
        self._sessions = sessions
        self._audit_keys = audit_keys
        self._cipher = cipher
        self._clock = clock
        self._on_work_committed = on_work_committed
        self.session: AsyncSession | None = None

    async def __aenter__(self) -> Self:
        self.session = self._sessions()
        self._transaction = self.session.begin()
        await self._transaction.__aenter__()
        self.audit = SqlAuditLog(self.session, self._clock, self._audit_keys)
        self.work = SqlWorkQueue(self.session, self._cipher, self._clock)
        self.notify = SqlNotifier(self.work, self._clock)
        self.incidents = incident_store.SqlIncidents(self.session, self._cipher, self._clock)
        self.children = child_store.SqlChildren(self.session, self._cipher, self._clock)
        self.filtering = filtering_store.SqlFilterRequests(self.session, self._cipher, self._clock)
        self.filtering_checks = filtering_check_store.SqlFilteringChecks(self.session, self._cipher, self._clock)
        self.aup = aup_store.SqlAup(self.session, self._cipher, self._clock)
        self.reviews = review_store.SqlReviews(self.session, self._cipher, self._clock)
        self.digest = digest_store.SqlDigestSource(self.session)
        self.graph = graph_store.SqlGraphState(self.session, self._clock)
        self.deliveries = delivery_store.SqlDeliveries(self.session, self._cipher)
        self.exports = export_store.SqlExports(self.session, self._clock)
        self.allegations = allegation_store.SqlAllegations(self.session, self._clock)
        self.referrals = referral_store.SqlReferrals(self.session, self._cipher, self._clock)
        self.retention = retention_store.SqlRetention(self.session, self._cipher, self._clock)
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        assert self.session is not None  # entered
        try:
            await self._transaction.__aexit__(*exc_info)
        finally:
            await self.session.close()
            # The connection is back in the pool, and the first waiter has been woken; let it run before this task
            # can open another unit of work, or a loop of units would keep SQLite's one writer from everyone else.
            await asyncio.sleep(0)
        # Only a committed unit that queued work wakes the runner, so ordinary turns cost no extra claim.
        if exc_info[0] is None and self.work.scheduled and self._on_work_committed is not None:
            self._on_work_committed()


def unit_of_work_factory(
    sessions: async_sessionmaker[AsyncSession],
    cipher: FieldCipher,
    clock: Clock,
    on_work_committed: Callable[[], None] | None = None,
    audit_keys: AuditKeys | None = None,
) -> Callable[[], SqlUnitOfWork]:
    return lambda: SqlUnitOfWork(sessions, cipher, clock, on_work_committed, audit_keys)
