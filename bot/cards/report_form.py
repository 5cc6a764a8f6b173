"""The report as one Adaptive Card form, opened from a Teams message ("Report a concern" on its menu)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.cards.common import card, heading, submit, text, typed_facts
from bot.cards.report import input_block
from bot.report import DANGER_NO, DANGER_YES, Spec

__all__ = ["DANGER_NO", "DANGER_YES", "FORM_VERB", "MessageRef", "ReportFormView", "build_report_form_card"]
FORM_VERB = "report.form"  # in the submit data, so a stray submit of another card is not taken for this one
TRUE, FALSE = "true", "false"


@dataclass(frozen=True)
class MessageRef:
    """The Teams message the report starts from: who wrote it, when, and its link; never its content or files."""

    author: str
    sent: str  # already in the school's time, as a person reads it
    link: str | None = None
    author_id: str | None = None  # set only when the directory knows the author as a member of staff


@dataclass(frozen=True)
class ReportFormView:
    token: str  # fixed when the form opened: a second submit of the same form files nothing new
    message: MessageRef
    specs: Sequence[Spec]  # the report's answers (bot.report.FIELDS), in order
    choices: dict[str, list[tuple[str, str]]]  # category titles name the group, category and description in full
    values: dict[str, str] = field(default_factory=dict)  # the reporter's answers, when the form comes back
    problems: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)  # wording for this form ("<key>.placeholder" too)


def build_report_form_card(view: ReportFormView) -> dict[str, Any]:
    values, message = view.values, view.message
    body: list[dict[str, Any]] = [
        heading("Report a concern"),
        text(
            "If a child is in immediate danger, call 999 now, then find the DSL in person.",
            color="Attention",
            weight="Bolder",
        ),
    ]
    if view.problems:
        body.append(text("Please check your answers:", weight="Bolder", color="Attention", spacing="Medium"))
        body.extend(text(f"- {problem}", color="Attention", spacing="None") for problem in view.problems)
    body += [
        text("**The message**", spacing="Medium"),
        typed_facts([("From", message.author), ("Sent", message.sent)]),
        text(
            "Its link, author and time go with your report. Its pictures and files do not.", subtle=True, spacing="None"
        ),
    ]
    for spec in view.specs:
        body.append(
            input_block(
                spec,
                view.choices.get(spec.key, []),
                values,
                label=view.labels.get(spec.key),
                placeholder=view.labels.get(f"{spec.key}.placeholder"),
            )
        )
        if spec.key == "subject_kind" and message.author_id:
            body.append(
                {
                    "type": "Input.Toggle",
                    "id": "about_author",
                    "title": f"It is about {message.author}, who wrote this message",
                    "value": values.get("about_author", FALSE),
                    "valueOn": TRUE,
                    "valueOff": FALSE,
                    "wrap": True,
                }
            )
        if spec.key == "category":
            body.append(
                text(
                    "If it involves nude or sexual images of a child, do not view, copy, forward, "
                    "screenshot or save them, and do not add them here.",
                    subtle=True,
                )
            )
    data = {
        "verb": FORM_VERB,
        "form": view.token,
        "message_author": message.author,
        "message_sent": message.sent,
        "message_link": message.link or "",
        "message_author_id": message.author_id or "",
    }
    return card(body, [submit("Submit report", data, style="positive")], fallback_text="Report a concern")
