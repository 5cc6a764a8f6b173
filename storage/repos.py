"""Core repositories: audit trail, durable work and outbox, conversation references, counters."""

from __future__ import annotations

import datetime as dt
import json
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, case, distinct, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from bot.audit import GENESIS_HASH, AuditEntry, AuditKeys
from bot.delivery import Delivery, target_key
from bot.protocols import Clock, PersonMessage
from bot.work import SEND_KIND, Then, WorkItem, quiet_work
from storage.crypto import FieldCipher, SealBroken, row_context
from storage.models import AuditHeadRow, AuditRow, ConversationRefRow, CounterRow, WorkRow
from storage.one_trip import OneTrip, run_in_session
from storage.prepared import Many, Prepared, Work

WORK_PAYLOAD_CONTEXT = "work_items.payload"
# Display names Teams puts in a conversation reference; sending needs only ids and the service URL.
REFERENCE_NAME_FIELDS = ("user", "bot", "conversation")
# The tables themselves, for inserts of many rows at once (Core: no ORM bookkeeping per row).
_AUDIT_TABLE = cast(Table, AuditRow.__table__)
_WORK_TABLE = cast(Table, WorkRow.__table__)

log = logging.getLogger(__name__)


def _claim_audit_range(dialect_insert: Any) -> Any:  # noqa: ANN401 - a dialect's insert construct
    """INSERT the head at seq `count` (a new chain), or ON CONFLICT add `count` to it; either way RETURNING the new
    seq and the hash it held, so the range taken is seq - count + 1 .. seq after the previous hash."""
    new = dialect_insert(AuditHeadRow).values(
        school_id=bindparam("audit_school"), seq=bindparam("audit_count"), hash=bindparam("audit_genesis")
    )
    return new.on_conflict_do_update(
        index_elements=["school_id"], set_={"seq": AuditHeadRow.seq + new.excluded.seq}
    ).returning(AuditHeadRow.seq, AuditHeadRow.hash)


# The chain's statements, built and compiled once per dialect.
_CLAIM_AUDIT_RANGE = Prepared(lambda dialect: _claim_audit_range(insert_for_dialect(dialect)))
_AUDIT_FIELDS = (
    "school_id",
    "seq",
    "at",
    "actor_id",
    "action",
    "record_type",
    "record_id",
    "detail",
    "prev_hash",
    "hash",
    "key_id",
)
_INSERT_AUDIT = Prepared(insert(_AUDIT_TABLE).values({name: bindparam(name) for name in _AUDIT_FIELDS}), many=True)
_SET_AUDIT_HEAD = Prepared(
    update(AuditHeadRow).where(AuditHeadRow.school_id == bindparam("audit_school")).values(hash=bindparam("audit_hash"))
)


def work_payload_context(school_id: str, row_key: str | None) -> str:
    """A payload is bound to its row's random key, so it cannot be moved to another queued message."""
    return row_context(WORK_PAYLOAD_CONTEXT, school_id, row_key)


def without_names(reference: dict[str, Any]) -> dict[str, Any]:
    """The reference with Teams display names removed: they are personal data the proactive send never reads."""
    stripped = dict(reference)
    for account in REFERENCE_NAME_FIELDS:
        if isinstance(stripped.get(account), dict):
            stripped[account] = {k: v for k, v in stripped[account].items() if k != "name"}
    return stripped


def insert_for(session: AsyncSession):  # noqa: ANN202 - dialect-specific insert construct
    bind = session.bind
    assert bind is not None  # every session is made bound to its engine
    return insert_for_dialect(bind.dialect.name)


def insert_for_dialect(name: str):  # noqa: ANN201 - dialect-specific insert construct (ON CONFLICT differs)
    return pg_insert if name == "postgresql" else sqlite_insert


# One entry to append: (actor id, action, record type, record id, detail).
AuditItem = tuple[str | None, str, str, str | None, dict[str, Any] | None]


