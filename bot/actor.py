"""Who is acting, where: the plain form the front door hands to services."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from bot.config import SchoolConfig
from bot.people import Person, Role


@dataclass(frozen=True)
class Actor:
    school: SchoolConfig
    person: Person
    conversation_kind: str = "personal"  # personal | channel | groupChat

    @property
    def school_id(self) -> str:
        return self.school.id

    def has(self, *roles: Role) -> bool:
        return self.person.has(*roles)


@dataclass(frozen=True)
class CardReply:
    """What a card action answers: a replacement card, a short message, or both."""

    card: dict[str, Any] | None = None
    message: str | None = None


class Refused(Exception):  # noqa: N818 - a user-facing outcome, not a fault
    """The actor may not do this; the message is shown to them as it is."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Turn(Protocol):
    """One incoming message as a feature sees it: who, and how to answer."""

    actor: Actor
    text: str

    async def say(self, text: str | None = None, card: dict[str, Any] | None = None) -> None:
        """Reply in this conversation."""

    async def begin_dialog(self, dialog_id: str, options: Any = None) -> None:
        """Start a guided conversation."""


CommandRun = Callable[[Turn, str], Awaitable[None]]
CardActionRun = Callable[[Actor, dict[str, Any]], Awaitable[CardReply]]


@dataclass(frozen=True)
class Command:
    """A typed command; `roles` empty means anyone the school's directory knows."""

    name: str
    title: str
    description: str
    run: CommandRun
    roles: frozenset[Role] = frozenset()
    in_help: bool = True
    channel_ok: bool = False

    def allowed(self, actor: Actor) -> bool:
        if not actor.person.roles:
            return False
        return not self.roles or bool(actor.person.roles & self.roles)


@dataclass(frozen=True)
class CardAction:
    """A card button handled on the server; `roles` are checked against the directory, never the card."""

    verb: str
    run: CardActionRun
    roles: frozenset[Role] = frozenset()
