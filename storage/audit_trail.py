"""Where the audit trail's key and checkpoints live outside the database: var/audit.key and an append-only file."""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path

from bot.audit import AuditKeys, Checkpoint, parse_checkpoint

CHECKPOINT_FILE = "audit-checkpoints.log"


def dev_audit_key(var_dir: Path) -> str:
    """The local development audit key, created under var/ on first use (like the dev data key)."""
    path = var_dir / "audit.key"
    if not path.exists():
        var_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32) + "\n", encoding="utf-8")
        path.chmod(0o600)
    return path.read_text(encoding="utf-8").strip()


def audit_keys(current: str | None, retired: tuple[str, ...], var_dir: Path) -> AuditKeys:
    text = current.strip() if current else dev_audit_key(var_dir)
    return AuditKeys(text.encode(), tuple(key.encode() for key in retired))


class CheckpointFile:
    """An append-only text file of checkpoint lines; the last line for a school is that school's checkpoint.

    The database cannot rewrite it. Ship it (or the application log, which carries the same lines) somewhere the
    database's administrators cannot edit, for the strongest guarantee.
    """

    def __init__(self, var_dir: Path) -> None:
        self.path = var_dir / CHECKPOINT_FILE

    async def append(self, checkpoint: Checkpoint) -> None:
        await asyncio.to_thread(self._append, checkpoint.line() + "\n")

    async def last(self, school_id: str) -> Checkpoint | None:
        return await asyncio.to_thread(self._last, school_id)

    def _append(self, line: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # O_APPEND: one short write per line, so replicas sharing the file never interleave within a line.
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def _last(self, school_id: str) -> Checkpoint | None:
        if not self.path.exists():
            return None
        found = None
        with self.path.open(encoding="utf-8") as lines:
            for line in lines:
                checkpoint = parse_checkpoint(line)
                if (
                    checkpoint is not None
                    and checkpoint.school_id == school_id
                    and (found is None or checkpoint.seq >= found.seq)
                ):
                    found = checkpoint
        return found
