"""The help card and the install greetings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.cards.common import card, command_button, heading, text


@dataclass(frozen=True)
class CommandHelp:
    command: str
    title: str
    description: str


def build_help_card(
    first_name: str, commands: Sequence[CommandHelp], *, unknown_text: str | None = None
) -> dict[str, Any]:
    """The commands this person may use, each with a button."""
    body = []
    if unknown_text is not None:
        # Not echoed: a TextBlock would interpret Markdown in it, and this line must stay first for the card.
        body.append(text("Sorry, I didn't understand that. Here is what I can do.", subtle=True))
    body.append(heading(f"Hello {first_name}. What would you like to do?"))
    for item in commands:
        body.append(text(f"**{item.title}**: {item.description} (type `{item.command}`)", spacing="Small"))
    body.append(text("Type `cancel` at any time to stop what you are doing.", subtle=True, spacing="Medium"))
    actions = [command_button(item.title, item.command) for item in commands[:6]]
    return card(body, actions, fallback_text="Type help to see what I can do.")


def build_personal_welcome_card(first_name: str, school_name: str, commands: Sequence[CommandHelp]) -> dict[str, Any]:
    body = [
        heading(f"Welcome, {first_name}"),
        text(f"I help staff at {school_name} follow the online-safety policy from Teams."),
        text(
            "If you are worried about a child's safety online, type `report`. It takes about a minute, and "
            "I send it to the right people straight away. If someone is in immediate danger, call 999 first."
        ),
    ]
    actions = [command_button(item.title, item.command) for item in commands[:4]]
    return card(body, actions, fallback_text="Welcome. Type help to see what I can do.")


def build_channel_welcome_card(school_name: str, purposes: list[str]) -> dict[str, Any]:
    """What this channel will receive; nothing personal is ever posted in a channel."""
    lines = {
        "dsl": "Alerts about new online-safety concerns: reference, type, severity, age and status only. "
        "Designated safeguarding leads open the card to see details.",
        "slt": "The weekly online-safety digest: figures and charts, no names.",
        "technicians": "Filter changes to apply and reports of filtering or security problems.",
    }
    body = [heading(f"eSafety for {school_name} is set up in this team")]
    wanted = [lines[p] for p in purposes if p in lines]
    if wanted:
        body.append(text("This channel will receive:"))
        body.extend(text(f"- {line}", spacing="Small") for line in wanted)
    else:
        body.append(
            text(
                "This channel is not linked to anything yet, so I will stay quiet here. Your online-safety "
                "lead can link it in the school's settings."
            )
        )
    body.append(
        text(
            "Names and details of concerns are never posted in channels. To report a concern, message me "
            "privately and type `report`.",
            subtle=True,
        )
    )
    return card(body, fallback_text=f"eSafety for {school_name} is set up in this team.")
