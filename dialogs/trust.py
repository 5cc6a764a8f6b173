"""Wiring for the trust: the `trust digest` command, the weekly trust digest, and trust people outside any school.

A trust person who is also placed at a school (a single-school tenant, or listed at one school) asks through the
ordinary command; one no school places reaches the same service through the front door's `trust_turn`.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.actor import Actor, CardReply, Command, Turn
from bot.cards import trust_digest as trust_cards
from bot.config import AppConfig
from bot.trust import TrustAnswer, trust_person
from bot.trust_digest import WEEKLY_KIND, TrustDigestService
from bot.wiring import Wiring

COMMAND = "trust digest"
PRIVATELY = "Please message me privately for the trust digest."


@dataclass(frozen=True)
class _TrustCommand(Command):
    """Open to trust people only: trust roles are not school roles, so the school permissions cannot say."""

    config: AppConfig | None = None

    def allowed(self, actor: Actor) -> bool:
        return (
            self.config is not None and trust_person(self.config, actor.school.tenant_id, actor.person.id) is not None
        )


def install(wiring: Wiring) -> None:
    config = wiring.config
    trust = config.trust
    if trust is None:
        return
    digest = wiring.features.digest
    assert digest is not None, "the trust digest needs the school digest (dialogs.reviews) installed first"
    service = TrustDigestService(
        config, wiring.uow, wiring.clock, digest, wiring.policy.small_number_threshold, trust_cards
    )

    async def trust_digest(turn: Turn, _args: str) -> None:
        await turn.say(card=await service.card(turn.actor.person.id))

    wiring.services.add_command(
        _TrustCommand(
            COMMAND,
            "Trust digest",
            "this week's figures across the trust's schools, without names",
            trust_digest,
            config=config,
        )
    )

    async def outside_schools(tenant_id: str | None, person_id: str | None, kind: str, text: str) -> TrustAnswer | None:
        person = trust_person(config, tenant_id, person_id)
        home = service.home_school()
        if person is None or home is None:
            return None
        if kind != "personal":
            return TrustAnswer(home, CardReply(message=PRIVATELY))
        if text.lower() == COMMAND:
            return TrustAnswer(home, CardReply(card=await service.card(person.id)))
        return TrustAnswer(
            home,
            CardReply(
                message=f"You are set up as a trust lead for {trust.name}. Type `{COMMAND}` for this week's "
                "figures across the trust's schools."
            ),
        )

    wiring.services.trust_turn = outside_schools
    wiring.work.register(WEEKLY_KIND, service.run_weekly)
    wiring.features.startup.append(service.seed)