def append_steps(keys: AuditKeys, clock: Clock, school_id: str, items: Sequence[AuditItem]) -> Work[list[AuditEntry]]:
    """Append one entry per item, in that order: three statements however many there are (a sweep asks a hundred
    people at a time), in the caller's transaction."""
    # One statement creates the head on a school's first entry or takes the range from it after (holding the head
    # as an update does, so no other writer can interleave).
    claim = {"audit_school": school_id, "audit_count": len(items), "audit_genesis": GENESIS_HASH}
    head = (yield _CLAIM_AUDIT_RANGE, claim).row
    assert head is not None  # an upsert with RETURNING always returns its row
    seq, prev_hash = head[0] - len(items), head[1]
    entries: list[AuditEntry] = []
    for actor_id, action, record_type, record_id, detail in items:
        seq += 1
        detail = detail or {}
        at = clock.now()
        key_id, digest = keys.seal(prev_hash, school_id, seq, at, actor_id, action, record_type, record_id, detail)
        entries.append(
            AuditEntry(school_id, seq, at, actor_id, action, record_type, record_id, detail, prev_hash, digest, key_id)
        )
        prev_hash = digest
    # One statement, prepared once and run over every row by the driver (executemany).
    yield _INSERT_AUDIT, Many([{name: getattr(e, name) for name in _AUDIT_FIELDS} for e in entries])
    yield _SET_AUDIT_HEAD, {"audit_school": school_id, "audit_hash": prev_hash}
    return entries


class SqlAuditLog:
    def __init__(self, session: AsyncSession, clock: Clock, keys: AuditKeys | None = None) -> None:
        self._session = session
        self._clock = clock
        self._keys = keys

    async def record(
        self,
        school_id: str,
        actor_id: str | None,
        action: str,
        record_type: str,
        record_id: str | None,
        detail: dict[str, Any] | None = None,
    ) -> AuditEntry:
        """Append one entry; the head row update serialises writers so the chain never forks."""
        [entry] = await self.record_many(school_id, actor_id, action, record_type, [(record_id, detail)])
        return entry

    async def record_many(
        self,
        school_id: str,
        actor_id: str | None,
        action: str,
        record_type: str,
        records: Sequence[tuple[str | None, dict[str, Any] | None]],
    ) -> list[AuditEntry]:
        """Append one entry per (record_id, detail), in that order, as `record` would one by one: the same chain,
        in a few statements however many there are (a sweep asks a hundred people at a time)."""
        if not records:
            return []
        if self._keys is None:  # never silently fall back to an unkeyed chain
            raise RuntimeError("no audit key: the unit of work was built without audit_keys")
        items = [(actor_id, action, record_type, record_id, detail) for record_id, detail in records]
        return await run_in_session(self._session, append_steps(self._keys, self._clock, school_id, items))

    async def entries(
        self, school_id: str, record_type: str | None = None, record_id: str | None = None
    ) -> list[AuditEntry]:
        query = select(AuditRow).where(AuditRow.school_id == school_id).order_by(AuditRow.seq)
        if record_type:
            query = query.where(AuditRow.record_type == record_type)
        if record_id:
            query = query.where(AuditRow.record_id == record_id)
        rows = (await self._session.scalars(query)).all()
        return [
            AuditEntry(
                r.school_id,
                r.seq,
                r.at,
                r.actor_id,
                r.action,
                r.record_type,
                r.record_id,
                r.detail,
                r.prev_hash,
                r.hash,
                r.key_id,
            )
            for r in rows
        ]

    async def schools(self) -> list[str]:
        """Every school with an audit trail (from the entries and the head rows, so neither can hide one)."""
        found = set((await self._session.scalars(select(AuditRow.school_id).distinct())).all())
        found |= set((await self._session.scalars(select(AuditHeadRow.school_id))).all())
        return sorted(found)

    async def head(self, school_id: str) -> tuple[int, str] | None:
        row = (
            await self._session.execute(
                select(AuditHeadRow.seq, AuditHeadRow.hash).where(AuditHeadRow.school_id == school_id)
            )
        ).first()
        return (row.seq, row.hash) if row else None


