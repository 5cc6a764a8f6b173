"""The append-only, hash-chained audit trail."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

GENESIS_HASH = "0" * 64


@dataclass(frozen=True)
class AuditEntry:
    school_id: str
    seq: int
    at: dt.datetime
    actor_id: str | None
    action: str
    record_type: str
    record_id: str | None
    detail: dict[str, Any]
    prev_hash: str
    hash: str


def entry_hash(
    prev_hash: str, school_id: str, seq: int, at: dt.datetime, actor_id: str | None, action: str,
    record_type: str, record_id: str | None, detail: dict[str, Any],
) -> str:
    """SHA-256 over the previous hash and a canonical form of this entry."""
    canonical = json.dumps(
        [prev_hash, school_id, seq, at.astimezone(dt.UTC).isoformat(), actor_id, action, record_type, record_id,
         detail],
        sort_keys=True, separators=(",", ":"), default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def verify_chain(entries: list[AuditEntry]) -> int | None:
    """The seq of the first entry that breaks the chain, or None when all of it holds."""
    prev = GENESIS_HASH
    for entry in entries:
        expected = entry_hash(
            prev, entry.school_id, entry.seq, entry.at, entry.actor_id, entry.action, entry.record_type,
            entry.record_id, entry.detail,
        )
        if entry.prev_hash != prev or entry.hash != expected:
            return entry.seq
        prev = entry.hash
    return None
