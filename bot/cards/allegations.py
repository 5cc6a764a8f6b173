"""Cards for statutory handling on a case: the UKCIS initial review, an allegation manager's decisions, and the
register of low-level concerns about staff."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from bot.allegations import INPUT_PREFIX, PATTERN_AT, CaseDecision, RegisterRow
from bot.cards.common import card, execute, heading, text, typed
from bot.cards.incident import CasePart
from bot.policy import Labelled
from bot.ukcis import PREFIX, REFERRAL_AGENCIES, outcome_text, question_id

UKCIS_VERB = "incident.ukcis"
DECISIONS_VERB = "incident.allegation_decisions"
YES_NO = [{"title": "Yes", "value": "yes"}, {"title": "No", "value": "no"}]


@dataclass(frozen=True)
class UkcisView:
    token: str
    version: int
    criteria: list[str]
    timezone: Any
    done: CaseDecision | None = None
    can_act: bool = False
    is_open: bool = True


@dataclass(frozen=True)
class DecisionsView:
    token: str
    version: int
    decisions: list[Labelled]
    timezone: Any
    recorded: dict[str, CaseDecision] = field(default_factory=dict)
    can_act: bool = False
    is_open: bool = True


def _when(at: dt.datetime, timezone: Any) -> str:
    return at.astimezone(timezone).strftime("%d %b %Y %H:%M")


def _choice(input_id: str, label: str, options: list[dict[str, str]], *, required: bool = True) -> dict[str, Any]:
    block = {
        "type": "Input.ChoiceSet",
        "id": input_id,
        "label": label,
        "style": "expanded",
        "choices": options,
        "wrap": True,
    }
    if required:
        block.update(isRequired=True, errorMessage="Please choose one.")
    return block


def _note(input_id: str, label: str, *, required: bool) -> dict[str, Any]:
    block = {"type": "Input.Text", "id": input_id, "label": label, "isMultiline": True, "maxLength": 2000}
    if required:
        block.update(isRequired=True, errorMessage="Please write a few words.")
    return block


def _form(title: str, inputs: list[dict[str, Any]], action: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "ActionSet",
        "actions": [
            {
                "type": "Action.ShowCard",
                "title": title,
                "card": {"type": "AdaptiveCard", "body": inputs, "actions": [action]},
            }
        ],
    }


def build_ukcis_part(view: UkcisView) -> CasePart:
    """The review's outcome once recorded; until then the form, for the people who may act on the case."""
    body = [text("**UKCIS initial review**", spacing="Medium")]
    if view.done is not None:
        body.append(text(outcome_text(view.done.answers)))
        body.append(
            typed(f"Recorded by {view.done.by_name}, {_when(view.done.at, view.timezone)}", subtle=True, spacing="None")
        )
        return CasePart(body=body)
    body.append(
        text(
            'Not recorded yet. Answer the five questions without viewing any image: any "yes" means an '
            "immediate referral to the police or children's social care.",
            subtle=True,
            spacing="None",
        )
    )
    if not (view.can_act and view.is_open):
        return CasePart(body=body)
    inputs: list[dict[str, Any]] = [
        _choice(question_id(i), f"{i + 1}. {criterion}", YES_NO) for i, criterion in enumerate(view.criteria)
    ]
    inputs += [
        _choice(
            f"{PREFIX}agency",
            "If any answer is yes, who is it referred to now?",
            [{"title": label[0].upper() + label[1:], "value": key} for key, label in REFERRAL_AGENCIES.items()],
            required=False,
        ),
        _choice(f"{PREFIX}parents", "Will parents or carers be told?", YES_NO),
        _note(f"{PREFIX}parents_reason", "Why? (goes on the chronology)", required=True),
        {
            "type": "Input.Toggle",
            "id": f"{PREFIX}no_image_viewed",
            "label": "Confirmation",
            "title": "Nobody viewed the images for this review",
            "valueOn": "true",
            "valueOff": "false",
            "isRequired": True,
            "errorMessage": "Please confirm that no image was viewed.",
        },
    ]
    body.append(
        _form(
            "Record the initial review",
            inputs,
            execute("Save review", UKCIS_VERB, {"token": view.token, "version": view.version}),
        )
    )
    return CasePart(body=body)


def build_decisions_part(view: DecisionsView) -> CasePart:
    """The case manager's decisions on an allegation, and the form to record or revisit them."""
    body = [text("**Case manager's decisions**", spacing="Medium")]
    for decision in view.decisions:
        made = view.recorded.get(decision.key)
        if made is None:
            body.append(text(f"{decision.label}: not recorded yet", subtle=True, spacing="None"))
            continue
        answer = "Yes" if made.answers.get("considered") else "No"
        body.append(
            typed(
                f"{decision.label}: {answer} ({made.by_name}, {_when(made.at, view.timezone)}; the "
                "note is on the chronology)",
                spacing="None",
            )
        )
    if not (view.can_act and view.is_open):
        return CasePart(body=body)
    inputs: list[dict[str, Any]] = []
    for decision in view.decisions:
        inputs.append(_choice(f"{INPUT_PREFIX}{decision.key}", decision.label, YES_NO, required=False))
        inputs.append(_note(f"{INPUT_PREFIX}{decision.key}_note", "Note (needed with an answer)", required=False))
    body.append(
        _form(
            "Record decisions",
            inputs,
            execute("Save decisions", DECISIONS_VERB, {"token": view.token, "version": view.version}),
        )
    )
    return CasePart(body=body)


def build_low_level_register_card(rows: list[RegisterRow], timezone: Any) -> dict[str, Any]:
    """Low-level concerns by member of staff, most first: several about one person is a pattern to act on."""
    body = [heading("Low-level concerns about staff")]
    if not rows:
        body.append(text("No low-level concerns have been recorded."))
        return card(body, fallback_text="Low-level concerns about staff")
    patterns = [r for r in rows if r.person_id and r.count >= PATTERN_AT]
    if patterns:
        body.append(
            text(
                f"{len(patterns)} {'person has' if len(patterns) == 1 else 'people have'} "
                f"{PATTERN_AT} or more concerns. Review them together and consider whether, taken "
                "together, they meet the harm threshold.",
                color="Attention",
                weight="Bolder",
            )
        )
    for row in rows:
        mark = "Pattern: " if row.person_id and row.count >= PATTERN_AT else ""
        open_text = f", {row.open_count} open" if row.open_count else ""
        body.append(
            typed(
                f"{mark}{row.name}: {row.count} concern{'s' if row.count != 1 else ''}{open_text}; "
                f"latest {row.latest.astimezone(timezone).strftime('%d %b %Y')}",
                spacing="Small",
            )
        )
        body.append(text(", ".join(row.references), subtle=True, spacing="None"))
    body.append(text("Type `case` and a reference to open one.", subtle=True, spacing="Medium"))
    return card(body, fallback_text="Low-level concerns about staff")
