"""Reporting and managing concerns: every change is one unit of work with its audit entry and notifications."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bot.actor import Actor, CardReply
from bot.cards.incident import (
    CasePart,
    CaseView,
    Labels,
    Option,
    build_case_card,
    build_case_notice_card,
    build_channel_alert_card,
    build_moved_card,
    build_my_reports_card,
    build_not_allowed_card,
)
from bot.case_record import CaseRecord, ChildRef, case_record
from bot.children import may_use_child_records, name_matches, query_words
from bot.chronology import parse_happened
from bot.config import AppConfig, SchoolConfig
from bot.delivery import Contact, Delivery, Watch, keep_watch, labelled
from bot.incidents import (
    MAX_ANSWER_CHARS,
    SUBJECT_KINDS,
    DuplicateReport,
    Incident,
    IncidentDraft,
    Status,
    VersionConflict,
    is_excluded,
    may_act_on_case,
    may_correct_routing,
    may_see_own_report,
    may_view_case,
    severity_for,
)
from bot.people import ROLE_LABELS, Person, Role
from bot.policy import Policy
from bot.protocols import Clock, Directory, ReadAudit, UnitOfWork, UnitOfWorkFactory
from bot.routing import STAND_INS, RouteInput, RoutingPlan, route, with_stand_ins

SLA_KIND = "incident.sla"
REROUTE_KIND = "incident.reroute"
CHANNEL_LABELS = {"dsl": "the safeguarding channel", "technicians": "the IT channel", "slt": "the SLT channel"}
_TEAM_NAMES = {
    (Role.HEADTEACHER,): "the Headteacher",
    (Role.CHAIR_OF_GOVERNORS,): "the Chair of Governors",
    (Role.VICE_CHAIR_OF_GOVERNORS,): "the Vice-Chair of Governors",
    (Role.TECHNICIAN, Role.ONLINE_SAFETY_LEAD): "the IT team and the online-safety lead",
    (Role.DPO, Role.ONLINE_SAFETY_LEAD): "the Data Protection Officer and the online-safety lead",
}
_SLA_ORDER = (
    Role.DSL,
    Role.DEPUTY_DSL,
    Role.HEADTEACHER,
    Role.CHAIR_OF_GOVERNORS,
    Role.VICE_CHAIR_OF_GOVERNORS,
    Role.ONLINE_SAFETY_LEAD,
)
CONFLICT_NOTICE = "Someone else updated this case a moment ago. This is the latest version: please check it first."
CLOSED_NOTICE = "This case is closed. Reopen it first, giving a reason, to record anything more."
MAX_REFRESH_IDS = 60


@dataclass
class ReportInput:
    """The reporter's answers as the service takes them: bot.report.to_input builds it from the report's schema."""

    subject_kind: str
    category: str
    immediate_danger: bool
    location: str | None = None
    occurred: str | None = None
    subjects: str | None = None
    narrative: str | None = None
    evidence: str | None = None
    actions_taken: str | None = None
    subject_person_id: str | None = None  # the member of staff it is about, picked from the directory


class ActionStopped(Exception):  # noqa: N818 - an outcome shown on the card, not a fault
    """A check stopped a change part-way: the unit of work rolls back and the card says why."""

    def __init__(self, notice: str) -> None:
        super().__init__(notice)
        self.notice = notice


class IncidentService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        directory: Directory,
        policy: Policy,
        config: AppConfig,
        clock: Clock,
        *,
        reads: UnitOfWorkFactory,  # units that only read (a snapshot), for viewing a case
        read_audit: ReadAudit,  # where those views are audited, each committed before the card is shown
    ) -> None:
        self._uow = uow
        self._reads = reads
        self._read_audit = read_audit
        self._directory = directory
        self._policy = policy
        self._config = config
        self._clock = clock
        # async (uow, school_id, incident_id) -> (children, staff member name): set by the child-records feature.
        self.linked: Callable[[Any, str, int], Awaitable[tuple[tuple[ChildRef, ...], str | None]]] | None = None
        # Other features' sections of the case card: async (uow, school, incident, viewer) -> CasePart | None.
        self.card_parts: list[Callable[[Any, SchoolConfig, Incident, Person], Awaitable[CasePart | None]]] = []
        # Checks before a case may close: async (uow, incident, data, actor) -> a notice that stops it, or None.
        self.close_guards: list[Callable[[Any, Incident, dict[str, Any], Actor], Awaitable[str | None]]] = []
        # After a case is created or re-routed, in its transaction: async (uow, incident) -> None (referral clocks).
        self.on_routed: list[Callable[[Any, Incident], Awaitable[None]]] = []

    # --- reporting -------------------------------------------------------------------------------------------

    def plan_for(self, subject_kind: str, category_key: str, immediate_danger: bool) -> RoutingPlan:
        category = self._policy.category(category_key)
        return route(RouteInput(subject_kind, category.routing, category.illegal, immediate_danger))

    async def raise_early_alert(self, actor: Actor, report: ReportInput, *, key: str | None = None) -> Incident:
        """Someone is in danger now: alert at once, before the remaining questions are answered.

        `key` was fixed in the conversation when the question was asked: the same answer again (a double click, or
        after a crash before the conversation was saved) returns the same case and raises no second alert.
        """
        return await self._create_once(actor, report, complete=False, key=key)

    async def submit(
        self,
        actor: Actor,
        report: ReportInput,
        early_incident_id: int | None = None,
        *,
        key: str | None = None,
        alert_key: str | None = None,
    ) -> Incident:
        """Commit the report (or complete the early alert) before the reporter is told anything.

        `key` was fixed in the conversation when the summary was shown: Submit pressed again returns the same case
        and tells nobody a second time. An early alert's details are filled in once, whoever gets there first.
        `alert_key` finds an early alert the conversation lost in a crash, so its details complete that case.
        """
        if early_incident_id is None and alert_key:
            async with self._uow() as uow:
                raised = await uow.incidents.by_key(actor.school_id, alert_key)
            early_incident_id = raised.id if raised is not None else None
        if early_incident_id is None:
            return await self._create_once(actor, report, complete=True, key=key)
        draft = await self._draft(actor, report)
        async with self._uow() as uow:
            completed = await uow.incidents.complete_details(actor.school_id, early_incident_id, draft)
            incident = await _reload(uow, actor.school_id, early_incident_id)
            if not completed:
                return incident  # the details were added (and sent) by an earlier press of Submit
            for hook in self.on_routed:  # the answers may have changed its type or who it is about
                await hook(uow, incident)
            await uow.incidents.append_event(
                actor.school_id,
                incident.id,
                actor.person.id,
                actor.person.name,
                "updated",
                "The reporter added the remaining details.",
            )
            await uow.audit.record(
                actor.school_id, actor.person.id, "incident.completed", "incident", incident.reference
            )
            plan = await self._with_stand_ins(
                actor.school_id, self.plan_for(incident.subject_kind, incident.category, incident.immediate_danger)
            )
            for person in await self._people(actor.school, plan.urgent_roles + plan.alert_roles, incident):
                await uow.notify.to_person(
                    actor.school_id,
                    person.id,
                    text=f"Details added to {incident.reference}.",
                    card=await self._case_card(actor.school, incident, person, uow=uow),
                    about=incident.reference,
                )
        return incident

    async def _with_stand_ins(self, school_id: str, plan: RoutingPlan) -> RoutingPlan:
        """The plan for the people this school has: a role nobody holds hands its cases to its stand-in."""
        held = frozenset(
            [
                role
                for role in {*STAND_INS, *STAND_INS.values()}
                if await self._directory.people_with_role(school_id, role)
            ]
        )
        return with_stand_ins(plan, held)

    async def _draft(self, actor: Actor, report: ReportInput) -> IncidentDraft:
        category = self._policy.category(report.category)
        plan = await self._with_stand_ins(
            actor.school_id, self.plan_for(report.subject_kind, report.category, report.immediate_danger)
        )
        excluded = [
            p.id for role in plan.never_roles for p in await self._directory.people_with_role(actor.school_id, role)
        ]
        # The person it is about is excluded by who they are, whatever roles they hold (a deputy DSL included).
        if report.subject_person_id and report.subject_person_id not in excluded:
            excluded.append(report.subject_person_id)
        viewers = [
            p.id for p in await self._people(actor.school, plan.urgent_roles + plan.alert_roles) if p.id not in excluded
        ]
        return IncidentDraft(
            school_id=actor.school_id,
            reporter_id=actor.person.id,
            reporter_name=actor.person.name,
            reported_at=self._clock.now(),
            subject_kind=report.subject_kind,
            category=category.key,
            category_group=category.group,
            illegal=category.illegal,
            urgent=category.urgent or report.immediate_danger,
            immediate_danger=report.immediate_danger,
            severity=severity_for(
                illegal=category.illegal,
                immediate_danger=report.immediate_danger,
                urgent=category.urgent,
                category=category.key,
            ),
            location=report.location,
            occurred=_clip(report.occurred),
            subjects=_clip(report.subjects),
            narrative=_clip(report.narrative),
            evidence=_clip(report.evidence),
            actions_taken=_clip(report.actions_taken),
            case_roles=tuple(r.value for r in plan.case_roles),
            viewer_ids=tuple(viewers),
            excluded_ids=tuple(excluded),
        )

    async def _create_once(self, actor: Actor, report: ReportInput, *, complete: bool, key: str | None) -> Incident:
        try:
            return await self._create(actor, report, complete=complete, key=key)
        except DuplicateReport:
            # Another transaction created it after ours looked for it; ours rolled back, so read theirs afresh.
            async with self._uow() as uow:
                incident = await uow.incidents.by_key(actor.school_id, key) if key else None
            if incident is None:
                raise
            return incident

    async def _create(self, actor: Actor, report: ReportInput, *, complete: bool, key: str | None = None) -> Incident:
        draft = await self._draft(actor, report)
        plan = self.plan_for(report.subject_kind, report.category, report.immediate_danger)
        school = actor.school
        async with self._uow() as uow:
            earlier = await uow.incidents.by_key(school.id, key) if key else None
            if earlier is not None:
                return earlier  # saved and routed the first time: no second case, alert or SLA clock
            reference = await uow.incidents.next_reference(
                school.id, school.reference_prefix, draft.reported_at.astimezone(school.tz).year
            )
            incident = await uow.incidents.add(draft, reference=reference, complete=complete, key=key)
            await uow.incidents.append_event(
                school.id,
                incident.id,
                actor.person.id,
                actor.person.name,
                "reported",
                "Immediate danger reported." if report.immediate_danger else None,
            )
            await uow.audit.record(
                school.id,
                actor.person.id,
                "incident.reported",
                "incident",
                reference,
                {"category": draft.category, "severity": draft.severity},
            )
            named = (
                await self._directory.person(school.id, report.subject_person_id) if report.subject_person_id else None
            )
            if named is not None:  # the reporter named them: the case shows who, and exclusion is by person
                await uow.children.link_staff(school.id, incident.id, named.id, named.name, actor.person.id)
            await self._notify_new(uow, school, incident, plan)
            minutes = school.sla_minutes.urgent if incident.urgent else school.sla_minutes.normal
            await uow.work.schedule(
                school.id,
                SLA_KIND,
                draft.reported_at + dt.timedelta(minutes=minutes),
                {"incident_id": incident.id, "stage": 0},
                dedupe_key=f"incident:{school.id}:{incident.id}:sla:0",
            )
            for hook in self.on_routed:
                await hook(uow, incident)
            return await _reload(uow, school.id, incident.id)

    async def _notify_new(self, uow: Any, school: SchoolConfig, incident: Incident, plan: RoutingPlan) -> None:
        """Queue every alert as one tracked delivery group, and the promise to the reporter that goes with it."""
        plan = await self._with_stand_ins(school.id, plan)
        labels = self.labels(incident)
        team_ids = await self._refresh_ids(school, incident)
        group = f"incident:{school.id}:{incident.id}:raised"
        # Who hears about alerts that never arrive: the case team, and the online-safety lead where they keep this
        # case's log (never for an allegation, where even the case's existence is confidential).
        lead = (Role.ONLINE_SAFETY_LEAD,) if Role.ONLINE_SAFETY_LEAD in plan.summary_roles + plan.case_roles else ()
        watchers = plan.case_roles + tuple(r for r in lead if r not in plan.case_roles)
        team_roles = tuple(r.value for r in watchers)
        urgent = await self._people(school, plan.urgent_roles, incident)
        alerted = urgent + [
            p for p in await self._people(school, plan.alert_roles, incident) if p.id not in {u.id for u in urgent}
        ]
        direct = {p.id for p in alerted}
        case_team = await self._people(school, plan.case_roles, incident)
        escalation = await self._people(school, tuple(r for stage in plan.sla_roles for r in stage), incident)

        def contacts(people: list[Person], roles: tuple[Role, ...], skip: set[str]) -> tuple[Contact, ...]:
            return tuple(labelled(p, _role_label(p, roles)) for p in people if p.id not in skip)

        def delivery(label: str, first: tuple[Contact, ...], case: bool = True) -> Delivery:
            fallback = (first, contacts(escalation, _SLA_ORDER, direct | {c.id for c in first}))
            return Delivery(
                group,
                label,
                incident.reference,
                case_team=case,
                team_roles=team_roles,
                fallbacks=tuple(stage for stage in fallback if stage) if case else (),
                reroute_kind=REROUTE_KIND,
            )

        for purpose in plan.channel_purposes:
            await uow.notify.to_channel(
                school.id,
                purpose,
                about=incident.reference,
                card=build_channel_alert_card(incident, labels, self._clock.now(), school.tz, team_ids),
                delivery=delivery(
                    CHANNEL_LABELS.get(purpose, "the team channel"), contacts(case_team, plan.case_roles, direct)
                ),
            )
        for person in alerted:
            roles = plan.urgent_roles if person in urgent else plan.alert_roles
            role = next(r for r in roles if person.has(r))
            holders = await self._people(school, (role,), incident)
            text = (
                f"Urgent online-safety concern {incident.reference}. Please act now."
                if person in urgent
                else f"New online-safety concern {incident.reference} for you."
            )
            await uow.notify.to_person(
                school.id,
                person.id,
                text=text,
                about=incident.reference,
                card=await self._case_card(school, incident, person, uow=uow),
                delivery=delivery(labelled(person, ROLE_LABELS[role]).label, contacts(holders, (role,), direct)),
            )
        notice = build_case_notice_card(
            incident,
            labels,
            self._clock.now(),
            school.tz,
            "For the incident log. The safeguarding team is handling it.",
        )
        for person in await self._people(school, plan.summary_roles, incident):
            if person.id not in direct and not may_view_case(person, incident):
                await uow.notify.to_person(
                    school.id,
                    person.id,
                    card=notice,
                    delivery=delivery(labelled(person, _role_label(person, plan.summary_roles)).label, (), case=False),
                )
        told_if_lost = await self._people(school, watchers, incident)
        seconds = school.delivery.urgent_seconds if incident.urgent else school.delivery.normal_seconds
        await keep_watch(
            uow,
            Watch(
                school_id=school.id,
                group=group,
                about=incident.reference,
                what=f"Your report {incident.reference}",
                team=_TEAM_NAMES.get(plan.case_roles, "the safeguarding team"),
                owner_id=incident.reporter_id,
                in_person=tuple(c.label for c in contacts(case_team, plan.case_roles, set())),
                phone=school.safeguarding_phone,
                notify=tuple(
                    labelled(p, _role_label(p, watchers)) for p in told_if_lost if p.id != incident.reporter_id
                ),
                team_roles=team_roles,
                record_type="incident",
                record_id=incident.reference,
            ),
            self._clock.now() + dt.timedelta(seconds=seconds),
        )

    async def rerouted(self, school_id: str, payload: dict[str, Any]) -> None:
        """An alert could not reach its person and went to the next people in line: they may now see the case."""
        async with self._uow() as uow:
            incident = await uow.incidents.by_reference(school_id, payload["about"])
            if incident is None:
                return
            new_ids = [
                c["id"]
                for c in payload["to"]
                if c["id"] not in incident.viewer_ids and c["id"] not in incident.excluded_ids
            ]
            # A case manager who cannot be reached is stood in for (the Vice-Chair for the Chair): the stand-in
            # manages the case, not only reads it.
            stand_ins = {STAND_INS[Role(r)] for r in incident.case_roles if Role(r) in STAND_INS}
            reached = [await self._directory.person(school_id, c["id"]) for c in payload["to"]]
            managing = [
                r.value
                for r in stand_ins
                if r.value not in incident.case_roles and any(p is not None and p.has(r) for p in reached)
            ]
            if new_ids or managing:
                await uow.incidents.change(
                    school_id,
                    incident.id,
                    incident.version,
                    viewer_ids=list(incident.viewer_ids) + new_ids,
                    case_roles=list(incident.case_roles) + managing,
                )
            to = ", ".join(c["label"] for c in payload["to"])
            await uow.incidents.append_event(
                school_id,
                incident.id,
                None,
                None,
                "rerouted",
                f"The alert to {payload['failed']} could not be delivered, so it was sent to {to} instead.",
            )
            await uow.audit.record(
                school_id,
                None,
                "incident.rerouted",
                "incident",
                incident.reference,
                {"failed": payload["failed"], "reason": payload.get("reason"), "to": [c["id"] for c in payload["to"]]},
            )

    # --- for the report dialog -------------------------------------------------------------------------------

    async def people_named(self, actor: Actor, query: str, limit: int = 8) -> list[Person]:
        """Adults in the school's directory whose name matches what the reporter typed (never the reporter)."""
        words = query_words(query)
        return [
            p
            for p in await self._directory.everyone(actor.school_id)
            if p.id != actor.person.id and p.roles and name_matches(words, p.name)
        ][:limit]

    async def person(self, actor: Actor, person_id: str) -> Person | None:
        return await self._directory.person(actor.school_id, person_id)

    async def handled_by(self, actor: Actor, subject_kind: str, category_key: str, immediate_danger: bool) -> str:
        """Who a report like this goes to, as the reporter reads it: the stand-in when the role is empty."""
        plan = await self._with_stand_ins(actor.school_id, self.plan_for(subject_kind, category_key, immediate_danger))
        return _TEAM_NAMES.get(plan.case_roles, "the safeguarding team")

    # --- reading ---------------------------------------------------------------------------------------------

    def labels(self, incident: Incident) -> Labels:
        return Labels(self._policy.category(incident.category).label, self._policy.group(incident.category_group).label)

    async def my_reports(self, actor: Actor) -> dict[str, Any]:
        """The reporter's own reports; never one that turned out to be about them."""
        async with self._uow() as uow:
            reports = await uow.incidents.reported_by(actor.school_id, actor.person.id)
        labels = {c.key: c.label for c in self._policy.categories}
        return build_my_reports_card(
            [r for r in reports if may_see_own_report(actor.person, r)], labels, actor.school.tz
        )

    async def _find(
        self, uow: UnitOfWork, actor: Actor, *, token: Any = None, reference: str | None = None
    ) -> Incident | None:
        """The case a card or a typed reference points at, only ever within the actor's own school."""
        if reference is not None:
            return await uow.incidents.by_reference(actor.school_id, reference)
        if isinstance(token, str) and token:
            return await uow.incidents.by_token(actor.school_id, token)
        return None  # a card from before tokens (an integer id), or a forged one: the same refusal

    async def _refuse(
        self,
        uow: Any,
        actor: Actor,
        path: str,
        *,
        token: Any = None,
        reference: str | None = None,
        incident: Incident | None = None,
    ) -> dict[str, Any]:
        """Audit who tried what, and answer with the refusal that is the same whether or not the case exists."""
        await uow.audit.record(actor.school_id, actor.person.id, *_refusal(path, token, reference, incident))
        return build_not_allowed_card()

    async def view(
        self, actor: Actor, *, token: Any = None, reference: str | None = None, path: str = "case"
    ) -> dict[str, Any]:
        """The case card for someone allowed to see it, else the one refusal; either is audited, and the entry is
        committed before the card is returned. Read from a snapshot and audited on its own (storage.read_audit), so
        a channel's worth of card refreshes at once neither queue for the writer nor for the audit chain one by one."""
        async with self._reads() as uow:
            incident = await self._find(uow, actor, token=token, reference=reference)
            if incident is None or not may_view_case(actor.person, incident):
                card, entry = build_not_allowed_card(), _refusal(path, token, reference, incident)
            else:
                card = await self._case_card(actor.school, incident, actor.person, uow=uow)
                entry = ("incident.viewed", "incident", incident.reference, {})
        await self._read_audit.record(actor.school_id, actor.person.id, *entry)
        return card

    async def record_for(
        self, actor: Actor, *, token: Any = None, reference: str | None = None, path: str = "tab"
    ) -> CaseRecord | None:
        """The case as a plain record (the tab, exports) for someone allowed to see it, audited; else None after
        the same audited refusal every other path gives."""
        async with self._reads() as uow:  # a snapshot, audited on its own as view() is
            incident = await self._find(uow, actor, token=token, reference=reference)
            if incident is None or not may_view_case(actor.person, incident):
                await self._read_audit.record(
                    actor.school_id, actor.person.id, *_refusal(path, token, reference, incident)
                )
                return None
            children, staff = await self._links(uow, incident)
        await self._read_audit.record(
            actor.school_id, actor.person.id, "incident.viewed", "incident", incident.reference, {"path": path}
        )
        labels = self.labels(incident)
        return case_record(
            incident, category=labels.category, group=labels.group, children=children, staff_member=staff
        )

    async def _links(self, uow: Any, incident: Incident) -> tuple[tuple[ChildRef, ...], str | None]:
        """The children (and member of staff) linked to a case, when child records are installed."""
        if self.linked is None:
            return (), None
        return await self.linked(uow, incident.school_id, incident.id)

    async def minimal_or_full(self, actor: Actor, token: Any) -> dict[str, Any]:
        """What a card refresh shows: the case card for its team; anyone else (the channel's other members too)
        gets the refusal, so a forged refresh learns nothing, not even the reference or who is on the team."""
        return await self.view(actor, token=token, path="incident.view")

    async def _case_card(
        self, school: SchoolConfig, incident: Incident, viewer: Person, notice: str | None = None, uow: Any = None
    ) -> dict[str, Any]:
        """The case card for one viewer; with `uow`, it also shows the children linked to the case."""
        plan = self.plan_for(incident.subject_kind, incident.category, incident.immediate_danger)
        children, staff = await self._links(uow, incident) if uow is not None else ((), None)
        parts = [
            part
            for make in self.card_parts
            if uow is not None and (part := await make(uow, school, incident, viewer)) is not None
        ]
        return build_case_card(
            CaseView(
                incident=incident,
                labels=self.labels(incident),
                now=self._clock.now(),
                timezone=school.tz,
                can_act=may_act_on_case(viewer, incident),
                suggested_actions=[
                    Option(k, self._policy.action_label(k))
                    for k in self._policy.suggested_actions(incident.category, incident.subject_kind)
                ],
                outcomes=[Option(o.key, o.label) for o in self._policy.outcomes_for(incident.subject_kind)],
                escalation_targets=self._targets(incident, viewer),
                refresh_user_ids=await self._refresh_ids(school, incident),
                notice=notice,
                lado_prompt=plan.lado_prompt,
                children=children,
                staff_member=staff,
                categories=self._category_options(),
                can_move=may_correct_routing(viewer, incident),
                can_link=may_use_child_records(viewer),
                parts=parts,
            )
        )

    def _category_options(self) -> list[Option]:
        return [Option(c.key, c.label) for c in self._policy.categories]

    def _targets(self, incident: Incident, viewer: Person) -> list[Option]:
        options = []
        for target in self._policy.escalation_targets:
            if target.role == Role.HEADTEACHER and incident.subject_kind == "headteacher":
                continue
            if target.role == Role.CHAIR_OF_GOVERNORS and incident.subject_kind != "headteacher":
                continue
            if target.role is not None and viewer.has(target.role):
                continue
            options.append(Option(target.key, target.label))
        return options

    async def _people(
        self, school: SchoolConfig, roles: tuple[Role, ...], incident: Incident | None = None
    ) -> list[Person]:
        seen: dict[str, Person] = {}
        for role in roles:
            for person in await self._directory.people_with_role(school.id, role):
                if incident is not None and (
                    person.id in incident.excluded_ids
                    or (incident.subject_kind == "headteacher" and person.has(Role.HEADTEACHER))
                ):
                    continue
                seen.setdefault(person.id, person)
        return list(seen.values())

    async def _refresh_ids(self, school: SchoolConfig, incident: Incident) -> list[str]:
        team = await self._people(school, tuple(Role(r) for r in incident.case_roles), incident)
        ids = [p.id for p in team] + [i for i in incident.viewer_ids if i not in {p.id for p in team}]
        return ids[:MAX_REFRESH_IDS]

    # --- acting on a case ------------------------------------------------------------------------------------

    async def act(self, actor: Actor, verb: str, data: dict[str, Any]) -> CardReply:
        """Authorise from the directory, check the version, apply the change, answer with the fresh card."""
        token = data.get("token")
        allowed = may_correct_routing if verb in ("incident.move", "incident.recategorise") else may_act_on_case
        try:
            async with self._uow() as uow:
                incident = await self._find(uow, actor, token=token)
                if incident is None or not allowed(actor.person, incident):
                    return CardReply(card=await self._refuse(uow, actor, verb, token=token, incident=incident))
                notice: str | None
                if _int(data.get("version")) != incident.version:
                    notice = CONFLICT_NOTICE
                else:
                    notice = await self._apply(uow, actor, incident, verb, data)
                fresh = await _reload(uow, actor.school_id, incident.id)
                if not may_view_case(actor.person, fresh):  # they moved it away from themselves: nothing to show
                    return CardReply(card=build_moved_card(fresh.reference, notice))
                return CardReply(card=await self._case_card(actor.school, fresh, actor.person, notice, uow=uow))
        except ActionStopped as stopped:
            # Nothing of the change was kept (the unit of work rolled back): show the case as it is, and why.
            assert incident is not None  # a change stops only once the case was found
            async with self._uow() as uow:
                fresh = await _reload(uow, actor.school_id, incident.id)
                return CardReply(card=await self._case_card(actor.school, fresh, actor.person, stopped.notice, uow=uow))

    async def act_on_case(
        self,
        actor: Actor,
        data: dict[str, Any],
        verb: str,
        change: Callable[[Any, Actor, Incident, dict[str, Any]], Awaitable[str | None]],
        *,
        check_version: bool = True,
        closed_ok: bool = False,
    ) -> CardReply:
        """The frame every other feature's case-card button shares: the case by its token in the actor's school,
        the one access rule (an audited refusal), the closed and version checks, the change (a notice for the
        card, or None), and the fresh case card, all in one unit of work."""
        token = data.get("token")
        async with self._uow() as uow:
            incident = await self._find(uow, actor, token=token)
            if incident is None or not may_act_on_case(actor.person, incident):
                return CardReply(card=await self._refuse(uow, actor, verb, token=token, incident=incident))
            notice: str | None
            if not incident.is_open and not closed_ok:
                notice = CLOSED_NOTICE
            elif check_version and _int(data.get("version")) != incident.version:
                notice = CONFLICT_NOTICE
            else:
                try:
                    notice = await change(uow, actor, incident, data)
                except VersionConflict:
                    notice = CONFLICT_NOTICE
            fresh = await _reload(uow, actor.school_id, incident.id)
            return CardReply(card=await self._case_card(actor.school, fresh, actor.person, notice, uow=uow))

    async def case_card(
        self, school: SchoolConfig, incident: Incident, viewer: Person, notice: str | None = None, uow: Any = None
    ) -> dict[str, Any]:
        """The one case card, for other features' messages about a case."""
        return await self._case_card(school, incident, viewer, notice, uow=uow)

    async def _apply(self, uow: Any, actor: Actor, incident: Incident, verb: str, data: dict[str, Any]) -> str | None:
        """Make one change; a short notice for the card when the input needs fixing or someone got there first."""
        handlers = {
            "incident.own": self._own,
            "incident.note": self._note,
            "incident.action": self._record_action,
            "incident.escalate": self._escalate,
            "incident.close": self._close,
            "incident.move": self._move,
            "incident.recategorise": self._recategorise,
            "incident.reopen": self._reopen,
        }
        if verb == "incident.reopen" and incident.is_open:
            return "This case is already open."
        if verb != "incident.reopen" and not incident.is_open:
            return CLOSED_NOTICE
        try:
            return await handlers[verb](uow, actor, incident, data)
        except VersionConflict:
            return CONFLICT_NOTICE

    def _progress(self, actor: Actor, incident: Incident) -> dict[str, Any]:
        """Acting on a new case acknowledges it; the first note or action moves it on."""
        values: dict[str, Any] = {}
        if incident.status in (Status.NEW, Status.ACKNOWLEDGED):
            values["status"] = Status.IN_PROGRESS.value
        if incident.acknowledged_at is None:
            values["acknowledged_at"] = self._clock.now()
        if incident.owner_id is None:
            values.update(owner_id=actor.person.id, owner_name=actor.person.name)
        return values

    async def _record(
        self,
        uow: Any,
        actor: Actor,
        incident: Incident,
        kind: str,
        detail: str | None,
        *,
        occurred_at: dt.datetime | None = None,
    ) -> None:
        await uow.incidents.append_event(
            actor.school_id, incident.id, actor.person.id, actor.person.name, kind, detail, occurred_at=occurred_at
        )
        await uow.audit.record(
            actor.school_id,
            actor.person.id,
            f"incident.{kind}",
            "incident",
            incident.reference,
            {"version": incident.version},
        )

    async def _stop_sla(self, uow: Any, incident: Incident) -> None:
        for stage in range(3):
            await uow.work.cancel(f"incident:{incident.school_id}:{incident.id}:sla:{stage}")

    async def _own(self, uow: Any, actor: Actor, incident: Incident, data: dict[str, Any]) -> str | None:
        if incident.owner_id == actor.person.id:
            return "You already own this case."
        status = Status.ACKNOWLEDGED.value if incident.status == Status.NEW else incident.status.value
        await uow.incidents.change(
            actor.school_id,
            incident.id,
            incident.version,
            status=status,
            owner_id=actor.person.id,
            owner_name=actor.person.name,
            acknowledged_at=incident.acknowledged_at or self._clock.now(),
        )
        await self._record(uow, actor, incident, "owned", None)
        await self._stop_sla(uow, incident)
        return None

    async def _note(self, uow: Any, actor: Actor, incident: Incident, data: dict[str, Any]) -> str | None:
        note = _clip(_text(data.get("note")))
        if not note:
            return "Please write a note before saving it."
        when, problem = self._happened(actor, data, "note")
        if problem:
            return problem
        await uow.incidents.change(actor.school_id, incident.id, incident.version, **self._progress(actor, incident))
        await self._record(uow, actor, incident, "note", note, occurred_at=when)
        await self._stop_sla(uow, incident)
        return None

    async def _record_action(self, uow: Any, actor: Actor, incident: Incident, data: dict[str, Any]) -> str | None:
        key = _text(data.get("action_key"))
        if key not in {a.key for a in self._policy.actions}:
            return "Please choose an action from the list."
        label = self._policy.action_label(key)
        note = _clip(_text(data.get("action_note")))
        when, problem = self._happened(actor, data, "action")
        if problem:
            return problem
        await uow.incidents.change(
            actor.school_id,
            incident.id,
            incident.version,
            recorded_actions=[*incident.recorded_actions, label],
            **self._progress(actor, incident),
        )
        await self._record(uow, actor, incident, "action", f"{label}: {note}" if note else label, occurred_at=when)
        await self._stop_sla(uow, incident)
        return None

    async def _escalate(self, uow: Any, actor: Actor, incident: Incident, data: dict[str, Any]) -> str | None:
        key, reason = _text(data.get("target")), _clip(_text(data.get("reason")))
        target = next((t for t in self._policy.escalation_targets if t.key == key), None)
        if target is None or key not in {o.key for o in self._targets(incident, actor.person)}:
            return "Please choose who to escalate to from the list."
        if not reason:
            return "Please give a reason for escalating."
        people = await self._people(actor.school, (target.role,), incident) if target.role else []
        viewers = list(incident.viewer_ids) + [p.id for p in people if p.id not in incident.viewer_ids]
        await uow.incidents.change(
            actor.school_id,
            incident.id,
            incident.version,
            status=Status.ESCALATED.value,
            viewer_ids=viewers,
            **{k: v for k, v in self._progress(actor, incident).items() if k != "status"},
        )
        await self._record(uow, actor, incident, "escalated", f"{target.label}: {reason}")
        await self._stop_sla(uow, incident)
        fresh = await uow.incidents.get(actor.school_id, incident.id)
        for person in people:
            await uow.notify.to_person(
                actor.school_id,
                person.id,
                # The reason was typed: it is shown as text on the case card, never echoed in a message.
                text=f"{actor.person.name} has escalated {incident.reference} to you. The reason is on the case card.",
                card=await self._case_card(actor.school, fresh, person, uow=uow),
                about=incident.reference,
            )
        if target.role is None:
            return f"Recorded. Contact the {target.label} now if you have not already; the case shows it was escalated."
        return None

    async def _close(self, uow: Any, actor: Actor, incident: Incident, data: dict[str, Any]) -> str | None:
        key, note = _text(data.get("outcome")), _clip(_text(data.get("close_note")))
        offered = {o.key: o.label for o in self._policy.outcomes_for(incident.subject_kind)}
        if key not in offered:
            return "Please choose an outcome before closing."
        if not note:
            return "Please add a closing note before closing the case."
        label = offered[key]
        # The change first, so a version conflict stops before any guard has written anything; a guard that stops
        # the close rolls back the whole unit, its own writes (a reason it recorded) too.
        await uow.incidents.change(
            actor.school_id,
            incident.id,
            incident.version,
            status=Status.CLOSED.value,
            closed_at=self._clock.now(),
            outcome=label,
            **{k: v for k, v in self._progress(actor, incident).items() if k != "status"},
        )
        for guard in self.close_guards:
            if (stop := await guard(uow, incident, data, actor)) is not None:
                raise ActionStopped(stop)
        await self._record(uow, actor, incident, "closed", f"{label}: {note}")
        await self._stop_sla(uow, incident)
        reporter = await self._directory.person(actor.school_id, incident.reporter_id)
        if reporter is None or not is_excluded(reporter, incident):  # a report about the reporter stays unspoken
            await uow.notify.to_person(
                actor.school_id,
                incident.reporter_id,
                text=f"Your report {incident.reference} has been closed by the people handling "
                "it. Thank you for raising it.",
            )
        return None

    def _happened(self, actor: Actor, data: dict[str, Any], prefix: str) -> tuple[dt.datetime | None, str | None]:
        return parse_happened(data.get(f"{prefix}_on"), data.get(f"{prefix}_time"), actor.school.tz, self._clock.now())

    async def _move(self, uow: Any, actor: Actor, incident: Incident, data: dict[str, Any]) -> str | None:
        subject, reason = _text(data.get("subject_kind")), _clip(_text(data.get("move_reason")))
        if subject not in SUBJECT_KINDS or subject == incident.subject_kind:
            return "Please choose who the concern is about now."
        if not reason:
            return "Please give a reason for the change: it goes on the chronology."
        before, after = SUBJECT_KINDS[incident.subject_kind], SUBJECT_KINDS[subject]
        return await self._reroute(
            uow,
            actor,
            incident,
            subject,
            incident.category,
            "moved",
            f"About: from {before} to {after}. Reason: {reason}",
        )

    async def _recategorise(self, uow: Any, actor: Actor, incident: Incident, data: dict[str, Any]) -> str | None:
        key, reason = _text(data.get("category")), _clip(_text(data.get("category_reason")))
        if key not in {c.key for c in self._policy.categories} or key == incident.category:
            return "Please choose the new type of concern from the list."
        if not reason:
            return "Please give a reason for the change: it goes on the chronology."
        before, after = self._policy.category(incident.category).label, self._policy.category(key).label
        return await self._reroute(
            uow,
            actor,
            incident,
            incident.subject_kind,
            key,
            "recategorised",
            f"From {before} to {after}. Reason: {reason}",
        )

    async def _reroute(
        self, uow: Any, actor: Actor, incident: Incident, subject_kind: str, category_key: str, kind: str, detail: str
    ) -> str | None:
        """Apply the routing rules afresh: new case managers, new exclusions, and everyone else revoked at once."""
        school = actor.school
        category = self._policy.category(category_key)
        old_plan = self.plan_for(incident.subject_kind, incident.category, incident.immediate_danger)
        plan = self.plan_for(subject_kind, category_key, incident.immediate_danger)
        excluded = sorted(
            {p.id for role in plan.never_roles for p in await self._directory.people_with_role(school.id, role)}
            | await self._named_exclusions(school.id, incident, old_plan)
        )
        same_team = plan.case_roles == old_plan.case_roles and not set(excluded) - set(incident.excluded_ids)
        fresh_viewers = [
            p.id for p in await self._people(school, plan.urgent_roles + plan.alert_roles) if p.id not in excluded
        ]
        kept = [i for i in incident.viewer_ids if i not in excluded] if same_team else []
        viewers = kept + [i for i in fresh_viewers if i not in kept]
        before = {p.id for p in await self._allowed(school, incident)}
        await uow.incidents.change(
            school.id,
            incident.id,
            incident.version,
            subject_kind=subject_kind,
            category=category.key,
            category_group=category.group,
            illegal=category.illegal,
            urgent=category.urgent or incident.immediate_danger,
            severity=severity_for(
                illegal=category.illegal,
                immediate_danger=incident.immediate_danger,
                urgent=category.urgent,
                category=category.key,
            ),
            case_roles=[r.value for r in plan.case_roles],
            viewer_ids=viewers,
            excluded_ids=excluded,
        )
        await uow.incidents.append_event(school.id, incident.id, actor.person.id, actor.person.name, kind, detail)
        moved = await uow.incidents.get(school.id, incident.id)
        for hook in self.on_routed:
            await hook(uow, moved)
        after = {p.id: p for p in await self._allowed(school, moved)}
        revoked, granted = sorted(before - set(after)), sorted(set(after) - before)
        await uow.audit.record(
            school.id,
            actor.person.id,
            f"incident.{kind}",
            "incident",
            incident.reference,
            {"version": incident.version, "revoked": revoked, "granted": granted},
        )
        await self._replace_posted(uow, school, moved, plan, set(after))
        for person_id in granted:
            await uow.notify.to_person(
                school.id,
                person_id,
                about=moved.reference,
                text=f"{actor.person.name} has passed {moved.reference} to you to handle. Its chronology shows why.",
                card=await self._case_card(school, moved, after[person_id], uow=uow),
            )
        if moved.status == Status.NEW:  # nobody has taken it on: the new case managers are chased like any other
            await uow.work.schedule(
                school.id,
                SLA_KIND,
                self._clock.now()
                + dt.timedelta(minutes=school.sla_minutes.urgent if moved.urgent else school.sla_minutes.normal),
                {"incident_id": moved.id, "stage": 0},
                dedupe_key=f"incident:{school.id}:{moved.id}:sla:0:v{moved.version}",
            )
        if actor.person.id not in after:
            return None  # the card they pressed becomes the "moved" card
        if not same_team:
            return "Moved. It is on its way to the new case managers now, and nobody else can see it."
        return None

    async def _named_exclusions(self, school_id: str, incident: Incident, plan: RoutingPlan) -> set[str]:
        """The people excluded from a case by who they are (named by the reporter or on the case), not by a role:
        a move or a change of type keeps them out."""
        by_role = {p.id for role in plan.never_roles for p in await self._directory.people_with_role(school_id, role)}
        return set(incident.excluded_ids) - by_role

    async def access_narrowed(self, uow: Any, school_id: str, incident_id: int) -> None:
        """Someone was removed from a case by another feature: their posted cards stop showing it at once."""
        school = self._config.school(school_id)
        assert school is not None  # the case's own school
        incident = await _reload(uow, school_id, incident_id)
        plan = self.plan_for(incident.subject_kind, incident.category, incident.immediate_danger)
        allowed = {p.id for p in await self._allowed(school, incident)}
        await self._replace_posted(uow, school, incident, plan, allowed)

    async def _allowed(self, school: SchoolConfig, incident: Incident) -> list[Person]:
        """Everyone the directory knows who may see this case now."""
        team = await self._people(school, tuple(Role(r) for r in incident.case_roles), incident)
        extra = [
            await self._directory.person(school.id, i) for i in incident.viewer_ids if i not in {p.id for p in team}
        ]
        return [p for p in team + [e for e in extra if e is not None] if may_view_case(p, incident)]

    async def _replace_posted(
        self, uow: Any, school: SchoolConfig, incident: Incident, plan: RoutingPlan, allowed: set[str]
    ) -> None:
        """Rewrite every card already posted about the case: people who lost access see that it moved (and no
        details), channel posts get the new refresh list, or the moved card where the channel no longer hears."""
        refresh = await self._refresh_ids(school, incident)
        await uow.deliveries.withdraw_unsent_about(school.id, incident.reference, allowed)
        for target, activity_id in await uow.deliveries.sent_about(school.id, incident.reference):
            key = f"incident:{school.id}:{incident.id}:replace:{incident.version}:{activity_id}"
            if target["kind"] == "channel":
                card = (
                    build_channel_alert_card(incident, self.labels(incident), self._clock.now(), school.tz, refresh)
                    if target["purpose"] in plan.channel_purposes
                    else build_moved_card(incident.reference, None)
                )
                await uow.notify.to_channel(
                    school.id,
                    target["purpose"],
                    card=card,
                    update_of=activity_id,
                    dedupe_key=key,
                    about=incident.reference,
                )
            elif target["id"] not in allowed:
                await uow.notify.to_person(
                    school.id,
                    target["id"],
                    card=build_moved_card(incident.reference, None),
                    update_of=activity_id,
                    dedupe_key=key,
                )

    async def _reopen(self, uow: Any, actor: Actor, incident: Incident, data: dict[str, Any]) -> str | None:
        reason = _clip(_text(data.get("reopen_reason")))
        if not reason:
            return "Please give a reason for reopening: it goes on the chronology."
        await uow.incidents.change(
            actor.school_id,
            incident.id,
            incident.version,
            status=Status.IN_PROGRESS.value,
            closed_at=None,
            outcome=None,
        )
        await self._record(uow, actor, incident, "reopened", reason)
        return None

    # --- SLA -------------------------------------------------------------------------------------------------

    async def sla_due(self, school_id: str, incident_id: int, stage: int) -> None:
        """Not acknowledged in time: re-alert the next people in line, then schedule the next stage."""
        school = self._config.school(school_id)
        assert school is not None  # the case's own school
        async with self._uow() as uow:
            incident = await uow.incidents.get(school_id, incident_id)
            if incident is None or incident.status != Status.NEW:
                return
            plan = self.plan_for(incident.subject_kind, incident.category, incident.immediate_danger)
            if stage >= len(plan.sla_roles):
                return
            minutes = school.sla_minutes.urgent if incident.urgent else school.sla_minutes.normal
            people = await self._people(school, plan.sla_roles[stage], incident)
            await uow.incidents.mark_sla_breached(school_id, incident_id)
            new_viewers = [p.id for p in people if p.id not in incident.viewer_ids]
            if new_viewers:
                await uow.incidents.change(
                    school_id, incident_id, incident.version, viewer_ids=list(incident.viewer_ids) + new_viewers
                )
            await uow.incidents.append_event(
                school_id,
                incident_id,
                None,
                None,
                "sla_alert",
                f"Not acknowledged within {minutes * (stage + 1)} minutes.",
            )
            await uow.audit.record(
                school_id,
                None,
                "incident.sla_alert",
                "incident",
                incident.reference,
                {"stage": stage, "told": [p.id for p in people]},
            )
            fresh = await _reload(uow, school_id, incident_id)
            for person in people:
                await uow.notify.to_person(
                    school_id,
                    person.id,
                    text=f"{incident.reference} has not been acknowledged after {minutes * (stage + 1)} minutes. "
                    "Please take ownership or make sure someone does.",
                    card=await self._case_card(school, fresh, person, uow=uow),
                    about=incident.reference,
                    dedupe_key=f"incident:{school_id}:{incident_id}:sla-alert:{stage}:{person.id}",
                    # Tracked, so an escalation that cannot reach its person shows in `undelivered`.
                    delivery=Delivery(
                        f"incident:{school_id}:{incident_id}:sla:{stage}",
                        labelled(person, _role_label(person, plan.sla_roles[stage])).label,
                        incident.reference,
                        case_team=False,
                        team_roles=tuple(r.value for r in plan.case_roles + plan.sla_roles[stage]),
                    ),
                )
            if stage + 1 < len(plan.sla_roles):
                await uow.work.schedule(
                    school_id,
                    SLA_KIND,
                    self._clock.now() + dt.timedelta(minutes=minutes),
                    {"incident_id": incident_id, "stage": stage + 1},
                    dedupe_key=f"incident:{school_id}:{incident_id}:sla:{stage + 1}",
                )


async def _reload(uow: UnitOfWork, school_id: str, incident_id: int) -> Incident:
    """A case this unit of work has just read or written, so it is there."""
    incident = await uow.incidents.get(school_id, incident_id)
    assert incident is not None
    return incident


def _role_label(person: Person, roles: tuple[Role, ...]) -> str:
    """The role a person is reached in, as a reporter reads it: the first of `roles` they hold."""
    return ROLE_LABELS[next((r for r in roles if person.has(r)), Role.STAFF)]


def _clip(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value[:MAX_ANSWER_CHARS] if value else None


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _refusal(
    path: str, token: Any, reference: str | None, incident: Incident | None
) -> tuple[str, str, str | None, dict[str, Any]]:
    """The audit entry (action, record type, record id, detail) for a refused look at a case."""
    tried = reference if reference is not None else str(token)[:120]
    detail = {"path": path, "tried": tried, "found": incident is not None}
    return "incident.access_refused", "incident", incident.reference if incident else None, detail
