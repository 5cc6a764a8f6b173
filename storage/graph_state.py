"""Microsoft Graph sync state kept across restarts: the delta link for each school's staff group."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import String, Text, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from bot.protocols import Clock
from storage.models import Base, UtcDateTime
from storage.repos import insert_for


class GraphDeltaRow(Base):
    """Where the next delta query for one school's group starts (an opaque @odata.deltaLink)."""

    __tablename__ = "graph_delta_links"
    school_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)  # e.g. "staff"
    link: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class SqlGraphState:
    def __init__(self, session: AsyncSession, clock: Clock) -> None:
        self._session = session
        self._clock = clock

    async def delta_link(self, school_id: str, name: str) -> str | None:
        return await self._session.scalar(
            select(GraphDeltaRow.link).where(GraphDeltaRow.school_id == school_id, GraphDeltaRow.name == name)
        )

    async def save_delta_link(self, school_id: str, name: str, link: str) -> None:
        now = self._clock.now()
        statement = insert_for(self._session)(GraphDeltaRow).values(
            school_id=school_id, name=name, link=link, updated_at=now
        )
        await self._session.execute(
            statement.on_conflict_do_update(
                index_elements=["school_id", "name"], set_={"link": link, "updated_at": now}
            )
        )
