"""Bot Framework `Storage` on SQL: conversation and user state survive restarts and serve several replicas."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from typing import Any

import jsonpickle
from botbuilder.core import Storage, StoreItem
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.inbound import StateConflict
from bot.protocols import Clock
from storage.crypto import FieldCipher, row_context
from storage.models import BotStateRow, rows_changed
from storage.repos import insert_for

DOCUMENT_CONTEXT = "bot_state.document"


def document_context(key_hash: str) -> str:
    """A state document is bound to its key, so one person's dialog state cannot be moved under another's key."""
    return row_context(DOCUMENT_CONTEXT, key_hash)


class ETagConflict(StateConflict):
    """A write carried an e_tag that is no longer current: someone else wrote first."""


def _key_hash(key: str) -> str:
    # Keys can be any length and hold any character; the digest is a safe primary key on both databases.
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _etag_of(item: Any) -> str | None:
    if isinstance(item, dict):
        return item.get("e_tag")
    return getattr(item, "e_tag", None)


def _with_etag(item: Any, e_tag: str) -> Any:
    if isinstance(item, dict):
        item["e_tag"] = e_tag
    elif isinstance(item, StoreItem) or hasattr(item, "__dict__"):
        item.e_tag = e_tag
    return item


class SqlStorage(Storage):
    """JSON documents (encrypted: dialog state holds half-written reports) with optimistic concurrency."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        cipher: FieldCipher,
        clock: Clock,
        *,
        read_sessions: async_sessionmaker[AsyncSession] | None = None,
    ) -> None:
        super().__init__()
        self._sessions = sessions
        self._read_sessions = read_sessions or sessions
        self._cipher = cipher
        self._clock = clock

    async def read(self, keys: Iterable[str] | None) -> dict[str, Any]:
        """Documents for the keys that exist; missing keys are simply absent. No keys at all is a caller's bug."""
        if keys is None:
            raise ValueError("Keys are required when reading")
        keys = list(keys)
        if not keys:
            return {}
        wanted = {_key_hash(key): key for key in keys}
        async with self._read_sessions() as session:
            rows = (await session.scalars(select(BotStateRow).where(BotStateRow.key_hash.in_(wanted)))).all()
        found = {}
        for row in rows:
            document = jsonpickle.decode(self._cipher.decrypt(row.document, document_context(row.key_hash)), keys=True)
            found[wanted[row.key_hash]] = _with_etag(document, row.e_tag)
        return found

    async def write(self, changes: dict[str, Any] | None) -> None:
        """Write all changes in one transaction; a stale e_tag raises ETagConflict and writes nothing."""
        if changes is None:
            raise ValueError("Changes are required when writing")
        if not changes:
            return
        now = self._clock.now()
        async with self._sessions() as session, session.begin():
            for key, item in changes.items():
                expected = _etag_of(item)
                if expected == "":
                    raise ValueError(f"storage write for {key!r}: e_tag is empty")
                new_etag = uuid.uuid4().hex
                key_hash = _key_hash(key)
                document = self._cipher.encrypt(
                    jsonpickle.encode(_without_etag(item), keys=True, make_refs=False), document_context(key_hash)
                )
                if expected not in (None, "*"):
                    result = await session.execute(
                        update(BotStateRow)
                        .where(BotStateRow.key_hash == key_hash, BotStateRow.e_tag == expected)
                        .values(document=document, e_tag=new_etag, updated_at=now)
                    )
                    if rows_changed(result) == 1:
                        continue
                    if await session.get(BotStateRow, key_hash) is not None:
                        raise ETagConflict(f"e_tag conflict for {key!r}: the document changed since it was read")
                upsert = insert_for(session)(BotStateRow).values(
                    key_hash=key_hash, key=key, document=document, e_tag=new_etag, updated_at=now
                )
                await session.execute(
                    upsert.on_conflict_do_update(
                        index_elements=["key_hash"], set_={"document": document, "e_tag": new_etag, "updated_at": now}
                    )
                )

    async def delete(self, keys: Iterable[str] | None) -> None:
        """Delete the documents for these keys; unknown keys are ignored. No keys at all is a caller's bug."""
        if keys is None:
            raise ValueError("Keys are required when deleting")
        keys = list(keys)
        if not keys:
            return
        async with self._sessions() as session, session.begin():
            await session.execute(delete(BotStateRow).where(BotStateRow.key_hash.in_([_key_hash(k) for k in keys])))


def _without_etag(item: Any) -> Any:
    if isinstance(item, dict):
        return {k: v for k, v in item.items() if k != "e_tag"}
    return item
