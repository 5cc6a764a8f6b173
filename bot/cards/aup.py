"""Acceptable Use Policy cards: the card to acknowledge, the receipt, the publish preview and the status report."""

from __future__ import annotations

import datetime as dt
from typing import Any

from bot.aup import (
    ACK_VERB,
    AUDIENCE_LABELS,
    AUDIENCE_NAMES,
    PUBLISH_VERB,
    Acknowledgement,
    Audience,
    AupDocument,
    Preview,
    StatusReport,
)
from bot.cards.common import card, command_button, execute, facts, heading, text

MAX_NAMES_PER_AUDIENCE = 40
# The Department for Education's page for the current Keeping children safe in education (Part 1 is on it).
KCSIE_URL = "https://www.gov.uk/government/publications/keeping-children-safe-in-education--2"


MAX_BUTTONS_PER_ROW = 5  # Teams shows at most 6 actions in one set; keep a margin


def _with_fallback(title: str, verb: str, data: dict[str, Any], *, style: str | None = None) -> dict[str, Any]:
    """Action.Execute (with its Action.Submit fallback) that also sends the card's inputs."""
    return execute(title, verb, data, style=style, associated_inputs="auto")


def _toggle(input_id: str, label: str, title: str, error: str) -> dict[str, Any]:
    return {
        "type": "Input.Toggle",
        "id": input_id,
        "label": label,
        "title": title,
        "valueOn": "true",
        "valueOff": "false",
        "value": "false",
        "wrap": True,
        "isRequired": True,
        "errorMessage": error,
    }


def build_aup_card(
    document: AupDocument, *, link: str, first_name: str | None = None, notice: str | None = None
) -> dict[str, Any]:
    """The card to read and acknowledge: summary, sections to open, the full text, two confirmations."""
    body: list[dict[str, Any]] = [
        heading(document.title),
        text(f"Version {document.version}", subtle=True, spacing="None"),
    ]
    if notice:
        body.append(text(notice, color="Attention", weight="Bolder"))
    greeting = f"Hello {first_name}. " if first_name else ""
    body.append(text(greeting + document.summary))
    body.append(text("Open each section to read it, or read the full text.", subtle=True))
    sections = [
        {
            "type": "Action.ShowCard",
            "title": section.title,
            "card": {"type": "AdaptiveCard", "body": [text("\n".join(f"- {point}" for point in section.points))]},
        }
        for section in document.sections
    ]
    for start in range(0, len(sections), MAX_BUTTONS_PER_ROW):
        body.append({"type": "ActionSet", "actions": sections[start : start + MAX_BUTTONS_PER_ROW]})
    body.append(
        {"type": "ActionSet", "actions": [{"type": "Action.OpenUrl", "title": "Read the full text", "url": link}]}
    )
    body.append(
        _toggle(
            "read_kcsie",
            "Keeping Children Safe in Education",
            "I have read Part 1 of Keeping Children Safe in Education",
            "Please confirm you have read Part 1 of Keeping Children Safe in Education.",
        )
    )
    body.append(
        {
            "type": "ActionSet",
            "spacing": "Small",
            "actions": [{"type": "Action.OpenUrl", "title": "Read KCSIE Part 1 on GOV.UK", "url": KCSIE_URL}],
        }
    )
    body.append(
        _toggle(
            "agree",
            "This policy",
            "I agree to follow this Acceptable Use Policy",
            "Please confirm you agree to follow this policy.",
        )
    )
    data = {"audience": document.audience.value, "version": document.version}
    return card(
        body,
        [_with_fallback("Submit", ACK_VERB, data, style="positive")],
        fallback_text=f"Please read and acknowledge the {document.title} (version {document.version}).",
    )


