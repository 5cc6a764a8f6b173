"""SQL models and repository for the reviews feature (filled in by that feature's issue)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from bot.protocols import Clock
from storage.crypto import FieldCipher


class SqlReviews:
    def __init__(self, session: AsyncSession, cipher: FieldCipher, clock: Clock) -> None:
        self._session = session
        self._cipher = cipher
        self._clock = clock
