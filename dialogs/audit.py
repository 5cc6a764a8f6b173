"""Wiring for the audit trail's daily integrity check (the watch itself is built by the app factory)."""

from __future__ import annotations

from bot.audit_watch import VERIFY_KIND
from bot.wiring import Wiring


def install(wiring: Wiring) -> None:
    watch = wiring.features.audit_watch
    if watch is None:  # an app built without the audit trail's key and checkpoint file
        return
    wiring.work.register(VERIFY_KIND, watch.run_daily)

    async def start() -> None:
        for school in wiring.config.schools:
            await watch.seed(school.id)

    wiring.features.startup.append(start)
