"""The append-only audit trail: an HMAC-SHA256 chain per school, checked against out-of-database checkpoints.

Decisions:
- Each entry's hash is an HMAC over the previous hash and a canonical form of the entry (key id included), keyed
  by ESAFETY_AUDIT_KEY. Whoever can write the database but does not hold the key cannot recompute the chain.
- Entries written before HMAC (key_id None) keep their plain SHA-256 hashes: nobody holds a key at migration time
  to re-seal them. They are accepted only as a prefix: the first HMAC entry seals them (its MAC covers their head
  hash), and a plain entry after any HMAC entry is a break.
- The key id is derived from the key itself, so rotation needs no id bookkeeping: new entries use the current key,
  older ones verify with the keys in ESAFETY_AUDIT_KEYS_OLD.
- Truncation (and rewriting the whole chain) cannot be seen from inside the database, so the chain is also
  checked against the last checkpoint (school, seq, head) written outside it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field
from typing import Any

GENESIS_HASH = "0" * 64
CHECKPOINT_PREFIX = "audit checkpoint"
_CHECKPOINT = re.compile(
    r"audit checkpoint school=(?P<school>\S+) seq=(?P<seq>\d+) head=(?P<head>[0-9a-f]{64})"
    r"(?: at=(?P<at>[0-9][0-9T:.+-]*))?"
)


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
    key_id: str | None = None  # None: written before the HMAC chain (plain SHA-256)

    def checkpoint(self) -> Checkpoint:
        """This entry as a checkpoint: what a report's footer records about the chain's head."""
        return Checkpoint(self.school_id, self.seq, self.hash, self.at)


def _canonical(
    prev_hash: str,
    school_id: str,
    seq: int,
    at: dt.datetime,
    actor_id: str | None,
    action: str,
    record_type: str,
    record_id: str | None,
    detail: dict[str, Any],
) -> list[Any]:
    return [
        prev_hash,
        school_id,
        seq,
        at.astimezone(dt.UTC).isoformat(),
        actor_id,
        action,
        record_type,
        record_id,
        detail,
    ]


def entry_hash(
    prev_hash: str,
    school_id: str,
    seq: int,
    at: dt.datetime,
    actor_id: str | None,
    action: str,
    record_type: str,
    record_id: str | None,
    detail: dict[str, Any],
) -> str:
    """SHA-256 over the previous hash and a canonical form of this entry."""
    canonical = json.dumps(
        _canonical(prev_hash, school_id, seq, at, actor_id, action, record_type, record_id, detail),
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def entry_mac(
    key: bytes,
    key_id: str,
    prev_hash: str,
    school_id: str,
    seq: int,
    at: dt.datetime,
    actor_id: str | None,
    action: str,
    record_type: str,
    record_id: str | None,
    detail: dict[str, Any],
) -> str:
    """HMAC-SHA256 over the key id, the previous hash and a canonical form of this entry."""
    canonical = json.dumps(
        [
            "hmac-v1",
            key_id,
            *_canonical(prev_hash, school_id, seq, at, actor_id, action, record_type, record_id, detail),
        ],
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()


def key_id_of(key: bytes) -> str:
    """A short, stable id for a key (not secret: a hash of the key that cannot be turned back into it)."""
    return hashlib.sha256(b"esafety-audit-key-id:" + key).hexdigest()[:12]


@dataclass(frozen=True)
class AuditKeys:
    """The current signing key and the older keys kept only to verify entries written before a rotation."""

    current: bytes = field(repr=False)  # secrets stay out of logs and tracebacks
    old: tuple[bytes, ...] = field(default=(), repr=False)

    @property
    def current_id(self) -> str:
        return key_id_of(self.current)

    def by_id(self, key_id: str) -> bytes | None:
        return next((k for k in (self.current, *self.old) if hmac.compare_digest(key_id_of(k), key_id)), None)

    def seal(
        self,
        prev_hash: str,
        school_id: str,
        seq: int,
        at: dt.datetime,
        actor_id: str | None,
        action: str,
        record_type: str,
        record_id: str | None,
        detail: dict[str, Any],
    ) -> tuple[str, str]:
        """(key id, hash) for a new entry under the current key."""
        key_id = self.current_id
        return key_id, entry_mac(
            self.current, key_id, prev_hash, school_id, seq, at, actor_id, action, record_type, record_id, detail
        )


@dataclass(frozen=True)
class Checkpoint:
    school_id: str
    seq: int
    head: str
    at: dt.datetime | None = None

    def line(self) -> str:
        """The one-line, parseable form written to the log, the checkpoint file and report footers."""
        when = f" at={self.at.astimezone(dt.UTC).isoformat()}" if self.at else ""
        return f"{CHECKPOINT_PREFIX} school={self.school_id} seq={self.seq} head={self.head}{when}"


def parse_checkpoint(line: str) -> Checkpoint | None:
    found = _CHECKPOINT.search(line)
    if found is None:
        return None
    at = dt.datetime.fromisoformat(found["at"]) if found["at"] else None
    return Checkpoint(found["school"], int(found["seq"]), found["head"], at)


@dataclass(frozen=True)
class Break:
    """Where and why a school's chain no longer holds."""

    school_id: str
    seq: int
    reason: str

    def describe(self) -> str:
        return f"broken: school {self.school_id} at seq {self.seq}"