class SqlWorkQueue:
    def __init__(self, session: AsyncSession, cipher: FieldCipher, clock: Clock) -> None:
        self._session = session
        self._cipher = cipher
        self._clock = clock
        self.scheduled = 0
        self.urgent = 0  # of those, how many are not quiet (bot.work.quiet_work)

    async def schedule(
        self,
        school_id: str,
        kind: str,
        run_at: dt.datetime,
        payload: dict[str, Any],
        *,
        dedupe_key: str | None = None,
        delivery_group: str | None = None,
        about: str | None = None,
    ) -> None:
        row_key = secrets.token_hex(16)
        quiet = quiet_work(kind, payload)
        values = dict(
            school_id=school_id,
            kind=kind,
            run_at=run_at,
            status="pending",
            attempts=0,
            row_key=row_key,
            payload=self._cipher.encrypt(json.dumps(payload), work_payload_context(school_id, row_key)),
            dedupe_key=dedupe_key,
            created_at=self._clock.now(),
            delivery_group=delivery_group,
            about=about,
            quiet=quiet,
        )
        statement = insert_for(self._session)(WorkRow).values(**values)
        if dedupe_key:
            statement = statement.on_conflict_do_nothing(index_elements=["dedupe_key"])
        await self._session.execute(statement)
        self.scheduled += 1
        self.urgent += not quiet

    async def schedule_many(self, school_id: str, items: Sequence[Then]) -> None:
        """`schedule` for many items (a repeated dedupe key is ignored, as there), in one statement."""
        now = self._clock.now()
        rows = []
        as_json = _SharedCards()
        for item in items:
            row_key = secrets.token_hex(16)
            rows.append(
                dict(
                    school_id=school_id,
                    kind=item.kind,
                    run_at=item.run_at or now,
                    status="pending",
                    attempts=0,
                    row_key=row_key,
                    payload=self._cipher.encrypt(as_json(item.payload), work_payload_context(school_id, row_key)),
                    dedupe_key=item.dedupe_key,
                    created_at=now,
                    delivery_group=item.delivery_group,
                    about=item.payload.get("about") if item.kind == SEND_KIND else None,
                    quiet=quiet_work(item.kind, item.payload),
                )
            )
        if not rows:
            return
        # Rows without a dedupe key never conflict (NULLs are distinct), as `schedule` leaves them unguarded. One
        # statement run over every row (executemany), as SqlAuditLog.record_many does.
        statement = insert_for(self._session)(_WORK_TABLE).on_conflict_do_nothing(index_elements=["dedupe_key"])
        await self._session.execute(statement, rows)
        self.scheduled += len(rows)
        self.urgent += sum(not row["quiet"] for row in rows)

    async def due(self, school_id: str, kind: str) -> int:
        """How many of the school's items of this kind are due now and not yet taken."""
        count = await self._session.scalar(
            select(func.count()).where(
                WorkRow.status == "pending",
                WorkRow.run_at <= self._clock.now(),
                WorkRow.kind == kind,
                WorkRow.school_id == school_id,
            )
        )
        return int(count or 0)

    async def cancel(self, dedupe_key: str) -> None:
        await self._session.execute(
            update(WorkRow)
            .where(WorkRow.dedupe_key == dedupe_key, WorkRow.status == "pending")
            .values(status="cancelled", finished_at=self._clock.now())
        )


class _SharedCards:
    """JSON for many payloads, each card object encoded once: a broadcast's payloads share a handful of cards (one
    per first name greeted), and encoding the same card two thousand times was a third of a sweep's time."""

    def __init__(self) -> None:
        self._cards: dict[int, tuple[dict[str, Any], str]] = {}  # the card is kept too, so its id stays its own

    def __call__(self, payload: dict[str, Any]) -> str:
        card = payload.get("card")
        if not isinstance(card, dict):
            return json.dumps(payload)
        known = self._cards.get(id(card))
        if known is None:
            known = self._cards[id(card)] = (card, json.dumps(card))
        rest = json.dumps({key: value for key, value in payload.items() if key != "card"})
        return f'{rest[:-1]}{", " if len(rest) > 2 else ""}"card": {known[1]}}}'


