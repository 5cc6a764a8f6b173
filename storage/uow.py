"""The SQL unit of work: one `session.begin()` shared by every repository used inside it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import cached_property
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
        on_work_committed: Callable[[bool], None] | None = None,
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
        return self

    # The feature repositories, each made when first used: a unit uses one or two of them, and making all of them on
    # every unit of work was a twentieth of a card action's time on the event loop.

    @cached_property
    def incidents(self) -> incident_store.SqlIncidents:
        return incident_store.SqlIncidents(self._open, self._cipher, self._clock)

    @cached_property
    def children(self) -> child_store.SqlChildren:
        return child_store.SqlChildren(self._open, self._cipher, self._clock)

    @cached_property
    def filtering(self) -> filtering_store.SqlFilterRequests:
        return filtering_store.SqlFilterRequests(self._open, self._cipher, self._clock)

    @cached_property
    def filtering_checks(self) -> filtering_check_store.SqlFilteringChecks:
        return filtering_check_store.SqlFilteringChecks(self._open, self._cipher, self._clock)

    @cached_property
    def aup(self) -> aup_store.SqlAup:
        return aup_store.SqlAup(self._open, self._cipher, self._clock)

    @cached_property
    def reviews(self) -> review_store.SqlReviews:
        return review_store.SqlReviews(self._open, self._cipher, self._clock)

    @cached_property
    def digest(self) -> digest_store.SqlDigestSource:
        return digest_store.SqlDigestSource(self._open)

    @cached_property
    def graph(self) -> graph_store.SqlGraphState:
        return graph_store.SqlGraphState(self._open, self._clock)

    @cached_property
    def deliveries(self) -> delivery_store.SqlDeliveries:
        return delivery_store.SqlDeliveries(self._open, self._cipher)

    @cached_property
    def exports(self) -> export_store.SqlExports:
        return export_store.SqlExports(self._open, self._clock)

    @cached_property
    def allegations(self) -> allegation_store.SqlAllegations:
        return allegation_store.SqlAllegations(self._open, self._clock)

    @cached_property
    def referrals(self) -> referral_store.SqlReferrals:
        return referral_store.SqlReferrals(self._open, self._cipher, self._clock)

    @cached_property
    def retention(self) -> retention_store.SqlRetention:
        return retention_store.SqlRetention(self._open, self._cipher, self._clock)

    @property
    def _open(self) -> AsyncSession:
        assert self.session is not None, "a repository is used only inside its unit of work"
        return self.session

    async def __aexit__(self, *exc_info: Any) -> None:
        assert self.session is not None  # entered
        try:
            await self._transaction.__aexit__(*exc_info)
        finally:
            await self.session.close()
            # The connection is back in the pool, and the first waiter has been woken; let it run before this task
            # can open another unit of work, or a loop of units would keep SQLite's one writer from everyone else.
            await asyncio.sleep(0)
        # Only a committed unit that queued work wakes the runner, so ordinary turns cost no extra claim; it hears
        # whether any of it is urgent, which it claims even with its hands full of quiet sends.
        if exc_info[0] is None and self.work.scheduled and self._on_work_committed is not None:
            self._on_work_committed(self.work.urgent > 0)


def unit_of_work_factory(
    sessions: async_sessionmaker[AsyncSession],
    cipher: FieldCipher,
    clock: Clock,
    on_work_committed: Callable[[bool], None] | None = None,
    audit_keys: AuditKeys | None = None,
) -> Callable[[], SqlUnitOfWork]:
    return lambda: SqlUnitOfWork(sessions, cipher, clock, on_work_committed, audit_keys)
