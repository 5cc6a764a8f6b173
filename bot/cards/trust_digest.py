"""The weekly trust digest as an Adaptive Card: figures per school and for the trust, nothing about any case."""

from __future__ import annotations

import json
from typing import Any

from bot import small_numbers
from bot.cards.common import MAX_CARD_BYTES, card, facts, heading, text
from bot.small_numbers import Cell
from bot.trust_digest import TrustDigestView

NO_DATA = "No data yet."


def _cells(title: str, cells: list[Cell]) -> list[dict[str, Any]]:
    body = facts([(c.label, c.text) for c in cells]) if cells else text(NO_DATA, subtle=True)
    return [text(title, weight="Bolder", spacing="Medium"), body]


def build_trust_digest_card(view: TrustDigestView) -> dict[str, Any]:
    """A pure function of the view: the card a trust lead is sent, and sees when they type `trust digest`."""
    body: list[dict[str, Any]] = [
        heading(f"{view.trust_name}: weekly trust digest"),
        text(f"{view.period_label}. Figures only: no names and no details of any case.", subtle=True),
        text("Across the trust", weight="Bolder", spacing="Medium"),
        facts(
            [
                ("Concerns reported this week", view.concerns_total),
                ("Not acknowledged in time", view.late_total),
                ("Open now", view.open_total),
                ("Staff acceptable use agreed", view.staff_aup),
            ]
        ),
        *_cells("Concerns by category", view.by_group),
        *_cells("Concerns by severity", view.by_severity),
        *_cells("Open concerns by age", view.open_by_age),
        *_cells("Web filter changes", view.filter_changes),
    ]
    trust_part = len(body)
    for row in view.schools:
        body += [
            text(row.school, weight="Bolder", spacing="Medium"),
            facts(
                [
                    ("Concerns reported this week", row.concerns),
                    ("Not acknowledged in time", row.late),
                    ("Open now", row.open),
                    ("Open over 30 days", row.open_long),
                    ("Web filter changes", row.filter_changes),
                    ("Staff acceptable use agreed", row.staff_aup),
                ]
            ),
        ]
    body.append(text(small_numbers.note(view.threshold), subtle=True, spacing="Medium"))
    result = card(body, fallback_text=f"{view.trust_name}: weekly trust digest")
    if len(json.dumps(result).encode("utf-8")) > MAX_CARD_BYTES:
        # Dozens of schools: keep the trust's figures and say where the rest went rather than fail to send.
        result = card(
            [
                *body[:trust_part],
                text(
                    "There are too many schools to list on one card; each school's own digest has its figures.",
                    subtle=True,
                ),
                body[-1],
            ],
            fallback_text=f"{view.trust_name}: weekly trust digest",
        )
    return result
