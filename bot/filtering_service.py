"""The filter change process: request, decide, apply, revert and log. Plain services over the unit of work."""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.actor import Actor, CardReply, Refused
from bot.cards import filtering as cards
from bot.cards.common import card, heading, text
from bot.config import SchoolConfig
from bot.delivery import Delivery, Watch, keep_watch, labelled
from bot.filtering import (
    KIND_LABELS,
    STATUS_LABELS,
    Draft,
    DuplicateRequest,
    FilterBackend,
    FilterBackendError,
    FilterChange,
    FilterRefused,
    FilterRequest,
    FilterRules,
    IncidentFiler,
    Kind,
    LogEntry,
    Site,
    Status,
    audience_text,
    can_view,
    check_can_apply,
    check_can_decide,
    domain_display,
    narrowest_scope,
    report_missed_content,
)
from bot.people import ROLE_LABELS, Person, Role
from bot.protocols import Clock, Directory, UnitOfWork, UnitOfWorkFactory
from bot.work import GiveUp, RetryLater, WorkItem

log = logging.getLogger(__name__)

APPLY_KIND = "filter.apply"
REVERT_KIND = "filter.revert"
APPLY_ATTEMPTS = 4  # then technicians and the online-safety lead are told
RECORD = "filter_request"
SYSTEM = "Filter (automatic)"
CSV_LIMIT = 200
CSV_MAX_CHARS = 20_000  # a Teams message holds about 28 KB; leave room for the text around the CSV


def retry_delay(attempts: int) -> dt.timedelta:
    """1, 2, 4, 8 ... minutes, capped at an hour: a reload that fails is usually fixed by a person, not by speed."""
    return dt.timedelta(minutes=min(60, 2 ** max(attempts - 1, 0)))


@dataclass(frozen=True)
class Outcome:
    message: str
    reference: str | None = None
    status: str | None = None


