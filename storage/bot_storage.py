"""Conversation state in SQL: one encrypted JSON document per conversation, with a version for optimistic writes.

Plain statements on a connection the caller holds, so the turn's claim and its state share one transaction
(storage.turns). The document is JSON, never pickled objects: a stored document can only ever be data.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from typing import Any, cast

from sqlalchemy import BindParameter, ColumnElement, Table, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.turns import ConversationState, StateChange
from storage.crypto import FieldCipher, row_context
from storage.models import BotStateRow
from storage.prepared import Prepared, Write
from storage.repos import insert_for_dialect

DOCUMENT_CONTEXT = "bot_state.document"
_TABLE = cast(Table, BotStateRow.__table__)  # a mapped class's table, typed as the Table it is


def document_context(key_hash: str) -> str:
    """A state document is bound to its key, so one person's dialog state cannot be moved under another's key."""
    return row_context(DOCUMENT_CONTEXT, key_hash)


def key_hash(key: str) -> str:
    # Keys can be any length and hold any character; the digest is a safe primary key on both databases.
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


# The stored document and its version, as values another statement can return (the claim's, at a turn's start),
# for the key in state_params(). Built once: a statement built per turn cost more than running it.
_KEY: BindParameter[str] = bindparam("state_key_hash")
STATE_COLUMNS: tuple[ColumnElement[Any], ...] = (
    select(_TABLE.c.document).where(_TABLE.c.key_hash == _KEY).scalar_subquery(),
    select(_TABLE.c.e_tag).where(_TABLE.c.key_hash == _KEY).scalar_subquery(),
)
_READ = select(*STATE_COLUMNS)


def state_params(key: str) -> dict[str, str]:
    return {_KEY.key: key_hash(key)}


def state_from(cipher: FieldCipher, key: str, document: str | None, etag: str | None) -> ConversationState:
    """The conversation's state from its stored document, or an empty one (version None) when there is none."""
    if document is None or etag is None:
        return ConversationState.read(key, None, None)
    plain = cipher.decrypt(document, document_context(key_hash(key)))
    data = json.loads(plain)
    if not isinstance(data, dict):
        return ConversationState.read(key, None, etag)
    return ConversationState.read(key, data, etag, plain)


async def read_state(connection: AsyncConnection, cipher: FieldCipher, key: str) -> ConversationState:
    row = (await connection.execute(_READ, state_params(key))).first()
    return state_from(cipher, key, *(row or (None, None)))


def state_write(cipher: FieldCipher, change: StateChange, now: dt.datetime) -> Write:
    """Save a changed state. It changes one row when saved, and none when another turn saved this conversation
    since it was read (an update of the version read) or created it meanwhile (an insert that yields to it)."""
    hashed = key_hash(change.key)
    document = cipher.encrypt(change.document, document_context(hashed))
    values = {"hashed": hashed, "key": change.key, "document": document, "new_etag": uuid.uuid4().hex, "now": now}
    if change.etag is not None:
        return _UPDATE, {**values, "read_etag": change.etag}
    return _INSERT, values


_UPDATE = Prepared(
    update(_TABLE)
    .where(_TABLE.c.key_hash == bindparam("hashed"), _TABLE.c.e_tag == bindparam("read_etag"))
    .values(document=bindparam("document"), e_tag=bindparam("new_etag"), updated_at=bindparam("now"))
)
_INSERT = Prepared(
    lambda dialect: (
        insert_for_dialect(dialect)(_TABLE)
        .values(
            key_hash=bindparam("hashed"),
            key=bindparam("key"),
            document=bindparam("document"),
            e_tag=bindparam("new_etag"),
            updated_at=bindparam("now"),
        )
        .on_conflict_do_nothing(index_elements=["key_hash"])
    )
)
