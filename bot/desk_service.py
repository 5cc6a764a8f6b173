"""The caseload: open cases a person may see, from one transaction, filtered and paged for a card or the tab."""

from __future__ import annotations

import datetime as dt
from typing import Any

from bot.actor import Actor
from bot.delivery import UNDELIVERED_DAYS
from bot.desk import (
    CaseFilter,
    CasePage,
    CaseRow,
    is_overdue,
    may_use_desk,
    page_of,
    parse_filter,
    select_cases,
    visible_cases,
)
from bot.incidents import STATUS_LABELS, IncidentSummary
from bot.policy import Policy
from bot.protocols import CaseloadReads, Clock, ReadAudit


class DeskService:
    def __init__(self, reads: CaseloadReads, audit: ReadAudit, policy: Policy, clock: Clock) -> None:
        self._reads = reads
        self._audit = audit
        self._policy = policy
        self._clock = clock

    may_use_desk = staticmethod(may_use_desk)

    def filter_from(self, view: object = None, group: object = None, page: object = None) -> CaseFilter:
        return parse_filter(view, group, page, {g.key for g in self._policy.category_groups})

    async def caseload(self, actor: Actor, chosen: CaseFilter) -> CasePage:
        """Audited as one read of the list: which cases were listed, not their contents (none are shown). The entry is
        committed before the page is returned."""
        now = self._clock.now()
        school = actor.school
        sla = (school.sla_minutes.normal, school.sla_minutes.urgent)
        viewer = actor.person
        desk = may_use_desk(viewer)
        facts = await self._reads.caseload(
            school.id,
            now - dt.timedelta(days=UNDELIVERED_DAYS),
            now,
            lambda cases: visible_cases(cases, viewer) if desk else [],
        )
        # Undelivered alerts and late referrals only mark and order the cases listed.
        undelivered: dict[str, int] = {}
        roles = {r.value for r in viewer.roles}
        for outcome in facts.failed:
            if roles & set(outcome.delivery.team_roles):
                undelivered[outcome.delivery.about] = undelivered.get(outcome.delivery.about, 0) + 1
        chosen_cases = select_cases(
            facts.visible, viewer, chosen, now=now, sla_minutes=sla, undelivered=undelivered, late_referrals=facts.late
        )
        shown, page, pages = page_of(chosen_cases, chosen.page)
        await self._audit.record(
            school.id,
            actor.person.id,
            "caseload.viewed",
            "caseload",
            chosen.view,
            {"group": chosen.group, "page": page, "listed": [c.reference for c in shown]},
        )
        rows = [self._row(c, now, sla, undelivered, c.id in facts.late) for c in shown]
        return CasePage(
            rows=rows,
            filter=CaseFilter(chosen.view, chosen.group, page),
            total=len(chosen_cases),
            pages=pages,
            groups=[(g.key, g.label) for g in self._policy.category_groups],
        )

    def _row(
        self,
        case: IncidentSummary,
        now: dt.datetime,
        sla: tuple[int, int],
        undelivered: dict[str, Any],
        late_referral: bool,
    ) -> CaseRow:
        return CaseRow(
            token=case.token,
            reference=case.reference,
            category=self._policy.category(case.category).label,
            group=self._policy.group(case.category_group).label,
            severity=case.severity,
            status=STATUS_LABELS[case.status],
            reported_at=case.reported_at,
            owner=case.owner_name,
            urgent=case.urgent,
            overdue=is_overdue(case, now, sla[1] if case.urgent else sla[0], late_referral),
            undelivered=undelivered.get(case.reference, 0),
        )
