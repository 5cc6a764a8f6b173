"""A case and a child's file as plain records: what the tab shows and what an export contains (one schema)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from bot.chronology import describe
from bot.incidents import LOCATIONS, SEVERITY_LABELS, STATUS_LABELS, SUBJECT_KINDS, Event, Incident


@dataclass(frozen=True)
class ChronologyEntry:
    happened_at: dt.datetime  # when it happened (asked; the recording time when nobody said)
    recorded_at: dt.datetime
    reference: str  # the case it belongs to: a child's file interleaves several cases
    kind: str
    text: str  # typed by people in part: show as text, never interpret


@dataclass(frozen=True)
class ChildRef:
    """A child linked to a case, as a case shows it."""

    token: str  # opaque, random: what cards and the tab carry
    name: str
    year_group: str | None = None


@dataclass(frozen=True)
class CaseRecord:
    reference: str
    token: str
    category: str
    group: str
    severity: str
    status: str
    about: str
    where: str
    reported_at: dt.datetime
    reported_by: str
    owner: str | None
    outcome: str | None
    when: str | None
    who_is_involved: str | None
    what_happened: str | None
    evidence: str | None
    already_done: str | None
    actions: tuple[str, ...]
    children: tuple[ChildRef, ...]
    staff_member: str | None  # an allegation's subject, linked from the directory
    entries: tuple[ChronologyEntry, ...]
    is_open: bool = True


@dataclass(frozen=True)
class ChildDetails:
    token: str
    name: str
    year_group: str | None
    date_of_birth: dt.date | None
    upn: str | None
    mis_id: str | None


@dataclass(frozen=True)
class ChildFile:
    """Everything about one child the asking person may see: every linked case they may see, and one
    chronology of all their entries in the order things happened."""

    child: ChildDetails
    cases: tuple[CaseRecord, ...]
    hidden_cases: int = 0  # linked cases the asker may not see: counted, never described
    entries: tuple[ChronologyEntry, ...] = field(default=())


def entries_for(incident: Incident) -> tuple[ChronologyEntry, ...]:
    """The case's chronology in the order things happened; views are audited, not chronology."""
    shown = [e for e in incident.events if e.kind != "viewed"]
    return tuple(sorted((_entry(incident.reference, e) for e in shown), key=lambda e: (e.happened_at, e.recorded_at)))


def _entry(reference: str, event: Event) -> ChronologyEntry:
    return ChronologyEntry(
        happened_at=event.happened_at, recorded_at=event.at, reference=reference, kind=event.kind, text=describe(event)
    )


def case_record(
    incident: Incident,
    *,
    category: str,
    group: str,
    children: tuple[ChildRef, ...] = (),
    staff_member: str | None = None,
) -> CaseRecord:
    return CaseRecord(
        reference=incident.reference,
        token=incident.token,
        category=category,
        group=group,
        severity=SEVERITY_LABELS.get(incident.severity, incident.severity),
        status=STATUS_LABELS[incident.status],
        about=SUBJECT_KINDS.get(incident.subject_kind, incident.subject_kind),
        where=LOCATIONS.get(incident.location or "", "Not given"),
        reported_at=incident.reported_at,
        reported_by=incident.reporter_name,
        owner=incident.owner_name,
        outcome=incident.outcome,
        when=incident.occurred,
        who_is_involved=incident.subjects,
        what_happened=incident.narrative,
        evidence=incident.evidence,
        already_done=incident.actions_taken,
        actions=tuple(incident.recorded_actions),
        children=children,
        staff_member=staff_member,
        entries=entries_for(incident),
        is_open=incident.is_open,
    )


def child_file(child: ChildDetails, cases: list[CaseRecord], hidden_cases: int = 0) -> ChildFile:
    entries = sorted((e for c in cases for e in c.entries), key=lambda e: (e.happened_at, e.recorded_at))
    return ChildFile(
        child=child,
        cases=tuple(sorted(cases, key=lambda c: c.reported_at)),
        hidden_cases=hidden_cases,
        entries=tuple(entries),
    )


def _when(value: dt.datetime | dt.date | None) -> str | None:
    return value.isoformat() if value is not None else None


def _entry_json(entry: ChronologyEntry) -> dict[str, Any]:
    return {
        "happened_at": _when(entry.happened_at),
        "recorded_at": _when(entry.recorded_at),
        "case": entry.reference,
        "kind": entry.kind,
        "text": entry.text,
    }


def case_record_json(record: CaseRecord) -> dict[str, Any]:
    """The JSON form (an export, and the tab's case detail): ids are the opaque tokens, never database ids."""
    return {
        "reference": record.reference,
        "token": record.token,
        "category": record.category,
        "group": record.group,
        "severity": record.severity,
        "status": record.status,
        "open": record.is_open,
        "about": record.about,
        "where": record.where,
        "reported_at": _when(record.reported_at),
        "reported_by": record.reported_by,
        "owner": record.owner,
        "outcome": record.outcome,
        "when": record.when,
        "who_is_involved": record.who_is_involved,
        "what_happened": record.what_happened,
        "evidence": record.evidence,
        "already_done": record.already_done,
        "actions": list(record.actions),
        "children": [{"token": c.token, "name": c.name, "year_group": c.year_group} for c in record.children],
        "staff_member": record.staff_member,
        "chronology": [_entry_json(e) for e in record.entries],
    }


def child_file_json(file: ChildFile) -> dict[str, Any]:
    child = file.child
    return {
        "child": {
            "token": child.token,
            "name": child.name,
            "year_group": child.year_group,
            "date_of_birth": _when(child.date_of_birth),
            "upn": child.upn,
            "mis_id": child.mis_id,
        },
        "cases": [case_record_json(c) for c in file.cases],
        "cases_not_shown": file.hidden_cases,
        "chronology": [_entry_json(e) for e in file.entries],
    }