def verify(
    school_id: str,
    entries: list[AuditEntry],
    keys: AuditKeys,
    checkpoint: Checkpoint | None = None,
    head: tuple[int, str] | None = None,
) -> Break | None:
    """The first break in a school's chain (entries in seq order), or None when all of it holds.

    `head` is the database's own head row (seq, hash); `checkpoint` the last one written outside the database.
    """
    prev, expected_seq, sealed = GENESIS_HASH, 1, False
    for entry in entries:
        if entry.seq != expected_seq:
            return Break(school_id, expected_seq, f"entry {expected_seq} is missing (next found is {entry.seq})")
        if entry.prev_hash != prev:
            return Break(school_id, entry.seq, "does not link to the entry before it")
        if entry.key_id is None:
            if sealed:
                return Break(school_id, entry.seq, "unsigned entry after the HMAC chain began")
            expected = entry_hash(
                prev,
                entry.school_id,
                entry.seq,
                entry.at,
                entry.actor_id,
                entry.action,
                entry.record_type,
                entry.record_id,
                entry.detail,
            )
        else:
            key = keys.by_id(entry.key_id)
            if key is None:
                return Break(school_id, entry.seq, f"signed with key {entry.key_id}, which this app does not hold")
            sealed = True
            expected = entry_mac(
                key,
                entry.key_id,
                prev,
                entry.school_id,
                entry.seq,
                entry.at,
                entry.actor_id,
                entry.action,
                entry.record_type,
                entry.record_id,
                entry.detail,
            )
        if entry.school_id != school_id or not hmac.compare_digest(entry.hash, expected):
            return Break(school_id, entry.seq, "entry was changed (hash does not match)")
        prev, expected_seq = entry.hash, expected_seq + 1
    last = expected_seq - 1
    if head is not None and (head[0] != last or head[1] != prev):
        return Break(
            school_id,
            last + 1 if head[0] > last else last,
            f"the chain ends at seq {last} but its head row says seq {head[0]}",
        )
    if checkpoint is not None:
        if checkpoint.seq > last:
            return Break(school_id, last + 1, f"entries after seq {last} are gone (checkpoint at seq {checkpoint.seq})")
        found = entries[checkpoint.seq - 1].hash if checkpoint.seq >= 1 else GENESIS_HASH
        if not hmac.compare_digest(found, checkpoint.head):
            return Break(school_id, checkpoint.seq, "differs from the checkpoint recorded outside the database")
    return None


def verify_chain(entries: list[AuditEntry], keys: AuditKeys) -> int | None:
    """The seq of the first break in one school's entries, or None when all of it holds."""
    if not entries:
        return None
    found = verify(entries[0].school_id, entries, keys)
    return found.seq if found else None
