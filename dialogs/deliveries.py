"""Wiring for deliveries: the confirm and deadline work of every tracked alert, and the `undelivered` list."""

from __future__ import annotations

from bot.actor import Command, Turn
from bot.cards.delivery import build_undelivered_card
from bot.delivery import CONFIRM_KIND, DEADLINE_KIND, DeliveryTracker
from bot.wiring import Wiring


def install(wiring: Wiring) -> None:
    tracker = DeliveryTracker(wiring.uow, wiring.clock)
    wiring.work.register(CONFIRM_KIND, tracker.confirm)
    wiring.work.register(DEADLINE_KIND, tracker.deadline)

    async def undelivered(turn: Turn, _args: str) -> None:
        items = await tracker.undelivered(turn.actor.school_id, turn.actor.person)
        await turn.say(card=build_undelivered_card(items, turn.actor.school.tz))

    wiring.services.add_command(
        Command(
            "undelivered",
            "Undelivered alerts",
            "alerts for your team that never reached a person",
            undelivered,
            permission="deliveries.view",
        )
    )
