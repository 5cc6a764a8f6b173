"""Retention cards: the schedule and the last sweep for the DPO, and the legal hold section of a case card."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from bot.cards.common import card, execute, heading, text, typed

HOLD_VERB = "retention.hold"
RELEASE_VERB = "retention.release"
HOLD_INPUT = "retention_hold_reason"  # input ids are unique on the whole case card: ours carry the prefix
RELEASE_INPUT = "retention_release_reason"


def _local(when: dt.datetime, timezone: Any) -> str:
    return when.astimezone(timezone).strftime("%a %d %b %Y, %H:%M")


@dataclass(frozen=True)
class RetentionView:
    school: str
    schedule: list[tuple[str, str]]  # (record type label, plain words)
    timezone: Any
    last_run_at: dt.datetime | None = None
    last_figures: list[tuple[str, str]] = field(default_factory=list)  # (label, "3 deleted, 1 kept ...")
    next_run_at: dt.datetime | None = None
    note: str = ""


def build_retention_card(view: RetentionView) -> dict[str, Any]:
    body: list[dict[str, Any]] = [heading("Retention schedule"), text(view.school, subtle=True, spacing="None")]
    for label, words in view.schedule:
        body.append(text(f"**{label}**", spacing="Small"))
        body.append(text(words, spacing="None"))
    if view.note:
        body.append(text(view.note, subtle=True))
    body.append(text("**Last sweep**", spacing="Medium"))
    if view.last_run_at is None:
        body.append(text("No sweep has run yet.", spacing="None"))
    else:
        body.append(text(f"Ran {_local(view.last_run_at, view.timezone)}.", spacing="None"))
        if view.last_figures:
            body.extend(text(f"{label}: {words}.", spacing="None") for label, words in view.last_figures)
        else:
            body.append(text("Nothing was due.", spacing="None"))
    next_words = _local(view.next_run_at, view.timezone) if view.next_run_at else "not scheduled yet"
    body.append(text(f"**Next sweep:** {next_words}.", spacing="Medium"))
    body.append(
        text(
            "A case under a legal hold is never deleted or anonymised, and neither are the records of the "
            "children linked to it. To place or release a hold, type `hold` and the case reference.",
            subtle=True,
        )
    )
    return card(body, fallback_text="Retention schedule")


@dataclass(frozen=True)
class HoldView:
    token: str
    timezone: Any
    held_since: dt.datetime | None = None
    held_by: str | None = None
    reason: str | None = None
    anonymised_at: dt.datetime | None = None
    can_act: bool = False


def build_hold_section(view: HoldView) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(blocks for the case card's body, actions for its "More" button)."""
    body: list[dict[str, Any]] = []
    more: list[dict[str, Any]] = []
    if view.anonymised_at is not None:
        body.append(
            text(
                f"**Anonymised** on {_local(view.anonymised_at, view.timezone)} under the retention "
                "schedule: names, accounts, typed details and linked records were removed.",
                spacing="Medium",
            )
        )
    if view.held_since is not None:
        body.append(text("**Legal hold**", spacing="Medium", color="Attention"))
        body.append(
            typed(
                f"{_local(view.held_since, view.timezone)} by {view.held_by or 'someone'}",
                label="Placed",
                spacing="None",
            )
        )
        if view.reason:
            body.append(typed(view.reason, label="Reason", spacing="None"))
        body.append(
            text(
                "This case and its children's records will not be deleted or anonymised until the hold is released.",
                subtle=True,
                spacing="None",
            )
        )
    if view.can_act and view.anonymised_at is None:
        if view.held_since is None:
            more.append(
                _reason_form(
                    "Place a legal hold",
                    HOLD_INPUT,
                    "Why must this case be kept? (for example, a claim or an inquiry)",
                    "Place hold",
                    HOLD_VERB,
                    view.token,
                )
            )
        else:
            more.append(
                _reason_form(
                    "Release the hold", RELEASE_INPUT, "Why can the hold end?", "Release hold", RELEASE_VERB, view.token
                )
            )
    return body, more


def _reason_form(title: str, input_id: str, label: str, button: str, verb: str, token: str) -> dict[str, Any]:
    return {
        "type": "Action.ShowCard",
        "title": title,
        "card": {
            "type": "AdaptiveCard",
            "body": [
                {
                    "type": "Input.Text",
                    "id": input_id,
                    "label": label,
                    "isMultiline": True,
                    "maxLength": 500,
                    "isRequired": True,
                    "errorMessage": "Please give a reason.",
                }
            ],
            "actions": [execute(button, verb, {"token": token})],
        },
    }