class SqlNotifier:
    """Queues proactive sends as durable work items of kind 'send'."""

    def __init__(self, work: SqlWorkQueue, clock: Clock) -> None:
        self._work = work
        self._clock = clock

    async def to_person(
        self,
        school_id: str,
        person_id: str,
        *,
        text: str | None = None,
        card: dict[str, Any] | None = None,
        dedupe_key: str | None = None,
        delivery: Delivery | None = None,
        plain: bool = False,
        about: str | None = None,
        update_of: str | None = None,
        attachment: dict[str, Any] | None = None,
        quiet: bool = False,
    ) -> None:
        await self._queue(
            school_id,
            {"kind": "person", "id": person_id},
            text,
            card,
            dedupe_key,
            delivery,
            plain,
            about=about,
            update_of=update_of,
            attachment=attachment,
            quiet=quiet,
        )

    async def to_channel(
        self,
        school_id: str,
        purpose: str,
        *,
        text: str | None = None,
        card: dict[str, Any] | None = None,
        dedupe_key: str | None = None,
        delivery: Delivery | None = None,
        about: str | None = None,
        update_of: str | None = None,
        quiet: bool = False,
    ) -> None:
        await self._queue(
            school_id,
            {"kind": "channel", "purpose": purpose},
            text,
            card,
            dedupe_key,
            delivery,
            about=about,
            update_of=update_of,
            quiet=quiet,
        )

    async def waiting(self, school_id: str) -> int:
        return await self._work.due(school_id, SEND_KIND)

    async def to_people(self, school_id: str, messages: Sequence[PersonMessage]) -> None:
        """Queue many 1:1 messages at once, each as `to_person` would queue it (text, card, dedupe key, quiet)."""
        items = []
        for message in messages:
            if message.text is None and message.card is None:
                raise ValueError("a message needs text or a card")
            payload: dict[str, Any] = {
                "target": {"kind": "person", "id": message.person_id},
                "text": message.text,
                "card": message.card,
            }
            if message.quiet:
                payload["quiet"] = True  # not urgent: the outbox waits until the conversation is quiet (bot.quiet)
            items.append(Then(SEND_KIND, payload, self._clock.now(), message.dedupe_key))
        await self._work.schedule_many(school_id, items)

    async def _queue(
        self,
        school_id: str,
        target: dict[str, str],
        text: str | None,
        card: dict[str, Any] | None,
        dedupe_key: str | None,
        delivery: Delivery | None,
        plain: bool = False,
        *,
        about: str | None = None,
        update_of: str | None = None,
        attachment: dict[str, Any] | None = None,
        quiet: bool = False,
    ) -> None:
        if text is None and card is None and attachment is None:
            raise ValueError("a message needs text, a card or an attachment")
        payload: dict[str, Any] = {"target": target, "text": text, "card": card}
        if plain:
            payload["plain"] = True
        if attachment is not None:
            payload["attachment"] = attachment  # a Teams attachment as JSON, e.g. a file consent card
        if update_of:
            payload["update_of"] = update_of  # replace that posted message instead of sending a new one
        if about:
            payload["about"] = about
        if quiet:
            payload["quiet"] = True  # not urgent: the outbox waits until the conversation is quiet (bot.quiet)
        group = None
        if delivery is not None:
            payload["delivery"] = delivery.as_json()
            group = delivery.group
            dedupe_key = dedupe_key or f"{group}:{target_key(target)}"  # one send per person per group
        await self._work.schedule(
            school_id, SEND_KIND, self._clock.now(), payload, dedupe_key=dedupe_key, delivery_group=group, about=about
        )


@dataclass(frozen=True)
class WorkStatus:
    id: int
    kind: str
    status: str
    attempts: int
    run_at: dt.datetime
    last_error: str | None
    result: str | None
    payload: dict[str, Any]


