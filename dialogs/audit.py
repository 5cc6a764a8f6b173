"""Wiring for the audit trail's daily integrity check (the watch itself is built by the app factory)."""

from __future__ import annotations

from typing import Any

from bot.audit_watch import VERIFY_KIND, AuditWatch
from bot.wiring import Wiring


def install(wiring: Wiring) -> None:
    watch: AuditWatch | None = wiring.extras.get("audit_watch")
    if watch is None:  # an app built without the audit trail's key and checkpoint file
        return
    wiring.work.register(VERIFY_KIND, watch.run_daily)

    async def start() -> None:
        for school in wiring.config.schools:
            await watch.seed(school.id)

    startup: list[Any] = wiring.extras.setdefault("startup", [])
    startup.append(start)
