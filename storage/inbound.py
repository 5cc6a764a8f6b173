"""Inbound claims in SQL (see bot/inbound.py for the rule).

A claim is one primary-key insert that does nothing on conflict, so it is atomic across replicas on SQLite and
PostgreSQL alike; a claim whose lease ran out unfinished is taken over by a conditional update. An invoke's first
answer is sealed onto its claim, so a redelivery gets the same answer instead of a second effect. Claims are only
needed while Teams may still retry, so they expire after a day and are swept in small batches.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy import ColumnElement, String, Table, Text, bindparam, delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql import ClauseElement

from bot import json_text
from bot.inbound import CLAIM_LEASE, CLAIM_LIFETIME, InvokeAnswer
from storage.crypto import FieldCipher, row_context
from storage.models import Base, UtcDateTime, rows_changed
from storage.prepared import Prepared, Work, Write
from storage.repos import insert_for_dialect

log = logging.getLogger(__name__)

RESPONSE_CONTEXT = "inbound_claims.response"


def response_context(key: str) -> str:
    """An answer is bound to the claim it answers, so a redelivery can never replay another activity's answer."""
    return row_context(RESPONSE_CONTEXT, key)


SWEEP_EVERY = dt.timedelta(minutes=10)
SWEEP_BATCH = 1_000


class InboundClaimRow(Base):
    __tablename__ = "inbound_claims"
    # SQLite keeps the rows in key order, so they are the key's index and a claim writes one page fewer (0024).
    __table_args__ = {"sqlite_with_rowid": False}
    # SHA-256 of (channel id, conversation id, activity id): ids of any length make a fixed-size key.
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    claimed_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, index=True)
    # Until then the claiming turn owns it; past it with no finish, that turn died and a redelivery may take over.
    lease_until: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    # The first invoke's answer, sealed (it may be a case card); NULL until that turn finishes.
    response: Mapped[str | None] = mapped_column(Text)


_TABLE = cast(Table, InboundClaimRow.__table__)  # a mapped class's table, typed as the Table it is


def claim_steps(
    key: str,
    now: dt.datetime,
    also: Sequence[ColumnElement[Any]] = (),
    params: Mapping[str, Any] | None = None,
) -> Work[tuple[Any, ...] | None]:
    """Take the claim, for the first delivery or a redelivery after the first one's turn died; None when it may not
    run. A won claim comes with the values of `also`, read by the same statement (the conversation's state:
    storage.turns, with the `params` they take), so a turn's start is one statement.

    Each statement is whole on its own (the insert, or else the conditional takeover), so they need no transaction
    around them (storage.one_trip runs them).
    """
    claim, takeover = _statements(tuple(also))
    values = {"claim_key": key, "claimed_at": now, "lease_until": now + CLAIM_LEASE, "now": now, **(params or {})}
    row = (yield claim, values).row
    if row is None:  # only redeliveries pay for this second statement
        row = (yield takeover, values).row
        if row is not None:
            log.warning("an earlier delivery of this activity never finished; taking it over")
    return tuple(row)[1:] if row is not None else None


def finish_write(cipher: FieldCipher, key: str, answer: InvokeAnswer | None, now: dt.datetime) -> Write:
    """Mark the turn done, keeping an invoke's answer for its redeliveries."""
    if answer is None:
        return _FINISH, {"claim_key": key, "finished_at": now}
    try:
        document = json_text.dumps({"status": answer.status, "body": answer.body})
    except (TypeError, ValueError):  # a body that is not JSON cannot be replayed; the status still can
        document = json_text.dumps({"status": answer.status, "body": None})
    sealed = cipher.encrypt(document, response_context(key))
    return _FINISH_ANSWERED, {"claim_key": key, "finished_at": now, "sealed": sealed}


# Every turn runs these: built and compiled once (per set of extra columns), as building them cost more than running.
_claims: dict[tuple[int, ...], tuple[Prepared, Prepared]] = {}
_FINISH_STATEMENT = (
    update(_TABLE).where(_TABLE.c.key == bindparam("claim_key")).values(finished_at=bindparam("finished_at"))
)
_FINISH = Prepared(_FINISH_STATEMENT)
_FINISH_ANSWERED = Prepared(_FINISH_STATEMENT.values(response=bindparam("sealed")))


def _statements(also: tuple[ColumnElement[Any], ...]) -> tuple[Prepared, Prepared]:
    # Keyed by identity: the extra columns are module constants (storage.bot_storage.STATE_COLUMNS).
    cache_key = tuple(id(column) for column in also)
    made = _claims.get(cache_key)
    if made is None:

        def claim(dialect: str) -> ClauseElement:
            return (
                insert_for_dialect(dialect)(_TABLE)
                .values(
                    key=bindparam("claim_key"), claimed_at=bindparam("claimed_at"), lease_until=bindparam("lease_until")
                )
                .on_conflict_do_nothing(index_elements=["key"])
                .returning(_TABLE.c.key, *also)
            )

        takeover = (
            update(_TABLE)
            .where(
                _TABLE.c.key == bindparam("claim_key"),
                _TABLE.c.finished_at.is_(None),
                _TABLE.c.lease_until < bindparam("now", type_=UtcDateTime),
            )
            .values(lease_until=bindparam("lease_until"))
            .returning(_TABLE.c.key, *also)
        )
        made = _claims[cache_key] = (Prepared(claim), Prepared(takeover))
    return made


async def answered_on(connection: AsyncConnection, cipher: FieldCipher, key: str) -> InvokeAnswer | None:
    sealed = (await connection.execute(select(_TABLE.c.response).where(_TABLE.c.key == key))).scalar()
    if sealed is None:
        return None
    document = json.loads(cipher.decrypt(sealed, response_context(key)))
    return InvokeAnswer(status=int(document["status"]), body=document["body"])


async def sweep_on(connection: AsyncConnection, now: dt.datetime) -> int:
    """Delete up to one batch of expired claims; a bounded statement, so it never holds the database long."""
    expired = select(_TABLE.c.key).where(_TABLE.c.claimed_at < now - CLAIM_LIFETIME).limit(SWEEP_BATCH)
    result = await connection.execute(delete(_TABLE).where(_TABLE.c.key.in_(expired)))
    return rows_changed(result) or 0


class SweepTimer:
    """When this process next deletes expired claims: every SWEEP_EVERY, sooner while a backlog remains."""

    def __init__(self) -> None:
        self._next: dt.datetime | None = None

    def due(self, now: dt.datetime) -> bool:
        if self._next is not None and now < self._next:
            return False
        self._next = now + SWEEP_EVERY
        return True

    def backlog(self, deleted: int, now: dt.datetime) -> None:
        if deleted >= SWEEP_BATCH:  # a backlog (say, after downtime): sweep again on the next claim
            self._next = now