class WorkClaims:
    """Claims, completes and reschedules work items; each call is its own short transaction."""

    def __init__(self, sessions, cipher: FieldCipher, clock: Clock) -> None:  # noqa: ANN001
        self._sessions = sessions
        self._trip = OneTrip(sessions.kw["bind"])
        self._cipher = cipher
        self._clock = clock

    async def claim(
        self,
        worker: str,
        kinds: list[str],
        limit: int,
        lease: dt.timedelta,
        leases: dict[str, dt.timedelta] | None = None,
        *,
        urgent_only: bool = False,
    ) -> list[WorkItem]:
        """Atomically take up to `limit` due items, urgent before quiet: SKIP LOCKED on PostgreSQL, a serialised
        writer on SQLite. `urgent_only` leaves quiet sends for later.

        Each kind may have its own lease (`leases`), so a send is retaken soon after a crash while slower work
        keeps a longer one.
        """
        now = self._clock.now()
        locked_until = (
            case({k: now + v for k, v in leases.items()}, value=WorkRow.kind, else_=now + lease)
            if leases
            else now + lease
        )
        due = or_(
            and_(WorkRow.status == "pending", WorkRow.run_at <= now),
            and_(WorkRow.status == "running", WorkRow.locked_until < now),
        )
        candidates = (
            select(WorkRow.id)
            .where(due, WorkRow.kind.in_(kinds), *([WorkRow.quiet.is_(False)] if urgent_only else []))
            .order_by(WorkRow.quiet, WorkRow.run_at, WorkRow.id)  # urgent before quiet, then the longest due
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        take = (
            update(WorkRow)
            .where(WorkRow.id.in_(candidates.scalar_subquery()))
            .values(status="running", locked_by=worker, locked_until=locked_until, attempts=WorkRow.attempts + 1)
            .returning(
                WorkRow.id,
                WorkRow.school_id,
                WorkRow.kind,
                WorkRow.payload,
                WorkRow.run_at,
                WorkRow.attempts,
                WorkRow.dedupe_key,
                WorkRow.row_key,
            )
        )
        # One statement, so one trip to the writer (PostgreSQL: without BEGIN and COMMIT).
        rows = await self._trip.run(lambda sync: sync.execute(take).all(), atomic=False)
        items, broken = [], []
        for r in rows:
            try:
                payload = json.loads(self._cipher.decrypt(r.payload, work_payload_context(r.school_id, r.row_key)))
            except SealBroken as exc:
                # Retrying cannot help and must not block the rest of the queue: fail it where an operator sees it.
                log.error("work item %s cannot be opened and is marked failed: %s", r.id, exc)
                broken.append((r.id, str(exc)))
                continue
            items.append(WorkItem(r.id, r.school_id, r.kind, payload, r.run_at, r.attempts, r.dedupe_key))
        if broken:
            async with self._sessions() as session, session.begin():
                for item_id, error in broken:
                    await session.execute(
                        update(WorkRow)
                        .where(WorkRow.id == item_id, WorkRow.locked_by == worker)
                        .values(status="failed", last_error=error, locked_by=None, locked_until=None, finished_at=now)
                    )
        # In the order they were chosen (RETURNING gives them in the table's): the runner starts them in this order.
        return sorted(items, key=lambda item: (item.quiet, item.run_at, item.id))

    async def holders(self, kind: str) -> int:
        """How many workers hold a live lease on an item of this kind: the replicas sending right now."""
        now = self._clock.now()
        async with self._sessions() as session:
            return int(
                (
                    await session.execute(
                        select(func.count(distinct(WorkRow.locked_by))).where(
                            WorkRow.kind == kind, WorkRow.status == "running", WorkRow.locked_until >= now
                        )
                    )
                ).scalar_one()
            )

    async def finish(
        self,
        item: WorkItem,
        worker: str,
        status: str,
        *,
        result: str | None = None,
        error: str | None = None,
        then: tuple[Then, ...] = (),
    ) -> bool:
        """Record the outcome and queue its follow-up work in one transaction; False if the lease was lost."""
        outcome = (
            update(WorkRow)
            .where(WorkRow.id == item.id, WorkRow.locked_by == worker)
            .values(
                status=status,
                result=(result or "")[:255] or None,
                last_error=error,
                locked_by=None,
                locked_until=None,
                finished_at=self._clock.now(),
            )
        )
        if not then:
            # Most outcomes are this one statement: one trip to the writer (a broadcast finishes thousands).
            return await self._trip.run(lambda sync: sync.execute(outcome).rowcount == 1, atomic=False)
        async with self._sessions() as session, session.begin():
            finished = await session.execute(outcome)
            if finished.rowcount != 1:
                return False  # another worker took it over after our lease ran out: its outcome stands
            queue = SqlWorkQueue(session, self._cipher, self._clock)
            for follow in then:
                # A re-routed send shows the same case: it keeps the case it is about, to be found if access changes.
                await queue.schedule(
                    item.school_id,
                    follow.kind,
                    follow.run_at or self._clock.now(),
                    follow.payload,
                    dedupe_key=follow.dedupe_key,
                    delivery_group=follow.delivery_group,
                    about=follow.payload.get("about") if follow.kind == SEND_KIND else None,
                )
        return True

    async def retry(self, item: WorkItem, worker: str, at: dt.datetime, error: str, *, counted: bool = True) -> None:
        """Put the item back for `at`; an uncounted one (bot.work.NotYet) gives back the attempt its claim took."""
        attempts = WorkRow.attempts if counted else WorkRow.attempts - 1
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(WorkRow)
                .where(WorkRow.id == item.id, WorkRow.locked_by == worker)
                .values(
                    status="pending", run_at=at, last_error=error, locked_by=None, locked_until=None, attempts=attempts
                )
            )

    async def next_due_at(self, kinds: list[str]) -> dt.datetime | None:
        async with self._sessions() as session:
            return await session.scalar(
                select(WorkRow.run_at)
                .where(WorkRow.status == "pending", WorkRow.kind.in_(kinds))
                .order_by(WorkRow.run_at)
                .limit(1)
            )

    async def list(self, kind: str | None = None, school_id: str | None = None) -> list[WorkStatus]:
        """Every item, oldest first, for tests and the operator's view."""
        query = select(WorkRow).order_by(WorkRow.id)
        if kind:
            query = query.where(WorkRow.kind == kind)
        if school_id:
            query = query.where(WorkRow.school_id == school_id)
        async with self._sessions() as session:
            rows = (await session.scalars(query)).all()
        return [
            WorkStatus(
                r.id,
                r.kind,
                r.status,
                r.attempts,
                r.run_at,
                r.last_error,
                r.result,
                json.loads(self._cipher.decrypt(r.payload, work_payload_context(r.school_id, r.row_key))),
            )
            for r in rows
        ]


