"""The Referrals section of the case card: referrals made, deadlines still running, and the form to record one."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from bot.cards.common import execute, text, typed
from bot.cards.incident import CasePart, Option
from bot.referrals import MAX_REFERENCE_CHARS, Referral, RequiredReferral, due_text

RECORD_VERB = "referral.record"
OUTCOME_VERB = "referral.outcome"
MAX_OUTCOME_CHARS = 1000
REASON_INPUT = "no_referral_reason"  # read by the close guard from the Close form


@dataclass(frozen=True)
class ClockLine:
    clock: RequiredReferral
    short: str  # "the LADO"
    at_once: bool
    why: str


@dataclass(frozen=True)
class MadeLine:
    referral: Referral
    label: str  # "LADO (Local Authority Designated Officer)"


@dataclass(frozen=True)
class ReferralView:
    token: str
    version: int
    case_open: bool
    can_act: bool
    now: dt.datetime
    timezone: Any
    agencies: list[Option] = field(default_factory=list)
    clocks: list[ClockLine] = field(default_factory=list)
    made: list[MadeLine] = field(default_factory=list)
    not_made_prompt: str | None = None  # the Close form's question while a required referral is open


def referral_part(view: ReferralView) -> CasePart | None:
    """The section, or None when there is nothing to show and nothing this viewer may do."""
    form = _record_form(view) if view.can_act and view.case_open else None
    if not view.clocks and not view.made:
        return CasePart(more=[form]) if form else None
    body: list[dict[str, Any]] = [text("**Referrals**", spacing="Medium")]
    for line in view.clocks:
        body.extend(_clock_blocks(line, view))
    for made in view.made:
        referral = made.referral
        words = f"{made.label}: referred {_local(referral.made_at, view.timezone)} by {referral.made_by_name}"
        if referral.their_reference:
            words += f". Their reference: {referral.their_reference}"
        if referral.outcome:
            words += f". Outcome: {referral.outcome}"
        body.append(typed(words, spacing="None"))  # names and references are typed: text only
    if form:
        waiting = [m for m in view.made if not m.referral.outcome]
        body.append({"type": "ActionSet", "actions": [form, *([_outcome_form(view, waiting)] if waiting else [])]})
    close_inputs = []
    if view.not_made_prompt and view.can_act:
        close_inputs.append(
            {
                "type": "Input.Text",
                "id": REASON_INPUT,
                "label": view.not_made_prompt,
                "isMultiline": True,
                "maxLength": 2000,
            }
        )
    return CasePart(body=body, close_inputs=close_inputs)


def _clock_blocks(line: ClockLine, view: ReferralView) -> list[dict[str, Any]]:
    clock, due = line.clock, due_text(line.clock.due_at, view.timezone)
    if clock.overdue(view.now):
        return [
            text(
                f"Referral to {line.short} is overdue: it was due by {due}.",
                color="Attention",
                weight="Bolder",
                spacing="None",
            ),
            *_why(line),
        ]
    if clock.is_open:
        when = f"needed now (by {due})" if line.at_once else f"due by {due}"
        return [
            text(f"Referral to {line.short} {when}.", color="Warning", weight="Bolder", spacing="None"),
            *_why(line),
        ]
    if clock.waived_reason:
        return [typed(f"Not referred to {line.short}: {clock.waived_reason}", spacing="None")]
    return []


def _why(line: ClockLine) -> list[dict[str, Any]]:
    return [text(line.why, subtle=True, spacing="None")] if line.why else []


def _record_form(view: ReferralView) -> dict[str, Any]:
    local = view.now.astimezone(view.timezone)
    first_due = next((line.clock.agency for line in view.clocks if line.clock.is_open), None)
    choice: dict[str, Any] = {
        "type": "Input.ChoiceSet",
        "id": "referral_agency",
        "label": "Referred to",
        "isRequired": True,
        "errorMessage": "Please choose one.",
        "choices": [{"title": o.label, "value": o.key} for o in view.agencies],
    }
    if first_due:
        choice["value"] = first_due
    inputs = [
        choice,
        {
            "type": "Input.Date",
            "id": "referral_on",
            "label": "When was it made?",
            "value": local.strftime("%Y-%m-%d"),
            "max": local.strftime("%Y-%m-%d"),
        },
        {"type": "Input.Time", "id": "referral_time", "label": "Time", "value": local.strftime("%H:%M")},
        {
            "type": "Input.Text",
            "id": "referral_reference",
            "label": "Their reference (optional)",
            "maxLength": MAX_REFERENCE_CHARS,
        },
    ]
    return {
        "type": "Action.ShowCard",
        "title": "Record a referral",
        "card": {
            "type": "AdaptiveCard",
            "body": inputs,
            "actions": [execute("Save referral", RECORD_VERB, {"token": view.token, "version": view.version})],
        },
    }


def _outcome_form(view: ReferralView, waiting: list[MadeLine]) -> dict[str, Any]:
    """What an agency decided, on one of the referrals made (named by its random handle)."""
    inputs = [
        {
            "type": "Input.ChoiceSet",
            "id": "referral_handle",
            "label": "Which referral?",
            "isRequired": True,
            "errorMessage": "Please choose one.",
            "value": waiting[0].referral.handle,
            "choices": [
                {"title": f"{m.label}, {_local(m.referral.made_at, view.timezone)}", "value": m.referral.handle}
                for m in waiting
            ],
        },
        {
            "type": "Input.Text",
            "id": "referral_outcome",
            "label": "What did they decide?",
            "isRequired": True,
            "isMultiline": True,
            "maxLength": MAX_OUTCOME_CHARS,
            "errorMessage": "Please write a few words.",
        },
    ]
    return {
        "type": "Action.ShowCard",
        "title": "Record an outcome",
        "card": {
            "type": "AdaptiveCard",
            "body": inputs,
            "actions": [execute("Save outcome", OUTCOME_VERB, {"token": view.token, "version": view.version})],
        },
    }


def _local(when: dt.datetime, timezone: Any) -> str:
    return when.astimezone(timezone).strftime("%a %d %b %Y, %H:%M")