class FilterService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        directory: Directory,
        clock: Clock,
        *,
        school: Callable[[str], SchoolConfig | None],
        rules: Callable[[SchoolConfig], FilterRules],
        backend: Callable[[SchoolConfig], FilterBackend],
        filer: IncidentFiler | None = None,
    ) -> None:
        self._uow = uow
        self._directory = directory
        self._clock = clock
        self._school = school
        self._rules = rules
        self._backend = backend
        self._filer = filer

    # --- helpers ---------------------------------------------------------------------------------------------

    async def _log(
        self,
        uow: Any,
        school_id: str,
        action: str,
        who: Person | None,
        domain: str,
        reference: str | None,
        detail: str = "",
    ) -> None:
        entry = LogEntry(
            self._clock.now(), action, who.id if who else None, who.name if who else SYSTEM, domain, reference, detail
        )
        await uow.filtering.log(school_id, entry)
        await uow.audit.record(
            school_id,
            who.id if who else None,
            f"filter.{action}",
            RECORD,
            reference,
            {"domain": domain, **({"detail": detail[:200]} if detail else {})},
        )

    async def _people(self, school_id: str, *roles: Role, excluding: str | None = None) -> list[Person]:
        found: dict[str, Person] = {}
        for role in roles:
            for person in await self._directory.people_with_role(school_id, role):
                if person.id != excluding:
                    found.setdefault(person.id, person)
        return list(found.values())

    async def _tell_technicians(
        self,
        uow: Any,
        school: SchoolConfig,
        *,
        text_: str | None = None,
        card_: dict[str, Any] | None = None,
        key: str,
        also_lead: bool = False,
    ) -> None:
        """1:1 to each technician (and the online-safety lead), and a post in the technicians' channel."""
        roles = (Role.TECHNICIAN, Role.ONLINE_SAFETY_LEAD) if also_lead else (Role.TECHNICIAN,)
        for person in await self._people(school.id, *roles):
            await uow.notify.to_person(school.id, person.id, text=text_, card=card_, dedupe_key=f"{key}:{person.id}")
        if school.channels.technicians:
            await uow.notify.to_channel(school.id, "technicians", text=text_, card=card_, dedupe_key=f"{key}:channel")

    async def _load(self, uow: UnitOfWork, actor: Actor, reference: Any) -> FilterRequest:
        if not isinstance(reference, str) or not reference:
            raise Refused("That card is missing its request reference. Type `filter` to start again.")
        request = await uow.filtering.get(actor.school_id, reference, for_update=True)
        if request is None:
            raise Refused(f"I can't find filter request {reference[:20]}.")
        return request

    def _tz(self, school_id: str) -> dt.tzinfo:
        school = self._school(school_id)
        return school.tz if school else dt.UTC

    # --- requesting ------------------------------------------------------------------------------------------

    def needs_headteacher(self, school: SchoolConfig, domain: str | None) -> bool:
        return self._rules(school).needs_headteacher(domain or "")

    def scoped(self, school: SchoolConfig, draft: Draft) -> Draft:
        """The draft with the narrowest rule the school's filter can enforce, chosen for the requester: the summary
        shows it and submit stores it, so what was approved is exactly what is applied."""
        backend = self._backend(school)
        scope, target = narrowest_scope(
            draft.url or "", draft.domain or "", backend.scopes, host_below=backend.host_below
        )
        return draft.with_(scope=scope, target=target)

    def host_below(self, school: SchoolConfig) -> bool:
        """Whether the school's filter applies a host rule to the names below the host too (for the words)."""
        return self._backend(school).host_below

    async def _related(self, uow: UnitOfWork, request: FilterRequest) -> list[FilterRequest]:
        """Other requests for the same site that are waiting or in place, for the approver to see beside this one."""
        return [
            r
            for r in await uow.filtering.related(request.school_id, request.domain)
            if r.reference != request.reference
        ]

    async def _approval_card(
        self, uow: UnitOfWork, school: SchoolConfig, request: FilterRequest, approver_ids: list[str]
    ) -> dict[str, Any]:
        return cards.build_approval_card(
            request,
            school.tz,
            approver_ids,
            related=await self._related(uow, request),
            host_below=self.host_below(school),
        )

    async def never_unblock(self, actor: Actor, kind: str, site: Site) -> str | None:
        """Refuse at once (and log it) when a site may never be unblocked; None when it may be asked for."""
        if kind not in (Kind.UNBLOCK, Kind.OVERBLOCKING):
            return None
        reason = self._rules(actor.school).never_unblock_reason(site.host)  # a listed host below the domain too
        if reason is None:
            return None
        async with self._uow() as uow:
            await self._log(uow, actor.school_id, "refused", actor.person, site.domain, None, reason)
        return (
            f"I can't send this request: {site.display_domain} can't be unblocked because {reason}. "
            f"Nobody can approve it, so nothing has been sent. If you think the site is listed by mistake, "
            f"please talk to the online-safety lead."
        )

    async def submit(self, actor: Actor, draft: Draft, *, key: str | None = None) -> Outcome:
        """Store the request, link it to an open one for the same site, or send it to the approvers.

        `key` was fixed in the conversation when the summary was shown: Send pressed twice, or again after a crash
        before the conversation was saved, gets the first request's answer and reaches the approvers once.
        """
        try:
            return await self._submit(actor, draft, key)
        except DuplicateRequest:
            # Another transaction stored it after ours looked for it; ours rolled back, so read theirs afresh.
            async with self._uow() as uow:
                request = await uow.filtering.by_key(actor.school_id, key) if key else None
            if request is None:
                raise
            return await self._sent_already(actor, request)

    async def _sent_already(self, actor: Actor, request: FilterRequest) -> Outcome:
        approvers = await self._people(
            actor.school_id,
            Role.HEADTEACHER if request.needs_headteacher else Role.FILTERING_APPROVER,
            excluding=actor.person.id,
        )
        return _submitted(request, bool(approvers))

    async def _submit(self, actor: Actor, draft: Draft, key: str | None) -> Outcome:
        refusal = await self.never_unblock(
            actor, draft.kind or "", Site(draft.url or "", draft.host, draft.domain or "")
        )
        if refusal:
            return Outcome(refusal, status="refused")
        draft = self.scoped(actor.school, draft)  # chosen again here: what is stored is what the filter can do
        rules = self._rules(actor.school)
        allows = draft.allows
        needs_head = allows and rules.needs_headteacher(draft.domain or "")
        now = self._clock.now()
        async with self._uow() as uow:
            stored = await uow.filtering.by_key(actor.school_id, key) if key else None
            if stored is not None:
                return await self._sent_already(actor, stored)  # sent the first time: nobody is asked again
            # The summary is shown only once the kind, address and site are known (and the columns need them).
            assert draft.kind is not None and draft.url is not None and draft.domain is not None
            asked = FilterRequest(
                id=0,
                school_id=actor.school_id,
                reference="",
                kind=draft.kind,
                url=draft.url,
                domain=draft.domain,
                audience=draft.audience or "all_pupils",
                year_groups=draft.year_groups,
                reason=draft.reason or "",
                lesson_date=draft.lesson_date if allows else None,
                until=draft.until if allows else None,
                previewed=draft.previewed,
                categories=rules.categories(draft.domain or ""),
                needs_headteacher=needs_head,
                status=Status.PENDING,
                requester_id=actor.person.id,
                requester_name=actor.person.name,
                created_at=now,
                scope=draft.scope or "domain",
                target=draft.target or draft.domain,
            )
            # Only the same change (rule, action, audience and period) is linked; anything else reaches the
            # approvers, who see the related requests on its card.
            earlier = next(
                (r for r in await uow.filtering.open_for_domain(actor.school_id, draft.domain) if r.same_change(asked)),
                None,
            )
            request = await uow.filtering.create(
                asked.with_(
                    status=Status.LINKED if earlier else Status.PENDING,
                    linked_to=earlier.reference if earlier else None,
                ),
                key=key,
            )
            await self._log(
                uow,
                actor.school_id,
                "requested",
                actor.person,
                request.domain,
                request.reference,
                f"{KIND_LABELS[Kind(request.kind)]}; for {audience_text(request.audience, request.year_groups)}",
            )
            if earlier:
                await self._log(
                    uow,
                    actor.school_id,
                    "linked",
                    actor.person,
                    request.domain,
                    request.reference,
                    f"same change as {earlier.reference}",
                )
                return _submitted(request, True)
            role = Role.HEADTEACHER if needs_head else Role.FILTERING_APPROVER
            approvers = await self._people(actor.school_id, role, excluding=actor.person.id)
            approval = await self._approval_card(uow, actor.school, request, [p.id for p in approvers])
            await self._send_for_approval(uow, actor, request, role, approvers, approval)
        return _submitted(request, bool(approvers))

    async def _send_for_approval(
        self,
        uow: Any,
        actor: Actor,
        request: FilterRequest,
        role: Role,
        approvers: list[Person],
        approval: dict[str, Any],
    ) -> None:
        """One tracked delivery group: the requester hears when an approver has it, or whom to ask in person."""
        if not approvers:
            return
        school = actor.school
        group = f"filter:{school.id}:{request.reference}:approval"
        heads = (
            []
            if role == Role.HEADTEACHER
            else [
                labelled(p, ROLE_LABELS[Role.HEADTEACHER])
                for p in await self._people(school.id, Role.HEADTEACHER, excluding=actor.person.id)
                if p.id not in {a.id for a in approvers}
            ]
        )
        watchers = (Role.FILTERING_APPROVER.value, Role.HEADTEACHER.value, Role.ONLINE_SAFETY_LEAD.value)
        for person in approvers:
            await uow.notify.to_person(
                school.id,
                person.id,
                card=approval,
                dedupe_key=f"filter.approval:{school.id}:{request.reference}:{request.version}:{person.id}",
                delivery=Delivery(
                    group,
                    labelled(person, ROLE_LABELS[role]).label,
                    request.reference,
                    team_roles=watchers,
                    fallbacks=(tuple(heads),) if heads else (),
                ),
            )
        leads = await self._people(school.id, Role.ONLINE_SAFETY_LEAD, excluding=actor.person.id)
        await keep_watch(
            uow,
            Watch(
                school_id=school.id,
                group=group,
                about=request.reference,
                what=f"Your request {request.reference}",
                team="the Headteacher" if role == Role.HEADTEACHER else "the filtering approvers",
                owner_id=actor.person.id,
                in_person=tuple(labelled(p, ROLE_LABELS[role]).label for p in approvers),
                phone=None,
                notify=tuple(labelled(p, ROLE_LABELS[Role.ONLINE_SAFETY_LEAD]) for p in leads),
                team_roles=watchers,
                record_type=RECORD,
                record_id=request.reference,
                next_step="I'll message you when it is decided.",
            ),
            self._clock.now() + dt.timedelta(seconds=school.delivery.normal_seconds),
        )

    async def report_missed(self, actor: Actor, site: Site, what: str, *, key: str | None = None) -> Outcome:
        """Something got through that should have been blocked: a technical concern, never a filter change."""
        if self._filer is not None:
            reference = await report_missed_content(self._filer, actor, site, what, key=key)
            async with self._uow() as uow:
                await self._log(
                    uow,
                    actor.school_id,
                    "concern_reported",
                    actor.person,
                    site.domain,
                    reference,
                    "filed through the incident flow",
                )
            return Outcome(
                f"Thank you. I've recorded this as a filter failure ({reference}) and am telling the "
                f"technicians and the online-safety lead now. I'll confirm here when they have it. Please "
                f"don't visit the site again to check.",
                reference,
            )
        school = actor.school
        async with self._uow() as uow:
            await self._log(uow, actor.school_id, "concern_reported", actor.person, site.domain, None, what[:500])
            notice = card(
                [
                    heading("Filter failure reported"),
                    text(
                        f"A member of staff reports that {site.display_host} got through the filter and "
                        f"should have been blocked. Please check the filter and block it if needed."
                    ),
                ],
                fallback_text="A filter failure was reported.",
            )
            key = f"filter.missed:{actor.school_id}:{site.domain}:{key or self._clock.now().isoformat()}"
            await self._tell_technicians(uow, school, card_=notice, key=key, also_lead=False)
            for lead in await self._people(actor.school_id, Role.ONLINE_SAFETY_LEAD):
                await uow.notify.to_person(
                    actor.school_id,
                    lead.id,
                    dedupe_key=f"{key}:lead:{lead.id}",
                    plain=True,
                    text=f"{actor.person.name} reported that {site.display_host} got through the filter: {what[:500]}",
                )
        return Outcome(
            "Thank you. I am telling the technicians and the online-safety lead now. Please don't visit "
            "the site again to check."
        )

    # --- deciding --------------------------------------------------------------------------------------------

    async def decide(self, actor: Actor, data: dict[str, Any], decision: str) -> CardReply:
        """approve | decline | ask, by a filtering approver who is not the requester."""
        note = str(data.get("note") or "").strip()[:500]
        if decision in ("decline", "ask") and not note:
            what = "why you are declining" if decision == "decline" else "your question"
            return CardReply(message=f"Please write {what} in the box on the card, then press the button again.")
        tz = actor.school.tz
        below = self.host_below(actor.school)
        async with self._uow() as uow:
            request = await self._load(uow, actor, data.get("reference"))
            try:
                check_can_decide(request, actor.person)
            except FilterRefused as refused:
                raise Refused(refused.message) from None
            now = self._clock.now()
            site = domain_display(request.domain)
            school = actor.school_id
            if decision == "approve" and request.allows:
                banned = self._rules(actor.school).never_unblock_reason(request.domain)
                if banned:
                    raise Refused(f"{site} can't be unblocked: {banned}. Please decline it with that reason.")
                if request.until and request.until <= now:
                    raise Refused(
                        f"The end time for {request.reference} has already passed. Please decline it and "
                        f"ask {request.requester_name} to send a new request."
                    )
            if decision == "approve":
                request = await uow.filtering.save(
                    request.with_(
                        status=Status.APPROVED,
                        approver_id=actor.person.id,
                        approver_name=actor.person.name,
                        decided_at=now,
                        decision_note=note or request.decision_note,
                    )
                )
                await self._log(uow, school, "approved", actor.person, request.domain, request.reference, note)
                await uow.work.schedule(
                    school,
                    APPLY_KIND,
                    now,
                    {"reference": request.reference},
                    dedupe_key=f"{APPLY_KIND}:{school}:{request.reference}:{request.version}",
                )
                tell = (
                    f"Good news: your filter request {request.reference} for {site} was approved by "
                    f"{actor.person.name}. I'll tell you when the change is in place."
                )
                reply = f"Approved. {request.reference} is being applied."
            elif decision == "decline":
                request = await uow.filtering.save(
                    request.with_(
                        status=Status.DECLINED,
                        approver_id=actor.person.id,
                        approver_name=actor.person.name,
                        decided_at=now,
                        decision_note=note,
                    )
                )
                await self._log(uow, school, "declined", actor.person, request.domain, request.reference, note)
                tell = (
                    f"Your filter request {request.reference} for {site} was declined by {actor.person.name}. "
                    f"Their reason: {note}. Nothing on the filter has changed. If you'd like to talk it over, "
                    f"please speak to them."
                )
                reply = f"Declined. I am letting {request.requester_name} know why."
            else:
                request = await uow.filtering.save(
                    request.with_(status=Status.INFO_REQUESTED, decision_note=f"Question: {note}")
                )
                await self._log(uow, school, "info_requested", actor.person, request.domain, request.reference, note)
                await uow.notify.to_person(
                    school,
                    request.requester_id,
                    card=cards.build_info_request_card(request, note),
                    dedupe_key=f"filter.ask:{school}:{request.reference}:{request.version}",
                )
                return CardReply(
                    card=cards.build_request_card(request, tz, host_below=below),
                    message=f"I am sending your question to {request.requester_name}.",
                )
            await uow.notify.to_person(
                school,
                request.requester_id,
                text=tell,
                plain=decision == "decline",
                dedupe_key=f"filter.decision:{school}:{request.reference}",
            )
            for linked in await uow.filtering.linked(school, request.reference):
                await uow.notify.to_person(
                    school,
                    linked.requester_id,
                    text=f"An update on {linked.reference} ({site}), which was linked to {request.reference}: "
                    f"it has been {'approved' if decision == 'approve' else 'declined'}.",
                    dedupe_key=f"filter.decision:{school}:{linked.reference}:{request.reference}",
                )
        return CardReply(card=cards.build_request_card(request, tz, host_below=below), message=reply)

    async def current_card(self, actor: Actor, data: dict[str, Any]) -> CardReply:
        """Universal Actions refresh: the approval card as it stands now, for an approver viewing it."""
        async with self._uow() as uow:
            request = await self._load(uow, actor, data.get("reference"))
            await uow.audit.record(actor.school_id, actor.person.id, "viewed", RECORD, request.reference)
            decidable = (
                request.status in (Status.PENDING, Status.INFO_REQUESTED)
                and actor.person.id != request.requester_id
                and (not request.needs_headteacher or actor.person.has(Role.HEADTEACHER))
            )
            if not decidable:
                return CardReply(
                    card=cards.build_request_card(request, actor.school.tz, host_below=self.host_below(actor.school))
                )
            return CardReply(card=await self._approval_card(uow, actor.school, request, [actor.person.id]))

    async def answer_question(self, actor: Actor, data: dict[str, Any]) -> CardReply:
        """The requester answers an approver's question; the approvers get the card again."""
        answer = str(data.get("answer") or "").strip()[:1000]
        if not answer:
            return CardReply(message="Please write your answer in the box, then press Send answer.")
        async with self._uow() as uow:
            request = await self._load(uow, actor, data.get("reference"))
            if request.requester_id != actor.person.id:
                raise Refused("Only the person who asked for this change can answer questions about it.")
            if request.status != Status.INFO_REQUESTED:
                return CardReply(
                    message=f"{request.reference} no longer needs an answer: it is "
                    f"{STATUS_LABELS[Status(request.status)].lower()}."
                )
            request = await uow.filtering.save(
                request.with_(
                    status=Status.PENDING, decision_note=f"{request.decision_note or ''} Answer: {answer}".strip()
                )
            )
            await self._log(uow, actor.school_id, "info_given", actor.person, request.domain, request.reference, answer)
            role = Role.HEADTEACHER if request.needs_headteacher else Role.FILTERING_APPROVER
            approvers = await self._people(actor.school_id, role, excluding=actor.person.id)
            approval = await self._approval_card(uow, actor.school, request, [p.id for p in approvers])
            for person in approvers:
                await uow.notify.to_person(
                    actor.school_id,
                    person.id,
                    card=approval,
                    dedupe_key=f"filter.approval:{actor.school_id}:{request.reference}:{request.version}:{person.id}",
                )
        return CardReply(message="Thank you. I am sending your answer to the approvers now.")

    # --- applying --------------------------------------------------------------------------------------------

    async def run_apply(self, item: WorkItem) -> str:
        """Durable work: make an approved change through the school's backend, with retries and a failure report."""
        school = self._school(item.school_id)
        if school is None:
            raise GiveUp(f"unknown school {item.school_id}")
        async with self._uow() as uow:
            request = await uow.filtering.get(school.id, item.payload["reference"])
            if request is None or request.status != Status.APPROVED:
                return f"nothing to apply ({request.status if request else 'missing'})"
            backend = self._backend(school)
            if not backend.automatic:
                request = await uow.filtering.save(request.with_(backend_result="waiting for a technician"))
                await self._tell_technicians(
                    uow,
                    school,
                    card_=cards.build_apply_card(request, school.tz, backend.host_below),
                    key=f"filter.apply-card:{school.id}:{request.reference}:{item.id}",
                )
                return "sent to technicians"
        change = FilterChange.of(request)
        try:
            note = await backend.apply(change)
        except FilterBackendError as exc:
            if item.attempts < APPLY_ATTEMPTS:
                raise RetryLater(str(exc), after=retry_delay(item.attempts)) from exc
            await self._report_failure(school, request.reference, str(exc), "apply")
            raise GiveUp(f"filter change failed after {item.attempts} tries: {exc}") from exc
        async with self._uow() as uow:
            request = await _reload(uow, school.id, request.reference)
            request = await uow.filtering.save(
                request.with_(
                    status=Status.APPLIED,
                    applier_id=None,
                    applier_name=f"{backend.name} (automatic)",
                    applied_at=self._clock.now(),
                    backend_result=note,
                )
            )
            await self._log(uow, school.id, "applied", None, request.domain, request.reference, note)
            await self._after_applied(uow, school, request)
        return note

    async def _after_applied(self, uow: Any, school: SchoolConfig, request: FilterRequest) -> None:
        site = domain_display(request.domain)
        if request.until:
            await uow.work.schedule(
                school.id,
                REVERT_KIND,
                request.until,
                {"reference": request.reference},
                dedupe_key=f"{REVERT_KIND}:{school.id}:{request.reference}",
            )
            ends = f" It ends by itself at {cards.when(request.until, school.tz)}."
        else:
            ends = ""
        done = "unblocked" if request.allows else "blocked"
        await uow.notify.to_person(
            school.id,
            request.requester_id,
            text=f"{site} is now {done} ({request.reference}).{ends}",
            dedupe_key=f"filter.applied:{school.id}:{request.reference}",
        )

    async def _report_failure(self, school: SchoolConfig, reference: str, error: str, stage: str) -> None:
        async with self._uow() as uow:
            request = await _reload(uow, school.id, reference)
            if stage == "apply":
                request = await uow.filtering.save(request.with_(status=Status.FAILED, backend_result=error[:500]))
                what = "Allow" if request.allows else "Block"
            else:
                request = await uow.filtering.save(request.with_(backend_result=f"removal failed: {error[:480]}"))
                what = "Remove the unblock for"
            await self._log(uow, school.id, "apply_failed", None, request.domain, reference, f"{stage}: {error}")
            failure = cards.build_failure_card(request, school.tz, error, what)
            key = f"filter.failed:{school.id}:{reference}:{stage}:{request.version}"
            await self._tell_technicians(uow, school, card_=failure, key=key, also_lead=True)
            if stage == "apply":
                await uow.notify.to_person(
                    school.id,
                    request.requester_id,
                    dedupe_key=f"{key}:requester",
                    text=f"Your approved request {reference} for {domain_display(request.domain)} could not be "
                    f"applied yet because the filter reported a problem. The technicians are on it; I'll "
                    f"tell you when it is in place.",
                )

    async def mark_applied(self, actor: Actor, data: dict[str, Any]) -> CardReply:
        """A technician made the change by hand (manual backend)."""
        async with self._uow() as uow:
            request = await self._load(uow, actor, data.get("reference"))
            if request.status != Status.APPROVED:
                return CardReply(
                    card=_done_card(request, actor.school.tz),
                    message=f"{request.reference} is already {STATUS_LABELS[Status(request.status)].lower()}.",
                )
            technicians = await self._directory.people_with_role(actor.school_id, Role.TECHNICIAN)
            try:
                check_can_apply(request, actor.person, technicians)
            except FilterRefused as refused:
                raise Refused(refused.message) from None
            request = await uow.filtering.save(
                request.with_(
                    status=Status.APPLIED,
                    applier_id=actor.person.id,
                    applier_name=actor.person.name,
                    applied_at=self._clock.now(),
                    backend_result="applied by hand",
                )
            )
            await self._log(
                uow, actor.school_id, "applied", actor.person, request.domain, request.reference, "applied by hand"
            )
            await self._after_applied(uow, actor.school, request)
        return CardReply(card=_done_card(request, actor.school.tz), message="Thank you. Marked as applied.")

    async def retry(self, actor: Actor, data: dict[str, Any]) -> CardReply:
        """A technician or the online-safety lead asks for a failed change to be tried again."""
        async with self._uow() as uow:
            request = await self._load(uow, actor, data.get("reference"))
            if request.status != Status.FAILED:
                return CardReply(
                    message=f"{request.reference} is not waiting for a retry "
                    f"({STATUS_LABELS[Status(request.status)].lower()})."
                )
            request = await uow.filtering.save(request.with_(status=Status.APPROVED))
            await self._log(uow, actor.school_id, "retry", actor.person, request.domain, request.reference)
            await uow.work.schedule(
                actor.school_id,
                APPLY_KIND,
                self._clock.now(),
                {"reference": request.reference},
                dedupe_key=f"{APPLY_KIND}:{actor.school_id}:{request.reference}:{request.version}",
            )
        return CardReply(message=f"Trying {request.reference} again now. You'll hear if it fails again.")

    # --- ending temporary unblocks ---------------------------------------------------------------------------

    async def run_revert(self, item: WorkItem) -> str:
        """Durable work due at a temporary unblock's end: take it off the filter and tell people."""
        school = self._school(item.school_id)
        if school is None:
            raise GiveUp(f"unknown school {item.school_id}")
        async with self._uow() as uow:
            request = await uow.filtering.get(school.id, item.payload["reference"])
            if request is None or request.status != Status.APPLIED:
                return f"nothing to revert ({request.status if request else 'missing'})"
            if request.until and request.until > self._clock.now():
                raise RetryLater("not due yet", after=request.until - self._clock.now())
            backend = self._backend(school)
            if not backend.automatic:
                request = await uow.filtering.save(request.with_(status=Status.EXPIRED))
                await self._log(
                    uow,
                    school.id,
                    "expired",
                    None,
                    request.domain,
                    request.reference,
                    "sent to technicians to remove by hand",
                )
                await self._tell_technicians(
                    uow,
                    school,
                    card_=cards.build_remove_card(request, school.tz),
                    key=f"filter.remove:{school.id}:{request.reference}",
                )
                await uow.notify.to_person(
                    school.id,
                    request.requester_id,
                    dedupe_key=f"filter.ended:{school.id}:{request.reference}",
                    text=f"The temporary unblock of {domain_display(request.domain)} ({request.reference}) has "
                    f"reached its end time and is being removed.",
                )
                return "sent to technicians"
            change = FilterChange.of(request)
            # Another request still in place may need the same rule: removing it must not end theirs too.
            needed = [
                FilterChange.of(other)
                for other in await uow.filtering.related(school.id, request.domain)
                if other.reference != request.reference
                and other.status == Status.APPLIED
                and change.shares_rule(FilterChange.of(other))
            ]
        try:
            kept = next((n for n in needed if n.same_lines(change)), None)
            if kept is not None:
                note = f"rule kept on the filter: {kept.reference} still needs it"
            else:
                note = await backend.revert(change)
                for other in needed:  # put back what the removal took from a request still in place
                    await backend.apply(other)
        except FilterBackendError as exc:
            if item.attempts < APPLY_ATTEMPTS:
                raise RetryLater(str(exc), after=retry_delay(item.attempts)) from exc
            await self._report_failure(school, request.reference, str(exc), "revert")
            raise GiveUp(f"revert failed after {item.attempts} tries: {exc}") from exc
        async with self._uow() as uow:
            request = await _reload(uow, school.id, request.reference)
            request = await uow.filtering.save(
                request.with_(status=Status.REVERTED, reverted_at=self._clock.now(), backend_result=note)
            )
            await self._log(uow, school.id, "reverted", None, request.domain, request.reference, note)
            await self._tell_ended(uow, school, request, kept=kept is not None)
        return note

    async def _tell_ended(self, uow: Any, school: SchoolConfig, request: FilterRequest, *, kept: bool = False) -> None:
        site = domain_display(request.rule_target or request.domain)
        after = "Another request still in place keeps the same rule for now." if kept else f"{site} is blocked again."
        await uow.notify.to_person(
            school.id,
            request.requester_id,
            dedupe_key=f"filter.ended:{school.id}:{request.reference}",
            text=f"The temporary unblock of {site} ({request.reference}) has ended. {after} "
            "If you need it again, type `filter`.",
        )
        await self._tell_technicians(
            uow,
            school,
            key=f"filter.ended-tech:{school.id}:{request.reference}",
            text_=f"Temporary unblock {request.reference} ({site}) ended at "
            f"{cards.when(request.reverted_at, school.tz)}. {after}",
        )

    async def mark_removed(self, actor: Actor, data: dict[str, Any]) -> CardReply:
        """A technician took an expired temporary unblock off the filter by hand."""
        async with self._uow() as uow:
            request = await self._load(uow, actor, data.get("reference"))
            if request.status != Status.EXPIRED:
                return CardReply(
                    card=_done_card(request, actor.school.tz), message=f"{request.reference} doesn't need removing now."
                )
            request = await uow.filtering.save(
                request.with_(status=Status.REVERTED, reverted_at=self._clock.now(), backend_result="removed by hand")
            )
            await self._log(
                uow, actor.school_id, "reverted", actor.person, request.domain, request.reference, "removed by hand"
            )
            await uow.notify.to_person(
                actor.school_id,
                request.requester_id,
                dedupe_key=f"filter.removed:{actor.school_id}:{request.reference}",
                text=f"The temporary unblock of {domain_display(request.domain)} "
                f"({request.reference}) has been removed; the site is blocked again.",
            )
        return CardReply(card=_done_card(request, actor.school.tz), message="Thank you. Marked as removed.")

    async def view(self, actor: Actor, reference: str) -> dict[str, Any] | None:
        """The request card for someone allowed to see it (recorded), else None."""
        async with self._uow() as uow:
            request = await uow.filtering.get(actor.school_id, reference)
            if request is None or not can_view(request, actor.person):
                await uow.audit.record(
                    actor.school_id,
                    actor.person.id,
                    "refused",
                    RECORD,
                    reference,
                    {"reason": "not found or not theirs"},
                )
                return None
            await uow.audit.record(actor.school_id, actor.person.id, "viewed", RECORD, reference)
        return cards.build_request_card(request, actor.school.tz, host_below=self.host_below(actor.school))

    # --- the change log --------------------------------------------------------------------------------------

    async def change_log(self, actor: Actor) -> list[LogEntry]:
        async with self._uow() as uow:
            entries = await uow.filtering.recent_log(actor.school_id, limit=CSV_LIMIT)
            await uow.audit.record(
                actor.school_id, actor.person.id, "viewed", "filter_log", None, {"entries": len(entries)}
            )
        return entries


