"""Statutory steps on a case: the UKCIS initial review (a "yes" records an immediate referral), an allegation
manager's decisions, and the low-level concerns register. Each change is one unit of work, audited."""

from __future__ import annotations

from typing import Any

from bot import ukcis
from bot.actor import Actor, CardReply
from bot.allegations import DECISION_PREFIX, may_read_register, parse_decisions, register
from bot.cards.allegations import (
    DECISIONS_VERB,
    UKCIS_VERB,
    DecisionsView,
    UkcisView,
    build_decisions_part,
    build_low_level_register_card,
    build_ukcis_part,
)
from bot.cards.incident import CasePart
from bot.config import SchoolConfig
from bot.incident_service import IncidentService
from bot.incidents import Incident, may_act_on_case, may_view_case
from bot.people import Person
from bot.policy import Policy
from bot.protocols import Directory, UnitOfWorkFactory
from bot.wiring import Features

UKCIS_KIND = "ukcis"


class AllegationService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        directory: Directory,
        policy: Policy,
        incidents: IncidentService,
        features: Features | None = None,
    ) -> None:
        self._uow = uow
        self._directory = directory
        self._policy = policy
        self._incidents = incidents
        # Looked up when needed: the referrals feature (features.referrals) may be installed after this one.
        self._features = features if features is not None else Features()

    # --- the case card's parts ----------------------------------------------------------------------------------

    async def ukcis_part(self, uow: Any, school: SchoolConfig, incident: Incident, viewer: Person) -> CasePart | None:
        if not ukcis.applies(incident.category):
            return None
        done = await uow.allegations.get(school.id, incident.id, UKCIS_KIND)
        return build_ukcis_part(
            UkcisView(
                token=incident.token,
                version=incident.version,
                criteria=list(self._policy.sexting_referral_criteria),
                timezone=school.tz,
                done=done,
                can_act=may_act_on_case(viewer, incident),
                is_open=incident.is_open,
            )
        )

    async def decisions_part(
        self, uow: Any, school: SchoolConfig, incident: Incident, viewer: Person
    ) -> CasePart | None:
        if not self._policy.is_allegation(incident.subject_kind) or not self._policy.allegations.decisions:
            return None
        recorded = {
            d.kind.removeprefix(DECISION_PREFIX): d
            for d in await uow.allegations.all_for(school.id, incident.id)
            if d.kind.startswith(DECISION_PREFIX)
        }
        return build_decisions_part(
            DecisionsView(
                token=incident.token,
                version=incident.version,
                decisions=list(self._policy.allegations.decisions),
                timezone=school.tz,
                recorded=recorded,
                can_act=may_act_on_case(viewer, incident),
                is_open=incident.is_open,
            )
        )

    # --- card actions -------------------------------------------------------------------------------------------

    async def record_ukcis(self, actor: Actor, data: dict[str, Any]) -> CardReply:
        return await self._on_case(actor, data, UKCIS_VERB, self._ukcis)

    async def record_decisions(self, actor: Actor, data: dict[str, Any]) -> CardReply:
        return await self._on_case(actor, data, DECISIONS_VERB, self._decisions)

    async def _on_case(self, actor: Actor, data: dict[str, Any], verb: str, change: Any) -> CardReply:
        return await self._incidents.act_on_case(actor, data, verb, change)

    async def _ukcis(self, uow: Any, actor: Actor, incident: Incident, data: dict[str, Any]) -> str | None:
        if not ukcis.applies(incident.category):
            return "This case is not about nudes or semi-nudes, so it has no UKCIS review."
        if await uow.allegations.get(actor.school_id, incident.id, UKCIS_KIND) is not None:
            return "The initial review was already recorded. Add a note if anything has changed."
        review, problem = ukcis.parse(data, list(self._policy.sexting_referral_criteria))
        if review is None:
            return problem
        # The version moves on, so a second copy of the form (or a second reviewer at once) cannot save again.
        await uow.incidents.change(actor.school_id, incident.id, incident.version)
        await uow.allegations.record_once(
            actor.school_id, incident.id, UKCIS_KIND, review.stored(), actor.person.id, actor.person.name
        )
        await uow.incidents.append_event(
            actor.school_id,
            incident.id,
            actor.person.id,
            actor.person.name,
            "ukcis_review",
            ukcis.chronology_text(review),
        )
        await uow.audit.record(
            actor.school_id,
            actor.person.id,
            "incident.ukcis_review",
            "incident",
            incident.reference,
            {"version": incident.version, **review.stored()},
        )
        if not review.needs_referral:
            return "Review saved. No immediate referral is needed: the case is handled in school."
        assert review.agency is not None  # a review that needs a referral names the agency
        agency = ukcis.REFERRAL_AGENCIES[review.agency]
        referrals = self._features.referrals
        if referrals is not None:
            await referrals.record(uow, actor, incident, review.agency, None, None)
            return (
                f"Review saved, and the referral to {agency} is recorded on the case. Make the call now if you "
                "have not already, and add their reference when you have it."
            )
        # Without the referrals feature the need is still on the record, for a person to act on.
        await uow.incidents.append_event(
            actor.school_id, incident.id, actor.person.id, actor.person.name, "ukcis_referral", agency
        )
        return f'Review saved. Refer to {agency} now: a "yes" means an immediate referral.'

    async def _decisions(self, uow: Any, actor: Actor, incident: Incident, data: dict[str, Any]) -> str | None:
        if not self._policy.is_allegation(incident.subject_kind):
            return "Only an allegation about a member of staff has these decisions."
        labels = {d.key: d.label for d in self._policy.allegations.decisions}
        decisions, problem = parse_decisions(data, list(labels))
        if problem:
            return problem
        await uow.incidents.change(actor.school_id, incident.id, incident.version)
        for decision in decisions:
            await uow.allegations.put(
                actor.school_id,
                incident.id,
                f"{DECISION_PREFIX}{decision.key}",
                {"considered": decision.considered},
                actor.person.id,
                actor.person.name,
            )
            await uow.incidents.append_event(
                actor.school_id,
                incident.id,
                actor.person.id,
                actor.person.name,
                "allegation_decision",
                f"{labels[decision.key]}: {'Yes' if decision.considered else 'No'}. {decision.note}",
            )
        await uow.audit.record(
            actor.school_id,
            actor.person.id,
            "incident.allegation_decisions",
            "incident",
            incident.reference,
            {"version": incident.version, "decisions": {d.key: d.considered for d in decisions}},
        )
        return "Decisions saved."

    # --- the register -------------------------------------------------------------------------------------------

    async def register_card(self, actor: Actor) -> dict[str, Any] | None:
        """The low-level concerns register for the Headteacher (None for anyone else), audited."""
        if not may_read_register(actor.person):
            return None
        async with self._uow() as uow:
            # The one access rule decides which concerns the register may list, as for every other read path.
            visible = {
                s.reference
                for s in await uow.incidents.summaries_about(actor.school_id, "staff_low_level")
                if may_view_case(actor.person, s)
            }
            concerns = [c for c in await uow.allegations.low_level_concerns(actor.school_id) if c.reference in visible]
            rows = register(concerns, {p.id: p for p in await self._directory.everyone(actor.school_id)}, actor.person)
            await uow.audit.record(
                actor.school_id,
                actor.person.id,
                "allegations.register_viewed",
                "register",
                None,
                {"concerns": sum(r.count for r in rows), "people": len(rows)},
            )
        return build_low_level_register_card(rows, actor.school.tz)


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
