"""Who is acting, where: the plain form the front door hands to services."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from bot.config import SchoolConfig
from bot.people import Person, Role
from bot.permissions import PERMISSIONS, active, may


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


MENU_SCOPES = ("personal", "team")  # the Teams app's command menus (manifest commandLists)


@dataclass(frozen=True)
class Command:
    """A typed command. `permission` None means anyone the school's directory knows; `title` and `description` show
    on the help card, and `menu` names the Teams command menus it is offered in (manifest/commands.py)."""

    name: str
    title: str
    description: str
    run: CommandRun
    permission: str | None = None
    in_help: bool = True
    channel_ok: bool = False
    menu: tuple[str, ...] = ()
    rank: int = 100  # lower comes first on the help card and in the menus; ties keep the registry's order

    def __post_init__(self) -> None:
        if self.permission is not None and self.permission not in PERMISSIONS:
            raise ValueError(f"command {self.name!r}: unknown permission {self.permission!r}")
        if set(self.menu) - set(MENU_SCOPES) or ("team" in self.menu and not self.channel_ok):
            raise ValueError(
                f"command {self.name!r}: menu scopes must be personal or team, and team only when it works in a channel"
            )

    def allowed(self, actor: Actor) -> bool:
        if not actor.person.roles:
            return False
        return self.permission is None or may(actor.person, self.permission)


@dataclass(frozen=True)
class CardAction:
    """A card button handled on the server; `permission` is checked against the directory's roles, never the card."""

    verb: str
    run: CardActionRun
    permission: str | None = None

    def __post_init__(self) -> None:
        if self.permission is not None and self.permission not in PERMISSIONS:
            raise ValueError(f"card action {self.verb!r}: unknown permission {self.permission!r}")

    def allowed(self, actor: Actor) -> bool:
        return self.permission is None or may(actor.person, self.permission)


ACTOR_SLOT = "esafety.actor"  # where a turn keeps who is speaking, worked out once (the handler) and read by dialogs


def access_key(actor: Actor) -> tuple[object, ...]:
    """All that `Command.allowed` and `CardAction.allowed` read of an actor, and the policy they read it under: two
    actors with equal keys are allowed the same things, so what follows from that alone may be kept by it."""
    person = actor.person
    return (active(), person.school, person.roles)


def in_menu_order(commands: Sequence[Command]) -> list[Command]:
    """Commands by rank; equal ranks keep the registry's order."""
    return sorted(commands, key=lambda c: c.rank)
