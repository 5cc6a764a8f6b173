"""The report as one Adaptive Card form, opened from a Teams message ("Report a concern" on its menu)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.cards.common import card, heading, submit, text, typed_facts
from bot.cards.incident import Option

FORM_VERB = "report.form"  # in the submit data, so a stray submit of another card is not taken for this one
DANGER_YES, DANGER_NO = "yes", "no"
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
    subject_kinds: list[Option]
    categories: list[Option]  # titles name the group, the category and its description in full
    locations: list[Option]
    values: dict[str, str] = field(default_factory=dict)  # the reporter's answers, when the form comes back
    problems: list[str] = field(default_factory=list)
    max_chars: int = 2000


def build_report_form_card(view: ReportFormView) -> dict[str, Any]:
    values, message = view.values, view.message
    body: list[dict[str, Any]] = [
        heading("Report a concern"),
        text("If a child is in immediate danger, call 999 now, then find the DSL in person.", color="Attention",
             weight="Bolder"),
    ]
    if view.problems:
        body.append(text("Please check your answers:", weight="Bolder", color="Attention", spacing="Medium"))
        body.extend(text(f"- {problem}", color="Attention", spacing="None") for problem in view.problems)
    body += [
        text("**The message**", spacing="Medium"),
        typed_facts([("From", message.author), ("Sent", message.sent)]),
        text("Its link, author and time go with your report. Its pictures and files do not.", subtle=True,
             spacing="None"),
        _choices("subject_kind", "Who is the concern about?", view.subject_kinds, values,
                 "Please choose who the concern is about."),
    ]
    if message.author_id:
        body.append({"type": "Input.Toggle", "id": "about_author", "title": f"It is about {message.author}, who "
                     "wrote this message", "value": values.get("about_author", FALSE), "valueOn": TRUE,
                     "valueOff": FALSE, "wrap": True})
    body += [
        _choices("immediate_danger", "Is anyone in immediate danger right now?",
                 [Option(DANGER_YES, "Yes, someone is in danger now"), Option(DANGER_NO, "No")], values,
                 "Please say whether anyone is in danger now."),
        _choices("category", "What kind of concern is it? Pick the closest; it does not need to be exact.",
                 view.categories, values, "Please choose the kind of concern."),
        text("If it involves nude or sexual images of a child, do not view, copy, forward, screenshot or save them, "
             "and do not add them here.", subtle=True),
        _choices("location", "Where did it happen?", view.locations, values, "Please choose where it happened.",
                 compact=True),
        _text_input("occurred", "When did it happen?", values, "Please say when it happened.", max_chars=200,
                    placeholder="For example today at lunch, or last night"),
        _text_input("subjects", "Who is involved?", values, "Please say who is involved, or write not known.",
                    max_chars=view.max_chars, placeholder="Initials and year group are enough"),
        _text_input("narrative", "What happened?", values, "Please say what happened.", max_chars=view.max_chars,
                    multiline=True, placeholder="Your own words, and the child's words where you have them. "
                    "Facts are more useful than opinions."),
        _text_input("evidence", "Any other evidence, and where is it now?", values, None, max_chars=view.max_chars,
                    multiline=True, placeholder="Which device it is on and where that device is. Leave blank if "
                    "the message is all there is."),
        _text_input("actions_taken", "What have you done so far?", values,
                    "Please say what you have done so far, or write nothing yet.", max_chars=view.max_chars,
                    placeholder="Nothing yet"),
    ]
    data = {"verb": FORM_VERB, "form": view.token, "message_author": message.author, "message_sent": message.sent,
            "message_link": message.link or "", "message_author_id": message.author_id or ""}
    return card(body, [submit("Submit report", data, style="positive")], fallback_text="Report a concern")


def _choices(input_id: str, label: str, options: list[Option], values: dict[str, str], error: str, *,
             compact: bool = False) -> dict[str, Any]:
    block: dict[str, Any] = {
        "type": "Input.ChoiceSet", "id": input_id, "label": label, "isRequired": True, "errorMessage": error,
        "style": "compact" if compact else "expanded", "wrap": True,
        "choices": [{"title": o.label, "value": o.key} for o in options],
    }
    if values.get(input_id):
        block["value"] = values[input_id]
    return block


def _text_input(input_id: str, label: str, values: dict[str, str], error: str | None, *, max_chars: int,
                multiline: bool = False, placeholder: str | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "Input.Text", "id": input_id, "label": label, "maxLength": max_chars}
    if error:
        block |= {"isRequired": True, "errorMessage": error}
    if multiline:
        block["isMultiline"] = True
    if placeholder:
        block["placeholder"] = placeholder
    if values.get(input_id):
        block["value"] = values[input_id]
    return block
