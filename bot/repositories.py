"""What the repositories in a unit of work offer the services (storage/ implements them, returning dataclasses)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # only the type checker needs the domain types; nothing here runs
    from bot.allegations import CaseDecision, LowLevelConcern
    from bot.children import Child, ChildInput
    from bot.delivery import Outcome, Watch
    from bot.exports import ExportRequest
    from bot.filtering import FilterRequest, LogEntry
    from bot.incidents import Incident, IncidentDraft, IncidentSummary
    from bot.referrals import ClockStatus, Referral, RequiredReferral


class IncidentRepository(Protocol):
    """The cases and their chronology."""

    async def next_reference(self, school_id: str, prefix: str, year: int) -> str: ...

    async def add(
        self, draft: IncidentDraft, *, reference: str, complete: bool, key: str | None = None
    ) -> Incident: ...

    async def by_key(self, school_id: str, key: str) -> Incident | None: ...

    async def complete_details(self, school_id: str, incident_id: int, draft: IncidentDraft) -> bool: ...

    async def get(self, school_id: str, incident_id: int) -> Incident | None: ...

    async def by_token(self, school_id: str, token: str) -> Incident | None: ...

    async def by_reference(self, school_id: str, reference: str) -> Incident | None: ...

    async def reported_by(self, school_id: str, reporter_id: str, limit: int = 20) -> list[IncidentSummary]: ...

    async def change(self, school_id: str, incident_id: int, expected_version: int, **values: object) -> None: ...

    async def mark_sla_breached(self, school_id: str, incident_id: int) -> None: ...

    async def append_event(
        self,
        school_id: str,
        incident_id: int,
        actor_id: str | None,
        actor_name: str | None,
        kind: str,
        detail: str | None = None,
        *,
        occurred_at: dt.datetime | None = None,
    ) -> None: ...

    async def open_summaries(self, school_id: str) -> list[IncidentSummary]: ...

    async def summaries_about(self, school_id: str, subject_kind: str) -> list[IncidentSummary]: ...


class ChildRepository(Protocol):
    """Children's records and the people linked to a case."""

    async def add(
        self,
        school_id: str,
        details: ChildInput,
        *,
        source: str = "local",
        directory_id: str | None = None,
        created_by: str | None = None,
    ) -> Child: ...

    async def by_token(self, school_id: str, token: str) -> Child | None: ...

    async def by_directory_id(self, school_id: str, directory_id: str) -> Child | None: ...

    async def search(self, school_id: str, query: str, limit: int = 10) -> list[Child]: ...

    async def link_child(self, school_id: str, incident_id: int, child_id: int, linked_by: str) -> bool: ...

    async def unlink_child(self, school_id: str, incident_id: int, child_id: int) -> bool: ...

    async def children_of(self, school_id: str, incident_id: int) -> list[Child]: ...

    async def cases_of(self, school_id: str, child_id: int) -> list[int]: ...

    async def link_staff(
        self, school_id: str, incident_id: int, staff_id: str, staff_name: str, linked_by: str
    ) -> bool: ...

    async def staff_of(self, school_id: str, incident_id: int) -> tuple[str, str] | None: ...


class FilterRepository(Protocol):
    """Filter change requests and the change log."""

    async def create(self, request: FilterRequest, *, key: str | None = None) -> FilterRequest: ...

    async def by_key(self, school_id: str, key: str) -> FilterRequest | None: ...

    async def get(self, school_id: str, reference: str, *, for_update: bool = False) -> FilterRequest | None: ...

    async def open_for_domain(self, school_id: str, domain: str) -> list[FilterRequest]: ...

    async def related(self, school_id: str, domain: str) -> list[FilterRequest]: ...

    async def linked(self, school_id: str, reference: str) -> list[FilterRequest]: ...

    async def save(self, request: FilterRequest) -> FilterRequest: ...

    async def log(self, school_id: str, entry: LogEntry) -> None: ...

    async def recent_log(self, school_id: str, limit: int = 500) -> list[LogEntry]: ...


class DeliveryRepository(Protocol):
    """How the sends of tracked messages went."""

    async def group(self, school_id: str, group: str) -> list[Outcome]: ...

    async def watch(self, school_id: str, group: str) -> Watch | None: ...

    async def deadline_missed(self, school_id: str, group: str) -> bool: ...

    async def failed(self, school_id: str, since: dt.datetime) -> list[Outcome]: ...

    async def sent_about(self, school_id: str, about: str) -> list[tuple[dict[str, str], str]]: ...

    async def withdraw_unsent_about(self, school_id: str, about: str, keep_people: set[str]) -> int: ...

    async def count_failed(self, since: dt.datetime) -> int: ...


class ExportRepository(Protocol):
    """Requests to export a case or a child's file."""

    async def add(self, school_id: str, person_id: str, kind: str, subject: str, fmt: str) -> ExportRequest: ...

    async def get(self, school_id: str, token: str) -> ExportRequest | None: ...

    async def move(self, school_id: str, token: str, from_status: str, to_status: str) -> bool: ...


class AllegationRepository(Protocol):
    """Decisions recorded on a case (allegations, UKCIS reviews) and the low-level concerns register."""

    async def record_once(
        self, school_id: str, incident_id: int, kind: str, answers: dict[str, Any], by_id: str, by_name: str
    ) -> bool: ...

    async def put(
        self, school_id: str, incident_id: int, kind: str, answers: dict[str, Any], by_id: str, by_name: str
    ) -> None: ...

    async def get(self, school_id: str, incident_id: int, kind: str) -> CaseDecision | None: ...

    async def all_for(self, school_id: str, incident_id: int) -> list[CaseDecision]: ...

    async def low_level_concerns(self, school_id: str) -> list[LowLevelConcern]: ...


class ReferralRepository(Protocol):
    """Referrals made to agencies, and the clocks of those a case requires."""

    async def add(
        self,
        school_id: str,
        incident_id: int,
        agency: str,
        made_at: dt.datetime,
        made_by_id: str,
        made_by_name: str,
        their_reference: str | None,
    ) -> Referral: ...

    async def made(self, school_id: str, incident_id: int) -> list[Referral]: ...

    async def set_outcome(self, school_id: str, incident_id: int, handle: str, outcome: str) -> Referral | None: ...

    async def clocks(self, school_id: str, incident_id: int) -> list[RequiredReferral]: ...

    async def overdue_cases(self, school_id: str, now: dt.datetime) -> set[int]: ...

    async def clock(self, school_id: str, clock_id: int) -> RequiredReferral | None: ...

    async def open_clock(
        self, school_id: str, incident_id: int, agency: str, started_at: dt.datetime, due_at: dt.datetime
    ) -> RequiredReferral | None: ...

    async def settle(self, school_id: str, clock_id: int, status: ClockStatus, reason: str | None = None) -> bool: ...


class GraphStateRepository(Protocol):
    """Where each Microsoft Graph delta query got to."""

    async def delta_link(self, school_id: str, name: str) -> str | None: ...

    async def save_delta_link(self, school_id: str, name: str, link: str) -> None: ...
