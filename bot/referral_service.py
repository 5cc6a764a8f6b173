"""Referrals on a case: the clocks the policy requires, reminders and escalation as durable work, recording a
referral, and the check that stops a case closing while a required referral is neither made nor explained."""

from __future__ import annotations

import datetime as dt
from typing import Any

from bot.actor import Actor, CardReply
from bot.cards.incident import CasePart, Option
from bot.cards.referrals import (
    MAX_OUTCOME_CHARS,
    OUTCOME_VERB,
    REASON_INPUT,
    RECORD_VERB,
    ClockLine,
    MadeLine,
    ReferralView,
    referral_part,
)
from bot.config import AppConfig, SchoolConfig
from bot.incident_service import IncidentService
from bot.incidents import MAX_ANSWER_CHARS, Incident, is_excluded, may_act_on_case, may_view_case
from bot.people import Person, Role
from bot.policy import CASE_MANAGERS, Policy, ReferralRule
from bot.protocols import Clock, Directory, UnitOfWork, UnitOfWorkFactory
from bot.referrals import (
    ClockStatus,
    Referral,
    RequiredReferral,
    check_referral,
    due_at,
    due_text,
    missed_at,
    remind_at,
    required_rules,
    rule_for,
)
from bot.routing import STAND_INS

REMIND_KIND = "referral.remind"
MISSED_KIND = "referral.missed"
MAX_STAGES = 6  # cancelling a met clock's escalation cancels this many stages, more than any policy lists


