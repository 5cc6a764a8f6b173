"""The retention sweep, legal holds and the DPO's view of the schedule.

Decisions:
- One sweep per school per day at 02:30 school time, as durable work (dedupe key per day), each run scheduling
  the next, like the audit check. The work queue's claim hands an item to one replica; inside it each record type
  is changed in its own transaction with its audit entry, so a crash loses neither and a re-run repeats nothing.
- Each record type handles at most `batch_size` records per run; a backlog (the first run on an old database)
  continues a few minutes later rather than holding the database in one long transaction.
- The audit entry per record type carries counts only; it is written only when something was deleted or
  anonymised, so a held case does not add an entry every day (the sweep's figures still count it).
- Who places a legal hold: the case's own managers (the DSL team, or the Headteacher for an allegation), on the
  case card; and the DPO, who answers for data protection (policy 002) but does not read safeguarding files, with
  `hold REF reason`, which says whether the hold is now in place and nothing about the case.
- Conversation state has no school in its key, so the state rule runs in every school's sweep and the first one
  each day clears it for the whole server.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from bot import schooltime
from bot.actor import Actor, CardReply
from bot.cards.incident import CasePart
from bot.cards.retention import (
    HOLD_INPUT,
    HOLD_VERB,
    RELEASE_INPUT,
    RELEASE_VERB,
    HoldView,
    RetentionView,
    build_hold_section,
    build_retention_card,
)
from bot.config import AppConfig, SchoolConfig
from bot.incidents import Incident, is_excluded, may_act_on_case, may_view_case
from bot.people import Person
from bot.policy import Policy
from bot.protocols import Clock, Directory, UnitOfWorkFactory
from bot.retention import (
    CASE_REFERENCE,
    CASE_TYPES,
    DAILY_AT,
    INBOUND_NOTE,
    LABELS,
    MORE_AFTER,
    RECORD_TYPES,
    SWEEP_KIND,
    Figures,
    Tally,
    case_due,
    case_type,
    child_due,
    cutoff,
    hold_reason,
    schedule_lines,
    tally_words,
)
from bot.wiring import Features
from bot.work import WorkItem

HOLD_USAGE = (
    "Please give the case reference and the reason, for example `hold ES-2026-0001 A claim has been "
    "made`. To end a hold: `hold release ES-2026-0001` and the reason."
)
NO_SUCH_CASE = "I could not find a case with that reference. Please check it and try again."


class RetentionService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        store_of: Callable[[Any], Any],
        directory: Directory,
        policy: Policy,
        config: AppConfig,
        clock: Clock,
        features: Features,
    ) -> None:
        self._uow = uow
        self._store_of = store_of  # the retention repository inside a unit of work
        self._directory = directory
        self._policy = policy
        self._rules = policy.retention
        self._config = config
        self._clock = clock
        self._features = features  # the case service, looked up when used (features install in any order)

    # --- scheduling -----------------------------------------------------------------------------------------------

    async def seed(self, school_id: str) -> None:
        async with self._uow() as uow:
            await self._schedule_next(uow, school_id, self._clock.now())

    async def _schedule_next(self, uow: Any, school_id: str, after: dt.datetime) -> None:
        school = self._config.school(school_id)
        if school is None:
            return
        at = schooltime.next_daily(school, after, DAILY_AT)
        await uow.work.schedule(
            school_id, SWEEP_KIND, at, {}, dedupe_key=f"{SWEEP_KIND}:{school_id}:{at.date().isoformat()}"
        )

    # --- the sweep --------------------------------------------------------------------------------------------

    async def sweep(self, item: WorkItem) -> str:
        school_id, now = item.school_id, self._clock.now()
        figures = Figures()
        more = False
        for step in (
            self._cases,
            self._children,
            self._filter_requests,
            self._filter_log,
            self._acknowledgements,
            self._conversations,
            self._outbox,
        ):
            more = await step(school_id, now, figures) or more
        async with self._uow() as uow:
            await self._store_of(uow).record_sweep(school_id, figures.as_json())
            if more:
                await uow.work.schedule(
                    school_id,
                    SWEEP_KIND,
                    now + MORE_AFTER,
                    {"continues": True},
                    dedupe_key=f"{SWEEP_KIND}:{school_id}:more:{item.id}",
                )
            await self._schedule_next(uow, school_id, max(now, item.run_at))
        done = [
            f"{t} {figures.of(t).deleted}d/{figures.of(t).anonymised}a/{figures.of(t).held}h"
            for t in RECORD_TYPES
            if figures.of(t).any
        ]
        return ("swept: " + ", ".join(done) if done else "swept: nothing due") + (" (more to do)" if more else "")

    async def _audit(self, uow: Any, school_id: str, record_type: str, tally: Tally) -> None:
        if tally.deleted or tally.anonymised:
            await uow.audit.record(school_id, None, "retention.swept", "retention", record_type, tally.as_json())

    def _routing(self, category: str) -> str:
        known = {c.key: c.routing for c in self._policy.categories}
        return known.get(category, "safeguarding")  # a type no longer in the policy gets the longest schedule

    async def _cases(self, school_id: str, now: dt.datetime, figures: Figures) -> bool:
        async with self._uow() as uow:
            store = self._store_of(uow)
            closed = await store.closed_cases(school_id, now)
            births = await store.birthdays(school_id, [c.id for c in closed])
            held = await store.held_incident_ids(school_id)
            due = []
            for case in closed:
                kind = case_type(case.subject_kind, self._routing(case.category))
                if case_due(getattr(self._rules, kind), case.closed_at, births.get(case.id, [])) > now:
                    continue
                if case.id in held:
                    figures.of(kind).held += 1
                else:
                    due.append((kind, case))
            for kind, case in due[: self._rules.batch_size]:
                if await store.anonymise_case(school_id, case.id):
                    await uow.incidents.append_event(school_id, case.id, None, None, "anonymised")
                    figures.of(kind).anonymised += 1
            for kind in CASE_TYPES:
                await self._audit(uow, school_id, kind, figures.of(kind))
        return len(due) > self._rules.batch_size

    async def _children(self, school_id: str, now: dt.datetime, figures: Figures) -> bool:
        rule = self._rules.child_record
        async with self._uow() as uow:
            store = self._store_of(uow)
            # A child linked to any case still kept (a held one, or one not yet due) is not in this list.
            due = [c for c in await store.unlinked_children(school_id) if child_due(rule, c.born, c.created_at) <= now]
            tally = figures.of("child_record")
            for child in due[: self._rules.batch_size]:
                tally.deleted += await store.delete_child(school_id, child.id)
            await self._audit(uow, school_id, "child_record", tally)
        return len(due) > self._rules.batch_size

    async def _filter_requests(self, school_id: str, now: dt.datetime, figures: Figures) -> bool:
        async with self._uow() as uow:
            store = self._store_of(uow)
            due = await store.filter_requests_before(school_id, cutoff(self._rules.filter_request, now))
            tally = figures.of("filter_request")
            for request_id in due[: self._rules.batch_size]:
                tally.anonymised += await store.anonymise_filter_request(school_id, request_id)
            await self._audit(uow, school_id, "filter_request", tally)
        return len(due) > self._rules.batch_size

    async def _filter_log(self, school_id: str, now: dt.datetime, figures: Figures) -> bool:
        async with self._uow() as uow:
            deleted, more = await self._store_of(uow).delete_filter_log(
                school_id, cutoff(self._rules.filter_log, now), self._rules.batch_size
            )
            figures.of("filter_log").deleted += deleted
            await self._audit(uow, school_id, "filter_log", figures.of("filter_log"))
        return bool(more)  # the store is reached untyped (storage's own types)

    async def _acknowledgements(self, school_id: str, now: dt.datetime, figures: Figures) -> bool:
        async with self._uow() as uow:
            deleted, more = await self._store_of(uow).delete_superseded_acknowledgements(
                school_id, cutoff(self._rules.aup_acknowledgement, now), self._rules.batch_size
            )
            figures.of("aup_acknowledgement").deleted += deleted
            await self._audit(uow, school_id, "aup_acknowledgement", figures.of("aup_acknowledgement"))
        return bool(more)  # the store is reached untyped (storage's own types)

    async def _conversations(self, school_id: str, now: dt.datetime, figures: Figures) -> bool:
        async with self._uow() as uow:
            deleted, more = await self._store_of(uow).delete_conversation_state(
                cutoff(self._rules.conversation_state, now), self._rules.batch_size
            )
            figures.of("conversation_state").deleted += deleted
            await self._audit(uow, school_id, "conversation_state", figures.of("conversation_state"))
        return bool(more)  # the store is reached untyped (storage's own types)

    async def _outbox(self, school_id: str, now: dt.datetime, figures: Figures) -> bool:
        async with self._uow() as uow:
            done, more = await self._store_of(uow).anonymise_sends(
                school_id, cutoff(self._rules.outbox, now), self._rules.batch_size
            )
            figures.of("outbox").anonymised += done
            await self._audit(uow, school_id, "outbox", figures.of("outbox"))
        return bool(more)  # the store is reached untyped (storage's own types)

    # --- the `retention` command --------------------------------------------------------------------------------

    async def report_card(self, actor: Actor) -> dict[str, Any]:
        async with self._uow() as uow:
            store = self._store_of(uow)
            runs = await store.last_sweep_runs(actor.school_id)
            next_at = await store.next_sweep_at(actor.school_id, SWEEP_KIND)
            await uow.audit.record(actor.school_id, actor.person.id, "retention.viewed", "retention", None)
        figures = Figures()
        for run in runs:
            figures.add(Figures.from_json(run.figures))
        shown = [(LABELS[t], tally_words(figures.of(t))) for t in RECORD_TYPES if figures.of(t).any]
        return build_retention_card(
            RetentionView(
                school=actor.school.name,
                schedule=schedule_lines(self._rules),
                timezone=actor.school.tz,
                last_run_at=runs[-1].ran_at if runs else None,
                last_figures=shown,
                next_run_at=next_at,
                note=INBOUND_NOTE,
            )
        )

    # --- legal holds ------------------------------------------------------------------------------------------

    async def case_part(self, uow: Any, school: SchoolConfig, incident: Incident, viewer: Person) -> CasePart | None:
        if not may_view_case(viewer, incident):
            return None
        store = self._store_of(uow)
        hold = await store.active_hold(school.id, incident.id)
        anonymised = await store.anonymised_at(school.id, incident.id)
        can_act = may_act_on_case(viewer, incident)
        if hold is None and anonymised is None and not can_act:
            return None
        held_by = None
        if hold is not None:
            person = await self._directory.person(school.id, hold.set_by)
            held_by = person.name if person else "someone who has left"
        body, more = build_hold_section(
            HoldView(
                token=incident.token,
                timezone=school.tz,
                held_since=hold.set_at if hold else None,
                held_by=held_by,
                reason=hold.reason if hold else None,
                anonymised_at=anonymised,
                can_act=can_act,
            )
        )
        return CasePart(body=body, more=more)

    async def card_hold(self, actor: Actor, data: dict[str, Any], *, release: bool) -> CardReply:
        """The case card's "Place a legal hold" / "Release the hold": for the case's own managers."""
        reason = hold_reason(data.get(RELEASE_INPUT if release else HOLD_INPUT))

        async def change(uow: Any, actor: Actor, incident: Incident, _data: dict[str, Any]) -> str | None:
            return await self._change_hold(uow, actor, incident, reason, release=release)

        # A hold is for closed cases too (that is when retention applies), and adds to the case: no version check.
        incidents = self._features.incidents
        assert incidents is not None, "the retention feature needs the incidents feature"
        return await incidents.act_on_case(
            actor, data, RELEASE_VERB if release else HOLD_VERB, change, check_version=False, closed_ok=True
        )

    async def command_hold(self, actor: Actor, args: str) -> str:
        """`hold REF reason` and `hold release REF reason`, for the DPO: it says nothing about the case."""
        words = args.split()
        release = bool(words) and words[0].lower() == "release"
        if release:
            words = words[1:]
        if not words:
            return HOLD_USAGE
        reference = words[0].upper()
        if not CASE_REFERENCE.match(reference):
            return HOLD_USAGE  # typed words are never looked up or audited: they could be a child's name
        reason = hold_reason(" ".join(words[1:]))
        async with self._uow() as uow:
            incident = await uow.incidents.by_reference(actor.school_id, reference)
            if incident is None or is_excluded(actor.person, incident):
                # The same answer whether or not it exists: someone a case is about never learns of it here.
                await uow.audit.record(
                    actor.school_id, actor.person.id, "retention.hold_refused", "incident", reference
                )
                return NO_SUCH_CASE
            if reason is None:
                return HOLD_USAGE
            notice = await self._change_hold(uow, actor, incident, reason, release=release)
        return notice.replace("This case", incident.reference)

    async def _change_hold(
        self, uow: Any, actor: Actor, incident: Incident, reason: str | None, *, release: bool
    ) -> str:
        if reason is None:
            return "Please give a reason for ending the hold." if release else "Please give a reason for the hold."
        store = self._store_of(uow)
        if await store.anonymised_at(actor.school_id, incident.id) is not None:
            return "This case was anonymised under the retention schedule, so there is nothing left to hold."
        if release:
            if not await store.release_hold(actor.school_id, incident.id, actor.person.id, reason):
                return "This case is not under a legal hold."
        elif not await store.place_hold(actor.school_id, incident.id, actor.person.id, reason):
            return "This case is already under a legal hold."
        kind = "hold_released" if release else "legal_hold"
        await uow.incidents.append_event(actor.school_id, incident.id, actor.person.id, actor.person.name, kind, reason)
        await uow.audit.record(actor.school_id, actor.person.id, f"retention.{kind}", "incident", incident.reference)
        if release:
            return "Legal hold released. This case follows the retention schedule again."
        return "Legal hold placed. This case will not be deleted or anonymised until the hold is released."
