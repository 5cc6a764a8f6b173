"""Wiring for referrals: the case card's "Record a referral" action, the clocks' reminder and escalation work,
and the hooks on cases (clocks start when a case is routed; a close waits for its required referrals)."""

from __future__ import annotations

from typing import Any

from bot.actor import Actor, CardAction, CardReply
from bot.cards.referrals import OUTCOME_VERB, RECORD_VERB
from bot.referral_service import MISSED_KIND, REMIND_KIND, ReferralService
from bot.wiring import Wiring
from bot.work import WorkItem


def install(wiring: Wiring) -> None:
    """Needs the incidents feature installed first (wiring.features.incidents)."""
    incidents = wiring.features.incidents
    assert incidents is not None, "install the incidents feature before referrals"
    service = ReferralService(wiring.uow, wiring.directory, wiring.policy, wiring.config, wiring.clock, incidents)
    wiring.features.referrals = service  # record(uow, actor, incident, agency, made_at, reference) for others
    incidents.on_routed.append(service.on_routed)
    incidents.close_guards.append(service.close_guard)
    incidents.card_parts.append(service.card_part)

    async def record(actor: Actor, data: dict[str, Any]) -> CardReply:
        # No roles here: the service applies the case's own access rule and gives the one audited refusal.
        return await service.act_record(actor, data)

    wiring.services.add_card_action(CardAction(RECORD_VERB, record))
    wiring.services.add_card_action(CardAction(OUTCOME_VERB, service.act_outcome))

    async def remind(item: WorkItem) -> None:
        await service.remind(item.school_id, int(item.payload["clock_id"]))

    async def missed(item: WorkItem) -> None:
        await service.missed(item.school_id, int(item.payload["clock_id"]), int(item.payload["stage"]))

    wiring.work.register(REMIND_KIND, remind)
    wiring.work.register(MISSED_KIND, missed)
