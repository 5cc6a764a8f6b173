"""The chat's report as cards: who, danger and what (card 1), that category's details (card 2), then the summary.

Inputs come from the report's one schema (bot.report): a card submits with Action.Submit and no "verb", so the
conversation gets its answers; the server checks them again (bot.report.check) whatever the card checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.cards.common import card, facts, heading, submit, text, typed
from bot.report import CHOICE, LONG_TEXT, Spec, SummaryRow

ABOUT_CARD, DETAILS_CARD = "about", "details"  # in the submit data: which card the answers came from
DANGER_NOTE = "If a child is in immediate danger, call 999 now, then find the DSL in person."


@dataclass(frozen=True)
class AboutView:
    specs: Sequence[Spec]
    choices: dict[str, list[tuple[str, str]]]
    values: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DetailsView:
    specs: Sequence[Spec]
    choices: dict[str, list[tuple[str, str]]]
    category: str  # its label, as the reporter chose it
    guidance: list[str]  # that category's guidance, most important first
    values: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)  # a label worded for this category (images: no links)


def input_block(
    spec: Spec,
    options: Sequence[tuple[str, str]],
    values: dict[str, str],
    *,
    label: str | None = None,
    placeholder: str | None = None,
) -> dict[str, Any]:
    """One answer's input, with isRequired and errorMessage when it must be answered."""
    block: dict[str, Any]
    if spec.kind == CHOICE:
        block = {
            "type": "Input.ChoiceSet",
            "id": spec.key,
            "style": "expanded",
            "wrap": True,
            "choices": [{"title": title, "value": value} for value, title in options],
        }
    else:
        block = {"type": "Input.Text", "id": spec.key, "maxLength": spec.max_chars}
        if spec.kind == LONG_TEXT:
            block["isMultiline"] = True
        if placeholder or spec.placeholder:
            block["placeholder"] = placeholder or spec.placeholder
    block["label"] = label or spec.label
    if spec.problem:
        block |= {"isRequired": True, "errorMessage": spec.problem}
    if values.get(spec.key):
        block["value"] = values[spec.key]
    return block


def build_report_about_card(view: AboutView) -> dict[str, Any]:
    """Card 1: enough to raise the urgent alert at once, when there is danger or the category is illegal."""
    body: list[dict[str, Any]] = [
        heading("Report a concern"),
        text(DANGER_NOTE, color="Attention", weight="Bolder"),
    ]
    for spec in view.specs:
        body.append(input_block(spec, view.choices.get(spec.key, []), view.values))
    body.append(
        text(
            "If it involves nude or sexual images of a child, do not view, copy, forward, screenshot or save "
            "them, and do not send them to me.",
            subtle=True,
        )
    )
    return card(
        body,
        [submit("Next", {"card": ABOUT_CARD}, style="positive")],
        fallback_text="Report a concern: who is the concern about? Reply with a number or the words.",
    )


def build_report_details_card(view: DetailsView) -> dict[str, Any]:
    """Card 2: that category's guidance first, then the details."""
    body: list[dict[str, Any]] = [heading("Report a concern: the details"), typed(view.category, label="About")]
    for number, line in enumerate(view.guidance):
        body.append(text(line, color="Attention", weight="Bolder" if number == 0 else None))
    for spec in view.specs:
        body.append(
            input_block(
                spec,
                view.choices.get(spec.key, []),
                view.values,
                label=view.labels.get(spec.key),
                placeholder=view.labels.get(f"{spec.key}.placeholder"),
            )
        )
    return card(
        body, [submit("Next", {"card": DETAILS_CARD}, style="positive")], fallback_text="Report a concern: the details"
    )


def build_report_summary_card(rows: Sequence[SummaryRow], *, typed_replies: bool = False) -> dict[str, Any]:
    """The reporter checks their answers before submitting."""
    body: list[dict[str, Any]] = [
        heading("Please check your report"),
        facts([(r.label, r.value) for r in rows if not r.typed]),
    ]
    for row in rows:
        if row.typed:
            body += [text(f"**{row.label}**", spacing="Medium"), typed(row.value, spacing="None")]
    if typed_replies:
        body.append(text("Reply `submit` to send it, `change` to correct an answer, or `cancel` to stop.", subtle=True))
    actions = [
        submit("Submit report", {"answer": "submit"}, style="positive"),
        submit("Change an answer", {"answer": "change"}),
    ]
    return card(body, actions, fallback_text="Please check your report")


def build_report_pick_card(question: str, options: Sequence[str]) -> dict[str, Any]:
    """A short pick (a name from the directory), numbered for a typed reply too."""
    choice = {
        "type": "Input.ChoiceSet",
        "id": "answer",
        "label": question,
        "style": "expanded",
        "wrap": True,
        "isRequired": True,
        "errorMessage": "Please choose one.",
        "choices": [{"title": option, "value": str(number)} for number, option in enumerate(options, start=1)],
    }
    return card([choice], [submit("Choose", {}, style="positive")], fallback_text=question)