class ReferralService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        directory: Directory,
        policy: Policy,
        config: AppConfig,
        clock: Clock,
        incidents: IncidentService,
    ) -> None:
        self._uow = uow
        self._directory = directory
        self._policy = policy
        self._referrals = policy.referrals
        self._config = config
        self._clock = clock
        self._incidents = incidents

    # --- clocks ----------------------------------------------------------------------------------------------

    def rules_for(self, incident: Incident) -> list[ReferralRule]:
        return required_rules(self._referrals, **_case(incident))

    async def on_routed(self, uow: Any, incident: Incident) -> None:
        """A case was created or changed type or subject: start the clocks it now needs, and stop the ones it no
        longer needs (a case re-typed from an illegal category no longer waits for the police)."""
        school = self._config.school(incident.school_id)
        assert school is not None  # the case's own school
        rules = self.rules_for(incident)
        needed = {rule.agency for rule in rules}
        now = self._clock.now()
        for clock in await uow.referrals.clocks(incident.school_id, incident.id):
            if clock.is_open and clock.agency not in needed:
                # No reason kept: nobody decided anything; the chronology says why it stopped.
                await uow.referrals.settle(incident.school_id, clock.id, ClockStatus.WAIVED)
                await self._stop(uow, clock)
                await uow.incidents.append_event(
                    incident.school_id, incident.id, None, None, "referral_not_needed", self._short(clock.agency)
                )
        for rule in rules:
            agency = self._referrals.agency(rule.agency)
            assert agency is not None  # the policy is checked at load: every rule names a known agency
            due = due_at(school, agency.clock, now)
            opened = await uow.referrals.open_clock(incident.school_id, incident.id, agency.key, now, due)
            if opened is None:
                continue  # already running, or already made
            await uow.audit.record(
                incident.school_id,
                None,
                "referral.required",
                "incident",
                incident.reference,
                {"agency": agency.key, "due_at": due.isoformat()},
            )
            remind = remind_at(agency.clock, now, due)
            if remind is not None:
                await uow.work.schedule(
                    incident.school_id, REMIND_KIND, remind, {"clock_id": opened.id}, dedupe_key=_key(opened, "remind")
                )
            await uow.work.schedule(
                incident.school_id,
                MISSED_KIND,
                missed_at(rule, due, 0),
                {"clock_id": opened.id, "stage": 0},
                dedupe_key=_key(opened, "missed:0"),
            )

    async def _stop(self, uow: Any, clock: RequiredReferral) -> None:
        await uow.work.cancel(_key(clock, "remind"))
        for stage in range(MAX_STAGES):
            await uow.work.cancel(_key(clock, f"missed:{stage}"))

    async def remind(self, school_id: str, clock_id: int) -> None:
        """Before the deadline: the case managers are reminded, with the case card."""
        async with self._uow() as uow:
            clock, incident = await self._running(uow, school_id, clock_id)
            if clock is None or incident is None:
                return
            school = self._config.school(school_id)
            assert school is not None  # the case's own school
            short = self._short(clock.agency)
            for person in await self._case_managers(incident):
                await uow.notify.to_person(
                    school_id,
                    person.id,
                    about=incident.reference,
                    text=f"Reminder: {incident.reference} needs a referral to {short} by "
                    f"{due_text(clock.due_at, school.tz)}. Once it is made, record it on the case card.",
                    card=await self._incidents.case_card(school, incident, person, uow=uow),
                    dedupe_key=f"{_key(clock, 'remind')}:{person.id}",
                )

    async def missed(self, school_id: str, clock_id: int, stage: int) -> None:
        """After the deadline: tell this stage's people (they may now see the case), then schedule the next."""
        async with self._uow() as uow:
            clock, incident = await self._running(uow, school_id, clock_id)
            if clock is None or incident is None:
                return
            rule = rule_for(self._referrals, clock.agency, **_case(incident))
            if rule is None or stage >= len(rule.missed):
                return
            school = self._config.school(school_id)
            assert school is not None  # the case's own school
            people = await self._stage_people(incident, rule.missed[stage].roles)
            newcomers = [p.id for p in people if not may_view_case(p, incident)]
            if newcomers:
                await uow.incidents.change(
                    school_id, incident.id, incident.version, viewer_ids=[*incident.viewer_ids, *newcomers]
                )
            short, due = self._short(clock.agency), due_text(clock.due_at, school.tz)
            told = ", ".join(p.name for p in people) or "nobody could be found to tell"
            await uow.incidents.append_event(
                school_id,
                incident.id,
                None,
                None,
                "referral_overdue",
                f"The referral to {short} was due by {due}. Told: {told}.",
            )
            await uow.audit.record(
                school_id,
                None,
                "referral.overdue",
                "incident",
                incident.reference,
                {"agency": clock.agency, "stage": stage, "told": [p.id for p in people]},
            )
            fresh = await uow.incidents.get(school_id, incident.id)
            assert fresh is not None  # read in this unit of work, above
            for person in people:
                await uow.notify.to_person(
                    school_id,
                    person.id,
                    about=incident.reference,
                    text=f"{incident.reference} needed a referral to {short} by {due} and none is recorded. Please "
                    "make sure it is made now, or that the case records why not.",
                    card=await self._incidents.case_card(school, fresh, person, uow=uow),
                    dedupe_key=f"{_key(clock, f'missed:{stage}')}:{person.id}",
                )
            if stage + 1 < len(rule.missed):
                await uow.work.schedule(
                    school_id,
                    MISSED_KIND,
                    max(missed_at(rule, clock.due_at, stage + 1), self._clock.now()),
                    {"clock_id": clock.id, "stage": stage + 1},
                    dedupe_key=_key(clock, f"missed:{stage + 1}"),
                )

    async def _running(
        self, uow: Any, school_id: str, clock_id: int
    ) -> tuple[RequiredReferral | None, Incident | None]:
        clock = await uow.referrals.clock(school_id, clock_id)
        if clock is None or not clock.is_open:
            return None, None  # met or explained since: nothing to chase
        incident = await uow.incidents.get(school_id, clock.incident_id)
        if incident is None or not incident.is_open:
            return None, None
        return clock, incident

    async def _case_managers(self, incident: Incident) -> list[Person]:
        seen: dict[str, Person] = {}
        for role in incident.case_roles:
            for person in await self._directory.people_with_role(incident.school_id, Role(role)):
                if may_act_on_case(person, incident):
                    seen.setdefault(person.id, person)
        return list(seen.values())

    async def _stage_people(self, incident: Incident, roles: list[str]) -> list[Person]:
        seen: dict[str, Person] = {}
        for role in roles:
            people = (
                await self._case_managers(incident)
                if role == CASE_MANAGERS
                else await self._holders(incident, Role(role))
            )
            if not people and role != CASE_MANAGERS and Role(role) in STAND_INS:  # no Chair: the Vice-Chair
                people = await self._holders(incident, STAND_INS[Role(role)])
            for person in people:
                seen.setdefault(person.id, person)
        return list(seen.values())

    async def _holders(self, incident: Incident, role: Role) -> list[Person]:
        return [
            p for p in await self._directory.people_with_role(incident.school_id, role) if not is_excluded(p, incident)
        ]

    # --- recording -------------------------------------------------------------------------------------------

    async def record(
        self,
        uow: UnitOfWork,
        actor: Actor,
        incident: Incident,
        agency: str,
        made_at: dt.datetime | None,
        reference: str | None,
    ) -> Referral:
        """Record a referral that was made: it meets that agency's clock, and goes on the chronology.

        The same referral recorded twice (a double click) is kept once."""
        if self._referrals.agency(agency) is None:
            raise ValueError(f"unknown agency {agency!r}")
        made_at = made_at or self._clock.now()
        for earlier in await uow.referrals.made(incident.school_id, incident.id):
            if (earlier.agency, earlier.made_at, earlier.their_reference) == (agency, made_at, reference):
                return earlier
        referral = await uow.referrals.add(
            incident.school_id, incident.id, agency, made_at, actor.person.id, actor.person.name, reference
        )
        met = False
        for clock in await uow.referrals.clocks(incident.school_id, incident.id):
            if clock.agency == agency and clock.is_open:
                met = await uow.referrals.settle(incident.school_id, clock.id, ClockStatus.MET)
                await self._stop(uow, clock)
        await uow.incidents.append_event(
            incident.school_id,
            incident.id,
            actor.person.id,
            actor.person.name,
            "referral_made",
            f"{self._short(agency)}\n{reference or ''}".rstrip(),
            occurred_at=made_at,
        )
        await uow.audit.record(
            incident.school_id,
            actor.person.id,
            "referral.recorded",
            "incident",
            incident.reference,
            {"agency": agency, "met_required": met},
        )
        return referral

    async def act_outcome(self, actor: Actor, data: dict[str, Any]) -> CardReply:
        """The case card's "Record an outcome" form: what the agency decided about a referral made."""

        async def change(uow: Any, actor: Actor, incident: Incident, data: dict[str, Any]) -> str | None:
            handle, outcome = data.get("referral_handle"), data.get("referral_outcome")
            outcome = outcome.strip() if isinstance(outcome, str) else ""
            if not outcome:
                return "Please write what the agency decided."
            if len(outcome) > MAX_OUTCOME_CHARS:
                return f"Please keep the outcome to {MAX_OUTCOME_CHARS} characters; the chronology can hold more."
            referral = (
                await uow.referrals.set_outcome(incident.school_id, incident.id, handle, outcome)
                if isinstance(handle, str) and handle
                else None
            )
            if referral is None:
                return "Please choose the referral from the list."
            await uow.incidents.append_event(
                incident.school_id,
                incident.id,
                actor.person.id,
                actor.person.name,
                "referral_outcome",
                f"{self._short(referral.agency)}\n{outcome}",
            )
            await uow.audit.record(
                incident.school_id,
                actor.person.id,
                "referral.outcome",
                "incident",
                incident.reference,
                {"agency": referral.agency},
            )
            return None

        return await self._incidents.act_on_case(actor, data, OUTCOME_VERB, change, check_version=False)

    async def act_record(self, actor: Actor, data: dict[str, Any]) -> CardReply:
        """The case card's "Record a referral" form."""

        async def change(uow: Any, actor: Actor, incident: Incident, data: dict[str, Any]) -> str | None:
            parsed, notice = check_referral(self._referrals, data, actor.school.tz, self._clock.now())
            if parsed is not None:
                await self.record(uow, actor, incident, parsed.agency, parsed.made_at, parsed.their_reference)
            return notice

        # No version check: a referral adds to the case, and recording it twice keeps one (record() is idempotent).
        return await self._incidents.act_on_case(actor, data, RECORD_VERB, change, check_version=False)

    # --- closing ---------------------------------------------------------------------------------------------

    async def close_guard(self, uow: Any, incident: Incident, data: dict[str, Any], actor: Actor) -> str | None:
        """A required referral still open stops the close, unless the Close form says why it was not made; that
        reason is kept on the chronology and the clock stops."""
        waiting = [c for c in await uow.referrals.clocks(incident.school_id, incident.id) if c.is_open]
        if not waiting:
            return None
        reason = data.get(REASON_INPUT)
        reason = reason.strip()[:MAX_ANSWER_CHARS] if isinstance(reason, str) else ""
        names = _and([self._short(c.agency) for c in waiting])
        if not reason:
            return (
                f"This case needs a referral to {names} before it can close. Record the referral under "
                "Referrals, or say in the Close form why it was not made."
            )
        for clock in waiting:
            if await uow.referrals.settle(incident.school_id, clock.id, ClockStatus.WAIVED, reason):
                await self._stop(uow, clock)
                await uow.incidents.append_event(
                    incident.school_id,
                    incident.id,
                    actor.person.id,
                    actor.person.name,
                    "referral_not_made",
                    f"{self._short(clock.agency)}\n{reason}",
                )
                await uow.audit.record(
                    incident.school_id,
                    actor.person.id,
                    "referral.not_made",
                    "incident",
                    incident.reference,
                    {"agency": clock.agency},
                )
        return None

    # --- the case card ---------------------------------------------------------------------------------------

    async def card_part(self, uow: Any, school: SchoolConfig, incident: Incident, viewer: Person) -> CasePart | None:
        if not may_view_case(viewer, incident):
            return None
        clocks = await uow.referrals.clocks(incident.school_id, incident.id)
        rules = {r.agency: r for r in self.rules_for(incident)}
        # Running clocks, and the reasons people gave for not referring; met ones show as referrals made.
        lines = [
            ClockLine(
                c, self._short(c.agency), self._at_once(c.agency), rules[c.agency].why if c.agency in rules else ""
            )
            for c in clocks
            if c.is_open or c.waived_reason
        ]
        made = [MadeLine(r, self._label(r.agency)) for r in await uow.referrals.made(incident.school_id, incident.id)]
        open_rules = [rules[c.agency] for c in clocks if c.is_open and c.agency in rules]
        prompt = None
        if len(open_rules) == 1:
            prompt = open_rules[0].not_made_prompt
        elif open_rules:
            prompt = f"If the referrals to {_and([self._short(r.agency) for r in open_rules])} were not made, why not?"
        return referral_part(
            ReferralView(
                token=incident.token,
                version=incident.version,
                case_open=incident.is_open,
                can_act=may_act_on_case(viewer, incident),
                now=self._clock.now(),
                timezone=school.tz,
                agencies=[Option(a.key, a.label) for a in self._referrals.agencies],
                clocks=lines,
                made=made,
                not_made_prompt=prompt if incident.is_open else None,
            )
        )

    def _short(self, key: str) -> str:
        agency = self._referrals.agency(key)
        return agency.short if agency else key.replace("_", " ")

    def _at_once(self, key: str) -> bool:
        agency = self._referrals.agency(key)
        return bool(agency and agency.clock.at_once)

    def _label(self, key: str) -> str:
        agency = self._referrals.agency(key)
        return agency.label if agency else key.replace("_", " ")


def _case(incident: Incident) -> dict[str, Any]:
    return {
        "subject_kind": incident.subject_kind,
        "category": incident.category,
        "illegal": incident.illegal,
        "immediate_danger": incident.immediate_danger,
    }


def _key(clock: RequiredReferral, what: str) -> str:
    """One work item per clock run: a clock started again later has a new deadline, and so new keys."""
    return f"referral:{clock.school_id}:{clock.id}:{clock.due_at.astimezone(dt.UTC):%Y%m%dT%H%M}:{what}"


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + f" and {words[-1]}"
