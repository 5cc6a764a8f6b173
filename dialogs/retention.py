"""Wiring for retention: the daily sweep, the legal hold on the case card and for the DPO, and `retention`."""

from __future__ import annotations

from typing import Any

from bot.actor import Actor, CardAction, CardReply, Command, Turn
from bot.cards.retention import HOLD_VERB, RELEASE_VERB
from bot.retention import SWEEP_KIND
from bot.retention_service import RetentionService
from bot.wiring import Wiring
from storage.retention import retention_store


def install(wiring: Wiring) -> None:
    service = RetentionService(
        wiring.uow, retention_store, wiring.directory, wiring.policy, wiring.config, wiring.clock, wiring.features
    )
    wiring.features.retention = service
    services = wiring.services
    wiring.work.register(SWEEP_KIND, service.sweep)

    incidents = wiring.features.incidents
    if incidents is not None:  # without cases there is nothing to hold
        incidents.card_parts.append(service.case_part)

    async def hold(actor: Actor, data: dict[str, Any]) -> CardReply:
        # No roles here: the case's own access rule decides (the DSL team, or the Headteacher for an allegation).
        return await service.card_hold(actor, data, release=False)

    async def release(actor: Actor, data: dict[str, Any]) -> CardReply:
        return await service.card_hold(actor, data, release=True)

    services.add_card_action(CardAction(HOLD_VERB, hold))
    services.add_card_action(CardAction(RELEASE_VERB, release))

    async def hold_command(turn: Turn, args: str) -> None:
        await turn.say(await service.command_hold(turn.actor, args))

    async def retention(turn: Turn, _args: str) -> None:
        await turn.say(card=await service.report_card(turn.actor))

    services.add_command(
        Command(
            "hold",
            "Legal hold",
            "keep a case from deletion: `hold` and its reference",
            hold_command,
            permission="retention.hold",
        )
    )
    services.add_command(
        Command(
            "retention",
            "Retention",
            "how long records are kept, and what the last sweep did",
            retention,
            permission="retention.view",
        )
    )

    async def start() -> None:
        for school in wiring.config.schools:
            await service.seed(school.id)

    wiring.features.startup.append(start)
