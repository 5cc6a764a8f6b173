"""The DSL team's list of alerts that never reached a person."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from bot.cards.common import card, heading, text, typed
from bot.delivery import UNDELIVERED_DAYS, UndeliveredView


def build_undelivered_card(items: list[UndeliveredView], timezone: ZoneInfo) -> dict[str, Any]:
    """Each undelivered alert: what it was about, who it was for, why it failed and when."""
    if not items:
        return card(
            [
                heading("Nothing undelivered"),
                text(f"Every alert for your team in the last {UNDELIVERED_DAYS} days reached someone."),
            ],
            fallback_text="Nothing undelivered",
        )
    body = [
        heading(f"{len(items)} alert{'s' if len(items) != 1 else ''} not delivered"),
        text(
            f"In the last {UNDELIVERED_DAYS} days, for your team. Make sure each person has the app open in "
            "Teams, and tell them about the case in person if it is still open.",
            subtle=True,
        ),
    ]
    for item in items[:40]:
        when = f"{item.at.astimezone(timezone):%-d %b %H:%M}" if item.at else "not yet"
        body.append(typed(f"to {item.to}", label=item.about, spacing="Medium"))  # names from the directory
        body.append(typed(f"{when}: {item.reason}", subtle=True, spacing="None"))
    if len(items) > 40:
        body.append(text(f"And {len(items) - 40} more.", subtle=True))
    return card(body, fallback_text=f"{len(items)} alerts not delivered")
