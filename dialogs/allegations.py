"""Wiring for statutory handling on a case: the UKCIS review and allegation decisions on the case card, and the
`low-level` register of concerns about staff."""

from __future__ import annotations

from typing import Any

from bot.actor import Actor, CardAction, CardReply, Command, Turn
from bot.allegation_service import AllegationService
from bot.cards.allegations import DECISIONS_VERB, UKCIS_VERB
from bot.wiring import Wiring


def install(wiring: Wiring) -> None:
    """Needs the incidents feature installed first (its case card carries these parts)."""
    incidents = wiring.features.incidents
    assert incidents is not None, "install the incidents feature before allegations"
    service = AllegationService(wiring.uow, wiring.directory, wiring.policy, incidents, wiring.features)
    wiring.features.allegations = service
    incidents.card_parts.append(service.ukcis_part)
    incidents.card_parts.append(service.decisions_part)
    services = wiring.services

    async def ukcis_review(actor: Actor, data: dict[str, Any]) -> CardReply:
        return await service.record_ukcis(actor, data)

    async def decisions(actor: Actor, data: dict[str, Any]) -> CardReply:
        return await service.record_decisions(actor, data)

    # No roles on the actions: the service asks the case's one access rule and refuses with the one card.
    services.add_card_action(CardAction(UKCIS_VERB, ukcis_review))
    services.add_card_action(CardAction(DECISIONS_VERB, decisions))

    async def low_level(turn: Turn, _args: str) -> None:
        card = await service.register_card(turn.actor)
        if card is None:
            await turn.say("Only the Headteacher can see the register of low-level concerns.")
            return
        await turn.say(card=card)

    services.add_command(
        Command(
            "low-level",
            "Low-level concerns",
            "the register of low-level concerns about staff, by person, so repeated concerns stand out",
            low_level,
            permission="lowlevel.register",
        )
    )
