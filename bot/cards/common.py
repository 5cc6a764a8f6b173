"""Shared pieces for Adaptive Cards (schema 1.5, as Teams renders them)."""

from __future__ import annotations

from typing import Any

SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
VERSION = "1.5"
MAX_CARD_BYTES = 40 * 1024
MAX_REFRESH_USERS = 60


def card(
    body: list[dict[str, Any]],
    actions: list[dict[str, Any]] | None = None,
    *,
    refresh_user_ids: list[str] | None = None,
    refresh_verb: str | None = None,
    refresh_data: dict[str, Any] | None = None,
    fallback_text: str | None = None,
) -> dict[str, Any]:
    """An AdaptiveCard v1.5; with refresh, Teams fetches a per-viewer version for up to 60 user ids."""
    result: dict[str, Any] = {"type": "AdaptiveCard", "$schema": SCHEMA, "version": VERSION, "body": body}
    if actions:
        result["actions"] = actions
    if fallback_text:
        result["fallbackText"] = fallback_text
    if refresh_verb and refresh_user_ids:
        result["refresh"] = {
            "action": {"type": "Action.Execute", "verb": refresh_verb, "data": refresh_data or {}},
            "userIds": refresh_user_ids[:MAX_REFRESH_USERS],
        }
    return result


def text(
    value: str,
    *,
    size: str | None = None,
    weight: str | None = None,
    wrap: bool = True,
    color: str | None = None,
    subtle: bool = False,
    spacing: str | None = None,
) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "TextBlock", "text": value, "wrap": wrap}
    if size:
        block["size"] = size
    if weight:
        block["weight"] = weight
    if color:
        block["color"] = color
    if subtle:
        block["isSubtle"] = True
    if spacing:
        block["spacing"] = spacing
    return block


def heading(value: str) -> dict[str, Any]:
    return text(value, size="Medium", weight="Bolder")


def facts(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    return {"type": "FactSet", "facts": [{"title": title, "value": value} for title, value in pairs]}


def submit(title: str, data: dict[str, Any], *, style: str | None = None) -> dict[str, Any]:
    action: dict[str, Any] = {"type": "Action.Submit", "title": title, "data": data}
    if style:
        action["style"] = style
    return action


def execute(
    title: str,
    verb: str,
    data: dict[str, Any] | None = None,
    *,
    style: str | None = None,
    associated_inputs: str | None = None,
) -> dict[str, Any]:
    """A Universal Action; clients without Action.Execute fall back to a Submit that reaches the same handler."""
    action: dict[str, Any] = {
        "type": "Action.Execute",
        "title": title,
        "verb": verb,
        "data": data or {},
        "fallback": {"type": "Action.Submit", "title": title, "data": {"verb": verb, **(data or {})}},
    }
    if style:
        action["style"] = style
    if associated_inputs:
        action["associatedInputs"] = associated_inputs
    return action


def command_button(title: str, command: str) -> dict[str, Any]:
    """A button that behaves as if the person typed the command."""
    return submit(title, {"command": command})


def typed(
    value: str,
    *,
    label: str | None = None,
    subtle: bool = False,
    spacing: str | None = None,
    weight: str | None = None,
    size: str | None = None,
) -> dict[str, Any]:
    """Text a person typed (or a display name), shown exactly as typed.

    TextBlock and FactSet values interpret Markdown in Teams, so a typed `[link](url)` would become a link. A
    TextRun interprets nothing (Adaptive Cards 1.2+: "Markdown is not supported"), and with no msteams entities on
    the card `<at>` markup stays text too. `label`, ours not theirs, is shown in bold before the value.
    """
    inlines: list[dict[str, Any]] = []
    if label:
        inlines.append({"type": "TextRun", "text": f"{label}: ", "weight": "Bolder"})
    run: dict[str, Any] = {"type": "TextRun", "text": value}
    if subtle:
        run["isSubtle"] = True
    if weight:
        run["weight"] = weight
    if size:
        run["size"] = size
    inlines.append(run)
    block: dict[str, Any] = {"type": "RichTextBlock", "inlines": inlines}
    if spacing:
        block["spacing"] = spacing
    return block


def typed_facts(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Label and value rows where some values were typed by people: a FactSet would interpret their Markdown."""
    return {"type": "Container", "items": [typed(value, label=title, spacing="None") for title, value in pairs]}
