"""Wiring for the reviews feature: commands, card actions, dialogs and work handlers."""

from __future__ import annotations

from bot.wiring import Wiring


def install(wiring: Wiring) -> None:
    """Register this feature with the front door and the work runner."""