@dataclass(frozen=True)
class SavedReference:
    school_id: str
    kind: str
    key: str
    name: str | None
    team_id: str | None
    reference: dict[str, Any]


class ConversationRefs:
    def __init__(self, sessions, clock: Clock, *, read_sessions=None) -> None:  # noqa: ANN001
        self._sessions = sessions
        # On SQLite, sessions that read a snapshot: a send looking up its address never queues behind the writer.
        self._reads = read_sessions or sessions
        self._clock = clock

    async def save(
        self,
        school_id: str,
        kind: str,
        key: str,
        reference: dict[str, Any],
        *,
        name: str | None = None,
        team_id: str | None = None,
    ) -> None:
        """Keep where the bot can reach someone. Display names are never stored: `name` is accepted for older
        callers and dropped, and the column stays NULL (the directory is where names come from)."""
        reference = without_names(reference)
        name = None
        values = dict(
            school_id=school_id,
            kind=kind,
            key=key,
            reference=reference,
            name=name,
            team_id=team_id,
            updated_at=self._clock.now(),
        )
        async with self._sessions() as session, session.begin():
            statement = insert_for(session)(ConversationRefRow).values(**values)
            await session.execute(
                statement.on_conflict_do_update(
                    index_elements=["school_id", "kind", "key"],
                    set_={"reference": reference, "name": name, "team_id": team_id, "updated_at": values["updated_at"]},
                )
            )

    async def get(self, school_id: str, kind: str, key: str) -> SavedReference | None:
        async with self._reads() as session:
            row = await session.get(ConversationRefRow, (school_id, kind, key))
        return SavedReference(row.school_id, row.kind, row.key, row.name, row.team_id, row.reference) if row else None

    async def all(self, school_id: str, kind: str) -> list[SavedReference]:
        async with self._reads() as session:
            rows = (
                await session.scalars(
                    select(ConversationRefRow).where(
                        ConversationRefRow.school_id == school_id, ConversationRefRow.kind == kind
                    )
                )
            ).all()
        return [SavedReference(r.school_id, r.kind, r.key, r.name, r.team_id, r.reference) for r in rows]


async def next_counter(session: AsyncSession, school_id: str, name: str) -> int:
    """Increment and return a per-school counter inside the caller's transaction."""
    ins = insert_for(session)(CounterRow).values(school_id=school_id, name=name, value=0)
    await session.execute(ins.on_conflict_do_nothing(index_elements=["school_id", "name"]))
    return (
        await session.execute(
            update(CounterRow)
            .where(CounterRow.school_id == school_id, CounterRow.name == name)
            .values(value=CounterRow.value + 1)
            .returning(CounterRow.value)
        )
    ).scalar_one()