def build_acknowledged_card(document: AupDocument, ack: Acknowledgement, *, link: str, tz: Any) -> dict[str, Any]:
    """The receipt: what was agreed, when, and a short receipt number (the text's SHA-256 stays in the record)."""
    when = ack.at.astimezone(tz).strftime("%d %B %Y at %H:%M")
    body = [
        heading("Thank you. Your acknowledgement is recorded"),
        text(
            f"You acknowledged the {document.title}, version {ack.version}, on {when}. There is nothing more to "
            "do until the policy changes or the yearly renewal."
        ),
        facts(
            [
                ("Policy", f"{document.title}, version {ack.version}"),
                ("Read KCSIE Part 1", "Yes" if ack.read_kcsie else "No"),
                ("Agreed to follow it", "Yes" if ack.agreed else "No"),
                ("Recorded", when),
                ("Receipt number", ack.receipt),
            ]
        ),
        {"type": "ActionSet", "actions": [{"type": "Action.OpenUrl", "title": "Read the full text", "url": link}]},
    ]
    return card(body, fallback_text=f"AUP version {ack.version} acknowledged on {when}.")


def build_publish_preview_card(preview: Preview, *, notice: str | None = None) -> dict[str, Any]:
    audience = preview.audience.value
    name = AUDIENCE_NAMES[Audience(audience)]
    current = preview.current
    body: list[dict[str, Any]] = [heading(f"Publish the {name} AUP as version {preview.new_version}?")]
    if notice:
        body.append(text(notice, color="Attention", weight="Bolder"))
    if current is None:
        change = "This is the first version stored for this audience."
    elif preview.changed:
        change = f"The text in the repository has changed since version {current.version}."
    else:
        change = (
            f"The text is the same as version {current.version}. Publishing it again still asks everyone "
            "to acknowledge it again."
        )
    body.extend(
        [
            text(change),
            facts(
                [
                    ("Title", preview.parsed.title),
                    ("Sections", str(len(preview.parsed.sections))),
                    ("People who will be asked", str(preview.owing)),
                ]
            ),
            text(preview.parsed.summary, subtle=True),
            text(
                "Everyone in this audience will get the card now, with reminders until they acknowledge it.",
                subtle=True,
            ),
        ]
    )
    data = {"audience": audience, "version": preview.new_version, "content": preview.parsed.content_hash}
    return card(
        body,
        [_with_fallback(f"Publish version {preview.new_version}", PUBLISH_VERB, data, style="positive")],
        fallback_text=f"Publish the {name} AUP as version {preview.new_version}?",
    )


def _date(when: dt.datetime | None, tz: Any) -> str:
    return when.astimezone(tz).strftime("%d %b") if when else "not asked yet"


def build_status_card(report: StatusReport, *, tz: Any) -> dict[str, Any]:
    """Percentages per audience and who is outstanding (a 1:1 card for leaders, never a channel post)."""
    cycle = dt.date.fromisoformat(report.cycle).strftime("%d %B %Y")
    body: list[dict[str, Any]] = [
        heading("Acceptable Use Policy: who has acknowledged"),
        text(
            f"{report.school_name}. Counting acknowledgements of each current version made since {cycle}.", subtle=True
        ),
    ]
    for group in report.audiences:
        label = AUDIENCE_LABELS[group.audience]
        version = f"version {group.document.version}" if group.document else "no version published"
        body.append(
            text(
                f"**{label}** ({version}): {group.percent}% acknowledged, {group.done} of {group.total}",
                spacing="Medium",
            )
        )
        outstanding = group.outstanding
        if not outstanding:
            body.append(text("Nobody is outstanding.", subtle=True, spacing="None"))
            continue
        shown = outstanding[:MAX_NAMES_PER_AUDIENCE]
        lines = [
            f"- {line.person.name}: asked {_date(line.owed_since, tz)}, {line.reminders_sent} "
            f"reminder{'' if line.reminders_sent == 1 else 's'}{', escalated' if line.escalated else ''}"
            if line.owed_since is not None
            else f"- {line.person.name}: not asked yet"  # e.g. just after a publish, before its cards are queued
            for line in shown
        ]
        if len(outstanding) > len(shown):
            lines.append(f"- and {len(outstanding) - len(shown)} more (see the CSV export)")
        body.append(text("\n".join(lines), spacing="None"))
    return card(
        body,
        [command_button("Export as CSV", "aup status csv")],
        fallback_text="Acceptable Use Policy acknowledgement status",
    )
