"""The SQL unit of work: one `session.begin()` shared by every repository used inside it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Self

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.protocols import Clock
from storage.crypto import FieldCipher
from storage.repos import SqlAuditLog, SqlNotifier, SqlWorkQueue

# Feature repositories register here: attribute name -> factory(session, cipher, clock).
RepositoryFactory = Callable[[AsyncSession, FieldCipher, Clock], Any]
FEATURE_REPOSITORIES: dict[str, RepositoryFactory] = {}


class SqlUnitOfWork:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], cipher: FieldCipher, clock: Clock) -> None:
        self._sessions = sessions
        self._cipher = cipher
        self._clock = clock
        self.session: AsyncSession | None = None

    async def __aenter__(self) -> Self:
        self.session = self._sessions()
        self._transaction = self.session.begin()
        await self._transaction.__aenter__()
        self.audit = SqlAuditLog(self.session, self._clock)
        self.work = SqlWorkQueue(self.session, self._cipher, self._clock)
        self.notify = SqlNotifier(self.work, self._clock)
        for name, factory in FEATURE_REPOSITORIES.items():
            setattr(self, name, factory(self.session, self._cipher, self._clock))
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        try:
            await self._transaction.__aexit__(*exc_info)
        finally:
            await self.session.close()


def unit_of_work_factory(sessions: async_sessionmaker[AsyncSession], cipher: FieldCipher, clock: Clock
                         ) -> Callable[[], SqlUnitOfWork]:
    return lambda: SqlUnitOfWork(sessions, cipher, clock)