def log_csv(entries: list[LogEntry], tz: dt.tzinfo, max_chars: int = CSV_MAX_CHARS) -> tuple[str, int]:
    """The change log as CSV, oldest first, times in the school's timezone; the newest rows that fit in one Teams
    message. Returns the CSV and how many entries it holds."""
    header = "when,reference,action,site,by,detail\n"
    rows: list[str] = []
    size = len(header)
    for entry in entries:  # newest first, so the most recent are kept when the message would be too long
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerow(
            [
                entry.at.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
                entry.reference or "",
                cards.LOG_ACTION_LABELS.get(entry.action, entry.action),
                domain_display(entry.domain),
                entry.actor_name,
                _csv_safe(entry.detail)[:300],
            ]
        )
        row = out.getvalue()
        if size + len(row) > max_chars:
            break
        rows.append(row)
        size += len(row)
    return header + "".join(reversed(rows)), len(rows)


def _csv_safe(value: str) -> str:
    """Stop spreadsheet formula injection from free text."""
    value = " ".join((value or "").split())
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value


def _done_card(request: FilterRequest, tz: dt.tzinfo) -> dict[str, Any]:
    """What a technician card becomes once handled: no names, it may be in a channel."""
    label = STATUS_LABELS[Status(request.status)]
    return card(
        [
            heading(f"Filter change {request.reference}"),
            text(f"{domain_display(request.domain)}: {label}."),
            text(
                f"Updated {cards.when(request.reverted_at or request.applied_at or request.decided_at, tz)}.",
                subtle=True,
            ),
        ],
        fallback_text=f"Filter change {request.reference}: {label}.",
    )


async def _reload(uow: UnitOfWork, school_id: str, reference: str) -> FilterRequest:
    """A request this work item was queued for, locked for the change: it is there."""
    request = await uow.filtering.get(school_id, reference, for_update=True)
    assert request is not None
    return request


def _submitted(request: FilterRequest, has_approvers: bool) -> Outcome:
    """What the requester is told once the request is stored; the same words when they press Send again."""
    site = domain_display(request.domain)
    if request.linked_to:
        return Outcome(
            f"Thank you. The same change for {site}, for the same people and time, has already been "
            f"asked for in {request.linked_to}, which is waiting for a decision, so your request "
            f"{request.reference} is linked to it rather than sent again. I'll tell you what is decided.",
            request.reference,
            request.status,
        )
    if not has_approvers:
        return Outcome(
            f"Your request {request.reference} is saved, but there is nobody else who can approve it. "
            f"Please tell the online-safety lead.",
            request.reference,
            request.status,
        )
    who = "the Headteacher" if request.needs_headteacher else "the filtering approvers"
    return Outcome(
        f"Thank you. Your request {request.reference} for {site} is saved, and I am sending it to {who} "
        f"now. I'll tell you when it has reached them, and again when it is decided.",
        request.reference,
        request.status,
    )
